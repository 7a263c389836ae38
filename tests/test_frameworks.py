"""Named allowances for the frameworks' known departures, and the frameworks report."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hypothesis")

from adamax_cy import testing  # noqa: E402
from adamax_cy.testing import frameworks  # noqa: E402


def numpy_step(*, lerp: bool = False, flush: bool = False, float32_bias_correction: bool = False,
               no_bias_correction: bool = False):
    """A functional float32/float64 Adamax (torch convention) with chosen departures."""

    def step(param, grad, m, u, t, lr, beta1, beta2, eps):
        dtype = np.asarray(param).dtype
        if dtype not in (np.float32, np.float64):
            dtype = np.dtype(np.float64)

        def r(x):
            x = np.asarray(x, dtype=dtype)
            if flush:
                x = np.where(np.abs(x) < np.finfo(dtype).tiny, np.copysign(np.zeros_like(x), x), x)
            return x

        with np.errstate(all="ignore"):
            p, g, m, u = (r(a) for a in (param, grad, m, u))
            b1, b2, e = r(beta1), r(beta2), r(eps)
            w = r(1.0 - beta1)
            m_t = r(m + r(r(g - m) * w)) if lerp else r(r(b1 * m) + r(w * g))
            u_t = np.maximum(r(b2 * u), r(np.abs(g) + e))
            if no_bias_correction:
                bc = r(1.0)
            elif float32_bias_correction:
                bc = r(np.float32(1) - np.power(np.float32(beta1), np.float32(t)))
            else:
                bc = r(1.0 - beta1**t)
            m_hat = r(m_t / bc)
            theta = r(p - r(r(r(lr) / u_t) * m_hat))
        if np.ndim(param) == 0 and not isinstance(param, np.ndarray):
            return float(theta), float(m_t), float(u_t)
        return theta, m_t, u_t

    return step


def conforms(step, allowances, dtype="float32", **kwargs) -> tuple[bool, object]:
    report, _ = frameworks.check(testing.functional(step), allowances, "torch", dtype,
                                  max_examples=kwargs.pop("max_examples", 60), seed=3, **kwargs)
    return report.conforms, report


def test_the_reference_order_needs_no_allowance() -> None:
    ok, report = conforms(numpy_step(), [])
    assert ok, report


def test_lerp_is_rejected_strictly_and_accepted_by_its_allowance() -> None:
    ok, report = conforms(numpy_step(lerp=True), [])
    assert not ok and report.mismatch.formula == "m"
    ok, report = conforms(numpy_step(lerp=True), ["lerp"])
    assert ok, report


def test_flushing_subnormals_is_rejected_strictly_and_accepted_by_its_allowance() -> None:
    ok, report = conforms(numpy_step(flush=True), [])
    assert not ok
    ok, report = conforms(numpy_step(flush=True), ["flush-subnormals"])
    assert ok, report


def test_a_float32_bias_correction_needs_its_allowance_where_beta1_is_near_one() -> None:
    ok, report = conforms(numpy_step(float32_bias_correction=True), [], options={"beta1": 0.9999})
    assert not ok and report.mismatch.formula == "θ"
    ok, report = conforms(numpy_step(float32_bias_correction=True), ["float32-bias-correction"],
                          options={"beta1": 0.9999})
    assert ok, report


def test_no_allowance_hides_a_wrong_bias_correction() -> None:
    everything = list(frameworks.ALLOWANCES)
    for beta1 in (0.9, 0.9999):
        ok, report = conforms(numpy_step(no_bias_correction=True), everything, options={"beta1": beta1})
        assert not ok and report.mismatch.formula == "θ", report


def test_the_bias_correction_bound_holds_where_it_is_tight() -> None:
    """ρ bounds float32's 1 − β1^t against the contract's, and is not loose by orders of magnitude."""
    worst_ratio = 0.0
    for beta1 in (0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999):
        b32 = float(np.float32(beta1))
        for t in list(range(1, 200)) + [1000, 10_000, 100_000]:
            ours = float(np.float32(1) - np.power(np.float32(b32), np.float32(t)))
            contract = float(np.float32(1.0 - b32**t))
            if ours == contract:
                continue
            rho = frameworks.bias_correction_bound(b32, t)
            observed = abs(ours - contract) / contract
            assert observed <= rho, (beta1, t, observed, rho)
            worst_ratio = max(worst_ratio, observed / rho)
    assert worst_ratio > 0.05  # the bound is within a factor 20 of what float32 really does
    assert frameworks.bias_correction_bound(0.9999, 1) < 1e-2
    assert math.isinf(frameworks.bias_correction_bound(1.0, 3))


INSTALLED = frameworks.installed()


@pytest.mark.parametrize("framework", list(frameworks.FRAMEWORKS))
def test_report_runs_each_installed_framework(framework: str) -> None:
    reason = INSTALLED[framework]
    if reason is not None:
        pytest.skip(reason)
    rows = frameworks._subprocess_run(framework, "float32", max_examples=5, seed=0, timeout=600, quick=True)
    assert all("error" not in r for r in rows), rows
    assert [(r["convention"], r["options"]) for r in rows] == [("spec", {}), ("torch", {})]
    native = "spec" if framework.startswith("keras") else "torch"
    for r in rows:
        assert set(r["allowances"]) <= set(frameworks.ALLOWANCES)
        if r["convention"] == native:
            assert r["verdict"] == "conforms", r
        else:  # where eps goes is not an allowance: the other convention is rejected at u
            assert r["verdict"] == "does not conform" and r["first_wrong"]["formula"] == "u", r
    doc = {"date": "d", "platform": "p", "python": "3", "adamax_cy": "v", "max_examples": 5, "seed": 0,
           "skipped": {}, "results": rows}
    table = frameworks.markdown(doc)
    assert sum(line.startswith(f"| {framework} |") for line in table.splitlines()) == len(rows)


# ------------------------------------------------- from the shell, end to end


def console(*args: str, cwd: Path, module: str = "adamax_cy") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=900,
                          cwd=cwd, env={**os.environ, "PYTHONIOENCODING": "utf-8"})


def test_the_command_knows_the_frameworks_of_the_report() -> None:
    from adamax_cy import cli

    parser = cli.app.build_parser("frameworks")
    sub = next(a for a in parser._actions if a.dest == "command").choices["frameworks"]
    choices = {a.dest: a.choices for a in sub._actions}
    assert list(choices["framework"]) == list(choices["one"]) == list(frameworks.FRAMEWORKS)


def test_the_frameworks_command_writes_the_report(tmp_path: Path) -> None:
    if INSTALLED["torch"] is not None:
        pytest.skip(INSTALLED["torch"])
    proc = console("frameworks", "--framework", "torch", "--max-examples", "2", "--out", "report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "report.json").read_text())
    rows = doc["results"]
    assert {(r["dtype"], r["convention"]) for r in rows} == {(d, c) for d in ("float32", "float64")
                                                             for c in ("spec", "torch")}
    assert all(r["framework"] == "torch" and "error" not in r for r in rows), rows
    assert {r["verdict"] for r in rows if r["convention"] == "torch"} == {"conforms"}
    table = (tmp_path / "report.md").read_text()
    assert proc.stdout == table
    assert sum(line.startswith("| torch |") for line in table.splitlines()) == len(rows)


def test_frameworks_not_installed_are_listed_as_skipped(tmp_path: Path) -> None:
    missing = [name for name, reason in INSTALLED.items() if reason is not None]
    if not missing:
        pytest.skip("every framework is installed")
    proc = console("--framework", missing[0], "--out", "report", cwd=tmp_path, module="adamax_cy.testing.frameworks")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["results"] == [] and doc["skipped"] == {missing[0]: INSTALLED[missing[0]]}
    assert f"Not installed: {missing[0]} ({INSTALLED[missing[0]]})" in proc.stdout


@pytest.mark.parametrize("module", ["adamax_cy", "adamax_cy.testing.frameworks"])
@pytest.mark.parametrize("args, mentions", [
    (["--out", "no-such-folder/report"], "no folder"),
    (["--framework", "mxnet"], "mxnet"),
    (["--max-examples", "0"], "--max-examples"),
    (["--timeout", "nan"], "--timeout"),
])
def test_refusals_are_one_line_before_any_run(tmp_path: Path, module: str, args: list[str], mentions: str) -> None:
    argv = (["frameworks"] if module == "adamax_cy" else []) + args
    proc = console(*argv, cwd=tmp_path, module=module)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "error:" in proc.stderr and mentions in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_conform_accounts_for_a_named_allowance_and_says_so(tmp_path, monkeypatch, capsys) -> None:
    from adamax_cy.cli import main

    (tmp_path / "flushing_step.py").write_text(
        "from test_frameworks import numpy_step\nstep = numpy_step(flush=True)\n")
    monkeypatch.chdir(tmp_path)
    argv = ["conform", "flushing_step:step", "--convention", "torch", "--dtype", "float32",
            "--max-examples", "60", "--seed", "3"]
    assert main(argv) == 1
    assert "DOES NOT CONFORM" in capsys.readouterr().out
    assert main([*argv, "--allow", "flush-subnormals"]) == 0
    out = capsys.readouterr().out
    assert "allowances: flush-subnormals" in out and "elements skipped" in out
    assert main([*argv, "--allow", "flush-subnormals", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["allowances"] == ["flush-subnormals"]


def test_conform_refuses_an_unknown_allowance(capsys) -> None:
    from adamax_cy.cli import main

    assert main(["conform", "adamax_cy:adamax_step", "--allow", "anything"]) == 2
    assert "invalid choice" in capsys.readouterr().err
