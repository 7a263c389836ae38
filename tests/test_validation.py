"""Bad input gets a clear error that names the argument, and nothing is written."""

from __future__ import annotations

import numpy as np
import pytest

from adamax_cy import adamax_step, adamax_step_inplace, adamax_step_many


def fresh(n=4, dtype=np.float64):
    rng = np.random.default_rng(0)
    param, grad, m = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    return {"param": param, "grad": grad, "m": m, "u": np.abs(m)}


def call_and_check_unchanged(arrays, exc, match, t=1, **kwargs):
    """Run the in-place step expecting `exc`; every array must be byte-for-byte as before."""
    snapshot = {k: (a.copy(), a.tobytes()) for k, a in arrays.items() if isinstance(a, np.ndarray)}
    with pytest.raises(exc, match=match):
        adamax_step_inplace(arrays["param"], arrays["grad"], arrays["m"], arrays["u"], t, **kwargs)
    for k, (copy, raw) in snapshot.items():
        assert arrays[k].tobytes() == raw, f"{k} was written by a failed call"


def with_(**changes):
    def make():
        arrays = fresh()
        for k, v in changes.items():
            arrays[k] = v(arrays) if callable(v) else v
        return arrays
    return make


def read_only(name):
    def make():
        arrays = fresh()
        arrays[name].flags.writeable = False
        return arrays
    return make


ARRAY_CASES = {
    "shape": (with_(grad=lambda a: np.zeros(5)), ValueError, r"shape mismatch: param has shape \(4,\) but grad has shape \(5,\)"),
    "shape-u": (with_(u=lambda a: np.zeros((2, 2))), ValueError, r"param has shape \(4,\) but u has shape \(2, 2\)"),
    "dtype-mixed": (with_(m=lambda a: a["m"].astype(np.float32)), TypeError, r"m has dtype float32 but param has dtype float64.*float32 or float64"),
    "dtype-int": (lambda: {k: np.zeros(4, np.int64) for k in ("param", "grad", "m", "u")}, TypeError, r"param has dtype int64; supported dtypes are float32 and float64"),
    "dtype-half": (lambda: {k: np.zeros(4, np.float16) for k in ("param", "grad", "m", "u")}, TypeError, r"float16; supported dtypes"),
    "dtype-complex": (lambda: {k: np.zeros(4, np.complex128) for k in ("param", "grad", "m", "u")}, TypeError, r"complex128; supported dtypes"),
    "byte-order": (lambda: {k: np.zeros(4, ">f8") for k in ("param", "grad", "m", "u")}, TypeError, r"native byte order"),
    "list": (with_(grad=[0.1, 0.2, 0.3, 0.4]), TypeError, r"grad must be a numpy.ndarray"),
    "read-only-param": (read_only("param"), ValueError, r"param is read-only"),
    "read-only-m": (read_only("m"), ValueError, r"m is read-only"),
    "read-only-u": (read_only("u"), ValueError, r"u is read-only"),
    "alias-m-param": (with_(m=lambda a: a["param"]), ValueError, r"param and m overlap in memory; aliasing"),
    "alias-grad-u": (with_(grad=lambda a: a["u"]), ValueError, r"grad and u overlap in memory"),
    "overlap-partial": (
        lambda: (lambda big: {"param": big[0:4], "grad": np.ones(4), "m": big[3:7], "u": np.zeros(4)})(np.zeros(8)),
        ValueError, r"param and m overlap in memory",
    ),
    "non-contiguous": (with_(param=lambda a: np.zeros(8)[::2]), ValueError, r"param is not contiguous; pass np.ascontiguousarray\(param\)"),
    "mixed-layout": (
        lambda: {"param": np.zeros((3, 2)), "grad": np.zeros((3, 2)), "m": np.zeros((3, 2), order="F"), "u": np.zeros((3, 2))},
        ValueError, r"must share one memory layout",
    ),
}


@pytest.mark.parametrize("case", ARRAY_CASES, ids=list(ARRAY_CASES))
def test_bad_arrays(case):
    make, exc, match = ARRAY_CASES[case]
    call_and_check_unchanged(make(), exc, match)


HYPER_CASES = [
    ({"t": 0}, ValueError, r"t must be an integer >= 1 \(and below 2\*\*63\), got 0"),
    ({"t": -3}, ValueError, r"t must be an integer >= 1"),
    ({"t": 1.0}, TypeError, r"t must be an integer >= 1, got float"),
    ({"t": True}, TypeError, r"t must be an integer >= 1, got the bool"),
    ({"t": "2"}, TypeError, r"t must be an integer"),
    ({"lr": -0.1}, ValueError, r"lr must be a finite number >= 0"),
    ({"lr": float("nan")}, ValueError, r"lr must be a finite number >= 0"),
    ({"lr": float("inf")}, ValueError, r"lr must be a finite number >= 0"),
    ({"lr": "0.1"}, TypeError, r"lr must be a real number"),
    ({"eps": -1e-8}, ValueError, r"eps must be a finite number >= 0"),
    ({"eps": float("inf")}, ValueError, r"eps must be a finite number >= 0"),
    ({"beta1": 1.0}, ValueError, r"beta1 must be in \[0, 1\)"),
    ({"beta1": -0.1}, ValueError, r"beta1 must be in \[0, 1\)"),
    ({"beta2": float("nan")}, ValueError, r"beta2 must be in \[0, 1\)"),
    ({"beta2": 1.5}, ValueError, r"beta2 must be in \[0, 1\)"),
    ({"weight_decay": -0.01}, ValueError, r"weight_decay must be a finite number >= 0"),
    ({"convention": "keras"}, ValueError, r"convention must be one of \('spec', 'torch'\), got 'keras'"),
    ({"maximize": "yes"}, TypeError, r"maximize must be a bool"),
    ({"decoupled_weight_decay": 1}, TypeError, r"decoupled_weight_decay must be a bool"),
    ({"num_threads": 0}, ValueError, r"num_threads must be None or an integer from 1 to 1024"),
    ({"num_threads": 50_000}, ValueError, r"num_threads must be None or an integer from 1 to 1024"),
    ({"num_threads": 2**31}, ValueError, r"num_threads must be None or an integer from 1 to 1024"),
    ({"t": 10**400}, ValueError, r"t must be an integer >= 1 \(and below 2\*\*63\)"),
    ({"num_threads": 2.0}, TypeError, r"num_threads must be None or an integer >= 1"),
    ({"num_threads": True}, TypeError, r"num_threads must be None or an integer >= 1"),
]


@pytest.mark.parametrize("kwargs, exc, match", HYPER_CASES, ids=[str(c[0]) for c in HYPER_CASES])
def test_bad_hyperparameters(kwargs, exc, match):
    call_and_check_unchanged(fresh(), exc, match, **kwargs)


@pytest.mark.parametrize("kwargs, exc, match", [c for c in HYPER_CASES if "num_threads" not in c[0]],
                         ids=[str(c[0]) for c in HYPER_CASES if "num_threads" not in c[0]])
def test_functional_step_checks_the_same(kwargs, exc, match):
    arrays = fresh()
    raw = {k: a.tobytes() for k, a in arrays.items()}
    t = kwargs.pop("t", 1)
    with pytest.raises(exc, match=match):
        adamax_step(arrays["param"], arrays["grad"], arrays["m"], arrays["u"], t, **kwargs)
    assert all(arrays[k].tobytes() == raw[k] for k in arrays)


@pytest.mark.parametrize("bad, exc, match", [
    ({"param": np.ones(4, np.longdouble)}, TypeError, r"param has dtype float128, which float64 would round"),
    ({"grad": [1.0, 2.0]}, ValueError, r"shape mismatch: param has shape \(4,\) but grad has shape \(2,\)"),
    ({"m": ["a", "b", "c", "d"]}, TypeError, r"m must hold real numbers"),
    ({"u": [1j, 2j, 3j, 4j]}, TypeError, r"u must hold real numbers"),
])
def test_functional_step_bad_values(bad, exc, match):
    arrays = {**fresh(), **bad}
    with pytest.raises(exc, match=match):
        adamax_step(arrays["param"], arrays["grad"], arrays["m"], arrays["u"], 1)


def test_many_names_the_index_and_writes_nothing():
    good = [fresh(3), fresh(5, np.float32)]
    bad = fresh(2)
    bad["u"].flags.writeable = False
    quads = good + [bad]
    raw = [{k: a.tobytes() for k, a in q.items()} for q in quads]
    with pytest.raises(ValueError, match=r"arrays\[2\]: u is read-only"):
        adamax_step_many(*([q[k] for q in quads] for k in ("param", "grad", "m", "u")), 1)
    for q, r in zip(quads, raw):
        assert all(q[k].tobytes() == r[k] for k in q)


def test_valid_edge_inputs_are_accepted():
    """0-d, empty, F-ordered, read-only and strided gradients are all fine."""
    zero_d = {k: np.array(v) for k, v in (("param", 1.0), ("grad", 0.1), ("m", 0.0), ("u", 0.0))}
    adamax_step_inplace(*zero_d.values(), 1)
    assert zero_d["param"] == adamax_step(1.0, 0.1, 0.0, 0.0, 1)[0]
    empty = [np.zeros((0, 3)) for _ in range(4)]
    adamax_step_inplace(*empty, 1)
    f = [np.asfortranarray(np.ones((3, 4))) for _ in range(4)]
    g = np.ones((3, 8))[:, ::2]
    g.flags.writeable = False
    adamax_step_inplace(f[0], g, f[2], f[3], 1)
    assert np.all(f[0] == adamax_step(1.0, 1.0, 1.0, 1.0, 1)[0])


def test_large_thread_counts_are_refused_before_threads_start():
    """Many more threads than any machine has would abort the process in the
    OpenMP runtime; the call refuses them instead (arrays above the serial threshold)."""
    arrays = {k: np.ones(40_000) for k in ("param", "grad", "m", "u")}
    call_and_check_unchanged(arrays, ValueError, r"num_threads", num_threads=50_000)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_matrix_subclass_is_updated_like_its_array():
    param = np.matrix([[1.0, 2.0]])
    grad, m, u = np.matrix([[0.1, 0.2]]), np.matrix([[0.0, 0.0]]), np.matrix([[0.0, 0.0]])
    adamax_step_inplace(param, grad, m, u, 1)
    expected = adamax_step([1.0, 2.0], [0.1, 0.2], [0.0, 0.0], [0.0, 0.0], 1)[0]
    assert np.asarray(param).ravel().tolist() == expected.tolist()


def test_first_overlap_names_two_spans_that_share_a_byte():
    from adamax_cy._validation import first_overlap

    assert first_overlap([(0, 8, "a"), (8, 16, "b"), (16, 16, "empty"), (24, 32, "c")]) is None
    assert first_overlap([(24, 32, "c"), (0, 8, "a"), (4, 12, "b")]) == ("a", "b")
    assert first_overlap([(0, 8, "first"), (0, 8, "second")]) == ("first", "second")
    assert first_overlap([(0, 100, "outer"), (40, 48, "inner"), (60, 64, "later")]) == ("outer", "inner")
