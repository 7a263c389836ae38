"""The compiled checks of the common case agree with the Python checks of api.py.

``_kernel.step_inplace`` and ``_kernel.step_many`` either do the whole step
(returning True) or write nothing and return False, and the Python checks
then run; so every error a caller sees is api.py's, and a result must not
depend on which path computed it.
"""

import numpy as np
import pytest
from layouts import LAYOUTS, allowed, cut

from adamax_cy import _kernel, _validation, adamax_step_inplace, adamax_step_many, api

DEFAULTS = {"lr": 0.002, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
            "decoupled_weight_decay": False, "maximize": False, "convention": "spec",
            "num_threads": None}
ORDER = ("lr", "beta1", "beta2", "eps", "weight_decay", "decoupled_weight_decay",
         "maximize", "convention", "num_threads")


def quadruple(shape=(3, 5), dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    p, g, m = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
    return [p, g, m, np.abs(rng.standard_normal(shape)).astype(dtype)]


def python_path(arrays, t, options):
    """The step through api.py's Python checks only."""
    o = {**DEFAULTS, **options}
    h = api.check_hyperparameters(t, o.pop("num_threads"), **o)
    api.run_kernel(_validation.check_arrays(*arrays), h)


def fast(arrays, t, options):
    o = {**DEFAULTS, **options}
    return _kernel.step_inplace(*arrays, t, *(o[k] for k in ORDER))


def bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


COMMON = [
    ({}, 1),
    ({}, 7),
    ({"lr": 1, "beta1": 0, "beta2": 0.5}, 2),  # ints are real numbers
    ({"eps": 0.0, "weight_decay": 0.01}, 3),
    ({"weight_decay": 0.01, "decoupled_weight_decay": True}, 3),
    ({"maximize": True, "convention": "torch"}, 4),
    ({"num_threads": 1}, 5),
    ({"num_threads": 2}, 2**40),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options,t", COMMON, ids=repr)
def test_common_case_is_compiled_and_equal_to_the_python_path(options, t, dtype):
    expected = quadruple(dtype=dtype)
    python_path(expected, t, options)
    got = quadruple(dtype=dtype)
    assert fast(got, t, options) is True
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(bits(a), bits(b))


RARE = [
    ("numpy float lr", lambda q: q, {"lr": np.float64(0.01)}, 3),
    ("numpy int t", lambda q: q, {}, np.int64(3)),
    ("bool numpy flag", lambda q: q, {"maximize": np.bool_(True)}, 3),
    ("F order", lambda q: [np.asfortranarray(a) for a in q], {}, 3),
    ("strided grad", lambda q: [q[0][:, :2].copy(), q[1][:, :4:2], q[2][:, :2].copy(),
                                q[3][:, :2].copy()], {}, 3),
    ("read-only grad", lambda q: q, {}, 3),
]


@pytest.mark.parametrize("name,change,options,t", RARE, ids=[r[0] for r in RARE])
def test_rarer_valid_calls_give_the_python_path_result(name, change, options, t):
    expected = change(quadruple())
    python_path(expected, t, options)
    got = change(quadruple())
    if name == "read-only grad":
        got[1].flags.writeable = False
    adamax_step_inplace(*got, t, **options)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(bits(a), bits(b))


def bad_calls():
    """(name, arrays, t, options): calls that api.py refuses."""
    q = quadruple
    p, g, m, u = q()
    ro = q()
    ro[2].flags.writeable = False
    return [
        ("t = 0", q(), 0, {}),
        ("t bool", q(), True, {}),
        ("t float", q(), 1.0, {}),
        ("lr negative", q(), 1, {"lr": -1.0}),
        ("lr nan", q(), 1, {"lr": float("nan")}),
        ("lr bool", q(), 1, {"lr": True}),
        ("lr str", q(), 1, {"lr": "0.1"}),
        ("beta1 = 1", q(), 1, {"beta1": 1.0}),
        ("beta2 negative", q(), 1, {"beta2": -0.1}),
        ("eps inf", q(), 1, {"eps": float("inf")}),
        ("weight decay negative", q(), 1, {"weight_decay": -1}),
        ("flag int", q(), 1, {"maximize": 1}),
        ("convention", q(), 1, {"convention": "keras"}),
        ("threads 0", q(), 1, {"num_threads": 0}),
        ("threads float", q(), 1, {"num_threads": 2.0}),
        ("grad list", [p, g.tolist(), m, u], 1, {}),
        ("dtype int", [x.astype(np.int64) for x in q()], 1, {}),
        ("dtype mixed", [p, g.astype(np.float32), m, u], 1, {}),
        ("byte order", [x.astype(">f8") for x in q()], 1, {}),
        ("shape", [p, g[:2], m, u], 1, {}),
        ("read-only m", ro, 1, {}),
        ("non-contiguous param", [x[:, ::2] for x in q()], 1, {}),
        ("param is m", [p, g, p, u], 1, {}),
        ("grad is u", [p, u, m, u], 1, {}),
        ("m overlaps u", (lambda b: [p, g, b[:15].reshape(3, 5), b[14:].reshape(3, 5)])(
            np.zeros(29)), 1, {}),
    ]


@pytest.mark.parametrize("name,arrays,t,options", bad_calls(), ids=[c[0] for c in bad_calls()])
def test_refused_calls_raise_the_python_checks_error_and_write_nothing(name, arrays, t,
                                                                       options):
    before = [np.array(a, copy=True) for a in arrays]
    with pytest.raises((TypeError, ValueError)) as expected:
        python_path(arrays, t, options)
    assert fast(arrays, t, options) is False
    with pytest.raises(expected.type) as got:
        adamax_step_inplace(*arrays, t, **{**DEFAULTS, **options})
    assert str(got.value) == str(expected.value)
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(np.asarray(a), b)


def many(count=6, seed=0):
    quads = [quadruple((7 + j,), np.float32 if j % 2 else np.float64, seed + j)
             for j in range(count)]
    return [[q[i] for q in quads] for i in range(4)]


@pytest.mark.parametrize("k", [1, 2, 3], ids=["grad", "m", "u"])
def test_fast_checks_compare_dtypes_not_dtype_objects(k):
    """Another byte order is refused, with nothing written; an equal native
    dtype that is another object (here with metadata) is accepted."""
    swapped = quadruple()
    swapped[k] = swapped[k].astype(">f8")
    before = [a.copy() for a in swapped]
    assert fast(swapped, 3, {}) is False
    assert _kernel.step_many(*[[a] for a in swapped], 3, *(DEFAULTS[o] for o in ORDER)) is False
    assert _kernel.check_many_fast(*[[a] for a in swapped]) is False
    for a, b in zip(swapped, before):
        np.testing.assert_array_equal(bits(a.astype(np.float64)), bits(b.astype(np.float64)))
    tagged = np.dtype(np.float64, metadata={"tag": 1})
    for step in (fast, lambda q, t, o: _kernel.step_many(*[[a] for a in q], t,
                                                         *(DEFAULTS[x] for x in ORDER))):
        expected, got = quadruple(), quadruple()
        got[k] = got[k].view(tagged)
        assert got[k].dtype.metadata and got[0].dtype.metadata is None
        python_path(expected, 3, {})
        assert step(got, 3, {}) is True
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(bits(a.view(np.float64)), bits(b))


def test_many_is_compiled_and_equal_to_single_steps():
    expected = many()
    for quad in zip(*expected):
        python_path(list(quad), 3, {})
    for kind in (list, tuple):
        got = many()
        assert _kernel.step_many(*[kind(x) for x in got], 3,
                                 *(DEFAULTS[k] for k in ORDER)) is True
        for a, b in zip(sum(got, []), sum(expected, [])):
            np.testing.assert_array_equal(bits(a), bits(b))


def test_many_accepts_a_gradient_shared_between_arrays():
    params, grads, ms, us = many(3)
    grads = [grads[0], grads[0], grads[2]]
    params[1], ms[1], us[1] = (x[:7].astype(np.float64) for x in (params[1], ms[1], us[1]))
    assert _kernel.step_many(params, grads, ms, us, 3, *(DEFAULTS[k] for k in ORDER)) is True


def bad_many():
    out = []
    params, grads, ms, us = many()
    out.append(("param of 1 is m of 0", [params[:1] + [ms[0]] + params[2:], grads, ms, us]))
    params, grads, ms, us = many()
    out.append(("grad of 2 is u of 4", [params, grads[:2] + [us[4]] + grads[3:], ms, us]))
    params, grads, ms, us = many()
    big = np.zeros(30)
    out.append(("params overlap", [[big[:7], big[6:14]] + params[2:],
                                   [grads[0], grads[2].astype(np.float64)] + grads[2:],
                                   [ms[0], ms[2].astype(np.float64)] + ms[2:],
                                   [us[0], us[2].astype(np.float64)] + us[2:]]))
    params, grads, ms, us = many()
    out.append(("lengths", [params, grads[:-1], ms, us]))
    params, grads, ms, us = many()
    out.append(("dtype inside a quadruple", [params, grads[:1] + [grads[2]] + grads[2:], ms, us]))
    params, grads, ms, us = many()
    out.append(("not a sequence", [params, np.zeros((6, 7)), ms, us]))
    return out


@pytest.mark.parametrize("name,lists", bad_many(), ids=[c[0] for c in bad_many()])
def test_many_refused_calls_raise_the_python_checks_error_and_write_nothing(name, lists):
    before = [[np.array(a, copy=True) for a in x] for x in lists]
    with pytest.raises((TypeError, ValueError)) as expected:
        _validation.check_many(*lists)
    assert _kernel.step_many(*lists, 3, *(DEFAULTS[k] for k in ORDER)) is False
    with pytest.raises(expected.type) as got:
        adamax_step_many(*lists, 3)
    assert str(got.value) == str(expected.value)
    for x, y in zip(lists, before):
        for a, b in zip(x, y):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed", range(5))
def test_many_overlap_check_on_many_arrays_in_any_order(seed):
    # Quadruples cut from one buffer in a random order: disjoint, then one overlap.
    rng = np.random.default_rng(seed)
    count, size = 300, 3
    buffer = np.zeros(4 * count * size + 1)
    pieces = [buffer[i * size:(i + 1) * size] for i in rng.permutation(4 * count)]
    lists = [pieces[i::4] for i in range(4)]
    assert _kernel.step_many(*lists, 3, *(DEFAULTS[k] for k in ORDER)) is True
    j = int(rng.integers(count))
    start = lists[3][j].__array_interface__["data"][0] - buffer.__array_interface__["data"][0]
    shifted = buffer[start // 8 + 1:start // 8 + 1 + size]  # overlaps u[j] and its neighbour
    lists[0][(j + 1) % count] = shifted
    assert _kernel.step_many(*lists, 3, *(DEFAULTS[k] for k in ORDER)) is False
    with pytest.raises(ValueError, match="overlap"):
        adamax_step_many(*lists, 3)


def refused_unchanged(buffer, lists):
    """step_many refuses the quadruples and writes nothing."""
    before = buffer.copy()
    done = _kernel.step_many(*lists, 3, *(DEFAULTS[k] for k in ORDER))
    np.testing.assert_array_equal(bits(buffer), bits(before))
    return done is False


@pytest.mark.parametrize("count", [5, 60, 300])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_many_finds_one_overlap_hidden_among_disjoint_arrays(layout, count):
    rng = np.random.default_rng(count)
    lengths = rng.integers(1, 12, size=count)
    buffer, lists = cut(layout, lengths, rng)
    assert _kernel.check_many_fast(*lists) is True
    for r in range(4):
        for q in range(4):
            if r == q == 1:
                continue  # gradients may overlap each other
            j, i = (int(x) for x in rng.choice(count, size=2, replace=False))
            # lists[r][j] starts inside lists[q][i] (partly or wholly within it).
            start = (lists[q][i].__array_interface__["data"][0]
                     - buffer.__array_interface__["data"][0]) // buffer.itemsize
            start += int(rng.integers(lengths[i]))
            bad = [list(x) for x in lists]
            bad[r][j] = buffer[start:start + lengths[j]]
            assert not allowed(bad)
            assert refused_unchanged(buffer, bad), (r, j, q, i)
    bad = [list(x) for x in lists]
    bad[2][0] = bad[0][0]  # one array as param and m
    assert refused_unchanged(buffer, bad)
    shared = [list(x) for x in lists]
    same = [j for j in range(1, count) if lengths[j] == lengths[0]]
    shared[1][same[0] if same else 0] = shared[1][0]  # a gradient read twice
    assert _kernel.step_many(*shared, 3, *(DEFAULTS[k] for k in ORDER)) is True


@pytest.mark.parametrize("seed", range(8))
def test_many_overlap_checks_agree_with_comparing_every_pair(seed):
    rng = np.random.default_rng(seed)
    outcomes = set()
    for _ in range(25):
        count = int(rng.choice([2, 9, 40]))
        lengths = rng.integers(0 if rng.random() < 0.3 else 1, 20, size=count)
        dtype = np.float32 if rng.random() < 0.5 else np.float64
        buffer, lists = cut(LAYOUTS[rng.integers(len(LAYOUTS))], lengths, rng, dtype)
        for _ in range(int(rng.integers(3))):
            j, r = int(rng.integers(count)), int(rng.integers(4))
            if rng.random() < 0.5:  # a view anywhere
                start = int(rng.integers(len(buffer) - lengths[j] + 1))
                lists[r][j] = buffer[start:start + lengths[j]]
            else:  # an array of the same length in another place
                same = [(i, q) for i in range(count) for q in range(4)
                        if lengths[i] == lengths[j]]
                i, q = same[int(rng.integers(len(same)))]
                lists[r][j] = lists[q][i]
        expected = allowed(lists)
        outcomes.add(expected)
        if expected:
            assert _kernel.check_many_fast(*lists) is True
        else:
            assert _kernel.check_many_fast(*lists) is False
            assert refused_unchanged(buffer, lists)
    assert outcomes == {True, False}


def test_check_many_fast_accepts_the_common_case_and_defers_the_rest():
    """The optimizer's compiled pre-check: True only where the Python checks
    would accept the quadruples as they are; never writes."""
    from adamax_cy import _kernel

    def quads(n=3):
        return [[np.ones((2, 2)) for _ in range(n)] for _ in range(4)]

    good = quads()
    raw = [a.tobytes() for group in good for a in group]
    assert _kernel.check_many_fast(*good)
    assert [a.tobytes() for group in good for a in group] == raw
    shared = quads()
    shared[2][1] = shared[0][0]  # m of one quadruple is another's param
    assert not _kernel.check_many_fast(*shared)
    strided = quads()
    strided[1][0] = np.ones((2, 4))[:, ::2]
    assert not _kernel.check_many_fast(*strided)
    read_only = quads()
    read_only[3][2].flags.writeable = False
    assert not _kernel.check_many_fast(*read_only)
    assert not _kernel.check_many_fast(good[0], good[1][:2], good[2], good[3])
