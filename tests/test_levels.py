"""Every instruction-set level of the element loops gives bitwise the baseline's results."""

import os
import subprocess
import sys

import numpy as np
import pytest

from adamax_cy import _kernel, adamax_step_inplace, adamax_step_many, show_config

LEVELS = _kernel.available_levels()
OPTIONS = [
    {},
    {"convention": "torch"},
    {"maximize": True, "weight_decay": 0.01},
    {"weight_decay": 0.1, "decoupled_weight_decay": True},
    {"eps": 0.0},
    {"eps": 1e-50},  # 0 once rounded to float32
    {"convention": "torch", "eps": 0.0},
    {"convention": "torch", "weight_decay": 0.1},
    {"convention": "torch", "maximize": True, "weight_decay": 0.1,
     "decoupled_weight_decay": True},
]


@pytest.fixture
def restore_level():
    before = _kernel.level()
    yield
    _kernel.use_level(before)


def awkward(n, dtype, seed):
    """param, grad, m, u with special values among ordinary ones; n not a multiple of 16."""
    rng = np.random.default_rng(seed)
    info = np.finfo(dtype)
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, info.tiny, info.tiny / 4,
                        info.max, -info.max, 1.0, -1.0], dtype=dtype)
    arrays = []
    for _ in range(4):
        a = (rng.standard_normal(n) * 10.0 ** rng.integers(-20, 20, n)).astype(dtype)
        a[rng.integers(0, n, n // 8)] = rng.choice(special, n // 8)
        arrays.append(a)
    arrays[2][: n // 10] = 0  # m = 0 and u = 0: the eps = 0 case of the update
    arrays[3][: n // 10] = 0
    arrays[1][: n // 20] = 0
    arrays[3] = np.abs(arrays[3])
    # NaNs of a different payload in each array, at the same elements: which
    # one a sum of two NaNs gives must not depend on the loop or the level.
    uint = np.uint32 if dtype == np.float32 else np.uint64
    nan = np.array(np.inf, dtype).view(uint) | uint(1 << (info.nmant - 1))
    where = rng.integers(0, n, (3, n // 32))
    for which, at in (((1, 2), where[0]), ((0, 1), where[1]), ((0, 1, 2, 3), where[2])):
        for j in which:
            arrays[j].view(uint)[at] = nan | uint(j + 3)
    return arrays


def bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", OPTIONS, ids=repr)
def test_level_is_bitwise_the_baseline(level, dtype, options, restore_level):
    n = 1037
    results = {}
    for name in ("baseline", level):
        _kernel.use_level(name)
        p, g, m, u = awkward(n, dtype, seed=7)
        with np.errstate(all="ignore"):
            adamax_step_inplace(p, g, m, u, 3, **options)
        results[name] = (p, m, u)
    for got, expected in zip(results[level], results["baseline"]):
        np.testing.assert_array_equal(bits(got), bits(expected))


@pytest.mark.parametrize("level", LEVELS)
def test_level_many_is_bitwise_the_baseline(level, restore_level):
    results = {}
    for name in ("baseline", level):
        _kernel.use_level(name)
        quads = [awkward(n, dtype, seed=n) for n, dtype in
                 ((5, np.float32), (300, np.float64), (1037, np.float32), (17, np.float64))]
        with np.errstate(all="ignore"):
            adamax_step_many(*[[q[i] for q in quads] for i in range(4)], 2)
        results[name] = [q[i] for q in quads for i in (0, 2, 3)]
    for got, expected in zip(results[level], results["baseline"]):
        np.testing.assert_array_equal(bits(got), bits(expected))


def test_the_level_in_use_is_available_and_reported():
    assert "baseline" in LEVELS
    assert _kernel.level() in LEVELS
    assert show_config(as_dict=True)["level"] == _kernel.level()
    with pytest.raises(ValueError, match="not available"):
        _kernel.use_level("nonesuch")


def test_environment_variable_caps_the_level(tmp_path):
    env = dict(os.environ, ADAMAX_CY_LEVEL="baseline")
    out = subprocess.run(  # outside the checkout, so the installed package is imported
        [sys.executable, "-c", "from adamax_cy import _kernel; print(_kernel.level())"],
        env=env, capture_output=True, text=True, check=True, cwd=tmp_path,
    )
    assert out.stdout.strip() == "baseline"


def test_stubs_match_the_loop_modules(tmp_path):
    modules = [f"adamax_cy.{_kernel._MODULES[name]}" for name in LEVELS]
    out = subprocess.run([sys.executable, "-m", "mypy.stubtest", *modules],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
