"""The ``combine`` command line: one entry point, one module per subcommand.

Exit status: 0 on success; 2 for bad input or usage, with one line on stderr naming the file
and the problem (a traceback only with ``--debug``); 1 for an internal error.
"""

from __future__ import annotations

import argparse
import errno
import sys
import warnings

from . import __version__
from .atomic import SIGTERM_EXIT_STATUS
from .errors import InputError
from .progress import start_command


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors as a single line and exit status 2."""

    def error(self, message):  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from .commands import COMMANDS

    parser = _OneLineParser(
        prog="combine",
        description="CoMBInE: fill masked regions of CMB maps (μK) with a partial-convolution UNet.",
    )
    parser.add_argument("--version", action="version", version=f"combine {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)
    sub.required = True
    for module in COMMANDS:
        module.register(sub, common)
    return parser


def one_line(text) -> str:
    """``text`` on one line (a multi-line library message joined with " / ")."""
    return " / ".join(part.strip() for part in str(text).splitlines() if part.strip())


def main(argv=None) -> int:
    """Run ``combine`` with ``argv``; return the exit status (see the module docstring).

    Interruptions: SIGINT gives 130 and SIGTERM during a write 143 (:mod:`combine.atomic`
    removes the temporaries first), each with one line. Python warnings raised during the run
    are printed after it as one line each; after a bad-input error (status 2) they are dropped,
    so that the error stays the one line the contract promises.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    start_command(args.command, getattr(args, "quiet", False))
    debug = getattr(args, "debug", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for quiet_category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", quiet_category)  # for developers, as Python's own default
        try:
            status = _run(args, debug)
        except BaseException:
            _print_warnings(args.command, caught)
            raise
    if status != 2:  # bad input: the error line is the whole message
        _print_warnings(args.command, caught)
    return status


def _print_warnings(command: str, caught) -> None:
    """Library warnings of a run as one line each, ``combine <command>: warning: ...`` (once per text)."""
    seen = set()
    for w in caught:
        text = one_line(w.message)
        if text not in seen:
            seen.add(text)
            sys.stderr.write(f"combine {command}: warning: {text}\n")


def _run(args, debug: bool) -> int:
    try:
        status = args.run(args)
        return 0 if status is None else int(status)
    except InputError as exc:
        if debug:
            raise
        sys.stderr.write(f"combine {args.command}: error: {one_line(exc)}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"combine {args.command}: interrupted (temporary files removed)\n")
        return 130
    except SystemExit as exc:
        if exc.code == SIGTERM_EXIT_STATUS:
            sys.stderr.write(f"combine {args.command}: terminated (SIGTERM; temporary files removed)\n")
        raise
    except OSError as exc:
        if debug:
            raise
        problem = _output_problem(exc)
        if problem is None:
            return _internal_error(args.command, exc)
        sys.stderr.write(f"combine {args.command}: error: {problem}\n")
        return 2
    except Exception as exc:  # internal error: one line unless --debug
        if debug:
            raise
        return _internal_error(args.command, exc)


def _output_problem(exc: OSError) -> str | None:
    """A read-only file system or a full disk met while writing is the user's to fix (exit 2):
    ``"<path>: output directory is not writable (read-only file system)"``; None otherwise."""
    where = exc.filename if exc.filename else "output"
    if exc.errno == errno.EROFS:
        return f"{where}: output directory is not writable (read-only file system)"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}: no space left on the device"
    return None


def _internal_error(command: str, exc: BaseException) -> int:
    sys.stderr.write(
        f"combine {command}: internal error: {type(exc).__name__}: {one_line(exc)} "
        "(rerun with --debug for a traceback)\n"
    )
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
