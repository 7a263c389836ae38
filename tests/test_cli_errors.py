"""The command line in hostile conditions: every refusal is one line and exit 2,
output that cannot be written is one line, and what is written can be read
(ASCII names on a terminal that cannot show others; strict JSON)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from adamax_cy import cli

QUICK_DEMO = ["demo", "--size", "400", "--steps", "30", "--samples", "64"]

# The command line as a script outside the package, as the console script
# runs it; ``hide`` names modules to make unimportable first.
_SCRIPT = (
    "import sys\n"
    "for name in sys.argv[1].split(','):\n"
    "    if name:\n"
    "        sys.modules[name] = None\n"
    "from adamax_cy.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def _run(args, *, cwd, env=None, hide=(), stdout=subprocess.PIPE):
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT, ",".join(hide), *args],
        stdout=stdout, stderr=subprocess.PIPE, timeout=120, cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def _one_line_error(err: str) -> None:
    assert err.count("\n") == 1, err
    assert "error:" in err and "Traceback" not in err, err


# --------------------------------------------------------------------------
# Output that the terminal cannot encode: ASCII names instead of a crash.

ENCODINGS = [
    {"PYTHONIOENCODING": "latin-1"},
    {"PYTHONIOENCODING": "ascii"},
    {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""},
]


@pytest.mark.parametrize("hide", [(), ("rich",)], ids=["rich", "plain"])
@pytest.mark.parametrize("env", ENCODINGS, ids=["latin-1", "ascii", "C-locale"])
@pytest.mark.parametrize("args", [["examples", "--trace"], QUICK_DEMO], ids=["examples", "demo"])
def test_a_terminal_that_cannot_show_greek_gets_ascii_names(args, env, hide, tmp_path):
    proc = _run(args, cwd=tmp_path, env=env, hide=hide)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stderr == b""
    encoding = env["PYTHONIOENCODING"] or "ascii"
    out = proc.stdout.decode(encoding)
    assert "?" not in out  # nothing replaced blindly
    if args[0] == "examples":
        assert "theta" in out and "beta1" in out and "eps" in out
        assert "All 3 worked examples agree." in out
    else:
        assert "20 features x 20 classes" in out and "->" in out


def test_the_main_job_on_a_latin_1_terminal(tmp_path):
    proc = _run([], cwd=tmp_path, env={"PYTHONIOENCODING": "latin-1"})
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    out = proc.stdout.decode("latin-1")
    assert "All 3 worked examples agree." in out and "softmax regression" in out


# --------------------------------------------------------------------------
# Strict JSON


def _strict(text: str):
    def refuse(name: str):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_demo_json_is_strict_when_training_diverges(capsys):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the divergence is reported once, as the loss
        assert cli.main(QUICK_DEMO + ["--lr", "1e308", "--json"]) == 1  # the loss is not finite
    doc = _strict(capsys.readouterr().out)
    assert doc["loss_after"] == "nan"
    assert doc["lr"] == 1e308


# --------------------------------------------------------------------------
# Refusals: one line on stderr, exit 2, before any work


@pytest.fixture
def no_work(monkeypatch):
    """Make any benchmark run fail the test: refusals must come first."""
    from adamax_cy.bench import runner

    def forbidden(*args, **kwargs):
        raise AssertionError("the benchmark started before the arguments were checked")

    monkeypatch.setattr(runner, "benchmark", forbidden)
    monkeypatch.setattr(runner, "measure_threshold", forbidden)


@pytest.mark.parametrize(
    "argv, mentions",
    [
        (QUICK_DEMO + ["--threads", "5000"], "5000"),
        (["bench", "--batch-time", "nan"], "--batch-time"),
        (["bench", "--batch-time", "-1"], "--batch-time"),
        (["bench", "--batch-time", "0"], "--batch-time"),
        (["bench", "--batches", "0"], "--batches"),
        (["bench", "--batches", "-2"], "--batches"),
        (["bench", "--sizes", "99999999999999999999"], "--sizes"),
        (["bench", "--sizes", "1e400"], "--sizes"),
        (["bench", "--sizes", "1.5"], "--sizes"),
        (["bench", "--only", "bogus"], "bogus"),
        (["bench", "--dtypes", "float16"], "float16"),
        (["bench", "--json", "/nonexistent/x.json"], "/nonexistent"),
        (["bench", "--markdown", "/nonexistent/x.md"], "/nonexistent"),
        (["bench", "--plot", "/nonexistent/x.png"], "/nonexistent"),
        (["bench", "--threshold", "--json", "/nonexistent/x.json"], "/nonexistent"),
    ],
)
def test_refusals_are_one_line_and_exit_2(argv, mentions, no_work, capsys):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    _one_line_error(captured.err)
    assert mentions in captured.err


def test_a_folder_is_not_a_file_to_write(tmp_path, no_work, capsys):
    assert cli.main(["bench", "--json", str(tmp_path)]) == 2
    _one_line_error(capsys.readouterr().err)


def test_plot_needs_a_format_matplotlib_writes(tmp_path, no_work, capsys):
    pytest.importorskip("matplotlib")
    assert cli.main(["bench", "--plot", str(tmp_path / "bench.nosuchformat")]) == 2
    _one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "bench.nosuchformat").exists()


def test_plot_without_matplotlib_says_how_to_install_it(tmp_path, no_work, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert cli.main(["bench", "--plot", str(tmp_path / "bench.png")]) == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert 'pip install ".[bench]"' in err and "adamax_cy[" not in err


def test_the_benchmark_on_its_own_refuses_the_same_way(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "adamax_cy.bench", "--only", "bogus"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    _one_line_error(proc.stderr)
    assert "bogus" in proc.stderr


def test_a_system_exit_message_is_printed(monkeypatch, capsys):
    import types

    from adamax_cy.cli import app

    module = types.ModuleType("adamax_cy.bench")
    module.configure_parser = lambda parser: None  # type: ignore[attr-defined]

    def run(args):
        raise SystemExit("something is wrong")

    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "adamax_cy.bench", module)
    assert app.main(["bench"]) == 2
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "something is wrong" in err


# --------------------------------------------------------------------------
# Output that cannot be written


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("hide", [(), ("rich",)], ids=["rich", "plain"])
@pytest.mark.parametrize("args", [["info"], ["info", "--json"], ["examples"]])
def test_a_full_disk_is_one_line(args, hide, tmp_path):
    with open("/dev/full", "w") as full:
        proc = _run(args, cwd=tmp_path, hide=hide, stdout=full)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    _one_line_error(err)
    assert "No space left on device" in err


# --------------------------------------------------------------------------
# conform


def test_conform_finds_modules_in_the_current_folder(tmp_path):
    pytest.importorskip("hypothesis")
    (tmp_path / "mine.py").write_text(
        "from adamax_cy import adamax_step\n"
        "def step(*args, **kw):\n"
        "    return adamax_step(*args, **kw)\n"
    )
    # As the console script runs: the script's own folder first on sys.path, not the current one.
    script = tmp_path / "bin" / "adamax-cy"
    script.parent.mkdir()
    script.write_text("import sys\nfrom adamax_cy.cli import main\nsys.exit(main())\n")
    env = {**os.environ}
    proc = subprocess.run(
        [sys.executable, str(script), "conform", "mine:step", "--max-examples", "5", "--seed", "1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "CONFORMS" in proc.stdout


def test_conform_called_in_process_leaves_sys_path_as_it_was(tmp_path, monkeypatch):
    pytest.importorskip("hypothesis")
    from adamax_cy.cli import main

    (tmp_path / "mine_in_process.py").write_text(
        "from adamax_cy import adamax_step\n"
        "def step(*args, **kw):\n"
        "    return adamax_step(*args, **kw)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    before = list(sys.path)
    assert main(["conform", "mine_in_process:step", "--max-examples", "3", "--seed", "1"]) == 0
    assert sys.path == before


def test_conform_help_without_hypothesis_shows_usage_and_how_to_install(tmp_path):
    proc = _run(["conform", "--help"], cwd=tmp_path, hide=("hypothesis",))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert out.startswith("usage:")
    assert "target" in out and "--convention" in out
    assert 'pip install ".[testing]"' in out


def test_conform_without_hypothesis_is_one_line_and_exit_2(tmp_path):
    proc = _run(["conform", "mine:step"], cwd=tmp_path, hide=("hypothesis",))
    assert proc.returncode == 2
    assert proc.stdout == b""
    err = proc.stderr.decode()
    _one_line_error(err)
    assert "hypothesis" in err and 'pip install ".[testing]"' in err


# A target or --exec, exactly one; what belongs to one kind is refused with the other.
# The marker shows that nothing was started.
@pytest.mark.parametrize(
    "argv, mentions",
    [
        (["conform"], "or --exec COMMAND"),
        (["conform", "mine:step", "--exec", "touch MARKER"], "not both"),
        (["conform", "--exec", "touch MARKER", "--in-place"], "--in-place"),
        (["conform", "--exec", "touch MARKER", "--optimizer"], "--optimizer"),
        (["conform", "mine:step", "--timeout", "3"], "--timeout applies only to --exec"),
        (["conform", "mine:step", "--no-vectors"], "--no-vectors applies only to --exec"),
        (["conform", "--exec", ""], "--exec needs a command"),
        (["conform", "--exec", "touch 'MARKER"], "No closing quotation"),
        (["conform", "--exec", "touch MARKER", "--timeout", "0"], "--timeout"),
        (["conform", "--exec", "touch MARKER", "--timeout", "inf"], "--timeout"),
        (["conform", "--exec", "touch MARKER", "--max-examples", "0"], "--max-examples"),
        (["conform", "--exec", "touch MARKER", "--max-examples", "-1"], "--max-examples"),
        (["conform", "--exec", "touch MARKER", "--max-examples", "10000000000000"],
         "--max-examples"),
    ],
)
def test_conform_target_or_exec_refusals(argv, mentions, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    _one_line_error(captured.err)
    assert mentions in captured.err
    assert not (tmp_path / "MARKER").exists()


def test_conform_exec_without_hypothesis_is_one_line_and_exit_2(tmp_path):
    proc = _run(["conform", "--exec", "touch MARKER"], cwd=tmp_path, hide=("hypothesis",))
    assert proc.returncode == 2 and proc.stdout == b""
    err = proc.stderr.decode()
    _one_line_error(err)
    assert 'pip install ".[testing]"' in err
    assert not (tmp_path / "MARKER").exists()


def test_vectors_on_a_full_disk_is_one_line(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    with open("/dev/full", "w") as full:
        proc = _run(["vectors"], cwd=tmp_path, hide=("hypothesis",), stdout=full)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    _one_line_error(err)
    assert "No space left on device" in err


@pytest.mark.parametrize("option", ["lr=nan", "lr=-1", "eps=-1", "beta1=1", "beta2=1.5", "maximize=2",
                                    "decoupled_weight_decay=0", "weight_decay=inf"])
@pytest.mark.parametrize("kind", ["target", "exec"])
def test_conform_refuses_option_values_outside_their_legal_range(option, kind, tmp_path, monkeypatch, capsys):
    """A usage error (exit 2, one line), not a verdict on the implementation; nothing is started."""
    pytest.importorskip("hypothesis")
    monkeypatch.chdir(tmp_path)
    which = ["adamax_cy:adamax_step"] if kind == "target" else ["--exec", "touch MARKER"]
    assert cli.main(["conform", *which, "--option", option, "--max-examples", "5", "--seed", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    _one_line_error(captured.err)
    assert option.partition("=")[0] in captured.err
    assert not (tmp_path / "MARKER").exists()


def test_conform_checks_the_packages_own_numpy_optimizer(tmp_path, monkeypatch, capsys):
    """adamax_cy.Adamax is not a torch optimizer: it is run through its state dict, and conforms."""
    pytest.importorskip("hypothesis")
    monkeypatch.chdir(tmp_path)
    status = cli.main(["conform", "adamax_cy:Adamax", "--max-examples", "30", "--seed", "0",
                       "--vary", "weight_decay", "--vary", "decoupled_weight_decay", "--vary", "maximize"])
    out, err = capsys.readouterr()
    assert status == 0, out + err
    assert "verdict: CONFORMS" in out and "adamax_cy.optimizer.Adamax" in out


@pytest.mark.parametrize("target", ["collections:OrderedDict", "fractions:Fraction"])
def test_conform_refuses_a_class_that_is_no_optimizer(target, tmp_path, monkeypatch, capsys):
    """A loading problem is a usage error (exit 2), never a verdict on the implementation."""
    pytest.importorskip("hypothesis")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["conform", target, "--max-examples", "5", "--seed", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    _one_line_error(captured.err)
    assert "optimizer" in captured.err


# --------------------------------------------------------------------------
# frameworks


def test_frameworks_help_without_hypothesis_shows_usage_and_how_to_install(tmp_path):
    proc = _run(["frameworks", "--help"], cwd=tmp_path, hide=("hypothesis",))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert out.startswith("usage:") and "--out OUT" in out and 'pip install ".[testing]"' in out


def test_frameworks_without_hypothesis_is_one_line_and_exit_2(tmp_path):
    proc = _run(["frameworks", "--out", "report"], cwd=tmp_path, hide=("hypothesis",))
    assert proc.returncode == 2 and proc.stdout == b""
    err = proc.stderr.decode()
    _one_line_error(err)
    assert "hypothesis" in err and 'pip install ".[testing]"' in err
    assert list(tmp_path.iterdir()) == []


def test_the_frameworks_table_on_a_latin_1_terminal(tmp_path):
    pytest.importorskip("hypothesis")
    from adamax_cy.testing import frameworks

    missing = [name for name, reason in frameworks.installed().items() if reason is not None]
    if not missing:
        pytest.skip("every framework is installed")
    proc = _run(["frameworks", "--framework", missing[0], "--out", "report"], cwd=tmp_path,
                env={"PYTHONIOENCODING": "latin-1"})
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"Not installed" in proc.stdout and "θ".encode() in (tmp_path / "report.md").read_bytes()


@pytest.mark.parametrize("target", ["math:pi", "math", "os:sep"])
def test_conform_refuses_a_target_that_is_not_callable(target, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["conform", target, "--max-examples", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert "not callable" in captured.err or "expected package.module:function" in captured.err
