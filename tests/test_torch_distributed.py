"""adamax_cy.torch.Adamax in distributed training: DDP, FSDP2 and ZeRO, 2 gloo processes on CPU.

Each test starts its processes with the spawn method and waits a bounded
time for them (then kills them): a hang fails the test instead of stopping
the run. The processes meet through a file store in the test's own temporary
folder (no fixed port); gloo's connections use ports the system chooses.
"""

from __future__ import annotations

import contextlib
import copy
import multiprocessing
import os
import sys
import time
import unittest.mock

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available():  # pragma: no cover - torch built without distributed
    pytest.skip("torch.distributed is not available", allow_module_level=True)

from adamax_cy.torch import Adamax  # noqa: E402
from test_torch_optimizer import assert_torch_step  # noqa: E402

#: Seconds a test waits for its processes, all together. Starting two
#: interpreters that import torch is most of it: on a loaded 2-core machine
#: (load average 13) one DDP run took up to 200 s, against 10 s when idle.
JOIN_SECONDS = 480
#: Seconds a collective (the rendezvous included) waits for the other
#: process: one of them may start long after the other on a loaded machine.
COLLECTIVE_SECONDS = 300


@contextlib.contextmanager
def _process_group(rank, world_size, store):
    """A gloo process group on the loopback interface, destroyed on the way out."""
    from datetime import timedelta

    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world_size,
        timeout=timedelta(seconds=COLLECTIVE_SECONDS),
    )
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _exit_after(target, *args):
    """Run ``target(*args)`` in a worker, then leave without the interpreter's teardown.

    Once its output is written and its process group destroyed, a worker has
    nothing left to do; torch's C++ threads have been seen to abort the
    teardown of a gloo process ("terminate called without an active
    exception", exit code -6) after a successful run. An exception still
    exits the normal way, with its traceback and exit code 1.
    """
    target(*args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _run(tmp_path, target, world_size=2, *args):
    """Run ``target(rank, world_size, store, out, *args)`` in ``world_size`` processes; their outputs."""
    ctx = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"rank{r}.pt" for r in range(world_size)]
    store = tmp_path / "store"
    procs = [ctx.Process(target=_exit_after,
                         args=(target, r, world_size, str(store), str(outs[r]), *args),
                         daemon=True)
             for r in range(world_size)]
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + JOIN_SECONDS
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        alive = [p.pid for p in procs if p.is_alive()]
        assert not alive, f"distributed workers {alive} did not finish in {JOIN_SECONDS} s"
        assert [p.exitcode for p in procs] == [0] * world_size
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(10)
            p.close()
    return [torch.load(o, weights_only=False) for o in outs]


# -- DistributedDataParallel -----------------------------------------------------

DDP_STEPS = 6
DDP_SIZE = 64


class Elementwise(torch.nn.Module):
    """y = x * w + b. With x in {±1/2, ±1, ±2}, every product and batch sum in
    the gradient is exact or rounded the same way in one process on two samples
    as in two processes on one sample each, so the gradients are bitwise equal."""

    def __init__(self, w, b):
        super().__init__()
        self.w = torch.nn.Parameter(w.clone())
        self.b = torch.nn.Parameter(b.clone())

    def forward(self, x):
        return x * self.w + self.b


def _ddp_data():
    gen = torch.Generator().manual_seed(7)
    choices = torch.tensor([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0], dtype=torch.float64)
    x = choices[torch.randint(0, 6, (DDP_STEPS, 2, DDP_SIZE), generator=gen)]
    y = torch.randn(DDP_STEPS, 2, DDP_SIZE, generator=gen, dtype=torch.float64)
    w = torch.randn(DDP_SIZE, generator=gen, dtype=torch.float64)
    b = torch.randn(DDP_SIZE, generator=gen, dtype=torch.float64)
    return x, y, w, b


DDP_OPTIONS = dict(lr=0.05, weight_decay=0.01)


def _ddp_worker(rank, world_size, store, out):
    from torch.nn.parallel import DistributedDataParallel

    with _process_group(rank, world_size, store):
        x, y, w, b = _ddp_data()
        model = DistributedDataParallel(Elementwise(w, b))
        opt = Adamax(model.parameters(), **DDP_OPTIONS)
        record = []
        for s in range(DDP_STEPS):
            opt.zero_grad()
            out_ = model(x[s, rank : rank + 1])
            torch.nn.functional.mse_loss(out_, y[s, rank : rank + 1]).backward()
            record.append({
                "params": [p.detach().clone() for p in model.parameters()],
                "grads": [p.grad.clone() for p in model.parameters()],
                "state": copy.deepcopy(opt.state_dict()),
            })
            opt.step()
        record.append({
            "params": [p.detach().clone() for p in model.parameters()],
            "state": copy.deepcopy(opt.state_dict()),
        })
        torch.save(record, out)


def test_distributed_data_parallel(tmp_path):
    records = _run(tmp_path, _ddp_worker)
    # Both ranks hold the same parameters after every step.
    for a, b in zip(*records):
        for pa, pb in zip(a["params"], b["params"]):
            assert torch.equal(pa, pb)
    record = records[0]
    x, y, w, b = _ddp_data()

    # One process on the combined batch with ours: bitwise the same run.
    single = Elementwise(w, b)
    opt = Adamax(single.parameters(), **DDP_OPTIONS)
    for s in range(DDP_STEPS):
        opt.zero_grad()
        torch.nn.functional.mse_loss(single(x[s]), y[s]).backward()
        for p, g in zip(single.parameters(), record[s]["grads"]):
            assert torch.equal(p.grad, g), "the distributed gradient differs from the combined batch's"
        opt.step()
    for p, q in zip(single.parameters(), record[-1]["params"]):
        assert torch.equal(p.detach(), q)

    # One process on the combined batch with torch.optim.Adamax, each step taken
    # from the distributed run's parameters and state: within the per-step bound.
    for s in range(DDP_STEPS):
        ref = Elementwise(*record[s]["params"])
        ref_opt = torch.optim.Adamax(ref.parameters(), **DDP_OPTIONS)
        if s:
            ref_opt.load_state_dict(record[s]["state"])
        torch.nn.functional.mse_loss(ref(x[s]), y[s]).backward()
        before = [(p.detach().clone(), p.grad.clone(),
                   ref_opt.state[p]["exp_avg"].clone() if s else torch.zeros_like(p))
                  for p in ref.parameters()]
        ref_opt.step()
        after = record[s + 1]["params"]
        state_after = record[s + 1]["state"]["state"]
        for i, p in enumerate(ref.parameters()):
            st = ref_opt.state[p]
            ours_state = tuple(state_after[i][k] for k in ("exp_avg", "exp_inf", "step"))
            assert_torch_step(
                before[i],
                (p, st["exp_avg"], st["exp_inf"], st["step"]),
                (after[i], *ours_state),
                (DDP_OPTIONS["lr"], 0.9, DDP_OPTIONS["weight_decay"]),
            )


# -- FSDP2 (fully_shard): DTensor parameters ------------------------------------

SHARDED_STEPS = 8
SHARDED_OPTIONS = dict(lr=0.01, weight_decay=0.01)
#: Largest relative difference allowed between a model trained with ours and
#: with torch.optim.Adamax (float64; the per-step differences are a few ulp).
SHARDED_RTOL = 1e-12


def _sharded_model():
    torch.manual_seed(3)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5), torch.nn.Tanh(),
        torch.nn.Linear(5, 1),
    ).double()


def _sharded_batches(rank):
    gen = torch.Generator().manual_seed(11 + rank)
    return [(torch.randn(4, 8, generator=gen, dtype=torch.float64),
             torch.randn(4, 1, generator=gen, dtype=torch.float64)) for _ in range(SHARDED_STEPS)]


def _fsdp2_worker(rank, world_size, store, out):
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions, get_optimizer_state_dict, set_optimizer_state_dict,
    )
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    with _process_group(rank, world_size, store):
        runs = {}
        for name, cls in (("torch", torch.optim.Adamax), ("ours", Adamax)):
            model = _sharded_model()
            for layer in model:
                if isinstance(layer, torch.nn.Linear):
                    fully_shard(layer)
            fully_shard(model)
            assert all(isinstance(p, DTensor) for p in model.parameters())
            opt = cls(model.parameters(), **SHARDED_OPTIONS)
            # Ours steps the local shards in the kernel: torch's implementation never runs.
            forbid = unittest.mock.patch("adamax_cy._torch_general.torch_adamax",
                                         side_effect=AssertionError("torch's implementation ran"))
            with forbid if name == "ours" else contextlib.nullcontext():
                for x, y in _sharded_batches(rank):
                    torch.nn.functional.mse_loss(model(x), y).backward()
                    opt.step()
                    opt.zero_grad()
            state_types = {type(t).__name__ for st in opt.state.values() for k, t in st.items()
                           if k != "step"}
            full = get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True))
            sharded = get_optimizer_state_dict(model, opt)
            # The sharded state dict loads back into the optimizer.
            set_optimizer_state_dict(model, opt, sharded)
            runs[name] = {
                "params": [p.full_tensor().detach().clone() for p in model.parameters()],
                "state_types": state_types,
                "full": full,
                "sharded_keys": sorted(sharded["state"]),
                "sharded_types": sorted({type(t).__name__ for st in sharded["state"].values()
                                         for t in st.values()}),
            }
        torch.save(runs, out)


def _max_relative(a, b):
    return max(((x - y).abs() / y.abs().clamp_min(torch.finfo(y.dtype).tiny)).max().item()
               for x, y in zip(a, b))


def test_fully_sharded_parameters_train_like_torch(tmp_path):
    records = _run(tmp_path, _fsdp2_worker)
    for runs in records:
        ours, ref = runs["ours"], runs["torch"]
        assert ours["state_types"] == ref["state_types"] == {"DTensor"}
        assert _max_relative(ours["params"], ref["params"]) <= SHARDED_RTOL
        # The parameters moved: the comparison is not of two untouched models.
        assert _max_relative(ref["params"], [p.detach() for p in _sharded_model().parameters()]) > 1e-3
        assert ours["sharded_keys"] == ref["sharded_keys"] and ours["sharded_types"] == ref["sharded_types"]
        full_ours, full_ref = ours["full"], ref["full"]
        assert full_ours["param_groups"] == full_ref["param_groups"]
        assert sorted(full_ours["state"]) == sorted(full_ref["state"])
        for key, st in full_ref["state"].items():
            assert set(full_ours["state"][key]) == set(st)
            assert torch.equal(full_ours["state"][key]["step"], st["step"])
            for k in ("exp_avg", "exp_inf"):
                assert type(full_ours["state"][key][k]) is torch.Tensor
                assert _max_relative([full_ours["state"][key][k]], [st[k]]) <= SHARDED_RTOL
    # Both ranks hold the same full parameters.
    for a, b in zip(records[0]["ours"]["params"], records[1]["ours"]["params"]):
        assert torch.equal(a, b)


# -- ZeroRedundancyOptimizer --------------------------------------------------------

ZERO_STEPS = 20


def _zero_worker(rank, world_size, store, out):
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel

    with _process_group(rank, world_size, store):
        runs = {}
        for name, cls in (("torch", torch.optim.Adamax), ("ours", Adamax)):
            model = DistributedDataParallel(_sharded_model())
            opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=cls, **SHARDED_OPTIONS)
            assert type(opt.optim) is cls
            gen = torch.Generator().manual_seed(5 + rank)
            for _ in range(ZERO_STEPS):
                x = torch.randn(4, 8, generator=gen, dtype=torch.float64)
                y = torch.randn(4, 1, generator=gen, dtype=torch.float64)
                torch.nn.functional.mse_loss(model(x), y).backward()
                opt.step()
                opt.zero_grad()
            opt.consolidate_state_dict(to=0)
            runs[name] = {
                "params": [p.detach().clone() for p in model.parameters()],
                "local_state": len(opt.optim.state),
                "consolidated": opt.state_dict() if rank == 0 else None,
            }
        torch.save(runs, out)


def test_zero_redundancy_optimizer_with_ours_trains_like_torch(tmp_path):
    records = _run(tmp_path, _zero_worker)
    n_params = len(list(_sharded_model().parameters()))
    for runs in records:
        ours, ref = runs["ours"], runs["torch"]
        assert _max_relative(ours["params"], ref["params"]) <= SHARDED_RTOL
        assert _max_relative(ref["params"], [p.detach() for p in _sharded_model().parameters()]) > 1e-3
        # Each rank's optimizer holds the state of its own share of the parameters.
        assert 0 < ours["local_state"] == ref["local_state"] < n_params
    assert sum(r["ours"]["local_state"] for r in records) == n_params
    for a, b in zip(records[0]["ours"]["params"], records[1]["ours"]["params"]):
        assert torch.equal(a, b)
    ours, ref = records[0]["ours"]["consolidated"], records[0]["torch"]["consolidated"]
    assert sorted(ours["state"]) == sorted(ref["state"]) == list(range(n_params))
    for key, st in ref["state"].items():
        assert torch.equal(ours["state"][key]["step"], st["step"])
        assert _max_relative([ours["state"][key]["exp_avg"]], [st["exp_avg"]]) <= SHARDED_RTOL
