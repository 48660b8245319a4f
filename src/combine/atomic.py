"""Atomic writes: a file or directory appears complete or not at all.

Every output of CoMBInE (datasets, masks, checkpoints, maps, reports) is written to a
temporary name beside its destination and renamed into place only when complete, so a failed
or killed command never leaves a partial file for the next one to trip on.

Temporary names are recognisable and carry the writer's process id::

    .<name>.combine-tmp-<pid>-<rand><suffix>      (files; <suffix> = the destination's)
    .<name>.combine-tmp-<pid>-<rand>.tmp          (directories)
    .<name>.combine-old-<pid>-<rand>.old          (a replaced directory, for an instant)

While a write is open, SIGINT and SIGTERM remove every open temporary of this process and are
then re-raised as :class:`KeyboardInterrupt` (SIGINT) or ``SystemExit(143)`` (SIGTERM; 128 +
15, the shell's convention), or passed on to a handler installed before ours. ``kill -9``
cannot be caught: the temporaries it leaves are removed by :func:`clean_stale_temps`, which
every new write calls on its destination directory (a temporary whose process is dead is
stale; a live process's are never touched).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import signal
import threading
from pathlib import Path

from .errors import InputError

#: Signals that remove open temporaries before ending the process.
CLEANUP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: Exit status after SIGTERM (128 + signal number, as a shell reports it).
SIGTERM_EXIT_STATUS = 128 + int(signal.SIGTERM)

_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.combine-(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]+")

# Open temporaries of this process: path -> is_dir. Guarded by _LOCK (writers in threads).
_LIVE: dict[Path, bool] = {}
_LOCK = threading.RLock()
_PREVIOUS: dict[int, object] = {}  # signal -> handler before ours (only while _LIVE is non-empty)
_OWNER_PID: int | None = None  # the process that installed the handlers (not a forked child)
_DEFERRED: list[int] = []  # signals received inside a critical section
_CRITICAL = 0


# --------------------------------------------------------------------------------------------
# names and stale temporaries
# --------------------------------------------------------------------------------------------
def temp_name(dest_name: str, kind: str = "tmp", suffix: str = "") -> str:
    """A recognisable temporary name for ``dest_name``: ``.<name>.combine-<kind>-<pid>-<rand><suffix>``."""
    return f".{dest_name}.combine-{kind}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def clean_stale_temps(directory) -> list[Path]:
    """Remove the temporaries in ``directory`` left by CoMBInE processes that no longer run.

    A ``combine-tmp`` entry of a dead process is deleted. A ``combine-old`` directory (the
    previous version of a directory being replaced) is renamed back to its destination if the
    destination is missing (the kill came between the two renames), else deleted. Entries of
    live processes are left alone. Returns the paths removed or restored; errors (e.g. a
    read-only directory) are ignored: cleaning is a courtesy, never a reason to fail.
    """
    directory = Path(directory) if str(directory) else Path(".")
    done = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return done
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m is None or _pid_alive(int(m["pid"])):
            continue
        try:
            dest = directory / m["name"]
            if m["kind"] == "old" and not dest.exists():
                os.replace(entry, dest)
            else:
                _remove(entry)
            done.append(entry)
        except OSError:
            pass
    return done


# --------------------------------------------------------------------------------------------
# signal handling while temporaries are open
# --------------------------------------------------------------------------------------------
def _remove_live() -> None:
    with _LOCK:
        live = list(_LIVE.items())
    for path, _ in reversed(live):
        _remove(path)


def _handler(signum, frame):
    if os.getpid() != _OWNER_PID:  # a forked child (DataLoader worker): not our files
        previous = _PREVIOUS.get(signum, signal.SIG_DFL)
        if callable(previous):
            return previous(signum, frame)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return None
    if _CRITICAL:
        _DEFERRED.append(signum)
        return None
    _remove_live()
    previous = _PREVIOUS.get(signum)
    if callable(previous) and previous not in (signal.default_int_handler, _handler):
        return previous(signum, frame)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(SIGTERM_EXIT_STATUS)


def _register(path: Path, is_dir: bool) -> None:
    global _OWNER_PID
    with _LOCK:
        if not _LIVE and threading.current_thread() is threading.main_thread():
            try:
                for sig in CLEANUP_SIGNALS:
                    previous = signal.getsignal(sig)
                    if previous is _handler:  # left installed by a writer in another thread
                        continue
                    if previous is signal.SIG_IGN:  # nohup-like: the signal ends nothing
                        continue
                    _PREVIOUS[sig] = previous
                    signal.signal(sig, _handler)
                _OWNER_PID = os.getpid()
            except ValueError:  # not the main interpreter thread after all
                _PREVIOUS.clear()
        _LIVE[path] = is_dir


def _unregister(path: Path) -> None:
    with _LOCK:
        _LIVE.pop(path, None)
        if _LIVE or not _PREVIOUS:
            return
        if threading.current_thread() is threading.main_thread():
            for sig, previous in _PREVIOUS.items():
                if signal.getsignal(sig) is _handler:
                    signal.signal(sig, previous)
            _PREVIOUS.clear()


@contextlib.contextmanager
def _critical():
    """Defer SIGINT/SIGTERM until a sequence of renames is complete (never half done)."""
    global _CRITICAL
    _CRITICAL += 1
    try:
        yield
    finally:
        _CRITICAL -= 1
        if not _CRITICAL and _DEFERRED:
            signum = _DEFERRED.pop(0)
            _DEFERRED.clear()
            _handler(signum, None)


@contextlib.contextmanager
def _temporary(path: Path, is_dir: bool):
    _register(path, is_dir)
    try:
        yield
    finally:
        _unregister(path)


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------
def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(_existing_ancestor(path)).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _not_writable(path: Path, directory: Path) -> InputError:
    if _read_only_fs(directory):
        return InputError(f"{path}: output directory is not writable (read-only file system)")
    return InputError(f"{path}: output directory {directory} is not writable (permission denied)")


def check_writable_dir(directory, what=None) -> None:
    """Raise :class:`InputError` unless ``directory`` (or its nearest existing ancestor, if it is
    still to be created) is a directory this process may write into.

    ``what`` (default ``directory``) names the output in the message. Read-only file systems
    are reported as such.
    """
    directory = Path(directory) if str(directory) else Path(".")
    what = directory if what is None else what
    anchor = _existing_ancestor(directory)
    if not anchor.is_dir():
        raise InputError(f"{what}: {anchor} is not a directory")
    if not os.access(anchor, os.W_OK | os.X_OK) or _read_only_fs(anchor):
        raise _not_writable(what, anchor)


def _mkdir(directory: Path, what) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise _not_writable(what, _existing_ancestor(directory)) from None
        raise InputError(f"{what}: cannot create output directory ({exc.strerror})") from None


def _check_parent_writable(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    check_writable_dir(parent, path)
    if not parent.exists():
        _mkdir(parent, path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file path")


def format_bytes(nbytes: float) -> str:
    """``nbytes`` in binary units with three significant figures, e.g. ``'72.0 GiB'``."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1024
    return f"{value:.3g} PiB"  # pragma: no cover - loop always returns


def free_bytes(path) -> int:
    """Bytes an unprivileged process may still write on the file system holding ``path``
    (``statvfs``: ``f_bavail * f_frsize``; ``path`` may not exist yet)."""
    st = os.statvfs(_existing_ancestor(Path(path)))
    return int(st.f_bavail) * int(st.f_frsize)


#: Head-room kept free beyond the requested size (other writers, file-system metadata).
FREE_SPACE_MARGIN_BYTES = 64 * 1024**2


def check_free_space(path, nbytes: int, what: str) -> None:
    """Raise :class:`InputError` if writing ``nbytes`` at ``path`` would not fit on its disk.

    The message says how much ``what`` (e.g. ``"100000000 masks of 128² float32"``) would need
    and how much is free: ``"<path>: <what> needs 6.1 TiB but only 20.3 GiB is free"``. A margin
    of :data:`FREE_SPACE_MARGIN_BYTES` is kept.
    """
    nbytes = int(nbytes)
    try:
        free = free_bytes(path)
    except OSError:
        return  # cannot tell (e.g. no such mount): let the write itself report
    if nbytes + FREE_SPACE_MARGIN_BYTES > free:
        raise InputError(f"{path}: {what} needs {format_bytes(nbytes)} but only {format_bytes(free)} "
                         "is free on that disk")


def _write_error(path: Path, exc: OSError) -> InputError | None:
    """An :class:`InputError` for an OSError that is about the destination, else None."""
    text = str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text or "errno = 28" in text:
        return InputError(f"{path}: no space left on the device while writing")
    if exc.errno == errno.EROFS or "Read-only file system" in text:
        return InputError(f"{path}: output directory is not writable (read-only file system)")
    return None


# --------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On any exception, SIGINT or SIGTERM the temporary file is removed and ``path`` is left as
    it was. ``suffix`` defaults to the destination's suffix so that libraries that choose a
    format from the extension (numpy, healpy, matplotlib) write the right one. Stale
    temporaries of dead processes in the same directory are removed first. An out-of-space or
    read-only error while writing becomes an :class:`InputError` naming ``path``.
    """
    path = Path(path)
    _check_parent_writable(path)
    parent = path.parent if str(path.parent) else Path(".")
    clean_stale_temps(parent)
    suffix = path.suffix if suffix is None else suffix
    tmp = parent / temp_name(path.name, "tmp", suffix)
    with _temporary(tmp, False):
        try:
            yield tmp
            os.replace(tmp, path)
        except BaseException as exc:
            _remove(tmp)
            if isinstance(exc, OSError) and (err := _write_error(path, exc)) is not None:
                raise err from None
            raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary directory beside ``path``; move it to ``path`` on success.

    An existing ``path`` is replaced only after the new directory is complete (the old one is
    renamed aside, the new one renamed in, then the old one deleted; signals wait until both
    renames are done, and :func:`clean_stale_temps` puts an old directory back if a ``kill -9``
    came between them).
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    check_writable_dir(parent, path)
    _mkdir(parent, path)
    clean_stale_temps(parent)
    tmp = parent / temp_name(path.name, "tmp", ".tmp")
    with _temporary(tmp, True):
        try:
            try:
                tmp.mkdir()
            except OSError as exc:
                raise _write_error(path, exc) or _not_writable(path, parent) from None
            yield tmp
            if path.exists():
                old = parent / temp_name(path.name, "old", ".old")
                with _critical():
                    os.replace(path, old)
                    os.replace(tmp, path)
                    shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except BaseException as exc:
            _remove(tmp)
            if isinstance(exc, OSError) and (err := _write_error(path, exc)) is not None:
                raise err from None
            raise
