"""The command line: every command in a quick mode, its output and exit status."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import adamax_cy
from adamax_cy import cli
from adamax_cy.cli import app, examples
from adamax_cy.reference import WORKED_EXAMPLES, adamax_trace

QUICK_DEMO = ["demo", "--size", "400", "--steps", "30", "--samples", "64"]


def _run(cwd, *args: str) -> subprocess.CompletedProcess[str]:
    # Run outside the checkout, so the installed package is the one run.
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "adamax_cy", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


def _elements(example):
    """The example's inputs as (param, grad, m, u) tuples, one per element."""
    values = [x if isinstance(x, list) else [x] for x in (example.param, example.grad, example.m, example.u)]
    return list(zip(*values))


def _fmt(x: float, dtype: str) -> str:
    return str(np.float32(x)) if dtype == "float32" else repr(float(x))


@pytest.fixture(params=["rich", "plain"])
def output_mode(request, monkeypatch):
    """Run a test with rich's tables, and again with rich hidden (plain text)."""
    if request.param == "rich":
        pytest.importorskip("rich")
    else:
        for name in [n for n in sys.modules if n == "rich" or n.startswith("rich.")]:
            monkeypatch.setitem(sys.modules, name, None)
        monkeypatch.setitem(sys.modules, "rich", None)
    return request.param


# --------------------------------------------------------------------------
# The main job, as installed users run it.


def test_no_arguments_runs_examples_and_demo(tmp_path):
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout
    assert "All 3 worked examples agree." in out
    for example in WORKED_EXAMPLES:
        for element in _elements(example):
            trace = adamax_trace(*element, example.t)
            for value in (trace.param_t, trace.m_t, trace.u_t):
                assert repr(value) in out
    for label in ("softmax regression", "loss", "steps/s", "threads", "1,001,000"):
        assert label in out


def test_bad_argument_in_a_subprocess_is_one_line_and_exit_2(tmp_path):
    proc = _run(tmp_path, "demo", "--steps", "0")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("python -m adamax_cy demo: error:")
    assert "--steps" in proc.stderr


def test_import_stays_light(tmp_path):
    code = (
        "import sys, adamax_cy; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'tqdm') "
        "or m == 'adamax_cy.cli'))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --------------------------------------------------------------------------
# examples


@pytest.mark.parametrize("convention", ["spec", "torch"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_examples_table_shows_reference_and_kernel(convention, dtype, output_mode, capsys):
    assert cli.main(["examples", "--convention", convention, "--dtype", dtype]) == 0
    out = capsys.readouterr().out
    assert f"{convention} convention, {dtype}" in out
    assert "All 3 worked examples agree." in out
    assert "NO" not in out
    for example in WORKED_EXAMPLES:
        for element in _elements(example):
            trace = adamax_trace(*element, example.t, convention=convention, arithmetic=dtype)
            for value in (trace.param_t, trace.m_t, trace.u_t):
                assert _fmt(value, dtype) in out


@pytest.mark.parametrize("convention", ["spec", "torch"])
def test_examples_trace_shows_every_intermediate(convention, output_mode, capsys):
    assert cli.main(["examples", "--trace", "--convention", convention]) == 0
    out = capsys.readouterr().out
    example = WORKED_EXAMPLES[2]
    trace = adamax_trace(*_elements(example)[0], example.t, convention=convention)
    for field in ("m_hat", "bias_correction", "denominator", "step_size", "update"):
        assert field in out
        assert repr(getattr(trace, field)) in out
    assert ("|g| + ε" in out) == (convention == "torch")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_examples_json(dtype, capsys):
    assert cli.main(["examples", "--json", "--trace", "--dtype", dtype]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["all_agree"] is True
    assert (doc["convention"], doc["dtype"]) == ("spec", dtype)
    assert [item["number"] for item in doc["examples"]] == [ex.number for ex in WORKED_EXAMPLES]
    for example, item in zip(WORKED_EXAMPLES, doc["examples"]):
        traces = [adamax_trace(*e, example.t, arithmetic=dtype) for e in _elements(example)]
        assert item["computed"]["m"] == [tr.m_t for tr in traces]
        assert item["computed"]["u"] == [tr.u_t for tr in traces]
        assert item["reference"]["param"] == [tr.param_t for tr in traces]
        assert [t["m_hat"] for t in item["trace"]] == [tr.m_hat for tr in traces]
        tolerance = 0.5 * 10.0**-example.places
        expected = example.expected[0]
        for got, want in zip(item["computed"]["param"], expected if isinstance(expected, list) else [expected]):
            assert abs(got - want) <= tolerance


def _no_bias_correction(param, grad, m, u, t, **options):
    """A wrong Adamax (m is not bias-corrected), to see the command catch it."""
    m_t = 0.9 * m + 0.1 * grad
    u_t = np.maximum(0.999 * u, np.abs(grad))
    return param - 0.002 / (u_t + 1e-8) * m_t, m_t, u_t


def test_examples_fail_when_the_kernel_is_wrong(monkeypatch, capsys):
    monkeypatch.setattr(examples, "adamax_step", _no_bias_correction)
    assert cli.main(["examples"]) == 1
    out = capsys.readouterr().out
    assert "NO" in out
    assert "DO NOT agree" in out
    assert cli.main(["examples", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["all_agree"] is False
    assert all(item["agrees_with_spec"] is False for item in doc["examples"])


# --------------------------------------------------------------------------
# demo and info


def test_demo_table(output_mode, capsys):
    assert cli.main(QUICK_DEMO) == 0
    out = capsys.readouterr().out
    for label in ("softmax regression", "20 features × 20 classes", "420 (float32)", "steps/s", "threads"):
        assert label in out


def test_demo_json_trains_and_threads_do_not_change_results(capsys):
    # 200 features x 200 classes: more parameters than the serial threshold.
    argv = ["demo", "--size", "40000", "--steps", "20", "--samples", "64", "--json", "--dtype", "float64"]
    docs = []
    for threads in ("1", "2"):
        assert cli.main(argv + ["--threads", threads]) == 0
        docs.append(json.loads(capsys.readouterr().out))
    first, second = docs
    config = adamax_cy.show_config(as_dict=True)
    assert first["parameters"] == 200 * 200 + 200 > config["serial_threshold"]
    assert (first["steps"], first["samples"], first["dtype"]) == (20, 64, "float64")
    assert first["loss_after"] < first["loss_before"]
    assert first["loss_before"] == pytest.approx(np.log(200))  # zero weights: uniform
    assert (first["num_threads"], second["num_threads"]) == (1, 2)
    assert first["threads"] == 1
    assert second["threads"] == (2 if config["openmp"] else 1)
    for key in ("loss_before", "loss_after", "accuracy_before", "accuracy_after"):
        assert first[key] == second[key]


def test_demo_seed_changes_the_data(capsys):
    losses = []
    for seed in ("1", "2"):
        assert cli.main(QUICK_DEMO + ["--json", "--seed", seed]) == 0
        losses.append(json.loads(capsys.readouterr().out)["loss_after"])
    assert losses[0] != losses[1]


def test_info(output_mode, capsys):
    assert cli.main(["info", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == json.loads(json.dumps(adamax_cy.show_config(as_dict=True)))
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for key in doc:
        assert key in out
    for key in ("version", "openmp", "default_threads", "numpy"):
        assert str(doc[key]) in out


# --------------------------------------------------------------------------
# --help and bad arguments


@pytest.mark.parametrize("command", [[], ["examples"], ["demo"], ["info"], ["vectors"], ["frameworks"]])
def test_help(command, capsys):
    assert cli.main(command + ["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:")
    if not command:
        for name in ("examples", "demo", "info", "vectors", "bench", "conform", "frameworks"):
            assert name in out


def test_help_lists_every_command_from_the_console(tmp_path):
    proc = _run(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split("commands:", 1)[1]
    for name in [*app.COMMANDS, *app.PLUGINS]:
        assert f"\n    {name} " in listed or f"\n    {name}\n" in listed, name


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert adamax_cy.__version__ in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, mentions",
    [
        (["nope"], "invalid choice"),
        (["examples", "--convention", "jax"], "--convention"),
        (["examples", "--dtype", "float16"], "--dtype"),
        (["examples", "--bogus"], "--bogus"),
        (["demo", "--steps", "0"], "--steps"),
        (["demo", "--size", "abc"], "--size"),
        (["demo", "--threads", "-1"], "--threads"),
        (["demo", "--lr", "nan"], "--lr"),
        (["demo", "--seed", "-3"], "--seed"),
        (["info", "extra"], "extra"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(argv, mentions, capsys):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "error:" in captured.err
    assert mentions in captured.err


# --------------------------------------------------------------------------
# bench and conform: the modules of other commands, faked here


def _fake_plugin(name: str, status: int = 0) -> types.ModuleType:
    module = types.ModuleType(name)
    seen: list[argparse.Namespace] = []

    def configure_parser(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--quick", action="store_true", help="a short run")

    def run(args: argparse.Namespace) -> int:
        seen.append(args)
        print(f"{name} ran")
        return status

    module.configure_parser = configure_parser  # type: ignore[attr-defined]
    module.run = run  # type: ignore[attr-defined]
    module.seen = seen  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize(
    "command, module_name",
    [("bench", "adamax_cy.bench"), ("conform", "adamax_cy.cli.conform"),
     ("frameworks", "adamax_cy.cli.frameworks")],
)
def test_plugin_commands_are_wired(command, module_name, monkeypatch, capsys):
    fake = _fake_plugin(module_name)
    monkeypatch.setitem(sys.modules, module_name, fake)
    assert cli.main([command, "--quick"]) == 0
    assert f"{module_name} ran" in capsys.readouterr().out
    assert fake.seen[0].quick is True
    assert cli.main([command, "--help"]) == 0
    assert "--quick" in capsys.readouterr().out
    assert cli.main([command, "--slow"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_plugin_status_is_the_exit_status(monkeypatch):
    monkeypatch.setitem(sys.modules, "adamax_cy.bench", _fake_plugin("adamax_cy.bench", status=1))
    assert cli.main(["bench"]) == 1


def test_conform_falls_back_to_testing(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "adamax_cy.cli.conform", None)
    monkeypatch.setitem(sys.modules, "adamax_cy.testing", _fake_plugin("adamax_cy.testing"))
    assert cli.main(["conform"]) == 0
    assert "adamax_cy.testing ran" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["bench", "conform", "frameworks"])
def test_missing_plugin_is_one_line_and_exit_2(command, monkeypatch, capsys):
    for name in app.PLUGINS[command][1]:
        monkeypatch.setitem(sys.modules, name, None)
    assert cli.main([command, "--quick"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert f"the '{command}' command is not available" in captured.err
    # The rest of the command line is unaffected.
    assert cli.main(["--help"]) == 0
    assert command in capsys.readouterr().out


def test_plugin_with_missing_dependency(tmp_path, monkeypatch, capsys):
    (tmp_path / "bench.py").write_text("import a_package_that_is_not_installed\n")
    monkeypatch.setattr(adamax_cy, "__path__", [str(tmp_path), *adamax_cy.__path__])
    monkeypatch.delitem(sys.modules, "adamax_cy.bench", raising=False)
    assert cli.main(["bench"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert "a_package_that_is_not_installed" in captured.err
    assert "Traceback" not in captured.err


def test_console_script_is_declared():
    from importlib.metadata import entry_points

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("adamax-cy") == "adamax_cy.cli:main"


@pytest.mark.parametrize("module", ["app", "examples", "demo", "render"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"adamax_cy.cli.{module}"), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_no_command_imports_the_harness_unless_chosen(tmp_path):
    """hypothesis (through adamax_cy.testing) is imported by conform and frameworks only."""
    code = (
        "import sys; from adamax_cy.cli import main; main(['info', '--json']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'hypothesis' or m == 'adamax_cy.testing'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
