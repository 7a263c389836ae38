"""The benchmark runs end to end and reports what it promises (never timing values)."""

import argparse
import json

import pytest

from adamax_cy import bench

FAST = ",".join([bench.FLOOR, bench.FLOOR_1T, bench.FLOOR_DIV, bench.FLOOR_DIV_1T, bench.INPLACE,
                 bench.INPLACE_1T, bench.INPLACE_ALL, bench.NUMPY, bench.NUMPY_OUT])
OPTIMIZER_TARGET = next(t.name for t in bench.evaluate([], [], {}) if "torch.Adamax" in t.name)
TIMING_FIELDS = {"implementation", "dtype", "n", "median_s", "q1_s", "q3_s", "min_s", "max_s",
                 "spread", "calls_per_batch", "batches", "gbps", "floor_pct", "speedup"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "out.json"
    plot = path.with_suffix(".png")
    argv = ["--smoke", "--only", FAST, "--json", str(path), "--no-progress",
            "--markdown", str(path.with_suffix(".md"))]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        plot = None
    else:
        argv += ["--plot", str(plot)]
    assert bench.main(argv) == 0
    return json.loads(path.read_text()), plot


def test_every_implementation_size_and_dtype_is_reported(smoke):
    results, _ = smoke
    s = results["settings"]
    expected = {(i, d, n) for i in FAST.split(",") for d in s["dtypes"] for n in s["sizes"]}
    got = {(r["implementation"], r["dtype"], r["n"]) for r in results["results"]}
    assert got == expected
    for r in results["results"]:
        assert set(r) == TIMING_FIELDS
        assert r["batches"] == s["batches"]
        assert r["min_s"] <= r["q1_s"] <= r["median_s"] <= r["q3_s"] <= r["max_s"]
        assert set(r["speedup"]) == {bench.NUMPY, bench.NUMPY_OUT}
        assert r["floor_pct"] is not None


def test_floor_is_the_reference_of_its_group(smoke):
    results, _ = smoke
    for r in results["results"]:
        if r["implementation"] == bench.FLOOR:
            assert r["floor_pct"] == pytest.approx(100.0)
        if r["implementation"] == bench.NUMPY:
            assert r["speedup"][bench.NUMPY] == pytest.approx(1.0)


def test_many_arrays_and_targets_are_reported(smoke):
    results, _ = smoke
    arrays, elements = results["settings"]["many"]
    assert [e["dtype"] for e in results["many"]] == results["settings"]["dtypes"]
    for e in results["many"]:
        assert (e["arrays"], e["elements"]) == (arrays, elements)
        assert e["ratio"] == pytest.approx(e["many_s"] / e["one_s"])
    statuses = {t["name"]: t["status"] for t in results["targets"]}
    assert len(statuses) == 10
    assert set(statuses.values()) <= {"pass", "miss", "not measured"}
    # adamax_cy.torch.Adamax was not among the implementations asked for
    assert results["settings"]["optimizers"] == [] and results["optimizers"] == []
    assert statuses[OPTIMIZER_TARGET] == "not measured"
    # The smoke sizes stop at 1,000 elements: the large-array targets cannot be judged.
    assert statuses["16M float64: >= 90% of the floor"] == "not measured"


def test_machine_is_described(smoke):
    results, _ = smoke
    m = results["machine"]
    assert {"version", "cpu", "logical_cpus", "openmp", "default_threads",
            "serial_threshold"} <= set(m)


def test_markdown_has_a_row_per_result_and_target(smoke, tmp_path_factory):
    results, plot = smoke
    text = next(tmp_path_factory.getbasetemp().glob("bench*/out.md")).read_text()
    rows = [line for line in text.splitlines() if line.startswith("| float")]
    assert len(rows) == len(results["results"]) + len(results["many"])
    for t in results["targets"]:
        assert f"| {t['name']} | **{t['status']}** |" in text


def test_optimizers_are_compared_with_torch(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "out.json"
    argv = ["--smoke", "--only", bench.CY_TORCH, "--dtypes", "float32", "--no-many", "--sizes", "1",
            "--json", str(path), "--no-progress"]
    assert bench.main(argv) == 0
    results = json.loads(path.read_text())
    cases = results["optimizers"]
    expected = [(t, e, g) for t, e, _ in bench.SMOKE_OPTIMIZERS for g in bench.GRADIENTS]
    assert [(c["tensors"], c["elements"], c["gradients"]) for c in cases] == expected
    for c in cases:
        assert c["speedup"] == pytest.approx(min(c["torch_s"], c["torch_foreach_s"]) / c["adamax_cy_s"])
        assert (c["assignments_s"] > 0) == (c["gradients"] == "new")
        assert (c["floor_pct"] is not None) == (c["tensors"] == 1)
    target = next(t for t in results["targets"] if t["name"] == OPTIMIZER_TARGET)
    assert target["status"] == ("pass" if all(c["speedup"] >= c["target"] for c in cases) else "miss")


def test_plot_is_written(smoke):
    _, plot = smoke
    if plot is None:
        pytest.skip("matplotlib is not installed")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parser_can_be_hosted_by_another_command():
    parser = argparse.ArgumentParser()
    bench.configure_parser(parser)
    args = parser.parse_args(["--quick", "--sizes", "1,1e3", "--json", "-"])
    s = bench.settings(args)
    assert s["sizes"] == [1, 1000]
    assert s["dtypes"] == ["float32", "float64"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--quick", "--smoke"])


def test_unknown_implementation_is_refused(capsys):
    parser = argparse.ArgumentParser()
    bench.configure_parser(parser)
    with pytest.raises(SystemExit):
        bench.settings(parser.parse_args(["--only", "nonesuch"]))
    assert "unknown implementation 'nonesuch'" in capsys.readouterr().err


def test_docstring_examples():
    import doctest

    from adamax_cy.bench import baselines

    result = doctest.testmod(baselines)
    assert result.attempted > 0 and result.failed == 0


def test_time_step_reports_the_three_optimizers():
    torch = pytest.importorskip("torch")
    import numpy as np

    times = bench.time_step([(8,), (3, 4)], dtype=torch.float64, number=1, repeat=1)
    assert set(times) == {"adamax_cy", "torch", "torch_foreach"}
    assert all(isinstance(t, float) and np.isfinite(t) for t in times.values())


def test_time_step_docstring_example():
    pytest.importorskip("torch")
    import doctest

    from adamax_cy.bench import timing

    result = doctest.testmod(timing)
    assert result.attempted > 0 and result.failed == 0


def test_busy_scenario_is_reported(smoke):
    from adamax_cy.bench.busy import ALL, DEFAULT, ONE

    results, _ = smoke
    s = results["settings"]
    assert s["busy"] == [0, 1]
    assert [(e["busy"], e["n"]) for e in results["busy"]] == [
        (b, n) for b in s["busy"] for n in s["busy_sizes"]]
    for e in results["busy"]:
        for way in (DEFAULT, ONE, ALL):
            assert e[way]["calls"] > 0 and 0 < e[way]["mean_s"]
        assert e["ratio"] == pytest.approx(e[DEFAULT]["mean_s"] / e[ONE]["mean_s"])
    statuses = {t["name"]: t["status"] for t in results["targets"]}
    busy_target = next(name for name in statuses if name.startswith("busy machine"))
    quiet_target = next(name for name in statuses if name.startswith("quiet machine"))
    # the smoke run has one busy core only, and no 1M array
    assert statuses[busy_target] == "not measured"
    assert statuses[quiet_target] == "not measured"
    assert "load_average_start" in results["machine"]


def test_busy_cores_are_stopped_when_the_block_ends():
    import os

    with bench.busy_cores(2) as procs:
        pids = [p.pid for p in procs]
        assert all(p.poll() is None for p in procs)
    assert all(p.poll() is not None for p in procs)
    with pytest.raises(KeyError):
        with bench.busy_cores(1) as procs:
            raise KeyError("stop")
    assert procs[0].poll() is not None
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_busy_cores_stop_by_themselves_when_the_benchmark_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    code = ("from adamax_cy import bench\n"
            "with bench.busy_cores(1) as procs:\n"
            "    print(procs[0].pid, flush=True)\n"
            "    import time; time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        child = int(parent.stdout.readline())
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the busy-loop process outlived the benchmark")
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()


@pytest.mark.parametrize("text", ["x", "-1", "1.5", "65", ","])
def test_busy_option_refuses_bad_counts(text, capsys):
    parser = argparse.ArgumentParser()
    bench.configure_parser(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--busy", text])
    assert "--busy" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_division_floor_divides_once_per_element_exactly(dtype):
    import numpy as np

    from adamax_cy import _kernel

    p, g, m, u = bench.state(100_003, dtype)
    before = [a.copy() for a in (p, g, m, u)]
    _kernel.floor(p, g, m, u, 0.0, 0, True)
    assert all(np.array_equal(a, b) for a, b in zip((p, g, m, u), before))
    _kernel.floor(p, g, m, u, 1.0, 0, True)
    one = np.array(1, dtype)
    assert np.array_equal(p, before[0] + before[2] / (before[3] + one))
    assert np.array_equal(m, before[2] + before[1])
    assert np.array_equal(u, before[3] + before[1])


def _busy_entry(busy, n, ratio):
    from adamax_cy.bench.busy import ALL, DEFAULT, ONE

    way = {"mean_s": 1e-3, "p90_s": 2e-3, "calls": 10}
    return {"busy": busy, "dtype": "float32", "n": n, "ratio": ratio,
            DEFAULT: way, ONE: way, ALL: way}


@pytest.mark.parametrize("ratios, status", [
    ((1.2, 1.25), "pass"), ((1.2, 1.3), "miss"), ((1.3, None), "not measured")])
def test_busy_target_needs_one_and_two_busy_cores(ratios, status):
    busy = [_busy_entry(b, n, r) for b, r in zip((1, 2), ratios) if r is not None
            for n in (100_000, 1_000_000)]
    target = next(t for t in bench.evaluate([], [], {}, (), busy)
                  if t.name.startswith("busy machine"))
    assert target.status == status


@pytest.mark.parametrize("ratio, status", [(0.75, "pass"), (0.76, "miss")])
def test_quiet_target_is_judged_at_one_million_float32(ratio, status):
    busy = [_busy_entry(0, 1_000_000, ratio), _busy_entry(0, 100_000, 5.0)]
    target = next(t for t in bench.evaluate([], [], {}, (), busy)
                  if t.name.startswith("quiet machine"))
    assert target.status == status
