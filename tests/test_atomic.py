"""Atomic writes: nothing partial survives an exception, SIGINT, SIGTERM or a kill -9."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from combine import atomic
from combine.atomic import atomic_dir, atomic_path, check_free_space, clean_stale_temps
from combine.errors import InputError

SRC = str(Path(atomic.__file__).resolve().parents[1])


def _listing(directory):
    return sorted(p.name for p in Path(directory).iterdir())


def test_atomic_path_renames_on_success_and_removes_temp_on_error(tmp_path):
    dest = tmp_path / "out.npy"
    with atomic_path(dest) as tmp:
        assert atomic._TEMP_RE.match(tmp.name), tmp.name
        assert tmp.name.startswith(".out.npy.combine-tmp-%d-" % os.getpid()) and tmp.suffix == ".npy"
        tmp.write_bytes(b"new")
    assert dest.read_bytes() == b"new"
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert dest.read_bytes() == b"new"
    assert _listing(tmp_path) == ["out.npy"]


def test_atomic_dir_replaces_existing_only_when_complete(tmp_path):
    dest = tmp_path / "run"
    with atomic_dir(dest) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(dest) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("boom")
    assert (dest / "a").read_text() == "1"
    with atomic_dir(dest) as tmp:
        (tmp / "b").write_text("3")
    assert _listing(dest) == ["b"]
    assert _listing(tmp_path) == ["run"]


def test_handlers_installed_only_while_a_write_is_open(tmp_path):
    before = {s: signal.getsignal(s) for s in atomic.CLEANUP_SIGNALS}
    # an ignored signal (SIGINT of a background job) stays ignored: it ends nothing
    expected = {s: before[s] if before[s] is signal.SIG_IGN else atomic._handler for s in before}
    with atomic_path(tmp_path / "x.bin") as tmp:
        assert {s: signal.getsignal(s) for s in before} == expected
        with atomic_dir(tmp_path / "d"):  # nested: still ours, restored only after the outer one
            pass
        assert {s: signal.getsignal(s) for s in before} == expected
        tmp.write_bytes(b"")
    assert {s: signal.getsignal(s) for s in atomic.CLEANUP_SIGNALS} == before


CHILD = textwrap.dedent("""
    import signal, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if started in the background
    sys.path.insert(0, {src!r})
    from combine.atomic import atomic_path, atomic_dir
    kind, dest = sys.argv[1], sys.argv[2]
    cm = atomic_path(dest) if kind == "file" else atomic_dir(dest)
    with cm as tmp:
        if kind == "file":
            fh = open(tmp, "wb"); fh.write(b"x" * 4096); fh.flush()
        else:
            (tmp / "part").write_bytes(b"x" * 4096)
        print("ready", flush=True)
        time.sleep(60)
""")


def _start_child(tmp_path, kind, dest):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(src=SRC))
    proc = subprocess.Popen([sys.executable, str(script), kind, str(dest)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.parametrize("kind", ["file", "dir"])
@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, None)])
def test_signal_mid_write_leaves_no_temp(tmp_path, kind, sig, status):
    out = tmp_path / "out"
    out.mkdir()
    proc = _start_child(tmp_path, kind, out / "result.bin")
    assert len(_listing(out)) == 1  # the temporary exists while writing
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    if status is not None:
        assert proc.returncode == status
    else:
        assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert _listing(out) == []


def test_stale_temp_of_killed_writer_is_removed_by_next_write(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = _start_child(tmp_path, "file", out / "a.fits")
    proc.kill()  # SIGKILL cannot be caught: the temporary stays
    proc.wait(timeout=30)
    (stale,) = _listing(out)
    assert stale.startswith(".a.fits.combine-tmp-%d-" % proc.pid)
    with atomic_path(out / "other.npy") as tmp:
        tmp.write_bytes(b"ok")
    assert _listing(out) == ["other.npy"]


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clean_stale_temps_spares_live_processes_and_restores_old_dirs(tmp_path):
    dead = _dead_pid()
    live_tmp = tmp_path / f".x.npy.combine-tmp-{os.getppid()}-abcd.npy"
    dead_tmp = tmp_path / f".x.npy.combine-tmp-{dead}-abcd.npy"
    dead_dir = tmp_path / f".run.combine-tmp-{dead}-00ff.tmp"
    old_dir = tmp_path / f".best.combine-old-{dead}-0a0b.old"  # killed between the two renames
    unrelated = tmp_path / ".x.npy.not-ours"
    for p in (live_tmp, dead_tmp, unrelated):
        p.write_bytes(b"")
    dead_dir.mkdir()
    (dead_dir / "weights").write_bytes(b"")
    old_dir.mkdir()
    (old_dir / "weights").write_bytes(b"old")
    removed = clean_stale_temps(tmp_path)
    assert set(removed) == {dead_tmp, dead_dir, old_dir}
    assert _listing(tmp_path) == sorted([live_tmp.name, unrelated.name, "best"])
    assert (tmp_path / "best" / "weights").read_bytes() == b"old"


def test_check_free_space_reports_needed_and_free(tmp_path):
    check_free_space(tmp_path / "small.npy", 1024, "a small file")
    free = atomic.free_bytes(tmp_path)
    with pytest.raises(InputError) as info:
        check_free_space(tmp_path / "sub" / "big.npy", free * 4, "100000000 masks")
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path / 'sub' / 'big.npy'}: 100000000 masks needs ")
    assert atomic.format_bytes(free * 4) in msg and "is free" in msg


def test_format_bytes():
    assert atomic.format_bytes(512) == "512 B"
    assert atomic.format_bytes(72 * 1024**3) == "72 GiB"
    assert atomic.format_bytes(1.5 * 1024**2) == "1.5 MiB"


def test_read_only_directory_is_an_input_error(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_read_only_fs", lambda path: True)
    for cm in (atomic_path(tmp_path / "a.npy"), atomic_dir(tmp_path / "d")):
        with pytest.raises(InputError, match=r"output directory is not writable \(read-only file system\)"):
            with cm:
                pass
    assert _listing(tmp_path) == []


def test_out_of_space_while_writing_becomes_input_error(tmp_path):
    with pytest.raises(InputError, match="a.h5: no space left"):
        with atomic_path(tmp_path / "a.h5") as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert _listing(tmp_path) == []


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) to mount a read-only tmpfs")
def test_real_read_only_file_system(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    code = (f"import sys; sys.path.insert(0, {SRC!r})\n"
            "from combine.atomic import atomic_path\n"
            "from combine.errors import InputError\n"
            "try:\n"
            f"    with atomic_path({str(ro / 'sub' / 'a.npy')!r}): pass\n"
            "except InputError as e: print(e)\n")
    cmd = f"mount -t tmpfs -o ro tmpfs {ro} && {sys.executable} -c \"$0\""
    res = subprocess.run(["unshare", "-rm", "sh", "-c", cmd, code], capture_output=True, text=True, timeout=60)
    if "mount" in res.stderr and res.returncode:
        pytest.skip(f"cannot mount here: {res.stderr.strip()}")
    assert res.stdout.strip() == f"{ro / 'sub' / 'a.npy'}: output directory is not writable (read-only file system)"


@pytest.mark.parametrize("sig, status, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_command_killed_mid_write_leaves_nothing_and_says_so(tmp_path, sig, status, word):
    """`combine masks` interrupted while its output is being written: exit 143 (SIGTERM) or 130
    (SIGINT), one line on stderr, no file and no temporary left in the output directory."""
    out = tmp_path / "out"
    out.mkdir()
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            f"sys.path.insert(0, {SRC!r}); from combine.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", code, "masks", "--kind", "random", "--n", "40000", "--size",
                             "64", "--seed", "1", "--out", str(out / "m.npy")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".m.npy.combine-tmp-") for p in out.iterdir()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no temporary appeared"
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert err.count("\n") == 1 and word in err, err
    assert _listing(out) == []


def test_write_from_a_thread_then_main_thread_keeps_one_handler(tmp_path):
    """A write that a worker thread finishes last cannot restore the handlers (only the main
    thread may); the next main-thread write must not record our own handler as the previous one
    (a signal would then recurse), and the original handler comes back after it."""
    import threading

    before = signal.getsignal(signal.SIGTERM)
    opened, main_closed = threading.Event(), threading.Event()

    def worker():
        with atomic_path(tmp_path / "t.bin") as tmp:
            tmp.write_bytes(b"")
            opened.set()
            main_closed.wait(10)

    t = threading.Thread(target=worker)
    with atomic_path(tmp_path / "a.bin") as tmp:
        tmp.write_bytes(b"")
        t.start()
        opened.wait(10)
    main_closed.set()
    t.join()
    if before is not signal.SIG_IGN:
        assert signal.getsignal(signal.SIGTERM) is atomic._handler  # left installed by the thread
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"")
        assert atomic._PREVIOUS.get(signal.SIGTERM) is not atomic._handler
    assert signal.getsignal(signal.SIGTERM) == before
