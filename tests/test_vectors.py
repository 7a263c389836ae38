"""The test vectors: the document, its expected values, and consumers in C and JavaScript."""

from __future__ import annotations

import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import adamax_cy
from adamax_cy import _vectors
from adamax_cy.reference import adamax_trace

CONSUMERS = Path(__file__).parent / "consumers"
HYPER = ("lr", "beta1", "beta2", "eps", "weight_decay")


@pytest.fixture(scope="module")
def document() -> dict:
    return _vectors.generate_test_vectors()


@pytest.fixture(scope="module")
def vectors_file(document: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vectors") / "vectors.json"
    path.write_text(json.dumps(document))
    return path


def inputs(vector: dict) -> tuple[list[list[float]], dict]:
    arrays = [[_vectors.decode(x) for x in vector[k]] for k in ("param", "grad", "m", "u")]
    hyper = {k: _vectors.decode(vector[k]) for k in HYPER}
    hyper["decoupled_weight_decay"] = vector["decoupled_weight_decay"]
    hyper["maximize"] = vector["maximize"]
    return arrays, hyper


def kernel_result(vector: dict, step=adamax_cy.adamax_step) -> dict:
    arrays, hyper = inputs(vector)
    dtype = vector["dtype"]
    with np.errstate(all="ignore"):
        out = step(*(np.array(a, dtype=dtype) for a in arrays), vector["t"], **hyper,
                   convention=vector["convention"])
    return {k: [float(x).hex() for x in np.ravel(a)] for k, a in zip(("param", "m", "u"), out)}


# ------------------------------------------------------------- the document


def test_document_has_the_format_and_hundreds_of_vectors(document: dict) -> None:
    assert document["format"] == "adamax-test-vectors" and document["version"] == 1
    assert document["generator"] == f"adamax_cy {adamax_cy.__version__}"
    vectors = document["vectors"]
    assert len(vectors) >= 300
    assert len({v["id"] for v in vectors}) == len(vectors)
    combos = Counter((v["dtype"], v["convention"]) for v in vectors)
    assert set(combos) == {(d, c) for d in ("float32", "float64") for c in ("spec", "torch")}
    for combo, n in combos.items():
        assert n >= 100, combo
    # The cases the issue names are all there, in every dtype and convention.
    for name in ("worked-example-1", "worked-example-3", "option-l2-fresh", "option-decoupled-later",
                 "option-maximize-fresh", "grad-negative-zero-fresh", "grad-subnormal-later",
                 "grad-inf-fresh", "grad-nan-later", "grad-huge-fresh", "param-nan", "eps-zero-fresh",
                 "beta1-zero-later", "t-1000000-beta1-0.9", "magnitudes"):
        for combo in combos:
            assert f"{name}-{combo[0]}-{combo[1]}" in {v["id"] for v in vectors}, (name, combo)
    assert any(v["id"].startswith("bias-window-25") for v in vectors)
    assert any(v["id"].startswith("bias-window-54") for v in vectors)


def test_every_float_is_a_hex_string_exact_for_its_dtype(document: dict) -> None:
    for v in document["vectors"]:
        strings = [v[k] for k in HYPER]
        strings += [x for k in ("param", "grad", "m", "u") for x in v[k]]
        strings += [x for seq in v["expected"].values() for x in seq]
        for s in strings:
            assert isinstance(s, str) and (s in ("inf", "-inf", "nan") or "0x" in s), (v["id"], s)
            x = float.fromhex(s)
            if v["dtype"] == "float32" and math.isfinite(x):
                assert float(np.float32(x)) == x, (v["id"], s)
        n = len(v["param"])
        assert all(len(v[k]) == n for k in ("grad", "m", "u"))
        assert all(len(v["expected"][k]) == n for k in ("param", "m", "u"))
        assert v["tolerance"]["m"] == 0 and v["tolerance"]["u"] == 0
        assert len(v["tolerance"]["param_abs"]) == n
        # Only what an implementation needs, and what it is judged by.
        assert set(v) == set(_vectors.INPUT_FIELDS) | {"why", "expected", "tolerance"}


def console(*args: str, cwd: Path, hide: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m adamax_cy ARGS`` in a subprocess (``hide``: a module made unimportable first)."""
    start = (["-c", f"import runpy, sys; sys.modules[{hide!r}] = None; "
              "runpy.run_module('adamax_cy', run_name='__main__', alter_sys=True)"] if hide else ["-m", "adamax_cy"])
    return subprocess.run([sys.executable, *start, *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**os.environ, "PYTHONIOENCODING": "utf-8"})


def test_the_document_is_deterministic_and_round_trips(tmp_path: Path, document: dict) -> None:
    path = tmp_path / "v.json"
    proc = console("vectors", "--out", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == f"wrote {len(document['vectors'])} test vectors to {path}\n"
    assert _vectors.load_test_vectors(path) == document
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**document, "version": 99}))
    with pytest.raises(ValueError, match="version"):
        _vectors.load_test_vectors(bad)
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not an adamax-test-vectors document"):
        _vectors.load_test_vectors(bad)


@pytest.mark.parametrize("args", [["vectors"], ["vectors", "--out", "-"]], ids=["default", "dash"])
def test_the_command_writes_to_stdout(tmp_path: Path, document: dict, args: list[str]) -> None:
    proc = console(*args, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert _vectors.load_test_vectors(io.StringIO(proc.stdout)) == document
    assert list(tmp_path.iterdir()) == []


def test_the_command_needs_no_hypothesis(tmp_path: Path, document: dict) -> None:
    proc = console("vectors", "--seed", "3", cwd=tmp_path, hide="hypothesis")
    assert proc.returncode == 0, proc.stderr
    assert _vectors.load_test_vectors(io.StringIO(proc.stdout)) == _vectors.generate_test_vectors(3)
    assert _vectors.generate_test_vectors(3) != document  # the seed reaches the random vectors


@pytest.mark.parametrize("out, mentions", [
    ("{tmp}/no-such-folder/v.json", "no folder"),
    ("{tmp}", "is a folder"),
    ("{tmp}/locked/v.json", "permission denied"),
])
def test_an_unwritable_out_is_refused_before_generating(tmp_path: Path, out: str, mentions: str) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if "locked" in out and os.access(locked, os.W_OK):
            pytest.skip("this user can write into a read-only folder (root)")
        proc = console("vectors", "--out", out.format(tmp=tmp_path), cwd=tmp_path)
    finally:
        locked.chmod(0o700)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("python -m adamax_cy vectors: error:")
    assert mentions in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locked"] and not any(locked.iterdir())


@pytest.mark.parametrize("args", [["--seed", "-1"], ["--seed", "x"], ["--bogus"]])
def test_bad_arguments_are_refused_in_one_line(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    from adamax_cy import cli

    assert cli.main(["vectors", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and args[0] in captured.err


def test_the_public_functions_in_adamax_cy_testing(tmp_path: Path, document: dict) -> None:
    testing = pytest.importorskip("adamax_cy.testing")
    assert {"generate_test_vectors", "write_test_vectors", "load_test_vectors"} <= set(testing.__all__)
    assert testing.generate_test_vectors() == document
    path = tmp_path / "v.json"
    assert testing.write_test_vectors(path) == len(document["vectors"])  # a path-like
    assert testing.load_test_vectors(str(path)) == document
    out = io.StringIO()
    assert testing.write_test_vectors(out, seed=5) == len(document["vectors"])
    assert not out.closed
    assert testing.load_test_vectors(io.StringIO(out.getvalue())) == testing.generate_test_vectors(seed=5)


def test_special_inputs_are_written_as_specials(document: dict) -> None:
    by_id = {v["id"]: v for v in document["vectors"]}
    assert by_id["grad-negative-zero-fresh-float64-spec"]["grad"] == ["-0x0.0p+0"]
    assert by_id["grad-nan-fresh-float32-torch"]["grad"] == ["nan"]
    assert by_id["grad-negative-inf-later-float64-torch"]["grad"] == ["-inf"]
    assert by_id["grad-subnormal-fresh-float32-spec"]["grad"] == [float(np.finfo(np.float32).smallest_subnormal).hex()]


# --------------------------------------------- expected values, independently


def test_expected_values_agree_with_the_reference(document: dict) -> None:
    """m and u bitwise, θ bitwise too: the reference's float64/float32 modes
    (plain floats rounded per operation) against the generator's exact
    rationals rounded once per operation."""
    for v in document["vectors"]:
        arrays, hyper = inputs(v)
        for i, (p, g, m, u) in enumerate(zip(*arrays)):
            tr = adamax_trace(p, g, m, u, v["t"], convention=v["convention"], arithmetic=v["dtype"], **hyper)
            for name, got in (("m", tr.m_t), ("u", tr.u_t), ("param", tr.param_t)):
                want = _vectors.decode(v["expected"][name][i])
                assert _vectors.conforms(got, want), (v["id"], name, i, got, want)


def test_param_tolerance_is_the_contracts(document: dict) -> None:
    """At least 4 ulp(update) + 1 ulp(θ) for finite θ, 0 for a non-finite one."""
    for v in document["vectors"]:
        arrays, hyper = inputs(v)
        for i, (p, g, m, u) in enumerate(zip(*arrays)):
            tr = adamax_trace(p, g, m, u, v["t"], convention=v["convention"], arithmetic=v["dtype"], **hyper)
            tol = _vectors.decode(v["tolerance"]["param_abs"][i])
            if not math.isfinite(tr.param_t):
                assert tol == 0, v["id"]
                continue
            scale = max(abs(tr.param_decayed), abs(tr.param_t))
            floor = 4 * float(np.spacing(np.abs(np.array(tr.update, v["dtype"])))) + float(
                np.spacing(np.array(scale, v["dtype"])))
            assert floor <= tol, v["id"]
            if v["id"].startswith(("worked-example", "option-", "t-")):
                assert tol == floor, v["id"]  # no subnormal intermediate: no allowance


def test_param_abs_is_the_contracts_allowance() -> None:
    """The vectors' tolerance is the harness's bound, element by element: one definition."""
    from adamax_cy import _contract

    hyper = {"lr": 0.002, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    tr = _vectors.expected_element(0.0, 2.0**-1060, 0.0, 1.0, 1, hyper, "spec", "float64")
    assert 0 < abs(tr["m_hat"]) < float(np.finfo(np.float64).tiny)
    trace = adamax_trace(0.0, 2.0**-1060, 0.0, 1.0, 1, **hyper)
    allowed = _contract.theta_allowance(trace, 1, hyper, "float64")
    floor = 4 * float(np.spacing(abs(tr["update"]))) + float(np.spacing(0.0))
    assert _vectors.param_abs(tr, 1, hyper, "float64") == allowed > floor


@pytest.mark.parametrize("t", [1, 2, 3, 5])
def test_a_subnormal_step_size_is_allowed_for_in_the_vectors(t: int) -> None:
    """float32, lr a few smallest subnormals: c = lr/(1 - beta1**t) is subnormal, and its
    rounding reaches θ multiplied by |m_t/d|. The kernel conforms to the contract there,
    so it passes every such vector."""
    tiny = float(np.finfo(np.float32).smallest_subnormal)
    failed = []
    for k in range(1, 30):
        hyper = {"lr": k * tiny, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
        v = _vectors.make_vector(f"c-{k}", "a subnormal step size", "float32", "spec", t, hyper,
                                 [0.0], [0.0], [1e4], [0.0])
        assert v is not None
        if _vectors.check_results(v, kernel_result(v)) is not None:
            failed.append(k)
    assert failed == []


def test_round_exact_matches_numpy_rounding() -> None:
    rng = random.Random(5)
    specials = [0.5, 1.5, 2.5, float(np.finfo(np.float32).max) * 1.0000001, 2.0**-149, 2.0**-150, 3 * 2.0**-151,
                2.0**-126 * (1 - 2.0**-30), 1e39, -1e-46]
    values = specials + [rng.uniform(-1, 1) * 2.0 ** rng.randint(-160, 140) for _ in range(3000)]
    with np.errstate(over="ignore"):
        for x in values:
            assert _vectors.round_exact(Fraction(x), "float32") == float(np.float32(x)), x
            assert _vectors.round_exact(Fraction(x), "float64") == x
    # A value between two doubles, and the largest double's rounding boundary.
    q = Fraction(1) + Fraction(1, 2**53) + Fraction(1, 2**80)
    assert _vectors.round_exact(q, "float64") == 1 + 2.0**-52
    top = Fraction(2) ** 1024 - Fraction(2) ** 970  # halfway above the largest double: to infinity
    assert _vectors.round_exact(top, "float64") == math.inf
    assert _vectors.round_exact(top - 1, "float64") == float(np.finfo(np.float64).max)


def test_bias_correction_is_the_double_computation_and_bounded_in_time() -> None:
    for beta1 in (0.5, 0.9, 0.99, 0.999, 0.9999, 0.123):
        for t in (1, 2, 3, 10, 100, 1000, 5000, 10**5, 374_000, 10**7, 10**12):
            assert _vectors.bias_correction(beta1, t) == 1.0 - beta1**t, (beta1, t)


# ------------------------------------------------------------- consumers


def test_the_kernel_passes_every_vector(document: dict) -> None:
    for v in document["vectors"]:
        assert _vectors.check_results(v, kernel_result(v)) is None, v["id"]


def test_a_wrong_implementation_fails_naming_the_formula(document: dict) -> None:
    def no_bias_correction(param, grad, m, u, t, *args, **kwargs):
        return adamax_cy.adamax_step(param, grad, m, u, 10**9, *args, **kwargs)

    verdicts = [_vectors.check_results(v, kernel_result(v, no_bias_correction)) for v in document["vectors"]]
    wrong = [w for w in verdicts if w is not None]
    assert len(wrong) > 100
    assert all(w.startswith("θ:") for w in wrong)
    one_ulp_m = dict(kernel_result(document["vectors"][0]))
    m0 = float.fromhex(one_ulp_m["m"][0])
    one_ulp_m["m"] = [float(np.nextafter(np.float32(m0), np.float32(1))).hex()]
    assert _vectors.check_results(document["vectors"][0], one_ulp_m).startswith("m:")


needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


@needs_gcc
@pytest.mark.parametrize("bug, formula", [(0, None), (1, "m"), (2, "u"), (3, "theta")])
def test_c_consumer(vectors_file: Path, tmp_path: Path, bug: int, formula: str | None) -> None:
    exe = tmp_path / "adamax_vectors"
    subprocess.run(["gcc", "-O2", "-ffp-contract=off", f"-DBUG={bug}", "-o", str(exe),
                    str(CONSUMERS / "adamax_vectors.c"), "-lm"], check=True, timeout=120)
    run = subprocess.run([str(exe), str(vectors_file)], capture_output=True, text=True, timeout=120)
    n = len(json.loads(vectors_file.read_text())["vectors"])
    if formula is None:
        assert run.returncode == 0, run.stdout[-2000:]
        assert f"{n} of {n} vectors conform" in run.stdout
    else:
        assert run.returncode == 1, run.stdout[-2000:]
        failures = [line for line in run.stdout.splitlines() if line.startswith("FAIL")]
        assert failures and all(f": {formula} element" in line for line in failures)


@needs_node
def test_javascript_consumer(document: dict, vectors_file: Path, tmp_path: Path) -> None:
    results = {v["id"]: kernel_result(v) for v in document["vectors"]}
    good = tmp_path / "results.json"
    good.write_text(json.dumps(results))
    script = str(CONSUMERS / "check_vectors.js")
    run = subprocess.run(["node", script, str(vectors_file), str(good)], capture_output=True, text=True,
                         timeout=120)
    n = len(document["vectors"])
    assert run.returncode == 0, run.stdout[-2000:]
    assert f"{n} of {n} vectors conform" in run.stdout
    # One value changed in each of three vectors: m by one ulp, -0 for +0, θ beyond its tolerance.
    by_id = {v["id"]: v for v in document["vectors"]}
    a, b, c = "worked-example-1-float64-spec", "grad-zero-fresh-float64-torch", "worked-example-3-float32-torch"
    m = float.fromhex(results[a]["m"][0])
    results[a]["m"][0] = float(np.nextafter(m, 1.0)).hex()
    assert results[b]["param"][0] == by_id[b]["expected"]["param"][0]
    results[b]["m"][0] = "-0x0.0p+0" if results[b]["m"][0] == "0x0.0p+0" else "0x0.0p+0"
    theta = float.fromhex(results[c]["param"][0])
    results[c]["param"][0] = (theta + 2 * float.fromhex(by_id[c]["tolerance"]["param_abs"][0])).hex()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(results))
    run = subprocess.run(["node", script, str(vectors_file), str(bad)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1
    assert sorted(run.stdout.splitlines()[:-1]) == sorted(
        [f"FAIL {a}: m[0]", f"FAIL {b}: m[0]", f"FAIL {c}: param[0]"])
    assert f"{n - 3} of {n} vectors conform" in run.stdout


def test_vectors_run_through_a_harness_adapter(document: dict) -> None:
    testing = pytest.importorskip("adamax_cy.testing")
    everything = ("weight_decay", "decoupled_weight_decay", "maximize")
    for dtype in ("float32", "float64"):
        for convention in ("spec", "torch"):
            vectors = _vectors.applicable(document, dtype, convention, everything)
            assert len(vectors) == sum(v["dtype"] == dtype and v["convention"] == convention
                                       for v in document["vectors"])
            adapter = testing.functional(adamax_cy.adamax_step, convention=convention)
            assert _vectors.run_on(adapter, vectors) == (len(vectors), None)
    plain = _vectors.applicable(document, "float32", "spec", nonfinite=False)
    assert all("maximize" not in v["id"] and "nan" not in v["id"] for v in plain)

    def late_bias_correction(param, grad, m, u, t, *args, **kwargs):
        return adamax_cy.adamax_step(param, grad, m, u, min(t, 100), *args, **kwargs)

    count, wrong = _vectors.run_on(testing.functional(late_bias_correction), plain)
    assert wrong is not None and wrong["formula"] == "θ" and wrong["vector"].startswith("t-1000-")
