"""Progress, info and summary lines: terminal vs log, --quiet, torchrun ranks."""

import io

import pytest

from combine import progress as P


@pytest.fixture(autouse=True)
def _command(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    P.start_command("evaluate", quiet=False)
    yield
    P.start_command(None, quiet=False)


def test_log_progress_prints_plain_lines_with_counts_and_eta():
    stream = io.StringIO()
    bar = P.LogProgress(range(4), desc="fill", unit="patch", interval_s=0.0, stream=stream, heartbeat=False)
    assert list(bar) == [0, 1, 2, 3]
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("combine evaluate: fill 1/4 patch (25%), 0 s elapsed, ~0 s left")
    assert lines[3].startswith("combine evaluate: fill 4/4 patch (100%)") and "left" not in lines[3]
    assert len(lines) == 5  # four updates and the closing count
    assert "\r" not in stream.getvalue()


def test_log_progress_is_silent_for_short_jobs():
    stream = io.StringIO()
    with P.LogProgress(total=10, desc="x", interval_s=30.0, stream=stream) as bar:
        bar.update(10)
        bar.set_postfix(loss="0.1")
        bar.set_postfix_str("12 holes")
    assert stream.getvalue() == ""


def test_log_progress_reports_postfix():
    stream = io.StringIO()
    bar = P.LogProgress(total=2, desc="fill", interval_s=0.0, stream=stream, heartbeat=False)
    bar.set_postfix_str("3 holes")
    bar.update()
    assert stream.getvalue() == "combine evaluate: fill 1/2 it (50%), 0 s elapsed, ~0 s left, 3 holes\n"


def test_progress_kind_follows_terminal_quiet_and_rank(monkeypatch, capsys):
    assert isinstance(P.progress(range(3), desc="a"), P.LogProgress)  # captured stderr: no tty
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    assert not isinstance(P.progress(range(3), desc="a"), P.LogProgress)
    P.set_quiet(True)
    assert P.progress(range(3)).disable
    P.set_quiet(False)
    monkeypatch.setenv("RANK", "1")
    assert P.progress(range(3)).disable


def test_summary_on_rank_zero_even_when_quiet_info_silenced(monkeypatch, capsys):
    P.set_quiet(True)
    P.summary("wrote report/ (3 figures)", timed=False)
    P.info("header")
    out, err = capsys.readouterr()
    assert out == "combine evaluate: wrote report/ (3 figures)\n" and err == ""
    P.set_quiet(False)
    P.info("evaluating 48 patches")
    assert capsys.readouterr().err == "combine evaluate: evaluating 48 patches\n"
    monkeypatch.setenv("RANK", "1")
    P.summary("x")
    P.info("y")
    assert capsys.readouterr() == ("", "")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "1")  # RANK wins (LOCAL_RANK 1 on node 0 is still not rank 0 only if RANK unset)
    P.summary("z", timed=False)
    assert capsys.readouterr().out == "combine evaluate: z\n"


def test_summary_appends_elapsed_time(capsys):
    P.summary("done")
    out = capsys.readouterr().out
    assert out.startswith("combine evaluate: done (") and out.endswith(" s)\n")


@pytest.mark.parametrize("seconds, text", [(4.4, "4 s"), (65, "1 min 05 s"), (7620, "2 h 07 min")])
def test_format_duration(seconds, text):
    assert P.format_duration(seconds) == text


def test_log_progress_heartbeat_during_one_long_step():
    """No update for several intervals (one slow step) still gives periodic lines."""
    import time

    stream = io.StringIO()
    bar = P.LogProgress(total=3, desc="wiener", interval_s=0.2, stream=stream)
    bar.update(1)
    time.sleep(0.9)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3
    assert all(line.startswith("combine evaluate: wiener 1/3 it (33%)") for line in lines[:-1])


def test_heartbeat_thread_ends_with_an_abandoned_bar():
    """A bar dropped without close() (an exception in the loop) must not keep printing."""
    import gc
    import time

    stream = io.StringIO()
    bar = P.LogProgress(total=3, desc="x", interval_s=0.2, stream=stream)
    thread = bar._thread
    del bar
    gc.collect()
    thread.join(timeout=2)
    assert not thread.is_alive()
