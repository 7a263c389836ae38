"""Loops whose stores trail their loads give bitwise the plain loop's results.

Which loop runs a quadruple depends on the addresses of its four arrays
modulo 4096 (see ``store_delays`` of the loop modules): arrays cut from one
buffer at chosen spacings select each loop, and the same values at a
spacing that is a multiple of 4096 select the plain one.
"""

import importlib

import numpy as np
import pytest

from adamax_cy import _kernel, adamax_step_inplace, adamax_step_many

from test_levels import OPTIONS, awkward, bits

LEVELS = _kernel.available_levels()
PLAIN = (0, 0, 0)


def module(level):
    return importlib.import_module("adamax_cy." + _kernel._MODULES[level])


@pytest.fixture
def restore_level():
    before = _kernel.level()
    yield
    _kernel.use_level(before)


def cut(values, spacing, quadruples=1):
    """Copies of ``values`` (param, grad, m, u), ``quadruples`` times, cut from
    one buffer with ``spacing`` bytes between consecutive arrays; and the buffer."""
    n, dtype = values[0].size, values[0].dtype
    buffer = np.zeros(4 * quadruples * spacing + 8192, np.uint8)
    start = -buffer.ctypes.data % 4096 + 16
    arrays = []
    for j in range(4 * quadruples):
        at = start + j * spacing
        a = buffer[at: at + n * dtype.itemsize].view(dtype)
        a[...] = values[j % 4]
        arrays.append(a)
    return arrays, buffer


def delays_of(level, arrays):
    return module(level).store_delays(*(a.ctypes.data for a in arrays[:4]))[0]


def spacings(level, n, itemsize):
    """One spacing (bytes) per loop the layouts of this level can select,
    and a multiple of 4096 (the plain loop's)."""
    aligned = -(-(n * itemsize + 2048) // 4096) * 4096
    found = {PLAIN: aligned}
    for delta in range(-2048, 2048, 16):
        spacing = aligned + delta
        delays = module(level).store_delays(0, spacing, 2 * spacing, 3 * spacing)[0]
        found.setdefault(delays, spacing)
    return found, aligned


@pytest.mark.parametrize("level", LEVELS)
def test_every_loop_is_selected_by_some_layout_and_aligned_arrays_take_the_plain_one(level):
    for itemsize in (4, 8):
        found, aligned = spacings(level, 1037, itemsize)
        assert module(level).store_delays(0, aligned, 2 * aligned, 3 * aligned)[0] == PLAIN
        assert len(found) == 3, found
    assert module(level).store_delays(16, 4096 + 16, 8192 + 16, 12288 + 16)[0] == PLAIN


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", OPTIONS, ids=repr)
def test_trailing_stores_are_bitwise_the_plain_loop(level, dtype, options, restore_level):
    _kernel.use_level(level)
    n = 1037
    values = awkward(n, dtype, seed=11)
    found, aligned = spacings(level, n, np.dtype(dtype).itemsize)
    expected, keep = cut(values, aligned)
    assert delays_of(level, expected) == PLAIN
    with np.errstate(all="ignore"):
        adamax_step_inplace(*expected, 5, **options)
        for delays, spacing in found.items():
            got, keep = cut(values, spacing)
            assert delays_of(level, got) == delays
            adamax_step_inplace(*got, 5, **options)
            for a, b in zip(got, expected):
                np.testing.assert_array_equal(bits(a), bits(b), err_msg=f"{delays}")
            many, keep = cut(values, spacing, quadruples=3)
            adamax_step_many(many[0::4], many[1::4], many[2::4], many[3::4], 5, **options)
            for j, a in enumerate(many):
                np.testing.assert_array_equal(bits(a), bits(expected[j % 4]), err_msg=f"{delays}")


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_trailing_stores_split_between_threads_are_bitwise_the_plain_loop(level, dtype,
                                                                          restore_level):
    _kernel.use_level(level)
    n = 3 * _kernel.serial_threshold + 5
    values = awkward(n, dtype, seed=12)
    found, aligned = spacings(level, n, np.dtype(dtype).itemsize)
    expected, keep = cut(values, aligned)
    with np.errstate(all="ignore"):
        adamax_step_inplace(*expected, 9, num_threads=1)
        for delays, spacing in found.items():
            for threads in (2, 3):
                got, keep = cut(values, spacing)
                assert delays_of(level, got) == delays
                adamax_step_inplace(*got, 9, num_threads=threads)
                for a, b in zip(got, expected):
                    np.testing.assert_array_equal(bits(a), bits(b), err_msg=f"{delays}")


def kept_variants_expected(level, many):
    return [module(level).loop_variant(*(x.ctypes.data for x in q)) for q in zip(*many)]


@pytest.mark.parametrize("level", LEVELS)
def test_the_kept_variant_of_each_quadruple_is_the_one_its_loop_would_choose(level,
                                                                             restore_level):
    _kernel.use_level(level)
    values = awkward(1037, np.float32, seed=13)
    for delays, spacing in spacings(level, 1037, 4)[0].items():
        cut_arrays, keep = cut(values, spacing, quadruples=3)
        many = [cut_arrays[r::4] for r in range(4)]
        with np.errstate(all="ignore"):
            adamax_step_many(*many, 5)
        variants = _kernel.kept_tables()["variants"]
        assert variants == kept_variants_expected(level, many), delays
        assert module(level).store_delays(*(x.ctypes.data for x in cut_arrays[:4]))[0] == delays


@pytest.mark.skipif(len(LEVELS) < 2, reason="one instruction-set level built")
def test_a_level_change_forgets_the_variants_kept_for_another_level(restore_level):
    # The same arrays, stepped at one level then at another that chooses a
    # different loop for them: the second call must keep its own level's.
    values = awkward(1037, np.float32, seed=14)
    first, second = LEVELS[-1], LEVELS[0]
    for spacing in range(4096 + 1037 * 4, 2 * 8192, 16):
        addresses = (0, spacing, 2 * spacing, 3 * spacing)
        if module(first).loop_variant(*addresses) != module(second).loop_variant(*addresses):
            break
    else:
        pytest.skip("no spacing gives the two levels different loops")
    cut_arrays, keep = cut(values, spacing, quadruples=2)
    many = [cut_arrays[r::4] for r in range(4)]
    with np.errstate(all="ignore"):
        for level in (first, second):
            _kernel.use_level(level)
            adamax_step_many(*many, 5)
            assert _kernel.kept_tables()["variants"] == kept_variants_expected(level, many)
