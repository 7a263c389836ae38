"""adamax_step_many: bitwise equal to adamax_step_inplace per quadruple, and careful."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adamax_cy import adamax_step_inplace, adamax_step_many
from adamax_cy._kernel import serial_threshold
from adamax_cy._validation import check_many

LARGE = 70_000  # above the kernel's serial threshold, so the threaded path runs
TINY_SIZES = (0, 1, 2, 3, 5, 17, 64)


def bits(a: np.ndarray) -> np.ndarray:
    """The raw bits of a float array (NaN payloads and signed zeros included)."""
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def assert_bitwise(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    np.testing.assert_array_equal(bits(actual), bits(expected))


@st.composite
def quadruples(draw):
    """Lists of (param, grad, m, u): mixed sizes and dtypes, sometimes one large array."""
    count = draw(st.integers(0, 6))
    sizes = [draw(st.sampled_from(TINY_SIZES)) for _ in range(count)]
    if count and draw(st.booleans()):
        sizes[draw(st.integers(0, count - 1))] = LARGE
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    out = []
    for size in sizes:
        dtype = draw(st.sampled_from([np.float32, np.float64]))
        scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
        param = rng.normal(size=size).astype(dtype)
        grad = (scale * rng.normal(size=size)).astype(dtype)
        m = (scale * 0.1 * rng.normal(size=size)).astype(dtype)
        u = np.abs(scale * rng.normal(size=size)).astype(dtype)
        if size and draw(st.booleans()):  # a special value somewhere
            grad[rng.integers(size)] = draw(st.sampled_from([np.inf, -np.inf, np.nan, 0.0, -0.0]))
        layout = draw(st.sampled_from(["flat", "C", "F", "strided grad"]))
        if layout in ("C", "F") and size % 2 == 0 and size:
            shape = (2, size // 2)
            param, m, u = (np.asarray(a.reshape(shape), order=layout).copy(order=layout)
                           for a in (param, m, u))
            grad = np.asarray(grad.reshape(shape), order=layout)
        elif layout == "strided grad":
            grad = np.repeat(grad, 2)[::2]
        out.append((param, grad, m, u))
    return out


options = st.fixed_dictionaries(
    {
        "t": st.integers(1, 10_000),
        "lr": st.sampled_from([0.0, 1e-4, 0.002, 0.5]),
        "beta1": st.sampled_from([0.0, 0.5, 0.9, 0.99]),
        "beta2": st.sampled_from([0.0, 0.9, 0.999]),
        "eps": st.sampled_from([0.0, 1e-8, 1e-3]),
        "weight_decay": st.sampled_from([0.0, 0.01, 0.5]),
        "decoupled_weight_decay": st.booleans(),
        "maximize": st.booleans(),
        "convention": st.sampled_from(["spec", "torch"]),
    }
)


def test_large_is_above_the_serial_threshold():
    assert LARGE > serial_threshold


@given(arrays=quadruples(), opts=options, num_threads=st.sampled_from([None, 1, 2, 3]))
def test_many_is_bitwise_inplace_per_quadruple(arrays, opts, num_threads):
    expected = [tuple(a.copy(order="K") for a in q) for q in arrays]
    for param, grad, m, u in expected:
        adamax_step_inplace(param, grad, m, u, **opts, num_threads=1)
    params, grads, ms, us = (list(x) for x in zip(*arrays)) if arrays else ([], [], [], [])
    adamax_step_many(params, grads, ms, us, **opts, num_threads=num_threads)
    for (param, _, m, u), (e_param, _, e_m, e_u) in zip(arrays, expected):
        assert_bitwise(param, e_param)
        assert_bitwise(m, e_m)
        assert_bitwise(u, e_u)


def fresh(n=4, size=5):
    rng = np.random.default_rng(0)
    dtypes = [np.float64, np.float32] * n
    params = [rng.normal(size=size).astype(dtypes[i]) for i in range(n)]
    grads = [rng.normal(size=size).astype(dtypes[i]) for i in range(n)]
    ms = [np.zeros(size, dtypes[i]) for i in range(n)]
    us = [np.zeros(size, dtypes[i]) for i in range(n)]
    return params, grads, ms, us


def snapshot(lists):
    return [[a.copy() for a in x] for x in lists]


def assert_unchanged(lists, before):
    for xs, ys in zip(lists, before):
        for a, b in zip(xs, ys):
            assert_bitwise(np.ascontiguousarray(a), np.ascontiguousarray(b))


def _wrong_dtype(p, g, m, u):
    g[2] = g[2].astype(np.float32 if g[2].dtype == np.float64 else np.float64)


def _wrong_shape(p, g, m, u):
    u[2] = np.zeros(6, u[2].dtype)


def _read_only(p, g, m, u):
    p[2].flags.writeable = False


def _not_contiguous(p, g, m, u):
    m[2] = np.zeros(10, m[2].dtype)[::2]


def _aliased(p, g, m, u):
    u[2] = m[2]


def _not_array(p, g, m, u):
    g[2] = [0.1] * 5


@pytest.mark.parametrize(
    "spoil, message",
    [
        (_wrong_dtype, "dtype"),
        (_wrong_shape, "shape mismatch"),
        (_read_only, "read-only"),
        (_not_contiguous, "not contiguous"),
        (_aliased, "overlap"),
        (_not_array, "numpy.ndarray"),
    ],
)
def test_one_bad_quadruple_names_its_index_and_nothing_is_written(spoil, message):
    lists = fresh()
    spoil(*lists)
    before = snapshot(lists)
    with pytest.raises((TypeError, ValueError), match=message) as info:
        adamax_step_many(*lists, t=1)
    assert "arrays[2]" in str(info.value)
    assert_unchanged(lists, before)


def test_lengths_must_agree():
    params, grads, ms, us = fresh()
    with pytest.raises(ValueError, match="same length"):
        adamax_step_many(params, grads[:3], ms, us, t=1)


def test_a_bad_hyperparameter_writes_nothing():
    lists = fresh()
    before = snapshot(lists)
    with pytest.raises(ValueError, match="beta1"):
        adamax_step_many(*lists, t=1, beta1=1.0)
    assert_unchanged(lists, before)


def _param_view_of_param(p, g, m, u):
    big = np.zeros(10)
    p[0], p[2] = big[:5], big[4:9]  # one shared element


def _m_overlaps_other_u(p, g, m, u):
    u[2] = m[0]


def _grad_is_other_param(p, g, m, u):
    g[1] = p[3]  # both float32


def _strided_grad_reads_other_param(p, g, m, u):
    big = np.zeros(10)
    p[0] = big
    m[0], u[0], g[0] = np.zeros(10), np.zeros(10), np.zeros(10)
    g[2] = big[::2]  # not contiguous: a copy is made, but the original overlaps p[0]


@pytest.mark.parametrize(
    "spoil, first, second",
    [
        (_param_view_of_param, "arrays[0] param", "arrays[2] param"),
        (_m_overlaps_other_u, "arrays[0] m", "arrays[2] u"),
        (_grad_is_other_param, "arrays[1] grad", "arrays[3] param"),
        (_strided_grad_reads_other_param, "arrays[2] grad", "arrays[0] param"),
    ],
)
def test_overlap_across_quadruples_is_refused(spoil, first, second):
    lists = fresh()
    spoil(*lists)
    before = snapshot(lists)
    with pytest.raises(ValueError, match="overlap") as info:
        adamax_step_many(*lists, t=1)
    assert first in str(info.value) and second in str(info.value)
    assert_unchanged(lists, before)


def test_one_gradient_may_feed_several_quadruples():
    params, grads, ms, us = fresh()
    grads[2] = grads[0]  # both float64, only read
    expected = [tuple(a.copy() for a in q) for q in zip(params, grads, ms, us)]
    for q in expected:
        adamax_step_inplace(*q, t=3)
    adamax_step_many(params, grads, ms, us, t=3)
    for got, want in zip(zip(params, ms, us), expected):
        for a, b in zip(got, (want[0], want[2], want[3])):
            assert_bitwise(a, b)


def test_labels_replace_indices_in_messages():
    params, grads, ms, us = fresh()
    grads[1] = grads[1][:3]
    with pytest.raises(ValueError, match="'fc.bias': shape mismatch"):
        check_many(params, grads, ms, us, labels=["a", "'fc.bias'", "c", "d"])


@pytest.mark.parametrize("sequence", [list, tuple])
@pytest.mark.parametrize("spoil", [None, "overlap", "dtype"])
def test_a_call_keeps_no_reference_to_the_arrays(sequence, spoil):
    import sys

    from adamax_cy import _kernel

    arrays = [np.ones(n, dtype) for n, dtype in ((3, np.float32), (70, np.float64),
                                                 (0, np.float32)) for _ in range(4)]
    quads = [arrays[4 * j: 4 * j + 4] for j in range(3)]
    if spoil == "overlap":
        quads[1][2] = quads[1][0]
    elif spoil == "dtype":
        quads[0][3] = np.ones(3, np.int64)
    seqs = [sequence(q[i] for q in quads) for i in range(4)]
    before = [sys.getrefcount(a) for q in quads for a in q]
    kw = dict(t=3, lr=0.002, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
              decoupled_weight_decay=False, maximize=False, convention="spec", num_threads=1)
    done = _kernel.step_many(*seqs, *kw.values())
    assert done == (spoil is None)
    assert _kernel.check_many_fast(*seqs) == (spoil is None)
    if spoil is None:
        _kernel.update_many(*[list(s) for s in seqs], **kw)
    assert [sys.getrefcount(a) for q in quads for a in q] == before


def test_a_sequence_that_changes_while_it_is_checked_cannot_smuggle_in_an_overlap():
    # The checks read each sequence once: a sequence giving other items on a
    # second pass (or a list another thread changes) cannot pass the
    # per-quadruple checks with one set of arrays and the overlap test with another.
    from collections.abc import Sequence

    class Changing(Sequence):
        def __init__(self, first, later):
            self.first, self.later, self.passes = first, later, 0

        def __len__(self):
            return len(self.first)

        def __getitem__(self, i):
            if i == 0:
                self.passes += 1
            return (self.first if self.passes <= 1 else self.later)[i]

    x = np.zeros(300)
    params = Changing([np.ones(100), x[50:150]], [np.ones(100), np.ones(100)])
    ms = [x[0:100], np.zeros(100)]
    before = x.copy()
    with pytest.raises(ValueError, match="overlap"):
        adamax_step_many(params, [np.ones(100), np.ones(100)], ms, [np.zeros(100), np.zeros(100)], 1)
    np.testing.assert_array_equal(x, before)
