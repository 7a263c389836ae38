"""The stateful Adamax optimizer: steps, groups, schedules, state and checkpoints."""

from __future__ import annotations

import doctest
import io
import math
import os
import pickle

import numpy as np
import pytest

import adamax_cy._checkpoint as checkpoint_module
import adamax_cy.optimizer as optimizer_module
from adamax_cy import Adamax, CheckpointError, adamax_step_inplace
from adamax_cy._defaults import DEFAULTS
from adamax_cy.reference import adamax_trace

LARGE = 70_000  # above the kernel's serial threshold


def bits(a):
    return np.ascontiguousarray(a).view(np.uint32 if a.dtype == np.float32 else np.uint64)


def assert_bitwise(actual, expected):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    np.testing.assert_array_equal(bits(actual), bits(expected))


def assert_same_state(sd1, sd2):
    assert sd1["param_names"] == sd2["param_names"]
    assert [s["step"] for s in sd1["state"]] == [s["step"] for s in sd2["state"]]
    for s1, s2 in zip(sd1["state"], sd2["state"]):
        assert_bitwise(s1["m"], s2["m"])
        assert_bitwise(s1["u"], s2["u"])


def model(seed=0):
    """Named parameters of both dtypes and layouts."""
    rng = np.random.default_rng(seed)
    return {
        "w1": rng.normal(size=(4, 3)),
        "b1": rng.normal(size=3).astype(np.float32),
        "w2": np.asfortranarray(rng.normal(size=(3, 2))),
        "b2": np.full((), 0.5),
    }


def gradient(params, t):
    """A deterministic gradient for step t; "b2" has none until step 3."""
    rng = np.random.default_rng(1000 + t)
    grads = {k: rng.normal(size=p.shape).astype(p.dtype) for k, p in params.items()}
    if t < 3:
        grads["b2"] = None
    return grads


def schedule(t):
    return 0.01 / math.sqrt(t)


def make(params, **kwargs):
    """Two groups: a schedule for the weights, a constant lr for the biases."""
    return Adamax(
        [
            {"params": {"w1": params["w1"], "w2": params["w2"]}, "lr": schedule},
            {"params": {"b1": params["b1"], "b2": params["b2"]}, "lr": 0.03},
        ],
        weight_decay=0.01,
        **kwargs,
    )


def run(opt, params, start, stop):
    for t in range(start, stop):
        assert opt.step(gradient(params, t)) is True


# ---------------------------------------------------------------- the step


def test_one_step_is_adamax_step_inplace():
    params = model()
    expected = {k: p.copy(order="K") for k, p in params.items()}
    opt = Adamax(list(params.values()), lr=0.01, maximize=True, convention="torch")
    grads = gradient(params, 5)
    grads["b2"] = np.ones(())
    assert opt.step(list(grads.values())) is True
    sd = opt.state_dict()
    for i, (k, p) in enumerate(expected.items()):
        m, u = np.zeros_like(p), np.zeros_like(p)
        adamax_step_inplace(p, grads[k], m, u, t=1, lr=0.01, maximize=True, convention="torch")
        assert_bitwise(params[k], p)
        assert_bitwise(sd["state"][i]["m"], m)
        assert_bitwise(sd["state"][i]["u"], u)


def test_groups_have_their_own_learning_rates():
    a, b = np.ones(3), np.ones(3)
    opt = Adamax([{"params": [a]}, {"params": [b], "lr": 0.1}], lr=0.001)
    grad = np.array([0.1, -0.2, 0.3])
    for t in (1, 2):
        opt.step([[grad], [grad]])
    for lr, got in ((0.001, a), (0.1, b)):
        p, m, u = np.ones(3), np.zeros(3), np.zeros(3)
        for t in (1, 2):
            adamax_step_inplace(p, grad, m, u, t, lr=lr)
        assert_bitwise(got, p)
    assert not np.array_equal(a, b)


def test_lr_schedule_and_changed_options_between_steps():
    w = np.ones(4, dtype=np.float32)
    opt = Adamax([w], lr=schedule)
    p, m, u = w.copy(), np.zeros_like(w), np.zeros_like(w)
    grad = np.array([0.5, -1.0, 2.0, 0.0], dtype=np.float32)
    for t in range(1, 6):
        opt.step([grad])
        adamax_step_inplace(p, grad, m, u, t, lr=schedule(t))
        assert_bitwise(w, p)
    opt.param_groups[0]["lr"] = 0.5
    opt.param_groups[0]["betas"] = (0.5, 0.9)
    opt.step([grad])
    adamax_step_inplace(p, grad, m, u, 6, lr=0.5, beta1=0.5, beta2=0.9)
    assert_bitwise(w, p)


def test_invalid_options_set_between_steps_fail_before_any_write():
    a, b = np.ones(3), np.ones(3)
    opt = Adamax([{"params": [a]}, {"params": [b], "lr": lambda t: -1.0 if t > 1 else 0.1}])
    opt.step([[np.ones(3)], [np.ones(3)]])
    before = (a.copy(), b.copy(), opt.state_dict())
    with pytest.raises(ValueError, match=r"param_groups\[1\]: the lr schedule at step 2: lr"):
        opt.step([[np.ones(3)], [np.ones(3)]])
    opt.param_groups[1]["lr"] = 0.1
    opt.param_groups[0]["eps"] = -1.0
    with pytest.raises(ValueError, match=r"param_groups\[0\]: eps"):
        opt.step([[np.ones(3)], [np.ones(3)]])
    assert_bitwise(a, before[0])
    assert_bitwise(b, before[1])
    assert_same_state(opt.state_dict(), before[2])


def test_a_bad_gradient_in_a_later_group_writes_nothing():
    params = model()
    before = {k: p.copy() for k, p in params.items()}
    opt = make(params)
    grads = gradient(params, 4)
    grads["b1"] = grads["b1"].astype(np.float64)
    with pytest.raises(TypeError, match="b1: grad has dtype float64"):
        opt.step(grads)
    grads = gradient(params, 4)
    grads["b2"] = np.ones(2)
    with pytest.raises(ValueError, match="b2: shape mismatch"):
        opt.step(grads)
    for k in params:
        assert_bitwise(params[k], before[k])
    assert set(opt.steps.values()) == {0}


def test_gradient_structures():
    params = model()
    opt = Adamax(params)
    with pytest.raises(ValueError, match="unknown parameter names"):
        opt.step({"w3": np.ones(3)})
    with pytest.raises(TypeError, match="structure of the params"):
        opt.step(np.ones(3))
    assert opt.step({"b1": np.ones(3, np.float32)}) is True  # the others: no gradient
    assert opt.steps == {"w1": 0, "b1": 1, "w2": 0, "b2": 0}
    seq = Adamax([np.ones(2), np.ones(3)])
    with pytest.raises(ValueError, match="expected 2 gradients"):
        seq.step([np.ones(2)])


def test_none_gradients_and_a_late_parameter_use_their_own_step_counts():
    a, b = np.ones(5), np.full(5, -2.0)
    opt = Adamax({"a": a, "b": b}, lr=0.01)
    rng = np.random.default_rng(7)
    for _ in range(3):
        opt.step({"a": rng.normal(size=5), "b": None})
    sd = opt.state_dict()
    assert opt.steps == {"a": 3, "b": 0}
    assert_bitwise(b, np.full(5, -2.0))  # untouched, state too
    assert not sd["state"][1]["m"].any() and not sd["state"][1]["u"].any()

    ga, gb = rng.normal(size=5), rng.normal(size=5)
    a0, m_a, u_a = a.copy(), sd["state"][0]["m"], sd["state"][0]["u"]
    opt.step({"a": ga, "b": gb})
    assert opt.steps == {"a": 4, "b": 1}
    after = opt.state_dict()["state"]
    for got, p0, g, m0, u0, t, i in (
        (a, a0, ga, m_a, u_a, 4, 0),
        (b, np.full(5, -2.0), gb, np.zeros(5), np.zeros(5), 1, 1),
    ):
        for j in range(5):
            ref = adamax_trace(p0[j], g[j], m0[j], u0[j], t, lr=0.01)
            assert after[i]["m"][j] == ref.m_t and after[i]["u"][j] == ref.u_t
            # SPEC's contract for the parameter: 4 ulp of the update + 1 ulp of the result.
            tolerance = 4 * math.ulp(ref.update) + math.ulp(ref.param_t)
            assert abs(got[j] - ref.param_t) <= tolerance


# ------------------------------------------------------------ non-finite


@pytest.mark.parametrize("size", [5, LARGE])
def test_nonfinite_propagate_follows_ieee(size):
    w = np.ones(size)
    grad = np.full(size, 0.1)
    grad[size // 2] = np.nan
    Adamax([w]).step([grad])
    expected, m, u = np.ones(size), np.zeros(size), np.zeros(size)
    adamax_step_inplace(expected, grad, m, u, 1)
    assert_bitwise(w, expected)
    assert np.isnan(w[size // 2])


@pytest.mark.parametrize("size", [5, LARGE])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_nonfinite_raise_names_the_parameter_and_writes_nothing(size, bad):
    params = {"ok": np.ones(3), "late": np.ones(size, np.float32)}
    opt = Adamax(params, nonfinite="raise")
    opt.step({"ok": np.ones(3), "late": np.ones(size, np.float32)})
    before = ({k: p.copy() for k, p in params.items()}, opt.state_dict())
    grad = np.ones(size, np.float32)
    grad[-1] = bad
    with pytest.raises(FloatingPointError, match="late: the gradient holds an infinity or NaN"):
        opt.step({"ok": np.ones(3), "late": grad})
    for k in params:
        assert_bitwise(params[k], before[0][k])
    assert_same_state(opt.state_dict(), before[1])


@pytest.mark.parametrize("size", [5, LARGE])
def test_nonfinite_skip_skips_the_whole_step(size):
    params = [np.ones(3), np.ones(size, np.float32)]
    opt = Adamax(params, nonfinite="skip")
    grad = np.ones(size, np.float32)
    grad[0] = np.inf
    before = [p.copy() for p in params], opt.state_dict()
    assert opt.step([np.ones(3), grad]) is False
    for p, q in zip(params, before[0]):
        assert_bitwise(p, q)
    assert_same_state(opt.state_dict(), before[1])
    assert opt.step([np.ones(3), np.ones(size, np.float32)]) is True
    assert opt.steps == {"params[0]": 1, "params[1]": 1}


# ------------------------------------------------------------ construction


def ones():
    return [np.ones(3)]


@pytest.mark.parametrize(
    "params, kwargs, error, message",
    [
        (ones(), {"lr": -1.0}, ValueError, "lr must be"),
        (ones(), {"lr": "0.1"}, TypeError, "lr must be a real number"),
        (ones(), {"betas": (1.0, 0.999)}, ValueError, "beta1 must be in"),
        (ones(), {"betas": (0.9,)}, ValueError, "betas must be a pair"),
        (ones(), {"eps": float("nan")}, ValueError, "eps must be"),
        (ones(), {"weight_decay": -0.1}, ValueError, "weight_decay"),
        (ones(), {"maximize": "yes"}, TypeError, "maximize must be a bool"),
        (ones(), {"convention": "keras"}, ValueError, "convention must be one of"),
        (ones(), {"num_threads": 0}, ValueError, "num_threads"),
        (ones(), {"nonfinite": "ignore"}, ValueError, "nonfinite must be one of"),
        ([], {}, ValueError, "empty parameter list"),
        (np.ones(3), {}, TypeError, "params must be"),
        ([np.ones(3, dtype=np.int64)], {}, TypeError, "params\\[0\\]: param has dtype int64"),
        ([np.ones(6)[::2]], {}, ValueError, "params\\[0\\]: param is not contiguous"),
        ([np.ones(3)] * 2, {}, ValueError, "params\\[0\\] param and params\\[1\\] param overlap"),
        ([{"params": ones(), "lr": -1}], {}, ValueError, "param_groups\\[0\\]: lr must be"),
        ([{"params": ones(), "beta1": 0.5}], {}, ValueError, "unknown options \\['beta1'\\]"),
        ({1: np.ones(3)}, {}, TypeError, "names must be str"),
    ],
)
def test_construction_validates(params, kwargs, error, message):
    with pytest.raises(error, match=message):
        Adamax(params, **kwargs)


def test_read_only_parameter_refused_at_construction():
    w = np.ones(3)
    w.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        Adamax({"w": w})


def test_defaults_and_repr():
    opt = Adamax([np.ones(2)], nonfinite="skip")
    group = opt.param_groups[0]
    assert group["lr"] == DEFAULTS["lr"] and group["eps"] == DEFAULTS["eps"]
    assert group["betas"] == (DEFAULTS["beta1"], DEFAULTS["beta2"])
    text = repr(Adamax([{"params": [np.ones(2)]}, {"params": [np.ones(2)], "lr": 0.25}]))
    assert text.startswith("Adamax (\nParameter Group 0\n")
    assert "Parameter Group 1\n    betas: (0.9, 0.999)" in text
    assert "    lr: 0.25\n" in text and f"    lr: {DEFAULTS['lr']}\n" in text
    assert "nonfinite: skip" in repr(opt)


# ------------------------------------------------------------ state dicts


def test_state_dict_is_a_copy_and_round_trips():
    params = model()
    opt = make(params)
    run(opt, params, 1, 4)
    sd = opt.state_dict()
    saved = [(s["m"].copy(), s["u"].copy()) for s in sd["state"]]
    run(opt, params, 4, 6)
    for s, (m, u) in zip(sd["state"], saved):
        assert_bitwise(s["m"], m)
        assert_bitwise(s["u"], u)
    other = make(model())
    other.load_state_dict(sd)
    assert_same_state(other.state_dict(), sd)
    assert other.param_groups[1]["lr"] == 0.03 and other.param_groups[0]["lr"] is schedule


def _spoil_shape(sd):
    sd["state"][2]["m"] = np.zeros(4, np.float32)  # b1


def _spoil_dtype(sd):
    sd["state"][0]["u"] = sd["state"][0]["u"].astype(np.float32)


def _spoil_groups(sd):
    sd["param_groups"] = sd["param_groups"][:1]


def _spoil_option(sd):
    sd["param_groups"][1]["betas"] = (0.9, 1.5)


def _spoil_step(sd):
    sd["state"][3]["step"] = -1


def _spoil_names(sd):
    sd["param_names"] = ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    "spoil, message",
    [
        (_spoil_shape, "b1: m has shape \\(4,\\)"),
        (_spoil_dtype, "w1: u has shape \\(4, 3\\) and dtype float32"),
        (_spoil_groups, "1 parameter groups"),
        (_spoil_option, "beta2 must be in"),
        (_spoil_step, "b2: step must be an integer >= 0"),
        (_spoil_names, "is for parameters"),
    ],
)
def test_a_failed_load_state_dict_changes_nothing(spoil, message):
    params = model()
    opt = make(params)
    run(opt, params, 1, 4)
    sd = make(model(1)).state_dict()  # zeros and step 0 everywhere
    sd["param_groups"][1]["lr"] = 0.5
    spoil(sd)
    before = opt.state_dict()
    with pytest.raises(CheckpointError, match=message):
        opt.load_state_dict(sd)
    assert_same_state(opt.state_dict(), before)
    assert opt.param_groups[1]["lr"] == 0.03


# ------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("k", [0, 1, 2, 5, 9])
@pytest.mark.parametrize("include_params", [True, False])
def test_exact_resume(tmp_path, k, include_params):
    n = 10
    straight = model()
    opt = make(straight)
    run(opt, straight, 1, n + 1)

    first = model()
    opt1 = make(first)
    run(opt1, first, 1, k + 1)
    path = tmp_path / "run.ckpt"
    opt1.save(path, include_params=include_params)
    # A fresh optimizer over copies: of the initial values (the file restores
    # them), or of the step-k values when the file holds no parameters.
    resumed = {key: p.copy(order="K") for key, p in (first if not include_params else model()).items()}
    opt2 = Adamax.load(path, [
        {"params": {"w1": resumed["w1"], "w2": resumed["w2"]}, "lr": schedule},
        {"params": {"b1": resumed["b1"], "b2": resumed["b2"]}},
    ], weight_decay=0.0)
    assert opt2.param_groups[0]["weight_decay"] == 0.01  # the file's options win
    run(opt2, resumed, k + 1, n + 1)
    for key in straight:
        assert_bitwise(resumed[key], straight[key])
    assert_same_state(opt2.state_dict(), opt.state_dict())
    assert opt2.steps == opt.steps


def test_a_schedule_must_be_given_again(tmp_path):
    params = model()
    opt = make(params)
    run(opt, params, 1, 3)
    opt.save(tmp_path / "run.ckpt")
    plain = Adamax([{"params": {"w1": np.ones((4, 3)), "w2": np.ones((3, 2), order="F")}},
                    {"params": {"b1": np.ones(3, np.float32), "b2": np.ones(())}}])
    with pytest.raises(CheckpointError, match=r"param_groups\[0\] had an lr schedule"):
        plain.load_state(tmp_path / "run.ckpt")
    assert set(plain.steps.values()) == {0}


def _write_half(file, arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    file.write(data[: len(data) // 2])
    file.flush()
    raise OSError("disk full (simulated)")


def _replace_fails(*args, **kwargs):
    raise OSError("rename failed (simulated)")


@pytest.mark.parametrize("crash", ["write", "replace"])
def test_a_crash_during_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch, crash):
    params = model()
    opt = make(params)
    run(opt, params, 1, 3)
    path = tmp_path / "run.ckpt"
    opt.save(path)
    saved_bytes = path.read_bytes()
    saved_state = opt.state_dict()
    run(opt, params, 3, 5)
    if crash == "write":
        monkeypatch.setattr(checkpoint_module, "_write_npz", _write_half)
    else:
        monkeypatch.setattr(checkpoint_module.os, "replace", _replace_fails)
    with pytest.raises(OSError, match="simulated"):
        opt.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == saved_bytes
    assert os.listdir(tmp_path) == ["run.ckpt"]  # the temporary file was removed
    fresh = make(model())
    fresh.load_state(path)
    assert_same_state(fresh.state_dict(), saved_state)


class Payload:
    """Unpickling this would run code; a loader must never do it."""

    def __reduce__(self):
        return (_unpickled, ())


RAN = []


def _unpickled():
    RAN.append(True)
    return 0


def valid_checkpoint(tmp_path):
    params = model()
    opt = make(params)
    run(opt, params, 1, 3)
    opt.save(tmp_path / "good.ckpt")
    return tmp_path / "good.ckpt"


def _pickled_object(tmp_path):
    with np.load(valid_checkpoint(tmp_path)) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["m0"] = np.array([Payload()], dtype=object)
    np.savez(tmp_path / "bad.npz", **arrays)
    return tmp_path / "bad.npz"


def _pickle_file(tmp_path):
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps({"state": Payload()}))
    return tmp_path / "bad.pkl"


def _truncated(tmp_path):
    data = valid_checkpoint(tmp_path).read_bytes()
    (tmp_path / "bad.npz").write_bytes(data[: len(data) * 2 // 3])
    return tmp_path / "bad.npz"


def _corrupted(tmp_path):
    data = bytearray(valid_checkpoint(tmp_path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    return tmp_path / "bad.npz"


def _wrong_shapes(tmp_path):
    other = model()
    other["b1"] = np.ones(4, np.float32)
    opt = make(other)
    run(opt, other, 1, 3)
    opt.save(tmp_path / "bad.npz")
    return tmp_path / "bad.npz"


def _foreign(tmp_path):
    np.savez(tmp_path / "bad.npz", weights=np.ones(3))
    return tmp_path / "bad.npz"


def _single_array(tmp_path):
    np.save(tmp_path / "bad.npy", np.ones(3))
    return tmp_path / "bad.npy"


def _text(tmp_path):
    (tmp_path / "bad.txt").write_text("not a checkpoint")
    return tmp_path / "bad.txt"


@pytest.mark.parametrize(
    "make_file, message",
    [
        (_pickled_object, "damaged or unsafe checkpoint.*allow_pickle=False"),
        (_pickle_file, "not a readable .npz checkpoint.*pickled"),
        (_truncated, "not a readable .npz checkpoint"),
        (_corrupted, "damaged or unsafe checkpoint"),
        (_wrong_shapes, "b1: m has shape \\(4,\\) .* the parameter has shape \\(3,\\)"),
        (_foreign, "foreign .npz file"),
        (_single_array, "a single .npy array"),
        (_text, "not a readable .npz checkpoint"),
    ],
)
def test_bad_files_are_refused_and_change_nothing(tmp_path, make_file, message):
    path = make_file(tmp_path)
    params = model(5)
    before = {k: p.copy() for k, p in params.items()}
    opt = make(params)
    run(opt, params, 1, 2)
    before = {k: p.copy() for k, p in params.items()}, opt.state_dict()
    with pytest.raises(CheckpointError, match=message) as info:
        opt.load_state(path)
    assert str(path) in str(info.value)
    assert not RAN
    for k in params:
        assert_bitwise(params[k], before[0][k])
    assert_same_state(opt.state_dict(), before[1])


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        Adamax.load(tmp_path / "nothing.npz", [np.ones(3)])


# ------------------------------------------------------------ it trains


def least_squares():
    rng = np.random.default_rng(42)
    x = rng.normal(size=(200, 5))
    y = x @ rng.normal(size=5) + 0.01 * rng.normal(size=200)
    return x, y


def training_losses(maximize, steps=300, every=25):
    x, y = least_squares()
    w = np.zeros(5)
    opt = Adamax({"w": w}, lr=0.05, maximize=maximize)
    losses = []
    for t in range(steps + 1):
        residual = x @ w - y
        if t % every == 0:
            losses.append(float(residual @ residual) / len(y))
        opt.step({"w": 2.0 * x.T @ residual / len(y)})
    return losses


def test_it_trains_least_squares():
    losses = training_losses(maximize=False)
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.01 * losses[0]


def test_maximize_climbs_the_loss():
    losses = training_losses(maximize=True)
    assert all(later > earlier for earlier, later in zip(losses, losses[1:])), losses


def test_docstring_examples_run():
    result = doctest.testmod(optimizer_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
