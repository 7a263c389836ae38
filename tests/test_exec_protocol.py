"""``conform --exec``: an Adamax step in another process (JavaScript here), correct and wrong."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")

from adamax_cy import _vectors, cli  # noqa: E402
from adamax_cy.reference import adamax_trace  # noqa: E402
from adamax_cy.testing import _exec  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")

SCRIPT = Path(__file__).parent / "consumers" / "adamax_exec.js"


def command(bug: str | None = None) -> str:
    return shlex.join(["node", str(SCRIPT)] + (["--bug", bug] if bug else []))


def conform(capsys: pytest.CaptureFixture[str], *args: str, bug: str | None = None) -> tuple[int, str, str]:
    status = cli.main(["conform", "--exec", command(bug), "--seed", "2", "--timeout", "60", *args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("convention", ["spec", "torch"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_correct_implementation_conforms(capsys: pytest.CaptureFixture[str], convention: str, dtype: str) -> None:
    status, out, err = conform(capsys, "--convention", convention, "--dtype", dtype, "--max-examples", "60",
                               "--vary", "weight_decay", "--vary", "decoupled_weight_decay", "--vary", "maximize")
    assert status == 0, out + err
    assert "verdict: CONFORMS" in out
    assert "60 generated case(s)" in out
    assert "test vectors: 134 passed" in out  # every vector of the dtype and convention, options included


@pytest.mark.parametrize("stage", ["test vector", "formula"])
@pytest.mark.parametrize("bug, formula", [("m", "m"), ("u", "u"), ("theta", "θ"), ("late-bias", "θ")])
def test_a_wrong_implementation_is_rejected_naming_the_formula(
    capsys: pytest.CaptureFixture[str], bug: str, formula: str, stage: str
) -> None:
    """Caught by the test vectors first; with --no-vectors, by the generated cases."""
    # The search alone needs more cases than the vectors for the late bias: it shows at t > 100 only.
    extra = ["--no-vectors", "--max-examples", "300"] if stage == "formula" else ["--max-examples", "100"]
    status, out, err = conform(capsys, "--dtype", "float32", *extra, bug=bug)
    assert status == 1, out + err
    assert "verdict: DOES NOT CONFORM" in out
    assert f"first wrong output: {formula}  ({stage}" in out
    # The replay line reproduces the wrong output, out of process and by hand.
    line = out.split("replay the failing step: echo ", 1)[1].split(" | node ", 1)[0]
    message = json.loads(shlex.split(line)[0])
    answer = json.loads(subprocess.run(shlex.split(command(bug)), input=json.dumps(message) + "\n",
                                       capture_output=True, text=True, timeout=30, check=True).stdout)
    numbers = {k: float.fromhex(message[k]) for k in ("lr", "beta1", "beta2", "eps", "weight_decay")}
    trace = adamax_trace(float.fromhex(message["param"][0]), float.fromhex(message["grad"][0]),
                         float.fromhex(message["m"][0]), float.fromhex(message["u"][0]), message["t"],
                         convention=message["convention"], arithmetic=message["dtype"], **numbers,
                         decoupled_weight_decay=message["decoupled_weight_decay"], maximize=message["maximize"])
    name = {"m": "m", "u": "u", "θ": "param"}[formula]
    expected = {"m": trace.m_t, "u": trace.u_t, "param": trace.param_t}[name]
    assert answer[name][0] != expected


@pytest.mark.parametrize("no_vectors", [False, True])
def test_json_report_carries_the_replay(capsys: pytest.CaptureFixture[str], no_vectors: bool) -> None:
    extra = ["--no-vectors"] if no_vectors else []
    status, out, _ = conform(capsys, "--max-examples", "20", "--json", *extra, bug="u")
    report = json.loads(out)
    assert status == 1 and report["conforms"] is False
    assert report["mismatch"]["formula"] == "u"
    assert json.loads(report["replay"])["id"] == ("replay" if no_vectors else "worked-example-1-float64-spec")


@pytest.mark.parametrize("bug, message", [
    ("json", "is not JSON"),
    ("id", "has id 'x1'"),
    ("length", "gives u as 2 values, expected a list of 1"),
    ("exit", "the process exited with status 3"),
    ("hang", "no answer within 1 s"),
])
def test_protocol_errors_exit_2_and_say_what_happened(capsys: pytest.CaptureFixture[str], bug: str,
                                                      message: str) -> None:
    timeout = "1" if bug == "hang" else "60"  # only the hang waits for the timeout; a busy machine is slow
    status = cli.main(["conform", "--exec", command(bug), "--seed", "2", "--timeout", timeout, "--max-examples", "20"])
    out, err = capsys.readouterr()
    assert status == 2, out + err
    assert "PROTOCOL ERROR" in err and message in err, err
    assert "CONFORMS" not in out


def test_a_command_that_cannot_start_is_a_protocol_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status = cli.main(["conform", "--exec", str(tmp_path / "no-such-program"), "--max-examples", "5"])
    _, err = capsys.readouterr()
    assert status == 2 and "cannot start" in err


def test_the_command_is_split_like_a_shell_and_not_run_by_one(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    impl = _exec.ExecImplementation(f"node {shlex.quote(str(SCRIPT))} ; touch {marker}")
    assert impl.argv[-2:] == ["touch", str(marker)] and impl.argv[2] == ";"
    # node ignores the extra arguments; no shell runs `touch`.
    with impl:
        message = _exec.request("1", "float64", "spec", 1, {"lr": 0.002, "beta1": 0.9, "beta2": 0.999,
                                                                     "eps": 1e-8}, *([[1.0]] * 4))
        assert impl.exchange(message)["id"] == "1"
    assert not marker.exists()


# ---------------------------------------------------------------- in C

C_SOURCE = Path(__file__).parent / "consumers" / "adamax_vectors.c"


@pytest.fixture(scope="module")
def c_programs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    out = {}
    for bug in (0, 1, 2, 3):
        exe = tmp_path_factory.mktemp("c") / f"adamax_{bug}"
        subprocess.run(["gcc", "-std=c99", "-O2", "-ffp-contract=off", f"-DBUG={bug}", "-o", str(exe),
                        str(C_SOURCE), "-lm"], check=True, timeout=120)
        out[bug] = exe
    return out


@pytest.mark.parametrize("convention", ["spec", "torch"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_correct_c_implementation_conforms(capsys: pytest.CaptureFixture[str], c_programs: dict[int, Path],
                                             convention: str, dtype: str) -> None:
    status = cli.main(["conform", "--exec", f"{shlex.quote(str(c_programs[0]))} --exec", "--seed", "4",
                                  "--timeout", "60", "--convention", convention, "--dtype", dtype,
                                  "--max-examples", "60", "--vary", "weight_decay",
                                  "--vary", "decoupled_weight_decay", "--vary", "maximize"])
    out, err = capsys.readouterr()
    assert status == 0, out + err
    assert "verdict: CONFORMS" in out and "test vectors: 134 passed" in out


@pytest.mark.parametrize("stage", ["test vector", "formula"])
@pytest.mark.parametrize("bug, formula", [(1, "m"), (2, "u"), (3, "θ")])
def test_a_wrong_c_implementation_is_rejected_naming_the_formula(
    capsys: pytest.CaptureFixture[str], c_programs: dict[int, Path], bug: int, formula: str, stage: str
) -> None:
    extra = ["--no-vectors"] if stage == "formula" else []
    status = cli.main(["conform", "--exec", f"{shlex.quote(str(c_programs[bug]))} --exec", "--seed", "4",
                                  "--timeout", "60", "--convention", "spec", "--dtype", "float32",
                                  "--max-examples", "100", *extra])
    out, err = capsys.readouterr()
    assert status == 1, out + err
    assert f"first wrong output: {formula}  ({stage}" in out


# ------------------------------------------- from the shell, end to end


def console(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m adamax_cy ARGS`` in a subprocess, as installed users run it."""
    return subprocess.run([sys.executable, "-m", "adamax_cy", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env={**os.environ, "PYTHONIOENCODING": "utf-8"})


@pytest.mark.parametrize("bug, status, says", [
    (None, 0, "verdict: CONFORMS"),
    ("late-bias", 1, "first wrong output: θ  (test vector t-1000-"),
    ("theta", 1, "first wrong output: θ"),
    ("id", 2, "PROTOCOL ERROR"),
])
def test_conform_exec_from_the_console(tmp_path: Path, bug: str | None, status: int, says: str) -> None:
    proc = console("conform", "--exec", command(bug), "--convention", "torch", "--dtype", "float32",
                   "--max-examples", "20", "--seed", "2", "--timeout", "60", cwd=tmp_path)
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert says in proc.stdout + proc.stderr
    if status == 0:
        applicable = _vectors.applicable(_vectors.generate_test_vectors(), "float32", "torch")
        assert f"test vectors: {len(applicable)} passed" in proc.stdout
        assert "convention 'torch', float32" in proc.stdout


def test_conform_exec_applies_the_other_options(tmp_path: Path) -> None:
    """--option holds a value fixed (and leaves the vectors out), --widen is stated, --json is JSON."""
    proc = console("conform", "--exec", command(), "--option", "eps=1e-3", "--widen", "param=2",
                   "--max-examples", "10", "--seed", "2", "--timeout", "60", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["conforms"] is True and report["test_vectors"] == 0 and report["replay"] is None
    text = json.dumps(report)
    assert "0.001" in text and "param" in text


def test_conform_help_shows_target_and_exec(tmp_path: Path) -> None:
    proc = console("conform", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: python -m adamax_cy conform (target | --exec COMMAND) [options]")
    for word in ("target", "--exec COMMAND", "--timeout", "--no-vectors", "--convention", "--max-examples"):
        assert word in proc.stdout


# ------------------------------------------------- a Python peer, for the edge cases of the channel

PEER = """
import json, sys
import numpy as np
import adamax_cy

def answer(q):
    dt = q["dtype"]
    a = lambda k: np.array([float.fromhex(x) for x in q[k]], dt)
    h = lambda k: float.fromhex(q[k])
    theta, m, u = adamax_cy.adamax_step(
        a("param"), a("grad"), a("m"), a("u"), q["t"], h("lr"), h("beta1"), h("beta2"), h("eps"),
        weight_decay=h("weight_decay"), decoupled_weight_decay=q["decoupled_weight_decay"],
        maximize=q["maximize"], convention=q["convention"])
    return [np.ravel(x).astype(float).tolist() for x in (theta, m, u)]

n = 0
for line in sys.stdin:
    n += 1
    q = json.loads(line)
    theta, m, u = answer(q)
    text = None
{body}
    if text is None:
        text = json.dumps({{"id": q["id"], "param": [x.hex() for x in theta],
                           "m": [x.hex() for x in m], "u": [x.hex() for x in u]}})
    sys.stdout.write(text + "\\n")
    sys.stdout.flush()
"""


def python_peer(tmp_path: Path, body: str = "") -> str:
    """A peer running adamax_cy's kernel; ``body`` (indented 4) may set ``text``, the answer line."""
    script = tmp_path / "peer.py"
    script.write_text(PEER.format(body=body))
    return shlex.join([sys.executable, str(script)])


def _fixed_case_requests() -> int:
    import adamax_cy
    from adamax_cy.testing import TOLERANCES, functional
    from adamax_cy.testing._harness import run_fixed_cases

    calls = 0

    def counting(*args, **kwargs):
        nonlocal calls
        calls += 1
        return adamax_cy.adamax_step(*args, **kwargs)

    assert run_fixed_cases(functional(counting), "float64", "spec", {}, True, TOLERANCES["float64"])[0] is None
    return calls


def test_a_wrong_answer_that_does_not_reproduce_is_a_verdict(capsys: pytest.CaptureFixture[str],
                                                           tmp_path: Path) -> None:
    """One wrong answer (a race in the peer) is DOES NOT CONFORM, exit 1, with no traceback."""
    at = _fixed_case_requests() + 3
    peer = python_peer(tmp_path, f"    if n >= {at} and all(abs(x) < 1e6 for x in theta) and not globals().get('done'):\n"
                                 "        done = True\n        theta = [x + 1.0 for x in theta]")
    status = cli.main(["conform", "--exec", peer, "--no-vectors", "--seed", "2", "--timeout", "60",
                       "--max-examples", "30"])
    out, err = capsys.readouterr()
    assert status == 1, out + err
    assert "verdict: DOES NOT CONFORM" in out and "first wrong output: θ" in out
    assert "did not reproduce" in out
    assert "Traceback" not in out + err


PRINTF = """    def num(x):
        if x != x:
            return "NaN"
        if x in (float("inf"), float("-inf")):
            return "Infinity" if x > 0 else "-Infinity"
        return "%.17g" % x
    text = json.dumps({"id": q["id"]})[:-1] + "".join(
        ', "%s": [%s]' % (k, ",".join(map(num, v))) for k, v in (("param", theta), ("m", m), ("u", u))) + "}"
"""


def test_decimal_numbers_keep_the_sign_of_zero(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A correct peer printing with C's %.17g writes -0 for negative zero: it conforms
    (the vectors and the edge cases have signed zeros)."""
    peer = python_peer(tmp_path, PRINTF)
    probe = subprocess.run(shlex.split(peer), input=json.dumps(_exec.request(
        "1", "float64", "spec", 1, {"lr": 0.002, "beta1": 0.9, "beta2": 0.999, "eps": 0.0},
        [-0.0], [0.0], [0.0], [0.0])) + "\n", capture_output=True, text=True, timeout=60, check=True)
    assert '"param": [-0]' in probe.stdout  # the peer does write the bare -0
    status = cli.main(["conform", "--exec", peer, "--seed", "2", "--timeout", "60", "--max-examples", "30"])
    out, err = capsys.readouterr()
    assert status == 0, out + err
    assert "verdict: CONFORMS" in out


@pytest.mark.parametrize("body, says", [
    ('    if n == 2:\n        text = \'{"id": "%s", "param": [1%s%s], "m": %s, "u": %s}\' % (\n'
     '            q["id"], "0" * 400, ", 0" * (len(theta) - 1), json.dumps(m), json.dumps(u))',
     "is not a number"),
    ('    if n == 2:\n        text = json.dumps({"id": q["id"], "param": ["0x1p+5000"] * len(theta), "m": m, "u": u})',
     "is not a number"),
    ('    if n == 2:\n        text = \'{"id": "%s", "param": %s%s}\' % (q["id"], "[" * 200000, "]" * 200000)',
     "is not JSON"),
    ('    if n == 2:\n        text = "[" * 200000 + "]" * 200000', "is not JSON"),
])
def test_unreadable_numbers_and_nesting_are_protocol_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                            body: str, says: str) -> None:
    status = cli.main(["conform", "--exec", python_peer(tmp_path, body), "--seed", "2", "--timeout", "60",
                       "--max-examples", "5"])
    out, err = capsys.readouterr()
    assert status == 2, out + err
    assert "PROTOCOL ERROR" in err and says in err, err
    assert "request 2" in err or "'2'" in err or "worked-example" in err
    assert "CONFORMS" not in out
