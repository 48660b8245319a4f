"""The README's results cannot drift: its table block and docs/results.md are what
scripts/readme_results.py makes from docs/evaluation/results.json, and that report was made by
the evaluation whose every parameter the script fixes."""

import importlib.util
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "scripts" / "readme_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _options(argv):
    """{--option: value} of a command line (values of repeated flags kept last)."""
    out, key = {}, None
    for tok in argv:
        if tok.startswith("--"):
            key = tok
            out[key] = True
        elif key is not None:
            out[key] = tok
            key = None
    return out


def test_readme_and_results_md_match_the_recorded_evaluation(script, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert script.main(["--check", "--root", str(ROOT)]) == 0


def test_recorded_evaluation_is_the_scripts(script):
    records, command = script.load_records(ROOT / script.REPORT_DIR)
    recorded = _options(shlex.split(command)[2:])
    wanted = _options(script.evaluate_argv(script.REPORT_DIR)[1:])
    recorded["--methods"] = ",".join(script.RENAMED.get(m, m) for m in recorded["--methods"].split(","))
    for key, value in wanted.items():
        if key not in ("--overwrite", "--quiet"):  # how to write, not what was evaluated
            assert str(recorded.get(key)) == str(value), key
    # the table's rows are the records': e.g. the Wiener row of the README is 1.00× everywhere
    block = script.readme_block(records, command)
    wiener_row = next(line for line in block.splitlines() if line.startswith("| Wiener filter"))
    assert wiener_row.count("(1.00×)") == len(script.MASKS)


def test_splice_replaces_only_the_block(script):
    text = f"intro\n{script.BEGIN}\nold table\n{script.END}\noutro\n"
    new = script.splice(text, f"{script.BEGIN}\nnew\n{script.END}")
    assert new == f"intro\n{script.BEGIN}\nnew\n{script.END}\noutro\n"
    with pytest.raises(SystemExit):
        script.splice("no markers", "x")
