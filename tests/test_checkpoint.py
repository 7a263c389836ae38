"""Adamax checkpoints that must be refused whole: nothing loaded, a short CheckpointError."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adamax_cy import Adamax, CheckpointError


def bits(a):
    return np.ascontiguousarray(a).view(np.uint32 if a.dtype == np.float32 else np.uint64)


def two_groups(seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=3).astype(np.float32)}
    opt = Adamax([{"params": {"w": params["w"]}}, {"params": {"b": params["b"]}, "lr": 0.03}])
    return params, opt


def train(opt, params, steps, seed=1):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        opt.step({k: rng.normal(size=p.shape).astype(p.dtype) for k, p in params.items()})


def snapshot(opt, params):
    sd = opt.state_dict()
    return (
        {k: bits(p).copy() for k, p in params.items()},
        [g["lr"] for g in opt.param_groups],
        [s["step"] for s in sd["state"]],
        [(bits(s["m"]).copy(), bits(s["u"]).copy()) for s in sd["state"]],
    )


def assert_unchanged(opt, params, before):
    after = snapshot(opt, params)
    for k in params:
        np.testing.assert_array_equal(after[0][k], before[0][k])
    assert after[1:3] == before[1:3]
    for (m1, u1), (m2, u2) in zip(after[3], before[3]):
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(u1, u2)


@pytest.fixture
def saved(tmp_path):
    params, opt = two_groups()
    train(opt, params, 3)
    opt.param_groups[1]["lr"] = 0.5
    path = tmp_path / "run.ckpt"
    opt.save(path)
    return path


def rewrite_meta(path, change):
    """The checkpoint at ``path`` with its metadata changed by ``change(meta)``."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    change(meta)
    arrays["meta"] = np.array(json.dumps(meta))
    out = path.with_name("changed.npz")
    np.savez(out, **arrays)
    return out


# ------------------------------------------------- a failed load changes nothing


def test_a_read_only_parameter_fails_the_load_before_anything_changes(saved):
    params, opt = two_groups(seed=7)
    train(opt, params, 1, seed=8)
    params["b"].flags.writeable = False
    before = snapshot(opt, params)
    with pytest.raises(CheckpointError, match=r"b: the parameter is read-only") as info:
        opt.load_state(saved)
    assert str(saved) in str(info.value)
    assert_unchanged(opt, params, before)
    opt.load_state(saved, restore_params=False)  # the parameters are not written then
    assert opt.param_groups[1]["lr"] == 0.5 and opt.steps == {"w": 3, "b": 3}


# ------------------------------------------------- step counts in range


@pytest.mark.parametrize("step", [2**63 - 1, 2**63, 10**400, 1.0, True])
def test_step_counts_out_of_range_are_refused(saved, step):
    def change(meta):
        meta["steps"][1] = step

    path = rewrite_meta(saved, change)
    params, opt = two_groups(seed=7)
    before = snapshot(opt, params)
    with pytest.raises(CheckpointError, match=r"b: step must be an integer >= 0") as info:
        opt.load_state(path)
    assert len(str(info.value)) < 300
    assert_unchanged(opt, params, before)


def test_the_largest_step_count_loads_and_steps(saved):
    path = rewrite_meta(saved, lambda meta: meta["steps"].__setitem__(1, 2**63 - 2))
    params, opt = two_groups(seed=7)
    opt.load_state(path)
    assert opt.steps["b"] == 2**63 - 2
    opt.step({"b": np.ones(3, np.float32)})
    assert opt.steps["b"] == 2**63 - 1


@pytest.mark.parametrize("step", [2**63 - 1, 2**63])
def test_state_dict_step_counts_out_of_range_are_refused(step):
    params, opt = two_groups()
    sd = opt.state_dict()
    sd["state"][0]["step"] = step
    with pytest.raises(CheckpointError, match=r"w: step must be an integer >= 0"):
        opt.load_state_dict(sd)
    assert opt.steps == {"w": 0, "b": 0}


# ------------------------------------------------- hostile files stay cheap

PEAK_MEMORY = """
    import resource, sys
    import numpy as np
    from adamax_cy import Adamax, CheckpointError
    w, b = np.zeros((4, 3)), np.zeros(3, np.float32)
    opt = Adamax([{"params": {"w": w}}, {"params": {"b": b}, "lr": 0.03}])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        opt.load_state(sys.argv[1])
    except CheckpointError as e:
        message = str(e)
    else:
        raise AssertionError("loaded")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) // 1024, len(message))
    print(message[:300])
"""


def peak_memory_of_a_load(path):
    """(MiB the load added to the peak resident memory, length of the error)."""
    import subprocess
    import sys
    import textwrap

    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PEAK_MEMORY), str(path)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    first, message = out.stdout.split("\n", 1)
    mib, length = map(int, first.split())
    return mib, length, message


def with_member(saved, name, write, compression):
    """The checkpoint ``saved`` with member ``name`` written by ``write(file)``."""
    import zipfile

    out = saved.with_name("hostile.npz")
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(out, "w", compression) as dst:
        for info in src.infolist():
            if info.filename != name + ".npy":
                dst.writestr(info.filename, src.read(info))
        with dst.open(name + ".npy", "w", force_zip64=True) as f:
            write(f)
    return out


def huge_zeros(f, count=32 * 2**20):
    """A float64 array of ``count`` zeros (256 MiB), streamed."""
    np.lib.format.write_array_header_1_0(
        f, {"descr": "<f8", "fortran_order": False, "shape": (count,)}
    )
    chunk = bytes(2**20)
    for _ in range(count * 8 // len(chunk)):
        f.write(chunk)


@pytest.mark.skipif(__import__("sys").platform != "linux", reason="ru_maxrss in KiB")
def test_a_small_deflated_file_declaring_a_huge_array_is_refused_cheaply(saved):
    import zipfile

    path = with_member(saved, "m0", huge_zeros, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 2 * 2**20  # 256 MiB of zeros, deflated
    mib, length, message = peak_memory_of_a_load(path)
    assert "w: m has shape (33554432,)" in message
    assert mib < 32, f"the load of a {path.stat().st_size} byte file took {mib} MiB"
    assert length < 400


def test_a_huge_group_size_in_the_metadata_is_a_short_error(saved):
    for size in (10**12, 5 * 10**6):
        path = rewrite_meta(saved, lambda meta: meta["param_groups"][0].__setitem__("size", size))
        params, opt = two_groups(seed=7)
        before = snapshot(opt, params)
        with pytest.raises(CheckpointError, match=r"param_groups") as info:
            opt.load_state(path)
        assert len(str(info.value)) < 400, len(str(info.value))
        assert_unchanged(opt, params, before)


@pytest.mark.parametrize("count", [15_000, 10**6])
def test_many_names_in_the_metadata_give_a_short_error(saved, count):
    def change(meta):
        meta["param_names"] = [f"p{i}" for i in range(count)]
        meta["steps"] = [0] * count

    path = rewrite_meta(saved, change)
    params, opt = two_groups(seed=7)
    with pytest.raises(CheckpointError, match="is for parameters|more than a checkpoint") as info:
        opt.load_state(path)
    assert len(str(info.value)) < 400, len(str(info.value))


def test_a_long_list_in_a_state_dict_gives_a_short_error():
    params, opt = two_groups()
    sd = opt.state_dict()
    sd["param_groups"][0]["params"] = list(range(10**6))
    with pytest.raises(CheckpointError, match="holds parameters") as info:
        opt.load_state_dict(sd)
    assert len(str(info.value)) < 400, len(str(info.value))


def duplicate_m0(saved):
    import zipfile

    out = saved.with_name("hostile.npz")
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        with pytest.warns(UserWarning, match="Duplicate name"):
            dst.writestr("m0.npy", src.read("m0.npy"))
    return out


def huge_meta(saved):
    import zipfile

    def write(f, chars=64 * 2**20):  # a 256 MiB string, deflated
        np.lib.format.write_array_header_1_0(
            f, {"descr": f"<U{chars}", "fortran_order": False, "shape": ()})
        chunk = bytes(2**20)
        for _ in range(chars * 4 // len(chunk)):
            f.write(chunk)

    return with_member(saved, "meta", write, zipfile.ZIP_DEFLATED)


def lying_size(saved):
    """m0's header is right but the member holds more bytes than it declares."""
    import io
    import zipfile

    def write(f):
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((4, 3)))
        f.write(buffer.getvalue() + bytes(2**20))

    return with_member(saved, "m0", write, zipfile.ZIP_DEFLATED)


def a_directory(saved):
    return saved.parent


@pytest.mark.parametrize("make, message", [
    (duplicate_m0, "the member 'm0' appears twice"),
    (huge_meta, r"damaged or unsafe checkpoint \(meta is not a short string\)"),
    (lying_size, r"damaged or unsafe checkpoint \(w: m holds 1048672 bytes, not 96\)"),
    (a_directory, "not a readable .npz checkpoint"),
])
def test_hostile_files_are_refused_before_their_data_is_read(saved, make, message):
    path = make(saved)
    params, opt = two_groups(seed=7)
    before = snapshot(opt, params)
    with pytest.raises(CheckpointError, match=message) as info:
        opt.load_state(path)
    assert len(str(info.value)) < 400
    assert_unchanged(opt, params, before)


# ------------------------------------------------- temporaries of dead writers


def dead_pid():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                         capture_output=True, text=True, timeout=60)
    return int(out.stdout)


def age(path, seconds=3600):
    import os
    import time

    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


@pytest.mark.skipif(__import__("os").name != "posix", reason="process ids checked on POSIX")
def test_a_save_removes_stale_temporaries_of_dead_processes(tmp_path):
    import os

    dead = dead_pid()
    names = {
        "stale": f".run.ckpt.{dead}.0123abcd.tmp",
        "own_stale": f".run.ckpt.{os.getpid()}.fedcba98.tmp",  # not being written by us
        "recent": f".run.ckpt.{dead}.89abcdef.tmp",
        "alive": f".run.ckpt.{os.getppid()}.0123abcd.tmp",
        "other_file": f".other.ckpt.{dead}.0123abcd.tmp",
        "not_ours": f".run.ckpt.{dead}.notahex!.tmp",
        "link": f".run.ckpt.{dead}.11111111.tmp",
    }
    for key, name in names.items():
        if key == "link":
            os.symlink(tmp_path / "keep.txt", tmp_path / name)
        else:
            (tmp_path / name).write_bytes(b"partial checkpoint")
        if key != "recent":
            age(tmp_path / name)
    (tmp_path / "keep.txt").write_text("kept")
    params, opt = two_groups()
    opt.save(tmp_path / "run.ckpt")
    removed = {"stale", "own_stale"}
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["run.ckpt", "keep.txt", *(n for k, n in names.items() if k not in removed)]
    )


KILLED_WHILE_SAVING = """
    import numpy as np, sys
    from adamax_cy import Adamax
    opt = Adamax([np.zeros(2_000_000)])
    print("ready", flush=True)
    while True:
        opt.save(sys.argv[1])
"""


@pytest.mark.skipif(__import__("os").name != "posix", reason="kill -9")
def test_a_temporary_left_by_kill_9_is_removed_by_a_later_save(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    path = tmp_path / "run.ckpt"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_WHILE_SAVING), str(path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 60
        while not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]:
            assert time.monotonic() < deadline, "no temporary file seen"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=60)
        child.stdout.close()
    left = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(f".run.ckpt.{child.pid}.")
    age(tmp_path / left[0])
    params, opt = two_groups()
    opt.save(path)
    assert os.listdir(tmp_path) == ["run.ckpt"]


LOAD_A_FIFO = """
    import os, sys
    import numpy as np
    from adamax_cy import Adamax, CheckpointError
    os.mkfifo(sys.argv[1])
    try:
        Adamax([np.zeros(3)]).load_state(sys.argv[1])
    except CheckpointError as e:
        print(e)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="named pipes")
def test_a_named_pipe_or_device_is_refused_without_waiting_for_a_writer(tmp_path):
    import subprocess
    import sys
    import textwrap

    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LOAD_A_FIFO), str(tmp_path / "pipe")],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "not a regular file" in out.stdout
    with pytest.raises(CheckpointError, match="not a regular file"):
        Adamax([np.zeros(3)]).load_state("/dev/zero")


def test_deeply_nested_metadata_is_a_checkpoint_error(saved):
    with np.load(saved) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["meta"] = np.array("[" * 100_000 + "]" * 100_000)
    path = saved.with_name("nested.npz")
    np.savez(path, **arrays)
    params, opt = two_groups(seed=7)
    with pytest.raises(CheckpointError, match="unreadable metadata"):
        opt.load_state(path)


# ------------------------------------------------- what save() writes over


def small_optimizer():
    w = np.ones(3)
    opt = Adamax({"w": w})
    opt.step({"w": np.full(3, 0.1)})
    return w, opt


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="named pipes")
@pytest.mark.parametrize("via_link", [False, True])
def test_save_refuses_to_replace_a_named_pipe(tmp_path, via_link):
    import os
    import stat

    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    target = fifo
    if via_link:
        target = tmp_path / "link.npz"
        target.symlink_to(fifo)
    _, opt = small_optimizer()
    with pytest.raises(FileExistsError, match="not a regular file") as info:
        opt.save(target)
    assert str(target) in str(info.value) and ".tmp" not in str(info.value)
    assert "\n" not in str(info.value)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert target.is_symlink() == via_link
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"pipe.npz", target.name})


def test_save_to_a_directory_or_an_empty_path_is_a_clear_error(tmp_path, monkeypatch):
    _, opt = small_optimizer()
    (tmp_path / "sub").mkdir()
    for path, error in [(tmp_path / "sub", IsADirectoryError),
                        (str(tmp_path / "sub") + "/", IsADirectoryError),
                        (str(tmp_path / "absent") + "/", IsADirectoryError),
                        (tmp_path / "absent" / "run.npz", FileNotFoundError)]:
        with pytest.raises(error) as info:
            opt.save(path)
        message = str(info.value)
        assert str(path).rstrip("/") in message and ".tmp" not in message and "\n" not in message
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="empty") as info:
        opt.save("")
    assert ".tmp" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


def test_save_replaces_a_symbolic_link_not_the_file_it_points_to(tmp_path):
    victim = tmp_path / "other.txt"
    victim.write_text("kept")
    link = tmp_path / "run.npz"
    link.symlink_to(victim)
    w, opt = small_optimizer()
    opt.save(link)
    assert not link.is_symlink() and victim.read_text() == "kept"
    assert Adamax.load(link, {"w": np.zeros(3)}).steps == {"w": 1}


def test_save_and_load_take_bytes_and_path_like_paths(tmp_path):
    import os

    w, opt = small_optimizer()
    path = os.fsencode(tmp_path / "run.npz")
    opt.save(path)
    w2 = np.zeros(3)
    Adamax.load(path, {"w": w2})
    np.testing.assert_array_equal(w2, w)
    with pytest.raises(FileNotFoundError) as info:
        Adamax.load(os.fsencode(tmp_path / "absent.npz"), {"w": w2})
    assert str(info.value).endswith(": " + repr(str(tmp_path / "absent.npz")))
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as info:
        Adamax.load(os.fsencode(tmp_path / "bad.npz"), {"w": w2})
    assert str(info.value).startswith(str(tmp_path / "bad.npz") + ":")


CTRL_C_RIGHT_AFTER_THE_TEMPORARY_IS_CREATED = """
    import os, signal, sys
    import numpy as np
    from adamax_cy import Adamax

    # Ctrl-C raises KeyboardInterrupt even where this process was started with
    # SIGINT ignored (as a background job of a shell).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    folder = sys.argv[1]
    opt = Adamax([np.ones(3)])
    real_open = os.open
    def open_then_interrupt(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        if flags & os.O_CREAT:  # the temporary file: Ctrl-C as soon as it exists
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
        return fd
    fds = set(os.listdir("/proc/self/fd"))
    os.open = open_then_interrupt
    try:
        opt.save(os.path.join(folder, "run.npz"))
    except KeyboardInterrupt:
        print("interrupted")
    os.open = real_open
    print(sorted(os.listdir(folder)), len(set(os.listdir("/proc/self/fd")) - fds))
"""


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/fd"), reason="needs /proc")
def test_a_ctrl_c_as_the_temporary_file_is_created_leaks_neither_file_nor_descriptor(tmp_path):
    import subprocess
    import sys
    import textwrap

    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CTRL_C_RIGHT_AFTER_THE_TEMPORARY_IS_CREATED),
         str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["interrupted", "[] 0"], out.stdout


# ------------------------------------------------- save() writes only what loads


def set_option(key, value):
    return lambda opt: opt.param_groups[0].__setitem__(key, value)


@pytest.mark.parametrize("change, error, message", [
    (set_option("lr", -5), ValueError, r"param_groups\[0\]: lr must be"),
    (set_option("lr", float("nan")), ValueError, r"param_groups\[0\]: lr must be"),
    (set_option("betas", (0.9,)), ValueError, r"param_groups\[0\]: betas must be a pair"),
    (set_option("convention", "bogus"), ValueError, r"param_groups\[0\]: convention must be"),
    (set_option("eps", object()), TypeError, r"param_groups\[0\]: eps must be a real number"),
    (set_option("params", (np.ones(3), np.ones(3))), ValueError,
     r"param_groups\[0\]: params .*changed"),
    (lambda opt: opt.param_groups[0].pop("params"), ValueError,
     r"param_groups\[0\] lacks \['params'\]"),
    (lambda opt: opt.param_groups[0].pop("eps"), ValueError, r"param_groups\[0\] lacks \['eps'\]"),
    (lambda opt: opt.param_groups.append({**opt.param_groups[0], "params": ()}), ValueError,
     "1 parameter group"),
])
def test_save_refuses_groups_its_loader_would_refuse(tmp_path, change, error, message):
    _, opt = small_optimizer()
    path = tmp_path / "run.npz"
    opt.save(path)
    before = path.read_bytes()
    change(opt)
    with pytest.raises(error, match=message):
        opt.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]


def test_saved_options_are_plain_numbers_in_strict_json(tmp_path):
    _, opt = small_optimizer()
    opt.param_groups[0]["lr"] = np.float32(0.25)
    opt.param_groups[0]["betas"] = [np.float64(0.5), 0.75]
    opt.save(tmp_path / "run.npz")
    with np.load(tmp_path / "run.npz") as f:
        meta = json.loads(str(f["meta"]), parse_constant=lambda c: pytest.fail(c))
    group = meta["param_groups"][0]
    assert (group["lr"], group["betas"]) == (0.25, [0.5, 0.75])
    opt2 = Adamax.load(tmp_path / "run.npz", {"w": np.zeros(3)})
    assert opt2.param_groups[0]["lr"] == 0.25 and opt2.param_groups[0]["betas"] == (0.5, 0.75)


# ------------------------------------------------- values no run makes, or no int


def rewrite_array(path, key, change):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays[key] = change(arrays[key].copy())
    out = path.with_name("changed.npz")
    np.savez(out, **arrays)
    return out


def set_meta(key, value, group=None):
    def change(meta):
        (meta if group is None else meta["param_groups"][group])[key] = value
    return change


@pytest.mark.parametrize("change, message", [
    (set_meta("version", 1.0), "checkpoint version 1.0"),
    (set_meta("version", True), "checkpoint version True"),
    (set_meta("size", True, group=0), "param_groups"),
    (set_meta("size", 1.0, group=0), "param_groups"),
])
def test_metadata_numbers_that_are_not_ints_are_refused(saved, change, message):
    params, opt = two_groups(seed=7)
    before = snapshot(opt, params)
    with pytest.raises(CheckpointError, match=message):
        opt.load_state(rewrite_meta(saved, change))
    assert_unchanged(opt, params, before)


def negative_first(u):
    u.reshape(-1)[0] = -1.0
    return u


def test_a_negative_u_is_refused(saved):
    params, opt = two_groups(seed=7)
    before = snapshot(opt, params)
    with pytest.raises(CheckpointError, match="u holds negative values"):
        opt.load_state(rewrite_array(saved, "u1", negative_first))
    sd = opt.state_dict()
    negative_first(sd["state"][0]["u"])
    with pytest.raises(CheckpointError, match="w: u holds negative values"):
        opt.load_state_dict(sd)
    assert_unchanged(opt, params, before)


def test_a_nan_m_after_a_nan_gradient_is_a_legal_state_and_loads(tmp_path):
    w = np.ones(3)
    opt = Adamax({"w": w}, nonfinite="propagate")
    opt.step({"w": np.array([np.nan, 0.1, 0.1])})
    assert np.isnan(opt.state_dict()["state"][0]["m"][0])
    opt.save(tmp_path / "run.npz")
    opt2 = Adamax.load(tmp_path / "run.npz", {"w": np.zeros(3)})
    assert np.isnan(opt2.state_dict()["state"][0]["m"][0]) and opt2.steps == {"w": 1}
