"""``combine inpaint --fields TQU --tqu-solve split`` on a HEALPix T, Q, U map."""

import healpy as hp
import numpy as np
import pytest

from combine.cli import main
from combine.sky import Sky

NSIDE = 16


def _case(tmp_path):
    from combine.sky.polarisation import simulate_healpix_tqu

    sky = Sky.planck18(beam_fwhm_arcmin=240.0, noise_uk_arcmin=20.0).replace(
        pixel_arcmin=hp.nside2resol(NSIDE, arcmin=True))
    tqu = simulate_healpix_tqu(NSIDE, sky=sky, seed=5)
    mask = np.ones(tqu.shape[1], np.float32)
    for lon, lat in ((10, 10), (120, -40)):
        mask[hp.query_disc(NSIDE, hp.ang2vec(lon, lat, lonlat=True), np.radians(6.0))] = 0
    np.save(tmp_path / "tqu.npy", tqu.astype(np.float64))
    np.save(tmp_path / "mask.npy", mask)
    return sky, tqu.astype(np.float64), mask


def _run(tmp_path, out, *extra, method="wiener"):
    return main(["inpaint", "--quiet", "--fields", "TQU", "--method", method, "--beam-fwhm", "240", "--noise", "20",
                 "--input", str(tmp_path / "tqu.npy"), "--mask", str(tmp_path / "mask.npy"),
                 "--output", str(tmp_path / out), *extra])


def test_split_solve_from_the_command_line_is_the_split_fill_and_is_recorded(tmp_path, capsys):
    """--tqu-solve split --margin-qu 1.5: the holes hold fill_holes(tqu_solve="split") with the
    command's T margin and 1.5 px for Q/U (float64 .npy: to rounding), valid pixels bit-identical;
    the FITS output's COMBTQUS / COMBMGQU cards say so, a joint run's COMBTQUS says joint; bad
    values exit 2 with one line (below)."""
    from astropy.io import fits

    from combine.commands.inpaint_tqu import default_margin_px
    from combine.sphere import fill_holes

    sky, tqu, mask = _case(tmp_path)
    assert _run(tmp_path, "s.npy", "--tqu-solve", "split", "--margin-qu", "1.5") == 0, capsys.readouterr().err
    got = np.load(tmp_path / "s.npy")
    ref = fill_holes(tqu, mask > 0, sky=sky, margin_px=default_margin_px(sky, NSIDE), tqu_solve="split",
                     margin_qu_px=1.5)
    np.testing.assert_allclose(got[:, ref.groups.hole_pixels], ref.mean_uk, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(got[:, mask > 0], tqu[:, mask > 0])
    assert _run(tmp_path, "s.fits", "--tqu-solve", "split", "--margin-qu", "1.5") == 0, capsys.readouterr().err
    head = fits.open(tmp_path / "s.fits")[1].header
    assert head["COMBTQUS"] == "split" and head["COMBMGQU"] == 1.5 and head["COMBMETH"] == "wiener"
    # the joint fill with a 1.5 px margin: the same correlation table (cached in-process), another estimator
    assert _run(tmp_path, "j.fits", "--margin", "1.5") == 0, capsys.readouterr().err
    joint = fits.open(tmp_path / "j.fits")[1]
    assert joint.header["COMBTQUS"] == "joint" and "COMBMGQU" not in joint.header
    q = np.asarray(joint.data["Q_STOKES"]).ravel()
    assert np.abs(q[ref.groups.hole_pixels] - got[1, ref.groups.hole_pixels]).max() > 1e-4  # another estimator


@pytest.mark.parametrize("extra, method, needle", [
    (("--tqu-solve", "both"), "wiener", "--tqu-solve"),
    (("--tqu-solve", "split", "--margin-qu", "0"), "wiener", "--margin-qu"),
    (("--tqu-solve", "split", "--margin-qu", "nan"), "gcr", "--margin-qu"),
    (("--margin-qu", "3"), "wiener", "--margin-qu: applies only to --tqu-solve split"),
    (("--tqu-solve", "split"), "diffusive", "--tqu-solve split: applies to --method wiener"),
])
def test_bad_split_options_exit_2_with_one_line(tmp_path, capsys, extra, method, needle):
    _case(tmp_path)
    capsys.readouterr()
    try:
        code = _run(tmp_path, "o.npy", *extra, method=method)
    except SystemExit as exc:  # argparse's own errors (an unknown choice) leave through SystemExit
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o.npy").exists()


def test_split_on_a_temperature_map_exits_2(tmp_path, capsys):
    sky, tqu, mask = _case(tmp_path)
    np.save(tmp_path / "t.npy", tqu[0])
    code = main(["inpaint", "--quiet", "--method", "wiener", "--tqu-solve", "split", "--input", str(tmp_path / "t.npy"),
                 "--mask", str(tmp_path / "mask.npy"), "--output", str(tmp_path / "o.npy")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--fields TQU" in err and len(err.splitlines()) == 1, err
