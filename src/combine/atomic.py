"""Atomic writes: a file or directory appears complete or not at all.

Every output of CoMBInE (datasets, masks, checkpoints, maps, reports) is written to a
temporary name beside its destination and renamed into place only when complete, so a failed
or killed command never leaves a partial file for the next one to trip on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import InputError


def _check_parent_writable(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{path}: cannot create output directory ({exc.strerror})") from None
    if not parent.is_dir():
        raise InputError(f"{path}: parent {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{path}: output directory {parent} is not writable")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file path")


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left as it was.
    ``suffix`` defaults to the destination's suffix so that libraries that choose a format
    from the extension (numpy, healpy, matplotlib) write the right one.
    """
    path = Path(path)
    _check_parent_writable(path)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # let the writer create it (some refuse to overwrite)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary directory beside ``path``; move it to ``path`` on success.

    An existing ``path`` is replaced only after the new directory is complete (the old one is
    renamed aside, the new one renamed in, then the old one deleted).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.rmdir(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
