"""``combine inpaint --method wiener|gcr|lwiener`` on T, Q, U patches (N, 3, H, W)."""

import numpy as np

from combine.baselines.wiener_pol import tqu_gcr_fill, tqu_wiener_fill
from combine.cli import main
from combine.masks import circle_mask
from combine.sky import Sky
from combine.sky.polarisation import simulate_flat_tqu


def _inputs(tmp_path, fields=3):
    sky = Sky.planck18(noise_uk_arcmin=1.0)
    maps = simulate_flat_tqu(2, 24, sky=sky, seed=1, min_size=2)[:, :fields]
    mask = circle_mask(24, 4).astype(np.float32)
    np.save(tmp_path / "maps.npy", maps)
    np.save(tmp_path / "mask.npy", mask)
    return sky, maps, mask


def _inpaint(tmp_path, method, *extra):
    return main(["inpaint", "--quiet", "--method", method, "--input", str(tmp_path / "maps.npy"), "--mask",
                 str(tmp_path / "mask.npy"), "--output", str(tmp_path / f"{method}.npy"), *extra])


def test_tqu_wiener_and_gcr_from_the_command_line(tmp_path, capsys):
    sky, maps, mask = _inputs(tmp_path)
    assert _inpaint(tmp_path, "wiener") == 0, capsys.readouterr().err
    out = np.load(tmp_path / "wiener.npy")
    np.testing.assert_array_equal(out, tqu_wiener_fill(maps, mask, sky=sky))  # the joint TQU fill
    np.testing.assert_array_equal(out[:, :, mask == 1], maps[:, :, mask == 1])
    assert _inpaint(tmp_path, "gcr", "--seed", "4") == 0, capsys.readouterr().err
    np.testing.assert_array_equal(np.load(tmp_path / "gcr.npy"), tqu_gcr_fill(maps, mask, sky=sky, seed=4))


def test_two_fields_are_refused(tmp_path, capsys):
    _inputs(tmp_path, fields=2)
    assert _inpaint(tmp_path, "wiener") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 fields" in err
    assert not (tmp_path / "wiener.npy").exists()


def test_nan_in_a_valid_q_pixel_is_refused(tmp_path, capsys):
    _, maps, mask = _inputs(tmp_path)
    maps = maps.copy()
    maps[0, 1, 0, 0] = np.nan
    np.save(tmp_path / "maps.npy", maps)
    assert _inpaint(tmp_path, "lwiener") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NaN" in err
