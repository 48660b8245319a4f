"""``combine simulate``: files, labels, reproducibility, and every bad input (exit 2, one line, no files)."""

import json

import h5py
import numpy as np
import pytest

from combine.cli import main
from combine.data import read_dataset

PLANCK_NS = "0.9649"  # same CAMB spectrum (and cache entry) as the default


def _run(capsys, *argv):
    status = main(["simulate", "--quiet", *argv])
    captured = capsys.readouterr()
    return status, captured.err


def test_success_with_ns_classes(tmp_path, capsys):
    out = tmp_path / "data"
    status, err = _run(capsys, "--out", str(out), "--n-patches", "20", "--size", "64",
                       "--ns", PLANCK_NS, "1.1", "--seed", "1", "--noise", "1.0")
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["test.h5", "train.h5", "val.h5"]
    sizes = []
    for name in ("train", "val", "test"):
        maps, ns, attrs = read_dataset(out / f"{name}.h5")
        assert maps.shape[1:] == (64, 64) and maps.dtype == np.float32
        assert attrs["split"] == name and attrs["seed"] == 1 and attrs["noise_uk_arcmin"] == 1.0
        assert json.loads(attrs["cosmology"])["ns"] is None
        assert json.loads(attrs["ns_classes"]) == [0.9649, 1.1]
        sizes.append(maps.shape[0])
        if name == "train":  # 14 patches: 7 per class, grouped in the order given
            np.testing.assert_array_equal(ns, [0.9649] * 7 + [1.1] * 7)
            # μK, not normalised: rms of a 64² patch is ~50-150 μK
            assert 30 < np.sqrt(np.mean(maps.astype(np.float64) ** 2)) < 200
    assert sizes == [14, 3, 3]
    # the files record their sky: the shared parameters (Planck ns), each class by with_ns
    from combine.sky import Sky

    sky = Sky.from_dataset(out / "train.h5")
    assert sky == Sky.planck18(noise_uk_arcmin=1.0)
    assert Sky.from_dataset(out / "train.h5", ns=1.1) == Sky.planck18(noise_uk_arcmin=1.0).with_ns(1.1)


def test_reproducible_from_seed(tmp_path, capsys):
    args = ["--n-patches", "5", "--size", "64", "--split", "0.6,0.2,0.2"]
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        assert _run(capsys, "--out", str(tmp_path / name), "--seed", seed, *args)[0] == 0
    a, ns_a, attrs = read_dataset(tmp_path / "a" / "train.h5")
    b, _, _ = read_dataset(tmp_path / "b" / "train.h5")
    c, _, _ = read_dataset(tmp_path / "c" / "train.h5")
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert ns_a is None and json.loads(attrs["cosmology"])["ns"] == 0.9649
    from combine.sky import Sky

    assert Sky.from_json(attrs["sky"]) == Sky.planck18()  # the sky the patches were drawn from
    # the splits are different realisations
    v, _, _ = read_dataset(tmp_path / "a" / "val.h5")
    assert not np.allclose(a[0], v[0])


def test_healpix_method_small(tmp_path, capsys):
    out = tmp_path / "hp"
    status, err = _run(capsys, "--out", str(out), "--n-patches", "4", "--size", "64", "--method", "healpix",
                       "--nside", "64", "--pixel-arcmin", "30", "--patches-per-map", "2", "--seed", "3",
                       "--split", "0.5,0.25,0.25")
    assert status == 0, err
    maps, _, attrs = read_dataset(out / "train.h5")
    assert maps.shape == (2, 64, 64) and attrs["method"] == "healpix" and attrs["nside"] == 64
    assert np.all(np.isfinite(maps)) and maps.std() > 10


@pytest.mark.parametrize(
    "extra, word",
    [
        (["--size", "32"], "--size"),
        (["--n-patches", "0"], "--n-patches"),
        (["--split", "0.5,0.5"], "--split"),
        (["--split", "0.7,0.2,0.2"], "--split"),
        (["--split", "a,b,c"], "--split"),
        (["--ns", "0"], "--ns"),
        (["--ns", "-1.0"], "--ns"),
        (["--noise", "-1"], "--noise"),
        (["--method", "healpix", "--nside", "100"], "--nside"),
    ],
)
def test_bad_input_exit_2_one_line_no_files(tmp_path, capsys, extra, word):
    out = tmp_path / "out"
    argv = ["--out", str(out), "--n-patches", "3", "--size", "64", "--seed", "1"]
    # later options override earlier ones in argparse
    status, err = _run(capsys, *argv, *extra)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and word in lines[0]
    assert not out.exists()


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    status, err = _run(capsys, "--out", str(blocker / "sub"), "--n-patches", "2", "--size", "64")
    assert status == 2 and len(err.strip().splitlines()) == 1 and str(blocker) in err
    status, err = _run(capsys, "--out", str(blocker), "--n-patches", "2", "--size", "64")
    assert status == 2 and "not a directory" in err


def test_failure_midway_leaves_no_files(tmp_path, capsys, monkeypatch):
    """A crash while simulating the val split leaves neither train.h5 nor any temporary file."""
    import combine.sky.flat as flat

    real = flat.simulate_flat_patches
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(flat, "simulate_flat_patches", flaky)
    out = tmp_path / "existing"
    out.mkdir()
    status, err = _run(capsys, "--out", str(out), "--n-patches", "10", "--size", "64", "--seed", "1")
    assert status == 1 and "boom" in err
    assert list(out.iterdir()) == []


def test_existing_files_replaced_atomically(tmp_path, capsys):
    out = tmp_path / "d"
    assert _run(capsys, "--out", str(out), "--n-patches", "3", "--size", "64", "--seed", "1")[0] == 0
    assert _run(capsys, "--out", str(out), "--n-patches", "6", "--size", "64", "--seed", "2")[0] == 0
    with h5py.File(out / "train.h5", "r") as f:
        assert f["maps"].shape[0] == 4 and f.attrs["seed"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["test.h5", "train.h5", "val.h5"]


def test_console_script_bad_input(tmp_path):
    """The installed entry point: exit 2, a single stderr line, nothing written."""
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("combine")
    if not exe.exists():
        pytest.skip("console script not installed beside this interpreter")
    out = tmp_path / "o"
    proc = subprocess.run([str(exe), "simulate", "--out", str(out), "--n-patches", "5", "--size", "16"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--size" in proc.stderr
    assert not out.exists()


def test_summary_line_names_output_seed_and_sizes_even_with_quiet(tmp_path, capsys):
    """Issue 15: `combine simulate` printed nothing on success. One line on stdout (--quiet
    does not silence it) names the files, the seed, the split counts and the bytes written."""
    out = tmp_path / "data"
    status = main(["simulate", "--quiet", "--out", str(out), "--n-patches", "10", "--size", "64", "--seed", "11"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    lines = captured.out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("combine simulate: "), captured.out
    line = lines[0]
    assert str(out) in line and "seed 11" in line
    counts = {name: read_dataset(out / f"{name}.h5")[0].shape[0] for name in ("train", "val", "test")}
    assert f"train {counts['train']}, val {counts['val']}, test {counts['test']}" in line
    assert "wrote 10 flat patches (64×64 μK, 160 KiB)" in line  # 10 × 64² × 4 B
    assert captured.err == ""
