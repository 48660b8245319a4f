"""The command line's own contract: one line per error, warnings as one line each, exit codes."""

import warnings

import pytest

from combine import cli
from combine.errors import InputError


def _fake_command(monkeypatch, run):
    """Replace `combine masks`' run function by ``run``."""
    from combine.commands import masks

    monkeypatch.setattr(masks, "run", run)


ARGV = ["masks", "--kind", "random", "--n", "1", "--out", "unused.npy"]


def test_input_error_is_one_line_and_warnings_before_it_are_dropped(monkeypatch, capsys):
    def run(args):
        warnings.warn("Casting complex values to real discards the imaginary part")
        raise InputError("maps.npy: bad\nsecond line of a library message")

    _fake_command(monkeypatch, run)
    assert cli.main(ARGV) == 2
    err = capsys.readouterr().err
    assert err == "combine masks: error: maps.npy: bad / second line of a library message\n"


def test_warnings_of_a_successful_run_are_one_line_each_and_deduplicated(monkeypatch, capsys):
    def run(args):
        for _ in range(3):
            warnings.warn("3 pixels clipped", UserWarning)
        warnings.warn("old API", DeprecationWarning)  # for developers: not shown to users
        print("combine masks: wrote 1 mask")
        return 0

    _fake_command(monkeypatch, run)
    assert cli.main(ARGV) == 0
    out, err = capsys.readouterr()
    assert out == "combine masks: wrote 1 mask\n"
    assert err == "combine masks: warning: 3 pixels clipped\n"


@pytest.mark.parametrize("exc, status, text", [
    (KeyboardInterrupt(), 130, "combine masks: interrupted (temporary files removed)\n"),
    (RuntimeError("boom\nmore"), 1, "combine masks: internal error: RuntimeError: boom / more "
                                    "(rerun with --debug for a traceback)\n"),
])
def test_interruptions_and_internal_errors_are_one_line(monkeypatch, capsys, exc, status, text):
    def run(args):
        raise exc

    _fake_command(monkeypatch, run)
    assert cli.main(ARGV) == status
    assert capsys.readouterr().err == text


def test_sigterm_exit_status_passes_through_with_one_line(monkeypatch, capsys):
    def run(args):
        raise SystemExit(143)

    _fake_command(monkeypatch, run)
    with pytest.raises(SystemExit) as info:
        cli.main(ARGV)
    assert info.value.code == 143
    assert capsys.readouterr().err == "combine masks: terminated (SIGTERM; temporary files removed)\n"


def test_debug_shows_the_exception(monkeypatch):
    def run(args):
        raise InputError("x: bad")

    _fake_command(monkeypatch, run)
    with pytest.raises(InputError):
        cli.main(ARGV + ["--debug"])


@pytest.mark.parametrize("err, status, text", [
    (OSError(30, "Read-only file system", "/data/run"), 2,
     "combine masks: error: /data/run: output directory is not writable (read-only file system)\n"),
    (OSError(28, "No space left on device", "/data/m.npy"), 2,
     "combine masks: error: /data/m.npy: no space left on the device\n"),
    (OSError(2, "No such file or directory", "/x"), 1,
     "combine masks: internal error: FileNotFoundError: [Errno 2] No such file or directory: '/x' "
     "(rerun with --debug for a traceback)\n"),
])
def test_read_only_and_full_disk_are_bad_input_other_os_errors_internal(monkeypatch, capsys, err, status, text):
    def run(args):
        raise err

    _fake_command(monkeypatch, run)
    assert cli.main(ARGV) == status
    assert capsys.readouterr().err == text
