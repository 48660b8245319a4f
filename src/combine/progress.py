"""What a command tells the person running it: progress, headers and one summary line.

- :func:`progress` is a tqdm bar when stderr is a terminal; when it is not (a log file, a
  pipe, a batch job) it prints a plain line every :data:`LOG_INTERVAL_S` seconds
  (``"combine evaluate: fill 12/48 patch (25%), 31 s elapsed, ~93 s left"``) and one at the
  end, so a long job in a log is never silent for minutes.
- :func:`info` prints a header or status line on stderr.
- :func:`summary` prints the one line a command ends with on success (what was written, seeds,
  sizes, time) on stdout.

``--quiet`` silences progress and :func:`info`, not the summary line and never an error.
Under torchrun (``RANK`` set) only rank 0 prints any of these; errors are every rank's own.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref

from tqdm.auto import tqdm

#: Seconds between two plain progress lines when stderr is not a terminal
#: (``COMBINE_PROGRESS_INTERVAL_S`` overrides it).
LOG_INTERVAL_S = 30.0

_QUIET = False
_COMMAND: str | None = None
_START = time.monotonic()


def set_quiet(quiet: bool) -> None:
    """Silence (or re-enable) progress and info lines of this process."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    return _QUIET


def start_command(name: str | None, quiet: bool = False) -> None:
    """Record the running subcommand (for message prefixes) and its start time."""
    global _COMMAND, _START
    _COMMAND = name
    _START = time.monotonic()
    set_quiet(quiet)


def elapsed_s() -> float:
    """Seconds since :func:`start_command`."""
    return time.monotonic() - _START


def rank() -> int:
    """This process's rank under torchrun (``RANK``, else ``LOCAL_RANK``), 0 otherwise."""
    for var in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(var)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def is_rank_zero() -> bool:
    return rank() == 0


def _prefix() -> str:
    return f"combine {_COMMAND}: " if _COMMAND else "combine: "


def _interval_s() -> float:
    try:
        return max(0.0, float(os.environ.get("COMBINE_PROGRESS_INTERVAL_S", LOG_INTERVAL_S)))
    except ValueError:
        return LOG_INTERVAL_S


def format_duration(seconds: float) -> str:
    """``'42 s'``, ``'3 min 05 s'`` or ``'2 h 07 min'``."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def info(text: str) -> None:
    """A header or status line on stderr (rank 0 only, silent with ``--quiet``)."""
    if _QUIET or not is_rank_zero():
        return
    sys.stderr.write(f"{_prefix()}{text}\n")
    sys.stderr.flush()


def summary(text: str, *, timed: bool = True, file=None) -> None:
    """The one line a command prints on success, e.g. ``summary("wrote 3 files to data/; seed 7")``
    prints ``"combine simulate: wrote 3 files to data/; seed 7 (12.3 s)"`` on stdout.

    Printed on rank 0 only, with or without ``--quiet`` (it is the result, not progress).
    ``timed`` appends the time since the command started.
    """
    if not is_rank_zero():
        return
    if timed:
        text = f"{text} ({format_duration(elapsed_s())})" if elapsed_s() >= 60 else f"{text} ({elapsed_s():.1f} s)"
    out = sys.stdout if file is None else file
    out.write(f"{_prefix()}{text}\n")
    out.flush()


class LogProgress:
    """A tqdm stand-in for logs: one plain line every ``interval_s`` seconds and one at the end.

    A daemon thread also prints the current count every ``interval_s`` while no update comes
    (one step, e.g. a Wiener factorisation, may take minutes: the log must not fall silent).

    Supports what the commands use of tqdm: iteration, ``update``, ``set_postfix``,
    ``set_postfix_str``, ``set_description``, ``write``, ``close`` and use as a context manager.
    """

    def __init__(self, iterable=None, *, desc=None, total=None, unit="it", interval_s=None,
                 stream=None, heartbeat=True, **_ignored):
        self.iterable = iterable
        self.desc = desc or "working"
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total = total
        self.unit = unit
        self.n = 0
        self.interval_s = _interval_s() if interval_s is None else float(interval_s)
        self.stream = sys.stderr if stream is None else stream
        self.postfix = ""
        self.start = time.monotonic()
        self.last = self.start
        self.closed = False
        self.lines = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        if heartbeat and self.interval_s > 0:
            self._thread = threading.Thread(target=_heartbeat, args=(weakref.ref(self), self._stop),
                                            name="combine-progress", daemon=True)
            self._thread.start()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __len__(self):
        return self.total or 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        items = dict(ordered_dict or {}, **kwargs)
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s="", refresh=True):
        self.postfix = str(s)

    def write(self, text, file=None, end="\n"):
        (file or self.stream).write(f"{text}{end}")

    def set_description(self, desc=None, refresh=True):
        self.desc = desc or self.desc

    def refresh(self):
        pass

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        if self.total:
            text = f"{self.desc} {self.n}/{self.total} {self.unit} ({100.0 * self.n / self.total:.0f}%)"
        else:
            text = f"{self.desc} {self.n} {self.unit}"
        text += f", {format_duration(elapsed)} elapsed"
        if self.total and 0 < self.n < self.total:
            text += f", ~{format_duration(elapsed * (self.total - self.n) / self.n)} left"
        if self.postfix:
            text += f", {self.postfix}"
        return text

    def _emit(self):
        with self._lock:
            self.stream.write(f"{_prefix()}{self.line()}\n")
            self.stream.flush()
            self.lines += 1
            self.last = time.monotonic()

    def update(self, n=1):
        self.n += n
        if time.monotonic() - self.last >= self.interval_s:
            self._emit()

    def close(self):
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        if self.n and time.monotonic() - self.start >= self.interval_s:
            self._emit()  # the final count, if the job was long enough to report at all


def _heartbeat(bar_ref, stop: threading.Event) -> None:
    """Body of a :class:`LogProgress` heartbeat thread. It holds the bar only weakly: a bar
    abandoned without ``close()`` (an exception) is collected and its thread ends; it also ends
    when the bar is complete or its stream can no longer be written."""
    while True:
        bar = bar_ref()
        if bar is None:
            return
        interval = bar.interval_s
        del bar
        if stop.wait(interval / 4):
            return
        bar = bar_ref()
        if bar is None or (bar.total and bar.n >= bar.total):
            return
        if time.monotonic() - bar.last >= bar.interval_s:
            try:
                bar._emit()
            except (ValueError, OSError):  # stream closed (e.g. a captured stderr after a test)
                return
        del bar


def progress(iterable=None, *, desc: str | None = None, total: int | None = None, **kwargs):
    """Progress over ``iterable`` (or ``update``-driven with ``total``).

    A tqdm bar on a terminal; :class:`LogProgress` lines when stderr is not a terminal;
    nothing with ``--quiet`` or on a rank other than 0.
    """
    if _QUIET or not is_rank_zero():
        return tqdm(iterable, desc=desc, total=total, disable=True, **kwargs)
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, total=total, leave=False, **kwargs)
    kwargs.pop("leave", None)
    return LogProgress(iterable, desc=desc, total=total, **kwargs)
