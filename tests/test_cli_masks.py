"""``combine masks``: each kind, the preview, reproducibility, and bad inputs (exit 2, one line, no files)."""

import os

import cv2
import numpy as np
import pytest

import combine.commands.masks as cmd
from combine.cli import main
from combine.errors import InputError
from combine.masks import circle_mask, generate_masks

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(capsys, *argv):
    status = main(["masks", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def mask_dir(tmp_path):
    d = tmp_path / "src_masks"
    d.mkdir()
    a = np.ones((96, 140), np.uint8)
    a[10:30, 20:100] = 0
    np.save(d / "a.npy", a)
    png = np.full((200, 160), 255, np.uint8)
    cv2.circle(png, (80, 100), 30, 0, -1)
    cv2.imwrite(str(d / "b.png"), png)
    return d


@pytest.mark.parametrize("kind", ["random", "points", "files"])
def test_each_kind_matches_generate_masks(tmp_path, capsys, mask_dir, kind):
    out = tmp_path / f"{kind}.npy"
    extra = ["--from", str(mask_dir)] if kind == "files" else []
    status, stdout, err = _run(capsys, "--kind", kind, "--n", "6", "--size", "64", "--seed", "4",
                               "--out", str(out), *extra)
    assert status == 0, err
    masks = np.load(out)
    assert masks.shape == (6, 64, 64) and masks.dtype == np.float32
    assert np.isin(masks, (0, 1)).all() and (masks.min(axis=(1, 2)) == 0).any()
    np.testing.assert_array_equal(masks, generate_masks(kind, 6, 64, seed=4, directory=mask_dir))
    assert f"wrote 6 {kind} masks" in stdout and "seed 4" in stdout
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [f"{kind}.npy"]  # no temporaries


def test_circle_with_centre_and_preview(tmp_path, capsys):
    out, png = tmp_path / "c.npy", tmp_path / "fig" / "c.png"  # missing directory is created
    status, _, err = _run(capsys, "--kind", "circle", "--n", "3", "--radius", "10.5", "--center", "20", "40",
                          "--out", str(out), "--preview", str(png), "--quiet")
    assert status == 0, err
    masks = np.load(out)
    assert masks.shape == (3, 128, 128)
    for m in masks:
        np.testing.assert_array_equal(m, circle_mask(128, 10.5, (20, 40)))
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_circle_tiny_radius_is_one_pixel(tmp_path, capsys):
    """round(π r²) = 0 still makes a hole: the nearest pixel."""
    out = tmp_path / "c.npy"
    status, _, err = _run(capsys, "--kind", "circle", "--n", "1", "--radius", "0.3", "--out", str(out), "--quiet")
    assert status == 0, err
    assert (np.load(out) == 0).sum() == 1


@pytest.mark.parametrize("kind", ["random", "points"])
def test_preview_png(tmp_path, capsys, kind):
    png = tmp_path / "p.png"
    status, _, err = _run(capsys, "--kind", kind, "--n", "10", "--size", "64", "--seed", "1",
                          "--out", str(tmp_path / "m.npy"), "--preview", str(png), "--quiet")
    assert status == 0, err
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 400  # a 2 × 4 grid
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_preview_of_large_masks_is_block_averaged(tmp_path):
    masks = generate_masks("points", 2, 512, seed=3)
    png = cmd.plot_mask_preview(tmp_path / "big.png", masks, seed=1, title="t")
    assert png.read_bytes()[:8] == PNG_MAGIC
    # display pixels keep partial holes: a one-pixel hole is a quarter-grey 2×2 block at 256 px
    small = cmd._block_mean(masks, 2)
    assert small.shape == (2, 256, 256)
    np.testing.assert_allclose(small.mean(), masks.mean(), rtol=1e-6)


def test_reproducible_and_seed_matters(tmp_path, capsys):
    for name, seed in (("a", "9"), ("b", "9"), ("c", "10")):
        assert _run(capsys, "--kind", "random", "--n", "3", "--size", "64", "--seed", seed,
                    "--out", str(tmp_path / f"{name}.npy"))[0] == 0
    a, b, c = (np.load(tmp_path / f"{x}.npy") for x in "abc")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_overwrites_existing_output(tmp_path, capsys):
    out = tmp_path / "m.npy"
    np.save(out, np.zeros(3))
    assert _run(capsys, "--kind", "points", "--n", "2", "--size", "64", "--out", str(out))[0] == 0
    assert np.load(out).shape == (2, 64, 64)


def _bad_cases(tmp_path, mask_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    nonbinary = tmp_path / "nonbinary"
    nonbinary.mkdir()
    np.save(nonbinary / "m.npy", np.full((64, 64), 0.5))
    return [
        (["--kind", "random", "--n", "0"], "--n"),
        (["--kind", "random", "--n", "-3"], "--n"),
        (["--kind", "random", "--n", "2", "--size", "32"], "--size"),
        (["--kind", "random", "--n", "2", "--size", "5000"], "--size"),
        (["--kind", "random", "--n", "2", "--seed", "-1"], "--seed"),
        (["--kind", "circle", "--n", "2", "--radius", "0"], "--radius"),
        (["--kind", "circle", "--n", "2", "--radius", "-4"], "--radius"),
        (["--kind", "circle", "--n", "2", "--radius", "nan"], "--radius"),
        (["--kind", "circle", "--n", "2", "--radius", "200"], "larger than the 128 px patch"),
        (["--kind", "circle", "--n", "2", "--size", "64", "--radius", "60"], "no valid pixel"),
        # centre on the patch border: of the two tied nearest pixels the one outside is taken
        (["--kind", "circle", "--n", "2", "--radius", "0.3", "--center", "-0.5", "5"], "no hole pixel"),
        (["--kind", "circle", "--n", "2", "--center", "130", "5"], "--center"),
        (["--kind", "circle", "--n", "2", "--center", "5", "-1"], "--center"),
        (["--kind", "random", "--n", "2", "--radius", "5"], "--radius: applies only to --kind circle"),
        (["--kind", "points", "--n", "2", "--center", "5", "5"], "--center: applies only"),
        (["--kind", "random", "--n", "2", "--from", str(mask_dir)], "--from: applies only"),
        (["--kind", "files", "--n", "2"], "--from"),
        (["--kind", "files", "--n", "2", "--from", str(tmp_path / "missing")], "does not exist"),
        (["--kind", "files", "--n", "2", "--from", str(empty)], "no .png or .npy"),
        (["--kind", "files", "--n", "2", "--from", str(nonbinary)], "m.npy: mask is not binary"),
        (["--kind", "random", "--n", "2", "--preview", str(tmp_path / "p.jpg")], "--preview"),
    ]


def test_bad_inputs_exit_2_one_line_no_output(tmp_path, capsys, mask_dir):
    out = tmp_path / "out" / "m.npy"
    png = tmp_path / "out" / "p.png"
    for argv, word in _bad_cases(tmp_path, mask_dir):
        if "--preview" not in argv:
            argv = [*argv, "--preview", str(png)]
        status, stdout, err = _run(capsys, *argv, "--out", str(out))
        assert status == 2, (argv, err)
        assert err.count("\n") == 1 and word in err and "Traceback" not in err, (argv, err)
        assert not out.exists() and not png.exists(), argv
        assert not (out.parent.exists() and any(out.parent.iterdir())), argv


def test_bad_output_paths(tmp_path, capsys):
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    cases = [
        (str(tmp_path / "m.txt"), "must be a .npy file"),
        (str(a_file / "m.npy"), "is not a directory"),
        (str(tmp_path), "must be a .npy file"),
    ]
    (tmp_path / "dir.npy").mkdir()
    cases.append((str(tmp_path / "dir.npy"), "is a directory"))
    for out, word in cases:
        status, _, err = _run(capsys, "--kind", "random", "--n", "2", "--out", out)
        assert status == 2 and word in err and err.count("\n") == 1, (out, err)
    status, _, err = _run(capsys, "--kind", "random", "--n", "2", "--out", str(tmp_path / "same.png.npy"),
                          "--preview", str(tmp_path / "p.png"), "--size", "64")
    assert status == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.npy", "p.png", "plain.txt", "same.png.npy"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_directory(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        status, _, err = _run(capsys, "--kind", "random", "--n", "2", "--out", str(locked / "m.npy"))
        assert status == 2 and "not writable" in err
    finally:
        locked.chmod(0o700)


def test_unwritable_directory_any_user(tmp_path, capsys, monkeypatch):
    real_access = os.access
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(locked) else real_access(p, mode, **kw))
    status, _, err = _run(capsys, "--kind", "random", "--n", "2", "--out", str(locked / "m.npy"))
    assert status == 2 and err.count("\n") == 1 and f"directory {locked} is not writable" in err
    assert not any(locked.iterdir())


def test_unknown_kind_is_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["masks", "--kind", "squares", "--n", "2", "--out", str(tmp_path / "m.npy")])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "m.npy").exists()


def test_failure_during_work_leaves_nothing(tmp_path, capsys, monkeypatch, mask_dir):
    """A failure after drawing (here: in the preview) removes the half-written .npy too."""
    def broken(*args, **kwargs):
        raise InputError("preview: simulated failure")

    monkeypatch.setattr(cmd, "plot_mask_preview", broken)
    out, png = tmp_path / "m.npy", tmp_path / "p.png"
    status, _, err = _run(capsys, "--kind", "random", "--n", "3", "--size", "64", "--out", str(out),
                          "--preview", str(png))
    assert status == 2 and "simulated failure" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src_masks"]
    # an augmented file mask with no valid pixel is an error too, with nothing written
    (mask_dir / "a.npy").unlink()
    (mask_dir / "b.png").unlink()
    np.save(mask_dir / "allhole.npy", np.zeros((64, 64)))
    status, _, err = _run(capsys, "--kind", "files", "--n", "3", "--size", "64", "--from", str(mask_dir),
                          "--out", str(out))
    assert status == 2 and "allhole.npy: mask has no valid" in err and not out.exists()


def test_help_lists_kinds(capsys):
    with pytest.raises(SystemExit) as info:
        main(["masks", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for word in ("random", "circle", "points", "files", "--preview", "--center"):
        assert word in text


def test_too_many_masks_refused_before_writing(tmp_path, capsys):
    """--n 100000000 masks of 128² float32 (6.6 TB) is refused naming the space needed; no file."""
    from combine.cli import main

    status = main(["masks", "--kind", "random", "--n", "100000000", "--out", str(tmp_path / "m.npy")])
    err = capsys.readouterr().err
    assert status == 2 and "need 6.55e+03 GB on disk" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_summary_line_is_printed_with_quiet_and_names_output_seed_and_hole_fraction(tmp_path, capsys):
    """Issue 15: the summary line is the result, not progress: ``--quiet`` does not silence it.
    It names the file and the seed, and its hole fraction is the one of the written masks."""
    out = tmp_path / "m.npy"
    status, stdout, err = _run(capsys, "--kind", "random", "--n", "3", "--size", "64", "--seed", "9",
                               "--out", str(out), "--quiet")
    assert status == 0, err
    lines = stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("combine masks: wrote 3 random masks (64×64) to "), stdout
    assert str(out) in lines[0] and "seed 9" in lines[0]
    holes = 1.0 - np.load(out).mean(axis=(1, 2))
    assert f"hole fraction {holes.mean():.3f} ± {holes.std():.3f}" in lines[0]
    assert err == ""
