"""``combine simulate --fields TQU``: T, Q, U datasets (N, 3, H, W) and their bad input."""

import h5py
import numpy as np

from combine.cli import main
from combine.data import read_dataset


def test_tqu_dataset(tmp_path, capsys):
    out = tmp_path / "tqu"
    argv = ["simulate", "--quiet", "--out", str(out), "--n-patches", "20", "--size", "64", "--fields", "TQU",
            "--seed", "3", "--noise", "1.0"]
    assert main(argv) == 0, capsys.readouterr().err
    maps, _, attrs = read_dataset(out / "train.h5")
    assert maps.shape == (14, 3, 64, 64) and maps.dtype == np.float32
    assert attrs["fields"] == "TQU"
    rms = np.sqrt(np.mean(maps.astype(np.float64) ** 2, axis=(0, 2, 3)))
    # T ~ 100 μK; Q, U ~ a few μK (planck18 beamed EE), both far from zero and from each other
    assert 30 < rms[0] < 300 and 1 < rms[1] < 15 and 1 < rms[2] < 15
    # reproducible from the seed
    again = tmp_path / "again"
    assert main(argv[:3] + [str(again)] + argv[4:]) == 0
    np.testing.assert_array_equal(read_dataset(again / "train.h5")[0], maps)
    with h5py.File(out / "val.h5") as fh:
        assert fh["maps"].shape == (3, 3, 64, 64)


def test_tqu_healpix_is_refused(tmp_path, capsys):
    out = tmp_path / "x"
    status = main(["simulate", "--quiet", "--out", str(out), "--n-patches", "4", "--fields", "TQU",
                   "--method", "healpix", "--nside", "64"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "--fields TQU" in err
    assert not out.exists()
