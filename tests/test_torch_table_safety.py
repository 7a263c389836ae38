"""adamax_cy.torch.Adamax sees every change of the memory it walks.

The compiled table remembers each tensor's memory between steps; it must
compare everything that decides the memory a step reads and writes (dtype,
shape, strides, storage offset, size), not the address alone. Each test
runs twice: with the tensors exported through torch's DLPack C exchange
API (where torch has one) and through ``to_dlpack`` capsules.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

import adamax_cy.torch  # noqa: E402
from adamax_cy.torch import Adamax  # noqa: E402

HAS_EXCHANGE_API = hasattr(torch.Tensor, "__dlpack_c_exchange_api__")


@pytest.fixture(autouse=True, params=["exchange", "capsules"])
def export_path(request, monkeypatch):
    """Which DLPack path the tables take."""
    if request.param == "exchange" and not HAS_EXCHANGE_API:
        pytest.skip("this torch has no DLPack C exchange API")
    monkeypatch.setattr(adamax_cy.torch, "_DLPACK_EXCHANGE", request.param == "exchange")
    return request.param


def _run_alone(code: str) -> None:
    """Run ``code`` in its own interpreter with a timeout; it must print "ok" and exit 0."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", (
        out.returncode, out.stdout[-2000:], out.stderr[-2000:])


def stepped(shape, dtype=torch.float32, seed=0):
    """A parameter, its optimizer after one step, and its gradient (kept)."""
    gen = torch.Generator().manual_seed(seed)
    p = torch.nn.Parameter(torch.randn(shape, generator=gen, dtype=dtype))
    p.grad = torch.randn(shape, generator=gen, dtype=dtype)
    opt = Adamax([p], lr=0.01)
    opt.step()
    return p, opt


def snapshot(p, opt):
    state = opt.state[p]
    return [t.detach().clone() for t in (p, state["exp_avg"], state["exp_inf"], state["step"])]


def assert_unchanged(before, p, opt):
    for old, new in zip(before, snapshot(p, opt)):
        assert torch.equal(old, new)


# ---------------------------------------------------------------- the parameter


def test_a_transposed_view_at_the_same_address_is_refused():
    p, opt = stepped((3, 4))
    p.data = p.data.t()  # the same address, another layout
    assert p.data_ptr() == p.data.t().data_ptr()
    p.grad = torch.ones(4, 3)
    before = snapshot(p, opt)
    with pytest.raises(ValueError):
        opt.step()
    assert_unchanged(before, p, opt)


def test_a_shrunk_view_with_the_old_gradient_writes_nothing_past_its_end():
    p, opt = stepped((10,))
    storage = p.data
    tail = storage[5:].clone()
    p.data = storage[:5]  # the same address; the old 10-element gradient stays
    with pytest.raises((ValueError, RuntimeError)):
        opt.step()
    assert torch.equal(storage[5:], tail)


def test_a_view_of_another_dtype_at_the_same_address_is_refused():
    p, opt = stepped((8,))
    raw = p.data.clone()
    p.data = p.data.view(torch.float64)  # float32 memory read as float64; the gradient kept
    with pytest.raises((ValueError, TypeError)):
        opt.step()
    assert torch.equal(p.data.view(torch.float32), raw)


# ---------------------------------------------------------------- the gradient


def transpose_(g):
    g.t_()


def as_strided_(g):
    g.as_strided_(g.shape, (1, g.shape[0]))


def set_(g):
    g.set_(g.untyped_storage(), 0, g.shape, (1, g.shape[0]))


def data_assigned(g):
    g.data = g.data.t()


@pytest.mark.parametrize("change", [transpose_, as_strided_, set_, data_assigned])
def test_an_in_place_layout_change_of_the_gradient_is_seen(change):
    # Two identical optimizers; one's gradient changes its layout in place,
    # the other gets a new, contiguous tensor of the same values.
    p, opt = stepped((4, 4))
    q, other = stepped((4, 4))
    g = p.grad
    change(g)
    assert not g.is_contiguous()
    q.grad = g.detach().contiguous()
    opt.step()
    other.step()
    assert torch.equal(p.detach(), q.detach())
    assert torch.equal(opt.state[p]["exp_avg"], other.state[q]["exp_avg"])


def negated_in_place(g):
    g.data = g.data._neg_view()  # the same memory, read negated


def test_a_gradient_that_becomes_a_negated_view_in_place_is_read_negated():
    # As torch.optim.Adamax reads it: the same memory, another sign.
    def run(cls):
        gen = torch.Generator().manual_seed(3)
        p = torch.nn.Parameter(torch.randn(4, 4, generator=gen, dtype=torch.float64))
        p.grad = torch.randn(4, 4, generator=gen, dtype=torch.float64)
        opt = cls([p], lr=0.01)
        opt.step()
        g = p.grad
        address = g.data_ptr()
        negated_in_place(g)
        assert g.is_neg() and g.data_ptr() == address
        opt.step()
        return p.detach(), opt.state[p]["exp_inf"]

    (ours, ours_inf), (theirs, theirs_inf) = run(Adamax), run(torch.optim.Adamax)
    assert torch.allclose(ours, theirs, rtol=1e-12, atol=0)
    assert torch.equal(ours_inf, theirs_inf)


# ---------------------------------------------------------------- the table itself


def test_the_table_takes_the_path_asked_for(export_path):
    p, opt = stepped((3,))
    assert opt._plans[0].table.exchange is (export_path == "exchange")


def test_a_step_entered_again_while_the_table_gathers_is_refused(export_path):
    # A key of the state dict whose hash equals the parameter's: its __eq__
    # runs Python code while the table looks the parameter's state up, and
    # steps the same optimizer from there. In a subprocess with a timeout:
    # a table that took the inner step would free what the outer one holds.
    code = f"""
    import torch
    import adamax_cy.torch
    adamax_cy.torch._DLPACK_EXCHANGE = {export_path == "exchange"}
    p = torch.nn.Parameter(torch.ones(5, dtype=torch.float64))
    opt = adamax_cy.torch.Adamax([p], lr=0.01)
    outcomes = []
    armed = []

    class Collider:
        def __hash__(self):
            return hash(p)

        def __eq__(self, other):
            if other is p and armed:
                armed.clear()
                try:
                    opt.step()
                    outcomes.append("stepped")
                except RuntimeError as e:
                    outcomes.append(str(e))
            return False

    opt.state[Collider()] = {{}}  # first in the probe sequence of hash(p)
    p.grad = torch.full((5,), 0.5, dtype=torch.float64)
    opt.step()  # the table now knows the parameter
    armed.append(True)  # the next lookup of p's state steps again
    opt.step()
    assert outcomes == ["another thread is running a step of this optimizer"], outcomes
    assert torch.isfinite(p.detach()).all()
    assert float(opt.state[p]["step"]) == 2
    print("ok")
    """
    _run_alone(code)


def test_a_params_list_emptied_while_the_table_gathers_is_not_read_past_its_end(export_path):
    # A TorchFunctionMode runs Python code on every p.grad; this one empties
    # the group's list at the first. The table reads its own snapshot.
    _run_alone(f"""
    import torch
    from torch.overrides import TorchFunctionMode
    import adamax_cy.torch
    adamax_cy.torch._DLPACK_EXCHANGE = {export_path == "exchange"}
    ps = [torch.nn.Parameter(torch.ones(4)) for _ in range(64)]
    opt = adamax_cy.torch.Adamax(ps, lr=0.01)
    for p in ps:
        p.grad = torch.ones(4)
    opt.step()
    group = opt.param_groups[0]["params"]

    class Emptying(TorchFunctionMode):
        armed = True
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if Emptying.armed and getattr(func, "__name__", "") == "__get__":
                Emptying.armed = False
                group.clear()
            return func(*args, **(kwargs or {{}}))

    with Emptying():
        try:
            opt.step()
        except (RuntimeError, IndexError, ValueError):
            pass
    print("ok")
    """)


def test_a_step_whose_gather_another_call_let_go_of_is_refused_not_dropped(export_path):
    # Between gathering group 0 and running it, its hyperparameters are read:
    # a learning rate whose comparison steps the optimizer again invalidates
    # the outer step's gathers. The outer step must raise, not skip a group.
    _run_alone(f"""
    import torch
    import adamax_cy.torch
    adamax_cy.torch._DLPACK_EXCHANGE = {export_path == "exchange"}
    # Group 1 is complex (the general path), so its options are read in
    # Python after group 0 was gathered and prepared.
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(3, dtype=torch.complex64))
    armed = []

    class Lr(float):
        def __ge__(self, other):
            if armed:
                armed.clear()
                opt.step()
            return float(self) >= other

        def __le__(self, other):
            return float(self) <= other

    opt = adamax_cy.torch.Adamax([{{"params": [a]}}, {{"params": [b], "lr": Lr(0.01)}}])
    a.grad, b.grad = torch.ones(3), torch.ones(3, dtype=torch.complex64)
    opt.step()
    armed.append(True)
    try:
        opt.step()
        outer = "stepped"
    except RuntimeError:
        outer = "refused"
    steps = [float(opt.state[p]["step"]) for p in (a, b)]
    # Either both groups count the same steps, or the outer step said so.
    assert outer == "refused" or steps[0] == steps[1], (outer, steps)
    print("ok")
    """)


def test_a_child_forked_while_another_thread_steps_can_step(export_path):
    _run_alone(f"""
    import os, threading, time
    import torch
    import adamax_cy.torch
    adamax_cy.torch._DLPACK_EXCHANGE = {export_path == "exchange"}
    ps = [torch.nn.Parameter(torch.ones(1000)) for _ in range(200)]
    opt = adamax_cy.torch.Adamax(ps, lr=0.01)
    for p in ps:
        p.grad = torch.ones(1000)
    stop = threading.Event()
    def loop():
        while not stop.is_set():
            try:
                opt.step()
            except RuntimeError:
                pass
    worker = threading.Thread(target=loop)
    worker.start()
    time.sleep(0.2)
    refused = 0
    for _ in range(10):
        pid = os.fork()
        if pid == 0:
            try:
                opt.step()
                os._exit(0)
            except RuntimeError:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        refused += os.waitstatus_to_exitcode(status) == 3
    stop.set()
    worker.join()
    assert refused == 0, refused
    print("ok")
    """)


@pytest.mark.parametrize("kind", ["OrderedDict", "defaultdict"])
def test_a_state_of_a_dict_subclass_steps_as_torch(export_path, kind):
    import collections

    make = {"OrderedDict": collections.OrderedDict,
            "defaultdict": lambda d: collections.defaultdict(int, d)}[kind]
    ours, theirs = (torch.nn.Parameter(torch.ones(5)) for _ in range(2))
    opt, ref = Adamax([ours], lr=0.01), torch.optim.Adamax([theirs], lr=0.01)
    for _ in range(2):
        for p, o in ((ours, opt), (theirs, ref)):
            p.grad = torch.full((5,), 0.5)
            o.step()
            o.state[p] = make(o.state[p])
    torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=0, atol=1e-6)
    assert float(opt.state[ours]["step"]) == float(ref.state[theirs]["step"]) == 2
