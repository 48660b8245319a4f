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


# --------------------------------------------------------------------------------------------
# HEALPix T, Q, U maps: --fields TQU
# --------------------------------------------------------------------------------------------
NSIDE_TQU = 32  # 110' pixels: holes of a few pixels, each filled from a window of ~40 pixels


def _tqu_sky():
    import healpy as hp

    return Sky.planck18(noise_uk_arcmin=1.0).replace(pixel_arcmin=hp.nside2resol(NSIDE_TQU, arcmin=True))


def _tqu_case(nside=NSIDE_TQU, seed=1):
    """A T, Q, U map (μK, RING, healpy's convention) and a mask with 3 holes of a few pixels."""
    import healpy as hp

    from combine.sky.polarisation import simulate_healpix_tqu

    tqu = simulate_healpix_tqu(nside, sky=_tqu_sky(), seed=seed)
    mask = np.ones(tqu.shape[1], np.float32)
    for lon, lat in ((10, 10), (100, -30), (200, 60)):
        mask[hp.query_disc(nside, hp.ang2vec(lon, lat, lonlat=True), np.radians(3.0))] = 0
    return tqu, mask


def _planck_tqu_file(path, tqu_uk, mask, *, nest=False, polcconv="IAU", units=("K_CMB",) * 3, scale=1e-6):
    """A Planck-style table: I/Q/U_STOKES in K_CMB (U in ``polcconv``), HITS, II_COV, QQ_COV, UU_COV
    (K_CMB²; Q/U 100× noisier on the northern half); UNSEEN in holes. Returns (stored T, Q, U,
    (3, Npix) noise variance in μK² in the file's ordering)."""
    import healpy as hp
    from astropy.io import fits

    values = np.where(mask > 0, tqu_uk * scale, hp.UNSEEN).astype(np.float32)
    if polcconv == "IAU":
        values[2] = np.where(mask > 0, -values[2], hp.UNSEEN)
    if nest:
        order = hp.ring2nest(hp.npix2nside(mask.size), np.arange(mask.size))
        values[:, order] = values.copy()
    hits = (np.arange(mask.size) % 97).astype(np.int32)
    north = hp.pix2vec(hp.npix2nside(mask.size), np.arange(mask.size), nest=nest)[2] > 0
    var_k2 = np.stack([np.full(mask.size, 4e-12), np.where(north, 8e-10, 8e-12), np.where(north, 8e-10, 8e-12)])
    var_k2 = var_k2.astype(np.float32)
    cols = [fits.Column(name=n, format="E", unit=u, array=v) for n, u, v in
            zip(("I_STOKES", "Q_STOKES", "U_STOKES"), units, values)]
    cols += [fits.Column(name="HITS", format="J", array=hits)]
    cols += [fits.Column(name=n, format="E", unit="K_CMB^2", array=v) for n, v in zip(("II_COV", "QQ_COV", "UU_COV"), var_k2)]
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header["PIXTYPE"] = "HEALPIX"
    hdu.header["ORDERING"] = "NESTED" if nest else "RING"
    hdu.header["NSIDE"] = hp.npix2nside(mask.size)
    hdu.header["TELESCOP"] = "PLANCKISH"
    if polcconv is not None:
        hdu.header["POLCCONV"] = polcconv
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return values, var_k2.astype(np.float64) * 1e12


def _tqu_inpaint(tmp_path, method, inp, mask, out, *extra):
    return main(["inpaint", "--quiet", "--fields", "TQU", "--method", method, "--input", str(tmp_path / inp),
                 "--mask", str(tmp_path / mask), "--output", str(tmp_path / out), *extra])


def test_planck_tqu_file_gcr_realisations_and_noise_map_on_the_sphere(tmp_path, capsys):
    """NESTED Planck-style file in K_CMB with POLCCONV IAU, HITS and II/QQ/UU_COV, mask in RING.
    Two GCR realisations: each output keeps every column, unit, keyword, ordering and the IAU sign;
    valid T, Q, U pixels are bit-identical; the holes of realisation k are draw k of
    fill_holes(realisations=2, seed) on the μK, COSMO map (U negated), to float32 rounding, and
    realisation 0 is sphere_tqu_fill(gcr=True, seed); the COMBSKY card reads back as the sky.
    --noise-map of the same file: the fill with its II/QQ/UU_COV variances (μK²), which differs
    from the white-noise fill."""
    import healpy as hp
    from astropy.io import fits

    from combine.baselines.sphere_wiener_pol import sphere_tqu_fill
    from combine.commands.inpaint_tqu import default_margin_px
    from combine.sphere import fill_holes

    tqu, mask = _tqu_case()
    stored, var_uk2 = _planck_tqu_file(tmp_path / "planck.fits", tqu, mask, nest=True)
    hp.write_map(tmp_path / "mask.fits", mask, dtype=np.float32)  # RING
    assert _tqu_inpaint(tmp_path, "gcr", "planck.fits", "mask.fits", "g.fits", "--seed", "7", "--realisations",
                        "2") == 0, capsys.readouterr().err
    src = fits.open(tmp_path / "planck.fits")[1]
    nest_mask = hp.reorder(mask, r2n=True) > 0
    given_uk = stored.astype(np.float64) * 1e6
    given_uk[2] *= -1  # IAU -> COSMO
    margin = default_margin_px(_tqu_sky(), NSIDE_TQU)  # sphere_tqu_fill's default (checked against it below)
    ref = fill_holes(given_uk, nest_mask, sky=_tqu_sky(), nest=True, realisations=2, seed=7, margin_px=margin)
    holes = ref.groups.hole_pixels

    def read_uk(path):
        out = fits.open(path)[1]
        got = np.stack([out.data[n].ravel() for n in ("I_STOKES", "Q_STOKES", "U_STOKES")])
        np.testing.assert_array_equal(got[:, nest_mask], stored[:, nest_mask])
        got_uk = got[:, holes].astype(np.float64) * 1e6
        got_uk[2] *= -1
        return out, got_uk

    def close(a, b):  # per field: T ~ 100 μK, Q/U ~ 1 μK
        scale = np.abs(b).max(axis=1, keepdims=True)
        np.testing.assert_allclose(a / scale, b / scale, rtol=1e-5, atol=1e-5)

    draws = []
    for k in range(2):
        out, got_uk = read_uk(tmp_path / f"g_r{k}.fits")
        assert out.columns.names == ["I_STOKES", "Q_STOKES", "U_STOKES", "HITS", "II_COV", "QQ_COV", "UU_COV"]
        assert [c.unit for c in out.columns] == ["K_CMB"] * 3 + [None] + ["K_CMB^2"] * 3
        assert out.header["ORDERING"] == "NESTED" and out.header["POLCCONV"] == "IAU"
        assert out.header["TELESCOP"] == "PLANCKISH" and out.header["COMBMETH"] == "gcr"
        assert out.header["COMBSEED"] == 7 and out.header["COMBREAL"] == k
        for name in ("HITS", "II_COV", "QQ_COV", "UU_COV"):
            np.testing.assert_array_equal(out.data[name].ravel(), src.data[name].ravel())
        assert Sky.from_json(out.header["COMBSKY"]) == _tqu_sky()
        close(got_uk, ref.draws_uk[k])
        draws.append(got_uk)
    one = sphere_tqu_fill(given_uk, nest_mask.astype(np.uint8), sky=_tqu_sky(), nest=True, gcr=True, seed=7)
    close(draws[0], one[:, holes])
    assert np.abs(draws[0] - draws[1]).min() > 0  # independent draws differ in every hole pixel
    assert _tqu_inpaint(tmp_path, "wiener", "planck.fits", "mask.fits", "n.fits", "--noise-map",
                        str(tmp_path / "planck.fits")) == 0, capsys.readouterr().err
    _, got_uk = read_uk(tmp_path / "n.fits")
    var = var_uk2.astype(np.float32).astype(np.float64)  # as stored (float32 K_CMB^2) -> μK²
    noisy = fill_holes(given_uk, nest_mask, sky=_tqu_sky(), nest=True, noise_var_map=var, margin_px=margin)
    close(got_uk, noisy.mean_uk)
    white = fill_holes(given_uk, nest_mask, sky=_tqu_sky(), nest=True, margin_px=margin)
    assert np.abs(white.mean_uk[1:] - noisy.mean_uk[1:]).max() > 1e-3  # the noise map changed Q, U (μK)


def test_healpy_written_tqu_map_and_npy_give_the_same_fill(tmp_path, capsys):
    """hp.write_map's TEMPERATURE/Q_POLARISATION/U_POLARISATION columns (μK, no unit, no
    POLCCONV) -> .npy (3, Npix); and that .npy -> FITS with I/Q/U_STOKES and POLCCONV COSMO:
    the same hole values (per-field diffusive fill), valid pixels as given."""
    import healpy as hp
    from astropy.io import fits

    nside = 128
    rng = np.random.default_rng(3)
    given = (rng.standard_normal((3, hp.nside2npix(nside))) * [[100], [5], [5]]).astype(np.float32)
    mask = np.ones(given.shape[1], np.float32)
    mask[hp.query_disc(nside, hp.ang2vec(30, 20, lonlat=True), np.radians(0.4))] = 0
    given[:, mask == 0] = hp.UNSEEN
    hp.write_map(tmp_path / "hp.fits", given, dtype=np.float32)
    np.save(tmp_path / "mask.npy", mask)
    assert _tqu_inpaint(tmp_path, "diffusive", "hp.fits", "mask.npy", "a.npy") == 0, capsys.readouterr().err
    np.save(tmp_path / "tqu.npy", given)
    assert _tqu_inpaint(tmp_path, "diffusive", "tqu.npy", "mask.npy", "b.fits") == 0, capsys.readouterr().err
    a = np.load(tmp_path / "a.npy")
    hdu = fits.open(tmp_path / "b.fits")[1]
    assert hdu.columns.names == ["I_STOKES", "Q_STOKES", "U_STOKES"] and hdu.header["POLCCONV"] == "COSMO"
    b = np.stack([hdu.data[n].ravel() for n in hdu.columns.names])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:, mask > 0], given[:, mask > 0])
    assert np.isfinite(a).all() and (np.abs(a[1:, mask == 0]) < 50).all()  # Q, U filled at their own scale


def test_per_field_diffusive_with_a_three_column_mask(tmp_path, capsys):
    """A scalar method fills each field alone with its own mask (3-column FITS mask): each column
    equals inpaint_healpix(diffusive_fill) of that field with that mask."""
    import healpy as hp

    from combine.baselines import diffusive_fill
    from combine.healpix_inpaint import inpaint_healpix

    nside = 128
    rng = np.random.default_rng(4)
    tqu = (rng.standard_normal((3, hp.nside2npix(nside))) * [[100], [5], [5]]).astype(np.float32)
    masks = np.ones_like(tqu)
    for k, (lon, lat) in enumerate(((10, 10), (100, -30), (200, 60))):
        masks[k, hp.query_disc(nside, hp.ang2vec(lon, lat, lonlat=True), np.radians(0.4))] = 0
    masks[:, hp.query_disc(nside, hp.ang2vec(300, 0, lonlat=True), np.radians(0.4))] = 0
    hp.write_map(tmp_path / "tqu.fits", tqu, dtype=np.float32, column_units="uK")
    hp.write_map(tmp_path / "masks.fits", masks, dtype=np.float32)
    assert _tqu_inpaint(tmp_path, "diffusive", "tqu.fits", "masks.fits", "d.fits") == 0, capsys.readouterr().err
    out = hp.read_map(tmp_path / "d.fits", field=None, dtype=np.float32)
    for k in range(3):
        ref = inpaint_healpix(diffusive_fill, tqu[k], masks[k], progress=False)
        np.testing.assert_array_equal(out[k], ref)
        np.testing.assert_array_equal(out[k][masks[k] > 0], tqu[k][masks[k] > 0])
    # the joint sphere fill needs one mask for the three fields
    assert _tqu_inpaint(tmp_path, "wiener", "tqu.fits", "masks.fits", "w.fits") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "masks differ" in err and not (tmp_path / "w.fits").exists()


def test_three_channel_model_on_tqu_patches(tmp_path, capsys):
    """--fields TQU --model of a 3-channel network on (N, 3, H, W) patches: the output is the
    model's own inpaint (InpaintingModel.inpaint) and valid pixels are bit-identical (a 1-channel
    model is refused: test_bad_inputs, "3-channel maps for a 1-channel model")."""
    import torch

    from combine.models import load_model, save_model
    from combine.nn import PConvUNet

    torch.manual_seed(2)
    save_model(PConvUNet("t128", in_channels=3, levels=6, channels=[8, 16, 16, 16, 16, 16]).eval(), tmp_path / "m3",
               extra={"patch_size": 64})
    rng = np.random.default_rng(5)  # the plumbing only: white T, Q, U at their usual scales
    maps = (rng.standard_normal((2, 3, 64, 64)) * np.array([100, 5, 5])[:, None, None]).astype(np.float32)
    mask = circle_mask(64, 6).astype(np.float32)
    np.save(tmp_path / "maps.npy", maps)
    np.save(tmp_path / "mask.npy", mask)
    assert main(["inpaint", "--quiet", "--fields", "TQU", "--input", str(tmp_path / "maps.npy"), "--mask",
                 str(tmp_path / "mask.npy"), "--model", str(tmp_path / "m3"), "--output", str(tmp_path / "nn.npy")]) == 0
    out = np.load(tmp_path / "nn.npy")
    np.testing.assert_array_equal(out, load_model(tmp_path / "m3").inpaint(maps, mask))
    np.testing.assert_array_equal(out[:, :, mask == 1], maps[:, :, mask == 1])
    assert np.abs(out[:, :, mask == 0] - maps[:, :, mask == 0]).max() > 0  # the holes were filled, not copied


def test_three_channel_model_with_a_first_guess_on_a_healpix_tqu_map(tmp_path, capsys):
    """--fields TQU --model DIR (a 3-channel network with a first-guess input) on a T, Q, U FITS
    map = the library path: inpaint_healpix_tqu with first_guess_map = the joint sphere fill
    (sphere_tqu_fill, the default sky); valid pixels unchanged; the correction is really added."""
    import healpy as hp
    import torch

    from combine.baselines.sphere_wiener_pol import sphere_tqu_fill
    from combine.first_guess import FirstGuess
    from combine.healpix_inpaint_tqu import inpaint_healpix_tqu
    from combine.models import load_model, save_model
    from combine.nn import PConvUNet

    torch.manual_seed(1)
    unet = PConvUNet("t128", in_channels=3, levels=6, channels=[8, 16, 16, 16, 16, 16], prefill="biharmonic").eval()
    with torch.no_grad():  # the correction head may start at zero: make the network change its first guess
        for w in unet.parameters():
            w.add_(0.05 * torch.randn_like(w))
    save_model(unet, tmp_path / "model", first_guess=FirstGuess.for_sky("biharmonic", size=128))
    nside = 128
    rng = np.random.default_rng(8)
    tqu = (rng.standard_normal((3, hp.nside2npix(nside))) * [[100], [5], [5]]).astype(np.float32)
    mask = np.ones(tqu.shape[1], np.float32)
    for lon, lat in ((10, 10), (200, 60)):
        mask[hp.query_disc(nside, hp.ang2vec(lon, lat, lonlat=True), np.radians(0.4))] = 0
    given = np.where(mask > 0, tqu, hp.UNSEEN).astype(np.float32)
    hp.write_map(tmp_path / "tqu.fits", given, dtype=np.float32, column_units="uK")
    np.save(tmp_path / "mask.npy", mask)
    assert main(["inpaint", "--quiet", "--fields", "TQU", "--model", str(tmp_path / "model"), "--input",
                 str(tmp_path / "tqu.fits"), "--mask", str(tmp_path / "mask.npy"), "--output",
                 str(tmp_path / "out.fits")]) == 0, capsys.readouterr().err
    out = hp.read_map(tmp_path / "out.fits", field=None, dtype=np.float32)
    sky = Sky.planck18(noise_uk_arcmin=1.0).replace(pixel_arcmin=hp.nside2resol(nside, arcmin=True))
    first = np.asarray(sphere_tqu_fill(given, mask, sky=sky), dtype=np.float64)
    ref = inpaint_healpix_tqu(load_model(tmp_path / "model"), given, mask, first_guess_map=first, progress=False)
    hole = mask == 0
    np.testing.assert_array_equal(out[:, ~hole], given[:, ~hole])
    scale = np.abs(ref[:, hole]).max(axis=1, keepdims=True)
    np.testing.assert_allclose(out[:, hole] / scale, ref[:, hole] / scale, rtol=1e-6, atol=1e-6)
    assert np.abs(out[:, hole] - first[:, hole]).min() > 0  # the network's correction was added
