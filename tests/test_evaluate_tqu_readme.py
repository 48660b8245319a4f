"""The README's polarisation evaluation lines are what scripts/polarisation_evaluation.py makes from
the recorded reports (docs/evaluation-tqu*), and those reports were made with the script's parameters."""

import importlib.util
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("polarisation_evaluation",
                                                  ROOT / "scripts" / "polarisation_evaluation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_block_matches_the_recorded_reports(script):
    assert script.main(["--check"]) == 0


@pytest.mark.parametrize("pure_e", [False, True])
def test_recorded_reports_are_the_scripts(script, pure_e):
    directory = script.PURE_E_DIR if pure_e else script.REPORT_DIR
    text = (ROOT / directory / "report.md").read_text(encoding="utf-8")
    recorded = shlex.split(text.split("```", 2)[1].strip())[2:]
    wanted = script.evaluate_argv(directory, pure_e)[1:]
    opts = {}
    for tok in recorded:
        if tok.startswith("--"):
            key = tok
            opts[key] = True
        else:
            opts[key] = tok
    key = None
    for tok in wanted:
        if tok.startswith("--"):
            key = tok
            if key in ("--overwrite", "--quiet"):
                key = None
            elif key == "--pure-e":
                assert opts.get(key) is True
        elif key is not None:
            assert str(opts.get(key)) == tok, key


def test_splice_replaces_only_the_block(script):
    text = f"a\n{script.BEGIN}\nold\n{script.END}\nb\n"
    assert script.splice(text, f"{script.BEGIN}\nnew\n{script.END}") == f"a\n{script.BEGIN}\nnew\n{script.END}\nb\n"
    with pytest.raises(SystemExit):
        script.splice("no markers", "x")
