"""The benchmark runs end to end and reports what it promises (never timing values)."""

import argparse
import json

import pytest

from adamax_cy import bench

FAST = ",".join([bench.FLOOR, bench.FLOOR_1T, bench.INPLACE, bench.INPLACE_1T, bench.NUMPY, bench.NUMPY_OUT])
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
    assert len(statuses) == 7
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
