"""Progress bars: tqdm on a terminal, silent in logs or with ``--quiet``."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """Silence (or re-enable) every progress bar of this process."""
    global _QUIET
    _QUIET = bool(quiet)


def progress(iterable=None, *, desc: str | None = None, total: int | None = None, **kwargs):
    """A tqdm bar that shows only when stderr is a terminal and ``--quiet`` was not given."""
    disable = _QUIET or not sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, disable=disable, leave=False, **kwargs)
