"""Adamax checkpoints that must be refused whole: nothing loaded, a short CheckpointError."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adamax_cy import Adamax, CheckpointError


def bits(a):
    return np.ascontiguousarray(a).view(np.uint32 if a.dtype == np.float32 else np.uint64)


def two_groups(seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=3).astype(np.float32)}
    opt = Adamax([{"params": {"w": params["w"]}}, {"params": {"b": params["b"]}, "lr": 0.03}])
    return params, opt


def train(opt, params, steps, seed=1):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        opt.step({k: rng.normal(size=p.shape).astype(p.dtype) for k, p in params.items()})


def snapshot(opt, params):
    sd = opt.state_dict()
    return (
        {k: bits(p).copy() for k, p in params.items()},
        [g["lr"] for g in opt.param_groups],
        [s["step"] for s in sd["state"]],
        [(bits(s["m"]).copy(), bits(s["u"]).copy()) for s in sd["state"]],
    )


def assert_unchanged(opt, params, before):
    after = snapshot(opt, params)
    for k in params:
        np.testing.assert_array_equal(after[0][k], before[0][k])
    assert after[1:3] == before[1:3]
    for (m1, u1), (m2, u2) in zip(after[3], before[3]):
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(u1, u2)


@pytest.fixture
def saved(tmp_path):
    params, opt = two_groups()
    train(opt, params, 3)
    opt.param_groups[1]["lr"] = 0.5
    path = tmp_path / "run.ckpt"
    opt.save(path)
    return path


def rewrite_meta(path, change):
    """The checkpoint at ``path`` with its metadata changed by ``change(meta)``."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    change(meta)
    arrays["meta"] = np.array(json.dumps(meta))
    out = path.with_name("changed.npz")
    np.savez(out, **arrays)
    return out


# ------------------------------------------------- a failed load changes nothing


def test_a_read_only_parameter_fails_the_load_before_anything_changes(saved):
    params, opt = two_groups(seed=7)
    train(opt, params, 1, seed=8)
    params["b"].flags.writeable = False
    before = snapshot(opt, params)
    with pytest.raises(CheckpointError, match=r"b: the parameter is read-only") as info:
        opt.load_state(saved)
    assert str(saved) in str(info.value)
    assert_unchanged(opt, params, before)
    opt.load_state(saved, restore_params=False)  # the parameters are not written then
    assert opt.param_groups[1]["lr"] == 0.5 and opt.steps == {"w": 3, "b": 3}


# ------------------------------------------------- step counts in range


@pytest.mark.parametrize("step", [2**63 - 1, 2**63, 10**400, 1.0, True])
def test_step_counts_out_of_range_are_refused(saved, step):
    def change(meta):
        meta["steps"][1] = step

    path = rewrite_meta(saved, change)
    params, opt = two_groups(seed=7)
    before = snapshot(opt, params)
    with pytest.raises(CheckpointError, match=r"b: step must be an integer >= 0") as info:
        opt.load_state(path)
    assert len(str(info.value)) < 300
    assert_unchanged(opt, params, before)


def test_the_largest_step_count_loads_and_steps(saved):
    path = rewrite_meta(saved, lambda meta: meta["steps"].__setitem__(1, 2**63 - 2))
    params, opt = two_groups(seed=7)
    opt.load_state(path)
    assert opt.steps["b"] == 2**63 - 2
    opt.step({"b": np.ones(3, np.float32)})
    assert opt.steps["b"] == 2**63 - 1


@pytest.mark.parametrize("step", [2**63 - 1, 2**63])
def test_state_dict_step_counts_out_of_range_are_refused(step):
    params, opt = two_groups()
    sd = opt.state_dict()
    sd["state"][0]["step"] = step
    with pytest.raises(CheckpointError, match=r"w: step must be an integer >= 0"):
        opt.load_state_dict(sd)
    assert opt.steps == {"w": 0, "b": 0}
