"""adamax_cy.torch.Adamax against torch.optim.Adamax (distributed training: test_torch_distributed.py).

Parity is checked step by step ("lockstep"): both optimizers take each step
from the same parameters, gradients and state, the results are compared
within the per-step bound below, and then the state is made identical again.
A free-running comparison would also measure how rounding differences grow
through the gradients of the model, for which no constant bound exists.
"""

from __future__ import annotations

import copy
import doctest
import io
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import adamax_cy.torch as adamax_torch  # noqa: E402
from adamax_cy import adamax_step_inplace  # noqa: E402
from adamax_cy.torch import Adamax  # noqa: E402

# Per-step agreement with torch.optim.Adamax from identical inputs. Both compute
# PyTorch's formulas, in different rounding sequences. With G = |grad| +
# weight_decay * |param| (the magnitude of the terms of the effective gradient):
#
# exp_inf: torch may fuse grad + weight_decay * param into one FMA, we round the
#   product first: the effective gradients differ by at most 1 ulp(G), and
#   max(beta2 * u, |g| + eps) passes that on (without weight decay: equal).
EXP_INF_ULPS = 1
# exp_avg: ours is beta1*m + (1-beta1)*g (3 roundings, within 1.5 ulp of
#   Sm = beta1*|m| + (1-beta1)*G); torch's is m.lerp_(g, 1-beta1) = m + w*(g-m)
#   (3 roundings, within 1.5 ulp of Sm), and its 1 - w, once rounded, differs from
#   our beta1 by less than 0.5 ulp(Sm): at most 3.5, so 4 ulp(Sm).
EXP_AVG_ULPS = 4
# param: the step is clr*m/u with clr = lr / (1 - beta1**t). The exp_avg term
#   gives at most 4 ulp(S) with S = clr*(Sm + |m_t|*G/u_t)/u_t, the exp_inf term
#   at most 1 ulp(S), and torch's (clr*m)/u against our clr*(m/u) 1 more: 6 ulp(S),
#   plus 1 ulp(param) for the final subtraction. (Measured over 200,000 random
#   states per case, float32 and float64, with and without weight decay and
#   maximize, for-loop and foreach: at most 3, 3 and 1 ulp respectively.)
PARAM_ULPS = 6


@pytest.fixture(autouse=True)
def one_torch_thread():
    # These models are tiny: torch's thread team costs more than it saves,
    # and far more on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ulp(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.spacing(np.abs(x).astype(dtype)).astype(np.float64)


def assert_torch_step(before, after_torch, after_ours, hyper):
    """One step of ours within the per-step bound of torch's, from ``before``.

    ``before`` is (param, grad, exp_avg) before the step; the ``after_*`` are
    (param, exp_avg, exp_inf, step) after it; ``hyper`` is the group's
    (lr, beta1, weight_decay) at the step.
    """
    p0, g, m0 = (t.detach().numpy().astype(np.float64) for t in before)
    dtype = before[0].detach().numpy().dtype
    pt, mt, ut, st = after_torch
    po, mo, uo, so = after_ours
    assert float(so) == float(st), "per-parameter step counts differ"
    lr, beta1, weight_decay = hyper
    pt, mt, ut = (x.detach().numpy().astype(np.float64) for x in (pt, mt, ut))
    po, mo, uo = (x.detach().numpy().astype(np.float64) for x in (po, mo, uo))
    G = np.abs(g) + weight_decay * np.abs(p0)
    Sm = beta1 * np.abs(m0) + (1 - beta1) * G
    clr = lr / (1 - beta1 ** float(st))
    S = clr * (Sm + np.abs(mt) * G / ut) / ut
    assert np.all(np.abs(uo - ut) <= EXP_INF_ULPS * ulp(G, dtype)), np.max(np.abs(uo - ut))
    if weight_decay == 0:
        np.testing.assert_array_equal(uo, ut)
    assert np.all(np.abs(mo - mt) <= EXP_AVG_ULPS * ulp(Sm, dtype)), np.max(np.abs(mo - mt))
    bound = PARAM_ULPS * ulp(S, dtype) + ulp(pt, dtype)
    excess = np.abs(po - pt) - bound
    assert np.all(excess <= 0), f"param differs by more than the bound (by {excess.max():.3g})"


def group_of(opt, p):
    return next(g for g in opt.param_groups if any(q is p for q in g["params"]))


def lockstep(ref, ref_opt, ours, ours_opt, steps, loss_fn, drop=None, scheduler_pair=None):
    """Step both optimizers on equal gradients; compare; make them equal again.

    ``ref`` and ``ours`` are lists of parameters (same order, same values).
    ``drop(step, index)`` says which parameters get no gradient at a step.
    """
    for s in range(steps):
        ref_opt.zero_grad()
        loss_fn(ref, s).backward()
        for i, (pr, po) in enumerate(zip(ref, ours)):
            if drop is not None and drop(s, i):
                pr.grad = None
            po.grad = None if pr.grad is None else pr.grad.clone()
        before, hyper = {}, {}
        for i, pr in enumerate(ref):
            if pr.grad is not None:
                m0 = ref_opt.state[pr]["exp_avg"].clone() if ref_opt.state[pr] else torch.zeros_like(pr)
                before[i] = (pr.detach().clone(), pr.grad.clone(), m0)
                g = group_of(ref_opt, pr)
                gg = group_of(ours_opt, ours[i])
                assert (gg["lr"], gg["betas"], gg["weight_decay"]) == (g["lr"], g["betas"], g["weight_decay"])
                hyper[i] = (float(g["lr"]), g["betas"][0], g["weight_decay"])
        ref_opt.step()
        ours_opt.step()
        if scheduler_pair is not None:
            for sched in scheduler_pair:
                sched.step()
        for i, (pr, po) in enumerate(zip(ref, ours)):
            if i not in before:
                continue
            sr, so = ref_opt.state[pr], ours_opt.state[po]
            assert_torch_step(
                before[i],
                (pr, sr["exp_avg"], sr["exp_inf"], sr["step"]),
                (po, so["exp_avg"], so["exp_inf"], so["step"]),
                hyper[i],
            )
            with torch.no_grad():
                po.copy_(pr)
                so["exp_avg"].copy_(sr["exp_avg"])
                so["exp_inf"].copy_(sr["exp_inf"])


def mlp(dtype, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)
    ).to(dtype)


def mlp_loss(dtype):
    def loss_fn(params, s):
        gen = torch.Generator().manual_seed(1000 + s)
        x = torch.randn(32, 6, generator=gen, dtype=dtype)
        y = torch.randn(32, 3, generator=gen, dtype=dtype)
        w1, b1, w2, b2 = params
        out = torch.tanh(x @ w1.T + b1) @ w2.T + b2
        return ((out - y) ** 2).mean()

    return loss_fn


def quadratic_loss(params, s):
    """A loss touching every parameter whatever its shape and dtype."""
    gen = torch.Generator().manual_seed(2000 + s)
    total = 0
    for p in params:
        x = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
        y = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
        total = total + ((p * x - y) ** 2).sum().double()
    return total


def twin(params):
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


# -- parity -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("weight_decay, maximize", [(0.0, False), (0.01, True)])
def test_parity_with_torch_adamax(dtype, foreach, weight_decay, maximize):
    ref = list(mlp(dtype).parameters())
    ours = twin(ref)
    kw = dict(lr=0.01, weight_decay=weight_decay, maximize=maximize)
    ref_opt = torch.optim.Adamax(ref, foreach=foreach, **kw)
    ours_opt = Adamax(ours, **kw)
    lockstep(ref, ref_opt, ours, ours_opt, 100, mlp_loss(dtype))
    for pr, po in zip(ref, ours):
        assert ours_opt.state[po]["step"].dtype == ref_opt.state[pr]["step"].dtype
        assert ours_opt.state[po]["step"].shape == ()
        assert float(ours_opt.state[po]["step"]) == 100


def test_one_step_matches_the_kernel_bitwise():
    # The adapter passes the right arrays and coefficients: per-parameter step
    # counts, group hyperparameters and the convention reach the kernel as given.
    for convention in ("torch", "spec"):
        params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(4, dtype=torch.float64))]
        arrays = [p.detach().numpy().copy() for p in params]
        ms = [np.zeros_like(a) for a in arrays]
        us = [np.zeros_like(a) for a in arrays]
        ts = [0, 0]
        opt = Adamax(
            [{"params": [params[0]], "lr": 0.03}, {"params": [params[1]], "betas": (0.8, 0.99)}],
            weight_decay=0.1, maximize=True, convention=convention,
        )
        hyper = [dict(lr=0.03, beta1=0.9, beta2=0.999), dict(lr=0.002, beta1=0.8, beta2=0.99)]
        for s in range(12):
            for i, p in enumerate(params):
                if s % 3 == 1 and i == 1:
                    p.grad = None
                    continue
                p.grad = torch.randn_like(p)
                ts[i] += 1
                adamax_step_inplace(
                    arrays[i], p.grad.numpy(), ms[i], us[i], ts[i], **hyper[i], eps=1e-8,
                    weight_decay=0.1, maximize=True, convention=convention,
                )
            opt.step()
            for i, p in enumerate(params):
                np.testing.assert_array_equal(p.detach().numpy(), arrays[i])
                np.testing.assert_array_equal(opt.state[p]["exp_avg"].numpy(), ms[i])
                np.testing.assert_array_equal(opt.state[p]["exp_inf"].numpy(), us[i])
                assert float(opt.state[p]["step"]) == ts[i]


# -- state dicts ----------------------------------------------------------------


def roundtrip(state_dict):
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_same_layout(a, b):
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        sa, sb = a["state"][k], b["state"][k]
        assert sa.keys() == sb.keys() == {"step", "exp_avg", "exp_inf"}
        for key in sa:
            assert sa[key].dtype == sb[key].dtype and sa[key].shape == sb[key].shape
            assert torch.equal(sa[key], sb[key])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_checkpoint_loads_into_ours_and_continues(dtype):
    loss_fn = mlp_loss(dtype)
    ref = list(mlp(dtype).parameters())
    ref_opt = torch.optim.Adamax(ref, lr=0.01, weight_decay=0.01, foreach=True)
    for s in range(40):
        ref_opt.zero_grad()
        loss_fn(ref, s).backward()
        ref_opt.step()
    ours = twin(ref)
    ours_opt = Adamax(ours, lr=0.5)
    saved = roundtrip(ref_opt.state_dict())
    ours_opt.load_state_dict(saved)
    assert_same_layout(roundtrip(ours_opt.state_dict()), saved)
    assert ours_opt.param_groups[0]["lr"] == 0.01
    lockstep(ref, ref_opt, ours, ours_opt, 40, lambda p, s: loss_fn(p, 40 + s))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_our_checkpoint_loads_into_torch_and_continues(dtype):
    loss_fn = mlp_loss(dtype)
    ours = list(mlp(dtype).parameters())
    ours_opt = Adamax(ours, lr=0.01, maximize=True)
    for s in range(40):
        ours_opt.zero_grad()
        loss_fn(ours, s).backward()
        ours_opt.step()
    ref = twin(ours)
    ref_opt = torch.optim.Adamax(ref)
    saved = roundtrip(ours_opt.state_dict())
    assert set(saved["param_groups"][0]) == set(torch.optim.Adamax(twin(ours)).state_dict()["param_groups"][0])
    ref_opt.load_state_dict(saved)
    assert_same_layout(roundtrip(ref_opt.state_dict()), saved)
    lockstep(ref, ref_opt, ours, ours_opt, 40, lambda p, s: loss_fn(p, 40 + s))


def test_our_checkpoint_continues_bitwise_in_ours():
    loss_fn = mlp_loss(torch.float32)
    a = list(mlp(torch.float32).parameters())
    opt_a = Adamax(a, lr=0.01, weight_decay=0.01)
    for s in range(20):
        opt_a.zero_grad()
        loss_fn(a, s).backward()
        opt_a.step()
    b = twin(a)
    opt_b = Adamax(b)
    opt_b.load_state_dict(roundtrip(opt_a.state_dict()))
    clone = copy.deepcopy(opt_a)
    assert clone.convention == "torch" and len(clone.param_groups) == 1
    for s in range(20, 40):
        for params, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            loss_fn(params, s).backward()
            opt.step()
        for pa, pb in zip(a, b):
            assert torch.equal(pa, pb)
            for key in ("step", "exp_avg", "exp_inf"):
                assert torch.equal(opt_a.state[pa][key], opt_b.state[pb][key])


# -- schedulers, missing gradients, groups ---------------------------------------


def test_under_an_lr_scheduler():
    ref = list(mlp(torch.float64).parameters())
    ours = twin(ref)
    ref_opt = torch.optim.Adamax(ref, lr=0.01)
    ours_opt = Adamax(ours, lr=0.01)
    # OneCycleLR changes lr and, with cycle_momentum, beta1 at every step.
    scheds = [torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=60) for o in (ref_opt, ours_opt)]
    lockstep(ref, ref_opt, ours, ours_opt, 50, mlp_loss(torch.float64), scheduler_pair=scheds)
    assert ours_opt.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"] != 0.01
    assert ours_opt.param_groups[0]["betas"] == ref_opt.param_groups[0]["betas"] != (0.9, 0.999)


def test_parameters_without_gradient_on_some_steps():
    ref = list(mlp(torch.float32).parameters())
    ours = twin(ref)
    ref_opt = torch.optim.Adamax(ref, lr=0.01, weight_decay=0.01)
    ours_opt = Adamax(ours, lr=0.01, weight_decay=0.01)
    drop = lambda s, i: (s + i) % 3 == 0 or (i == 3 and s < 5)  # noqa: E731
    lockstep(ref, ref_opt, ours, ours_opt, 30, mlp_loss(torch.float32), drop=drop)
    steps = [float(ours_opt.state[p]["step"]) for p in ours]
    assert steps == [float(ref_opt.state[p]["step"]) for p in ref]
    assert len(set(steps)) > 1


def test_several_parameter_groups_with_mixed_dtypes():
    torch.manual_seed(3)
    shapes = [((4, 5), torch.float32), ((7,), torch.float64), ((3, 3), torch.float64), ((6,), torch.float32)]
    ref = [torch.nn.Parameter(torch.randn(s, dtype=d)) for s, d in shapes]
    ours = twin(ref)

    def groups(ps):
        return [
            {"params": ps[:2], "lr": 0.02, "betas": (0.8, 0.99)},  # float32 and float64 together
            {"params": ps[2:3], "weight_decay": 0.05, "maximize": True, "eps": 1e-6},
            {"params": ps[3:]},
        ]

    ref_opt = torch.optim.Adamax(groups(ref), lr=0.005)
    ours_opt = Adamax(groups(ours), lr=0.005)
    lockstep(ref, ref_opt, ours, ours_opt, 30, quadratic_loss, drop=lambda s, i: i == 1 and s % 4 == 2)
    assert ours_opt.state_dict()["param_groups"] == ref_opt.state_dict()["param_groups"]


def test_closure_is_called_with_gradients_enabled():
    p = torch.nn.Parameter(torch.ones(3))
    opt = Adamax([p])

    def closure():
        opt.zero_grad()
        loss = (p * 2).sum()
        loss.backward()
        return loss

    with torch.no_grad():
        loss = opt.step(closure)
    assert loss.item() == 6.0
    assert float(opt.state[p]["step"]) == 1.0


# -- what changes between steps ----------------------------------------------------
# The optimizer caches, per parameter, the memory it writes and the last
# gradient it read; these tests change each of them between steps and check
# every step bitwise against the kernel on NumPy copies.


class Mirror:
    """One parameter's expected values: the kernel applied to NumPy copies."""

    def __init__(self, p):
        self.param = p.detach().numpy().copy()
        self.m = np.zeros_like(self.param)
        self.u = np.zeros_like(self.param)
        self.t = 0

    def step(self, grad):
        self.t += 1
        g = grad.detach().resolve_neg().contiguous().numpy()
        adamax_step_inplace(self.param, g, self.m, self.u, self.t, convention="torch")

    def check(self, opt, p):
        np.testing.assert_array_equal(p.detach().numpy(), self.param)
        np.testing.assert_array_equal(opt.state[p]["exp_avg"].numpy(), self.m)
        np.testing.assert_array_equal(opt.state[p]["exp_inf"].numpy(), self.u)
        assert float(opt.state[p]["step"]) == self.t


def test_every_kind_of_gradient_change_between_steps_is_seen():
    p = torch.nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    opt, mirror = Adamax([p]), Mirror(p)
    kept = torch.randn(4, 3, dtype=torch.float64)

    def reuse_modified_in_place():
        kept.copy_(torch.randn(4, 3, dtype=torch.float64))  # zero_grad(set_to_none=False) + backward
        return kept

    def swap_data_of_kept():
        kept.data = torch.randn(4, 3, dtype=torch.float64)  # the same object on new memory
        return kept

    def swap_data_of_kept_to_strided():
        kept.data = torch.randn(3, 4, dtype=torch.float64).t()
        return kept

    changes = [
        lambda: kept,
        reuse_modified_in_place,
        lambda: torch.randn(4, 3, dtype=torch.float64),  # a new tensor (set_to_none=True)
        lambda: torch.randn(3, 4, dtype=torch.float64).t(),  # not contiguous: read through a copy
        lambda: torch.randn(20, dtype=torch.float64)[5:17].view(4, 3),  # starts inside its storage
        lambda: torch.randn(4, 1, 3, dtype=torch.float64)[:, 0],  # contiguous, odd strides
        lambda: torch._neg_view(torch.randn(4, 3, dtype=torch.float64)),  # lazily negated
        lambda: kept,
        swap_data_of_kept,
        reuse_modified_in_place,
        swap_data_of_kept_to_strided,
        lambda: kept,
    ]
    for change in changes:
        p.grad = change()
        expected_grad = p.grad.detach().resolve_neg().clone()
        opt.step()
        mirror.step(expected_grad)
        mirror.check(opt, p)


def test_replaced_parameter_data_is_updated_and_the_old_memory_left_alone():
    p = torch.nn.Parameter(torch.randn(6))
    opt = Adamax([p])
    p.grad = torch.randn(6)
    opt.step()
    mirror = Mirror(p)
    mirror.m, mirror.u, mirror.t = (opt.state[p]["exp_avg"].numpy().copy(),
                                    opt.state[p]["exp_inf"].numpy().copy(), 1)
    old = p.data
    old_values = old.clone()
    p.data = torch.randn(6)
    mirror.param = p.detach().numpy().copy()
    for _ in range(3):
        p.grad = torch.randn(6)
        opt.step()
        mirror.step(p.grad)
        mirror.check(opt, p)
    assert torch.equal(old, old_values)


def test_state_replaced_by_the_user_is_read_again():
    p = torch.nn.Parameter(torch.randn(5))
    opt, mirror = Adamax([p]), Mirror(p)
    for s in range(6):
        if s == 2:
            opt.state[p] = {}  # start this parameter afresh, as torch.optim.Adamax would
            mirror.m[:], mirror.u[:], mirror.t = 0, 0, 0
        if s == 4:
            opt.state[p]["exp_avg"] = torch.full((5,), 0.5)
            mirror.m[:] = 0.5
        p.grad = torch.randn(5)
        opt.step()
        mirror.step(p.grad)
        mirror.check(opt, p)


def test_parameters_added_to_a_group_list_are_stepped():
    a, b = torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(2, dtype=torch.float64))
    opt = Adamax([a])
    mirrors = {id(a): Mirror(a)}
    for s in range(4):
        if s == 2:
            opt.param_groups[0]["params"].append(b)
            mirrors[id(b)] = Mirror(b)
        for p in opt.param_groups[0]["params"]:
            p.grad = torch.randn_like(p)
        opt.step()
        for p in opt.param_groups[0]["params"]:
            mirrors[id(p)].step(p.grad)
            mirrors[id(p)].check(opt, p)


@pytest.mark.parametrize("swap, error, match", [
    (lambda g: torch.randn(7), ValueError, "does not match"),
    (lambda g: torch.randn(6, dtype=torch.float64), ValueError, "does not match"),
], ids=["fewer elements", "another dtype"])
def test_a_cached_gradient_changed_behind_the_optimizer_is_refused(swap, error, match):
    # .data bypasses the checks torch makes when a gradient is assigned.
    p = torch.nn.Parameter(torch.randn(6))
    opt = Adamax([p])
    p.grad = torch.randn(6)
    opt.step()
    snapshot = _state_snapshot(opt, [p])
    p.grad.data = swap(p.grad)
    with pytest.raises(error, match=match):
        opt.step()
    for before, after in zip(snapshot, _state_snapshot(opt, [p])):
        assert torch.equal(before, after)


def _both(fn):
    """``fn(make_optimizer)`` for torch.optim.Adamax and for ours."""
    return fn(lambda ps: torch.optim.Adamax(ps, foreach=False)), fn(Adamax)


def test_states_set_aside_and_swapped_keep_their_own_step_counts():
    def set_aside(make):
        p = torch.nn.Parameter(torch.zeros(3))
        opt = make([p])
        for _ in range(5):
            p.grad = torch.ones(3)
            opt.step()
        saved = opt.state[p]
        opt.state[p] = {}
        p.grad = torch.ones(3)
        opt.step()
        opt.state[p] = saved
        p.grad = torch.ones(3)
        opt.step()
        return float(saved["step"])

    def swap(make):
        a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
        opt = make([a, b])
        for s in range(4):
            a.grad = torch.ones(3)
            b.grad = torch.ones(3) if s == 0 else None
            opt.step()
        opt.state[a], opt.state[b] = opt.state[b], opt.state[a]
        a.grad = b.grad = torch.ones(3)
        opt.step()
        return float(opt.state[a]["step"]), float(opt.state[b]["step"])

    assert _both(set_aside) == (6.0, 6.0)
    assert _both(swap) == ((2.0, 5.0), (2.0, 5.0))


def test_memory_shared_after_a_refused_step_is_refused_again():
    base = torch.zeros(10)
    a, b = torch.nn.Parameter(base[:6]), torch.nn.Parameter(base[4:])
    opt = Adamax([a, b])
    a.grad, b.grad = torch.ones(6), torch.ones(6)
    for _ in range(2):
        with pytest.raises(ValueError, match="share memory"):
            opt.step()
        assert torch.equal(base, torch.zeros(10))
    a, b = torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(4))
    opt = Adamax([a, b])
    a.grad, b.grad = torch.ones(4), torch.ones(4)
    opt.step()
    opt.state[b]["exp_avg"] = opt.state[a]["exp_avg"]
    for _ in range(2):
        with pytest.raises(ValueError, match="an exp_avg and an exp_avg share memory"):
            opt.step()


def test_a_parameter_shrunk_in_place_is_refused_like_torch():
    # p.data = p.data[:k] keeps the address: the new, smaller gradient must not
    # be read as if it had the old size.
    for make in (lambda ps: torch.optim.Adamax(ps, foreach=False), Adamax):
        p = torch.nn.Parameter(torch.zeros(8))
        opt = make([p])
        p.grad = torch.ones(8)
        opt.step()
        whole = p.data
        p.data = p.data[:2]
        p.grad = torch.ones(2)
        before = [whole.clone()] + [t.clone() for t in opt.state[p].values()]
        with pytest.raises((ValueError, RuntimeError), match="size|shape"):
            opt.step()
        if make is Adamax:  # (torch has advanced its step counter by then)
            after = [whole] + list(opt.state[p].values())
            assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_state_storage_cannot_be_reallocated_under_the_optimizer():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = Adamax([p])
    p.grad = torch.ones(4)
    opt.step()
    for name in ("exp_avg", "exp_inf", "step"):
        with pytest.raises(RuntimeError, match="not resizable"):
            opt.state[p][name].untyped_storage().resize_(1 << 16)


def test_a_failed_step_creates_no_state_in_any_group():
    good = torch.nn.Parameter(torch.randn(3))
    fresh = torch.nn.Parameter(torch.randn(3))
    bad = torch.nn.Parameter(torch.ones(3))
    opt = Adamax([{"params": [good, fresh]}, {"params": [bad]}])
    opt.state[fresh] = {}
    opt.param_groups[1]["lr"] = -1.0
    good.grad, fresh.grad, bad.grad = torch.randn(3), torch.randn(3), torch.ones(3)
    before = opt.state_dict()
    with pytest.raises(ValueError, match=r"param_groups\[1\]: Invalid learning rate"):
        opt.step()
    assert opt.state_dict() == before == {"state": {1: {}}, "param_groups": before["param_groups"]}


def test_an_inference_tensor_parameter_is_refused_before_any_write():
    ok = torch.nn.Parameter(torch.zeros(3))
    with torch.inference_mode():
        frozen = torch.zeros(3)
    opt = Adamax([{"params": [ok]}, {"params": [frozen]}])
    ok.grad, frozen.grad = torch.ones(3), torch.ones(3)
    with pytest.raises(ValueError, match="inference tensor"):
        opt.step()
    assert torch.equal(ok, torch.zeros(3))


@pytest.mark.parametrize("step", [2.5, float("nan"), 1e19, -1.0])
def test_a_step_counter_the_kernel_cannot_advance_is_refused(step):
    p = torch.nn.Parameter(torch.zeros(3))
    opt = Adamax([p])
    p.grad = torch.ones(3)
    opt.step()
    opt.state[p]["step"] = torch.tensor(step)
    snapshot = _state_snapshot(opt, [p])
    with pytest.raises(ValueError, match=r"params'\]\[0\]: state\['step'\] must be a whole number"):
        opt.step()
    for before, after in zip(snapshot, _state_snapshot(opt, [p])):
        assert torch.equal(before, after) or (before.isnan().all() and after.isnan().all())


def test_a_deleted_optimizer_frees_its_state_without_the_garbage_collector():
    import gc
    import weakref

    p = torch.nn.Parameter(torch.zeros(4))
    opt = Adamax([p])
    p.grad = torch.ones(4)
    opt.step()
    exp_avg = weakref.ref(opt.state[p]["exp_avg"])
    gc.disable()
    try:
        del opt
        assert exp_avg() is None
    finally:
        gc.enable()


def test_a_huge_step_counter_is_advanced_with_bias_correction_one():
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    q = np.zeros(3)
    m, u = np.zeros(3), np.zeros(3)
    opt = Adamax([p], convention="spec")
    p.grad = torch.ones(3, dtype=torch.float64)
    opt.state[p] = {"step": torch.tensor(2.0**62, dtype=torch.float64),
                    "exp_avg": torch.zeros(3, dtype=torch.float64),
                    "exp_inf": torch.zeros(3, dtype=torch.float64)}
    opt.step()
    adamax_step_inplace(q, np.ones(3), m, u, 2**62 + 1)
    np.testing.assert_array_equal(p.detach().numpy(), q)


def test_the_optimizer_keeps_no_gradient_and_no_removed_group_alive():
    import gc
    import weakref

    a, b = torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(4))
    opt = Adamax([{"params": [a]}, {"params": [b]}])
    a.grad, b.grad = torch.ones(4), torch.ones(4)
    opt.step()
    grad = weakref.ref(a.grad)
    exp_avg = weakref.ref(opt.state[b]["exp_avg"])
    opt.zero_grad(set_to_none=True)
    gc.collect()
    assert grad() is None
    del opt.param_groups[1]
    del opt.state[b]
    a.grad = torch.ones(4)
    opt.step()
    gc.collect()
    assert exp_avg() is None


# -- errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(convention="keras"), "convention"),
        (dict(lr=-1.0), "lr"),
        (dict(betas=(1.0, 0.9)), "beta1"),
        (dict(betas=(0.9,)), "betas"),
        (dict(num_threads=0), "num_threads"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Adamax([torch.nn.Parameter(torch.ones(2))], **kwargs)


def _state_snapshot(opt, params):
    return [p.detach().clone() for p in params] + [
        t.clone() for p in params for t in opt.state[p].values()
    ]


def test_sparse_gradients_are_refused():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = Adamax(emb.parameters())
    before = emb.weight.detach().clone()
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="Adamax does not support sparse gradients"):
        opt.step()
    assert torch.equal(emb.weight, before)


def test_parameters_sharing_memory_are_refused():
    base = torch.zeros(10)
    a, b = torch.nn.Parameter(base[:6]), torch.nn.Parameter(base[4:])
    opt = Adamax([a, b])
    a.grad, b.grad = torch.ones(6), torch.ones(6)
    with pytest.raises(ValueError, match="share memory"):
        opt.step()
    assert torch.equal(base, torch.zeros(10))
    p = torch.nn.Parameter(torch.zeros(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about the duplicate too
        opt = Adamax([p, p])
    p.grad = torch.ones(3)
    with pytest.raises(ValueError, match="share memory"):
        opt.step()


def test_bad_group_hyperparameter_at_step_changes_nothing():
    a, b = torch.nn.Parameter(torch.randn(4)), torch.nn.Parameter(torch.randn(4))
    opt = Adamax([{"params": [a]}, {"params": [b]}])
    a.grad, b.grad = torch.randn(4), torch.randn(4)
    opt.step()
    snapshot = _state_snapshot(opt, [a, b])
    opt.param_groups[1]["lr"] = -0.1
    with pytest.raises(ValueError, match=r"param_groups\[1\].*lr"):
        opt.step()
    for before, after in zip(snapshot, _state_snapshot(opt, [a, b])):
        assert torch.equal(before, after)


# -- packaging and docs ------------------------------------------------------------


def test_importing_the_package_does_not_import_torch(tmp_path):
    code = "import sys, adamax_cy; assert 'torch' not in sys.modules, 'torch imported'"
    # Outside the checkout, so the installed package is imported, not the sources.
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=tmp_path)


def test_docstring_examples():
    result = doctest.testmod(adamax_torch)
    assert result.attempted > 0 and result.failed == 0


def test_tensor_learning_rate_is_read_like_a_float():
    # (A learning rate narrower than the parameters follows torch instead:
    # test_torch_dropin.py.)
    a = torch.nn.Parameter(torch.randn(6, dtype=torch.float64))
    b = torch.nn.Parameter(a.detach().clone())
    lr = torch.tensor(0.01, dtype=torch.float64)
    opt_a = Adamax([a], lr=lr)
    opt_b = Adamax([b], lr=lr.item())
    for _ in range(3):
        g = torch.randn(6, dtype=torch.float64)
        a.grad, b.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
    assert torch.equal(a, b)
