"""``combine inpaint``: each input kind, and every bad input (exit 2, one line, no output file).

The model is an untrained t128 (its fills are meaningless): these tests check the plumbing,
valid-pixel identity and file metadata, not fill quality.
"""

import re

import healpy as hp
import numpy as np
import pytest
from astropy.io import fits

from combine.cli import main
from combine.image_io import read_healpix_fits, read_png, write_png, write_png_mask

NSIDE = 128  # 27.5' pixels: one- to few-pixel holes fit a 128 x 1.7177' patch




def _healpix_case(tmp_path, nest=False, name="map.fits", mask_nest=None, dtype=np.float32):
    """A random map with 4 small holes (UNSEEN / NaN inside), written with healpy."""
    rng = np.random.default_rng(0)
    hmap = rng.normal(0, 100, hp.nside2npix(NSIDE)).astype(dtype)
    mask = np.ones(hmap.size, np.float32)
    for lon, lat in ((10, 10), (100, -30), (200, 60), (300, 0)):
        mask[hp.query_disc(NSIDE, hp.ang2vec(lon, lat, lonlat=True), np.radians(0.4))] = 0
    given = hmap.copy()
    given[mask == 0] = hp.UNSEEN
    given[np.flatnonzero(mask == 0)[:2]] = np.nan
    order = hp.ring2nest(NSIDE, np.arange(hmap.size))
    if nest:
        g, m = np.empty_like(given), np.empty_like(mask)
        g[order], m[order] = given, mask
        given_file, mask_file = g, m
    else:
        given_file, mask_file = given, mask
    hp.write_map(tmp_path / name, given_file, overwrite=True, nest=nest, dtype=dtype, column_units="uK",
                 extra_header=[("TELESCOP", "SIMSKY", "test"), ("FREQ", 143, "GHz")])
    mnest = nest if mask_nest is None else mask_nest
    if mnest == nest:
        mfile = mask_file
    elif mnest:  # mask written NEST, map RING
        mfile = np.empty_like(mask)
        mfile[order] = mask
    else:
        mfile = mask
    hp.write_map(tmp_path / "mask.fits", mfile, nest=mnest, dtype=np.float32, overwrite=True)
    return given_file, mask_file


def _run(capsys, *argv):
    status = main(["inpaint", "--quiet", *map(str, argv)])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("nest", [False, True])
def test_fits_healpix(tmp_path, capsys, untrained_models, nest):
    given, mask = _healpix_case(tmp_path, nest=nest)
    out = tmp_path / "out.fits"
    status, err = _run(capsys, "--model", untrained_models / "t128", "--input", tmp_path / "map.fits",
                       "--mask", tmp_path / "mask.fits", "--output", out, "--batch-size", "2")
    assert status == 0, err
    res = read_healpix_fits(out)
    assert res.nest is nest and res.nside == NSIDE and res.unit == "uK" and res.values.dtype == np.float32
    assert res.header["TELESCOP"] == "SIMSKY" and res.header["FREQ"] == 143
    assert np.array_equal(res.values[mask > 0], given[mask > 0])
    assert np.isfinite(res.values).all()


def test_fits_gz_and_mask_in_other_ordering(tmp_path, capsys, untrained_models):
    """A NEST mask for a RING map is reordered: same output as with a RING mask."""
    _healpix_case(tmp_path, nest=False, mask_nest=False)
    assert _run(capsys, "--model", untrained_models / "t128", "--input", tmp_path / "map.fits", "--mask",
                tmp_path / "mask.fits", "--output", tmp_path / "a.fits")[0] == 0
    _healpix_case(tmp_path, nest=False, mask_nest=True)
    status, err = _run(capsys, "--model", untrained_models / "t128", "--input", tmp_path / "map.fits", "--mask",
                       tmp_path / "mask.fits", "--output", tmp_path / "b.fits.gz")
    assert status == 0, err
    a, b = read_healpix_fits(tmp_path / "a.fits"), read_healpix_fits(tmp_path / "b.fits.gz")
    assert not b.nest
    np.testing.assert_array_equal(a.values, b.values)


def test_npy_healpix_vector(tmp_path, capsys, untrained_models):
    given, mask = _healpix_case(tmp_path)
    np.save(tmp_path / "map.npy", given)
    np.save(tmp_path / "mask.npy", mask)
    status, err = _run(capsys, "--model", untrained_models / "t128", "--input", tmp_path / "map.npy",
                       "--mask", tmp_path / "mask.npy", "--output", tmp_path / "out.npy")
    assert status == 0, err
    out = np.load(tmp_path / "out.npy")
    assert out.shape == given.shape and np.array_equal(out[mask > 0], given[mask > 0])
    assert np.isfinite(out).all()


@pytest.mark.parametrize("shape, mask_shape", [((3, 128, 128), (3, 128, 128)), ((200, 150), (200, 150)),
                                               ((2, 1, 64, 64), (2, 64, 64))])
def test_npy_patches(tmp_path, capsys, untrained_models, shape, mask_shape):
    rng = np.random.default_rng(1)
    maps = rng.normal(0, 100, shape).astype(np.float32)
    masks = np.ones(mask_shape, np.float32)
    masks[..., 20:40, 30:50] = 0
    maps_in = maps.copy()
    hole = masks[:, None] == 0 if len(shape) == 4 and len(mask_shape) == 3 else masks == 0
    maps_in[np.broadcast_to(hole, shape)] = np.nan
    np.save(tmp_path / "p.npy", maps_in)
    np.save(tmp_path / "m.npy", masks)
    status, err = _run(capsys, "--model", untrained_models / "t128", "--input", tmp_path / "p.npy",
                       "--mask", tmp_path / "m.npy", "--output", tmp_path / "o.npy")
    assert status == 0, err
    out = np.load(tmp_path / "o.npy")
    valid = np.isfinite(maps_in)
    assert out.shape == shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.array_equal(out[valid], maps_in[valid])


def test_png_image(tmp_path, capsys, untrained_models):
    rng = np.random.default_rng(2)
    write_png(tmp_path / "i.png", np.clip(rng.normal(0, 100, (100, 150)), -450, 450))
    mask = np.ones((100, 150))
    mask[40:50, 60:90] = 0
    write_png_mask(tmp_path / "m.png", mask)
    for out in ("o.png", "o.npy"):
        status, err = _run(capsys, "--model", untrained_models / "t128", "--input", tmp_path / "i.png",
                           "--mask", tmp_path / "m.png", "--output", tmp_path / out)
        assert status == 0, err
    given = read_png(tmp_path / "i.png")
    raw = np.load(tmp_path / "o.npy")
    assert raw.shape == (100, 150) and np.array_equal(raw[mask > 0], given[mask > 0])
    png = read_png(tmp_path / "o.png")
    assert np.array_equal(png[mask > 0], given[mask > 0])  # grey levels survive exactly


# ------------------------------------------------------------------ bad input
def _bad_case(tmp_path, untrained_models, case):
    """Files for one bad-input case; returns the argv (without the output)."""
    model = untrained_models / "t128"
    _healpix_case(tmp_path)
    fits_args = ["--input", tmp_path / "map.fits", "--mask", tmp_path / "mask.fits"]
    patches = np.random.default_rng(3).normal(0, 100, (2, 64, 64)).astype(np.float32)
    pmask = np.ones((2, 64, 64), np.float32)
    pmask[:, 10:20, 10:20] = 0
    np.save(tmp_path / "p.npy", patches)
    np.save(tmp_path / "m.npy", pmask)
    npy_args = ["--input", tmp_path / "p.npy", "--mask", tmp_path / "m.npy"]
    if case == "nside-mismatch":
        hp.write_map(tmp_path / "mask.fits", np.ones(hp.nside2npix(NSIDE // 2), np.float32), overwrite=True)
        return [model, *fits_args], "Nside 64"
    if case == "shape-mismatch":
        np.save(tmp_path / "m.npy", pmask[:, :32])
        return [model, *npy_args], "does not match"
    if case == "mask-not-binary-fits":
        m = hp.read_map(tmp_path / "mask.fits")
        m[100] = 0.5
        hp.write_map(tmp_path / "mask.fits", m, overwrite=True)
        return [model, *fits_args], "not binary"
    if case == "mask-not-binary-npy":
        pmask[0, 0, 0] = 2
        np.save(tmp_path / "m.npy", pmask)
        return [model, *npy_args], "not binary"
    if case in ("nan-valid", "unseen-valid"):
        m = hp.read_map(tmp_path / "map.fits")
        m[np.flatnonzero(hp.read_map(tmp_path / "mask.fits") > 0)[7]] = np.nan if case == "nan-valid" else hp.UNSEEN
        hp.write_map(tmp_path / "map.fits", m, overwrite=True, dtype=np.float32)
        return [model, *fits_args], "valid \\(mask = 1\\) pixels hold NaN, inf or UNSEEN"
    if case == "nan-valid-npy":
        patches[1, 50, 50] = np.nan
        np.save(tmp_path / "p.npy", patches)
        return [model, *npy_args], "NaN, inf or UNSEEN"
    if case == "fits-not-healpix":
        fits.PrimaryHDU(np.zeros((64, 64), np.float32)).writeto(tmp_path / "img.fits")
        return [model, "--input", tmp_path / "img.fits", "--mask", tmp_path / "mask.fits"], "not a HEALPix map"
    if case == "model-corrupt":
        bad = tmp_path / "bad-model"
        bad.mkdir()
        (bad / "config.json").write_text((model / "config.json").read_text())
        (bad / "weights.safetensors").write_bytes(b"\x00garbage" * 10)
        return [bad, *npy_args], "corrupt or truncated weights"
    if case == "model-truncated":
        bad = tmp_path / "trunc-model"
        bad.mkdir()
        (bad / "config.json").write_text((model / "config.json").read_text())
        data = (model / "weights.safetensors").read_bytes()
        (bad / "weights.safetensors").write_bytes(data[: len(data) // 2])
        return [bad, *npy_args], "corrupt or truncated weights"
    if case == "model-missing-config":
        bad = tmp_path / "noconf-model"
        bad.mkdir()
        (bad / "weights.safetensors").write_bytes((model / "weights.safetensors").read_bytes())
        return [bad, *npy_args], "missing config.json"
    if case == "model-unknown":
        return ["no-such-model", *npy_args], "no such model"
    if case == "channels-npy":
        return [untrained_models / "t128-3ch", *npy_args], "1 channel\\(s\\), model .* takes 3"
    if case == "channels-npy-4d":
        np.save(tmp_path / "p.npy", np.zeros((2, 3, 64, 64), np.float32))
        return [model, *npy_args], "3 channel\\(s\\), model .* takes 1"
    if case == "channels-fits":
        return [untrained_models / "t128-3ch", *fits_args], "model takes 3 channels"
    if case == "hole-too-large":
        m = hp.read_map(tmp_path / "mask.fits")
        m[hp.query_disc(NSIDE, hp.ang2vec(50, 50, lonlat=True), np.radians(3))] = 0
        hp.write_map(tmp_path / "mask.fits", m, overwrite=True)
        return [model, *fits_args], "hole of .* deg diameter .* too large"
    if case == "mixed-kinds":
        return [model, "--input", tmp_path / "p.npy", "--mask", tmp_path / "mask.fits"], "does not fit patch input"
    if case == "missing-input":
        return [model, "--input", tmp_path / "nope.fits", "--mask", tmp_path / "mask.fits"], "no such file"
    raise AssertionError(case)


BAD_CASES = ["nside-mismatch", "shape-mismatch", "mask-not-binary-fits", "mask-not-binary-npy", "nan-valid",
             "unseen-valid", "nan-valid-npy", "fits-not-healpix", "model-corrupt", "model-truncated",
             "model-missing-config", "model-unknown", "channels-npy", "channels-npy-4d", "channels-fits",
             "hole-too-large", "mixed-kinds", "missing-input"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_exit_2_one_line_no_output(tmp_path, capsys, untrained_models, case):
    argv, match = _bad_case(tmp_path, untrained_models, case)
    model, *rest = argv
    is_fits = any(str(a).endswith(".fits") for a in rest[1::2][:1])
    out = tmp_path / ("out.fits" if is_fits else "out.npy")
    before = set(tmp_path.iterdir())
    status, err = _run(capsys, "--model", model, *rest, "--output", out)
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("combine inpaint: error: ")
    assert re.search(match, lines[0]), lines[0]
    assert not out.exists()
    assert set(tmp_path.iterdir()) == before  # no temporary file left either


def test_bad_output_extension(tmp_path, capsys, untrained_models):
    _healpix_case(tmp_path)
    status, err = _run(capsys, "--model", untrained_models / "t128", "--input", tmp_path / "map.fits",
                       "--mask", tmp_path / "mask.fits", "--output", tmp_path / "out.png")
    assert status == 2 and "written as .fits" in err and not (tmp_path / "out.png").exists()


def test_field_selects_a_column_of_a_multi_column_map(tmp_path, capsys, untrained_models):
    """--field / --column picks the column to fill; the output keeps every column (the other
    one bit-identical) and the column names."""
    given, mask = _healpix_case(tmp_path)
    q = np.where(mask > 0, 0.5 * np.nan_to_num(given, nan=0.0), hp.UNSEEN).astype(np.float32)
    hp.write_map(tmp_path / "tq.fits", [given, q], column_names=["TEMPERATURE", "Q_POLARISATION"],
                 column_units=["uK", "uK"], dtype=[np.float32, np.float32], overwrite=True)
    status, err = _run(capsys, "--model", untrained_models / "t128", "--input", tmp_path / "tq.fits", "--field", "1",
                       "--mask", tmp_path / "mask.fits", "--output", tmp_path / "q.fits")
    assert status == 0, err
    res = read_healpix_fits(tmp_path / "q.fits", field=1)
    assert res.column == "Q_POLARISATION" and np.array_equal(res.values[mask > 0], q[mask > 0])
    assert np.isfinite(res.values).all()
    t = read_healpix_fits(tmp_path / "q.fits", field=0)
    assert t.column == "TEMPERATURE" and np.array_equal(t.values, given, equal_nan=True)
    status, err = _run(capsys, "--model", untrained_models / "t128", "--input", tmp_path / "tq.fits", "--field", "2",
                       "--mask", tmp_path / "mask.fits", "--output", tmp_path / "x.fits")
    assert status == 2 and "no column 2 (the map has 2" in err and not (tmp_path / "x.fits").exists()


# --------------------------------------------------------------------------------------------
# --method: sphere-native fills, Planck-format files, units, noise maps, outputs
# --------------------------------------------------------------------------------------------
SPH_NSIDE = 64
SPH_BEAM = 120.0  # arcmin, smooth at 55' pixels: the table and pixel window stay small


def _planck_file(path, *, unit="K_CMB", cov_unit="K_CMB^2", nest=False, scale=1e-6, cov_scale=None, nside=SPH_NSIDE):
    """A Planck-like file: I_STOKES (in ``unit``), HITS (int), II_COV; returns (map μK, mask, cov μK²)."""
    from combine.sky.healpix import simulate_healpix_map

    hmap_uk = simulate_healpix_map(nside, beam_fwhm_arcmin=SPH_BEAM, noise_uk_arcmin=1.0, seed=4,
                                   lmax=3 * nside - 1).astype(np.float64)
    mask = np.ones(hmap_uk.size, np.float32)
    for lon, lat in ((10, 10), (100, -30), (250, 50)):
        mask[hp.query_disc(nside, hp.ang2vec(lon, lat, lonlat=True), np.radians(2.0))] = 0
    cov_uk2 = np.full(hmap_uk.size, 4.0)
    cov_uk2[: hmap_uk.size // 2] = 400.0
    cov_scale = scale ** 2 if cov_scale is None else cov_scale
    values = np.where(mask > 0, hmap_uk * scale, hp.UNSEEN)
    if nest:
        order = hp.ring2nest(nside, np.arange(hmap_uk.size))
        values, cov_file = np.empty_like(values), np.empty_like(cov_uk2)
        values[order] = np.where(mask > 0, hmap_uk * scale, hp.UNSEEN)
        cov_file[order] = cov_uk2
    else:
        cov_file = cov_uk2
    cols = [fits.Column(name="I_STOKES", format="E", unit=unit, array=values.astype(np.float32)),
            fits.Column(name="HITS", format="J", array=np.arange(hmap_uk.size, dtype=np.int32) % 97),
            fits.Column(name="II_COV", format="E", unit=cov_unit, array=(cov_file * cov_scale).astype(np.float32))]
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header["PIXTYPE"] = "HEALPIX"
    hdu.header["ORDERING"] = "NESTED" if nest else "RING"
    hdu.header["NSIDE"] = nside
    hdu.header["TELESCOP"] = "PLANCKISH"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    hp.write_map(path.parent / "mask.fits", mask, dtype=np.float32, overwrite=True)
    return hmap_uk, mask, cov_uk2


def _sphere_args(tmp_path, method="wiener", inp="planck.fits", out="out.fits", *extra):
    return ["--method", method, "--input", tmp_path / inp, "--mask", tmp_path / "mask.fits", "--output",
            tmp_path / out, "--beam-fwhm", SPH_BEAM, *extra]


def test_planck_file_in_kelvin_filled_on_the_sphere(tmp_path, capsys):
    """I_STOKES in K_CMB with HITS and II_COV (K_CMB²): the output keeps every column, unit and
    keyword; valid pixels bit-identical; holes = the sphere fill of the μK map with the II_COV noise
    (to float32 rounding), converted back to K_CMB; the COMBSKY card reads back as the Sky."""
    from combine.sky import Sky
    from combine.sphere import fill_holes

    hmap_uk, mask, cov_uk2 = _planck_file(tmp_path / "planck.fits")
    status, err = _run(capsys, *_sphere_args(tmp_path, "wiener", "planck.fits", "out.fits", "--noise-map",
                                             tmp_path / "planck.fits"))
    assert status == 0, err
    src, out = fits.open(tmp_path / "planck.fits")[1], fits.open(tmp_path / "out.fits")[1]
    assert out.columns.names == ["I_STOKES", "HITS", "II_COV"]
    assert [c.unit for c in out.columns] == ["K_CMB", None, "K_CMB^2"]
    assert out.header["TELESCOP"] == "PLANCKISH" and out.header["COMBMETH"] == "wiener"
    np.testing.assert_array_equal(out.data["HITS"].ravel(), src.data["HITS"].ravel())
    a, b = src.data["I_STOKES"].ravel(), out.data["I_STOKES"].ravel()
    assert np.array_equal(a[mask > 0], b[mask > 0])
    sky = Sky.from_json(out.header["COMBSKY"])
    assert sky.beam_fwhm_arcmin == SPH_BEAM and sky.noise_uk_arcmin == 1.0
    given_uk = a.astype(np.float64) * 1e6
    ref = fill_holes(given_uk, mask > 0, sky=sky, noise_var_map=np.where(mask > 0, (cov_uk2 * 1e-12).astype(np.float32) * 1e12, 0))
    holes = ref.groups.hole_pixels
    np.testing.assert_allclose(b[holes] * 1e6, ref.mean_uk, rtol=1e-5, atol=1e-3)
    assert np.sqrt(np.mean((b[holes] * 1e6 - hmap_uk[holes]) ** 2)) < 0.5 * np.std(hmap_uk)  # a real fill
    white = fill_holes(given_uk, mask > 0, sky=sky)
    assert np.sqrt(np.mean((white.mean_uk - ref.mean_uk) ** 2)) > 0.01  # the noise map changed it (μK)


def test_units_refused_or_converted(tmp_path, capsys):
    """No TUNIT and kelvin-sized values: refused with a message naming --unit K; with --unit K the
    result equals the K_CMB file's; an unknown TUNIT is refused; a μK map without unit is taken as μK."""
    _planck_file(tmp_path / "k.fits")
    assert _run(capsys, *_sphere_args(tmp_path, "wiener", "k.fits", "ok.fits"))[0] == 0
    _planck_file(tmp_path / "nounit.fits", unit=None, cov_unit=None)
    status, err = _run(capsys, *_sphere_args(tmp_path, "wiener", "nounit.fits", "x.fits"))
    assert status == 2 and "--unit K" in err and not (tmp_path / "x.fits").exists()
    status, err = _run(capsys, *_sphere_args(tmp_path, "wiener", "nounit.fits", "y.fits", "--unit", "K"))
    assert status == 0, err
    ok, y = (fits.open(tmp_path / n)[1].data["I_STOKES"].ravel() for n in ("ok.fits", "y.fits"))
    np.testing.assert_array_equal(ok, y)
    _planck_file(tmp_path / "jy.fits", unit="Jy/sr")
    status, err = _run(capsys, *_sphere_args(tmp_path, "wiener", "jy.fits", "z.fits"))
    assert status == 2 and "unknown temperature unit 'Jy/sr'" in err and not (tmp_path / "z.fits").exists()
    _planck_file(tmp_path / "uk.fits", unit=None, cov_unit=None, scale=1.0)
    status, err = _run(capsys, *_sphere_args(tmp_path, "wiener", "uk.fits", "u.fits"))
    assert status == 0, err
    u = fits.open(tmp_path / "u.fits")[1].data["I_STOKES"].ravel()
    np.testing.assert_allclose(u, ok * 1e6, rtol=1e-5, atol=1e-3)


def test_gcr_realisations_seeded(tmp_path, capsys):
    """--realisations 2 writes _r0 and _r1; _r0 equals the single realisation of the same seed;
    the draws differ from each other and from the Wiener fill in the holes only."""
    _, mask, _ = _planck_file(tmp_path / "planck.fits", nest=True)
    assert _run(capsys, *_sphere_args(tmp_path, "gcr", "planck.fits", "one.fits", "--seed", "3"))[0] == 0
    status, err = _run(capsys, *_sphere_args(tmp_path, "gcr", "planck.fits", "two.fits", "--seed", "3",
                                             "--realisations", "2"))
    assert status == 0, err
    assert _run(capsys, *_sphere_args(tmp_path, "wiener", "planck.fits", "w.fits"))[0] == 0
    one, r0, r1, w = (fits.open(tmp_path / n)[1] for n in ("one.fits", "two_r0.fits", "two_r1.fits", "w.fits"))
    assert r0.header["ORDERING"] == "NESTED" and r0.header["COMBSEED"] == 3
    np.testing.assert_array_equal(one.data["I_STOKES"], r0.data["I_STOKES"])
    hole = hp.reorder(mask, r2n=True) == 0
    a, b, c = (x.data["I_STOKES"].ravel() for x in (r0, r1, w))
    assert np.array_equal(a[~hole], c[~hole]) and np.array_equal(b[~hole], c[~hole])
    assert np.abs(a[hole] - b[hole]).mean() > 1e-7 and np.abs(a[hole] - c[hole]).mean() > 1e-7  # K


def test_method_on_patches_and_integer_npy(tmp_path, capsys):
    """--method on .npy patches runs the patch baseline with the sky; integer maps are accepted
    (read as float32), complex ones refused."""
    rng = np.random.default_rng(3)
    maps = rng.integers(-300, 300, (2, 64, 64)).astype(np.int16)
    masks = np.ones((64, 64), np.float32)
    masks[20:30, 20:30] = 0
    np.save(tmp_path / "p.npy", maps)
    np.save(tmp_path / "m.npy", masks)
    status, err = _run(capsys, "--method", "diffusive", "--input", tmp_path / "p.npy", "--mask", tmp_path / "m.npy",
                       "--output", tmp_path / "o.npy")
    assert status == 0, err
    out = np.load(tmp_path / "o.npy")
    assert np.array_equal(out[:, masks > 0], maps[:, masks > 0]) and np.isfinite(out).all()
    np.save(tmp_path / "c.npy", maps.astype(np.complex64))
    status, err = _run(capsys, "--method", "diffusive", "--input", tmp_path / "c.npy", "--mask", tmp_path / "m.npy",
                       "--output", tmp_path / "c_out.npy")
    assert status == 2 and "complex" in err and not (tmp_path / "c_out.npy").exists()


SPHERE_BAD = ["unknown-method", "noise-map-nside", "noise-map-negative", "output-is-input", "output-exists",
              "unknown-unit-option", "realisations-without-gcr", "no-unit-kelvin"]


@pytest.mark.parametrize("case", SPHERE_BAD)
def test_sphere_bad_input_exit_2_one_line_no_output(tmp_path, capsys, case):
    hmap_uk, mask, cov = _planck_file(tmp_path / "planck.fits")
    out = "out.fits"
    extra = []
    method = "wiener"
    inp = "planck.fits"
    if case == "unknown-method":
        method, match = "kriging", "unknown method 'kriging'"
    elif case == "noise-map-nside":
        hp.write_map(tmp_path / "nm.fits", np.ones(hp.nside2npix(32)), overwrite=True)
        extra, match = ["--noise-map", tmp_path / "nm.fits"], "noise map has Nside 32, the map has Nside 64"
    elif case == "noise-map-negative":
        np.save(tmp_path / "nm.npy", -np.ones(hmap_uk.size))
        extra, match = ["--noise-map", tmp_path / "nm.npy"], "must be finite and >= 0"
    elif case == "output-is-input":
        out, match = "planck.fits", "is the input file"
    elif case == "output-exists":
        (tmp_path / "out.fits").write_bytes(b"keep me")
        match = "already exists \\(pass --overwrite"
    elif case == "unknown-unit-option":
        extra, match = ["--unit", "furlong"], "--unit: unknown temperature unit"
    elif case == "realisations-without-gcr":
        extra, match = ["--realisations", "3"], "applies only to --method gcr"
    elif case == "no-unit-kelvin":
        _planck_file(tmp_path / "nounit.fits", unit=None, cov_unit=None)
        inp, match = "nounit.fits", "looks like kelvin; pass --unit K"
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    status, err = _run(capsys, *_sphere_args(tmp_path, method, inp, out, *extra))
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("combine inpaint: error: ") and re.search(match, lines[0]), err
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing written, nothing changed


def test_overwrite_replaces_existing_output(tmp_path, capsys):
    _planck_file(tmp_path / "planck.fits")
    (tmp_path / "out.fits").write_bytes(b"old")
    status, err = _run(capsys, *_sphere_args(tmp_path, "wiener", "planck.fits", "out.fits", "--overwrite"))
    assert status == 0, err
    assert fits.open(tmp_path / "out.fits")[1].header["COMBMETH"] == "wiener"


def test_summary_line_with_quiet_names_output_and_seed(tmp_path, capsys):
    """Issue 15: one line on stdout on success, printed with --quiet too (it is the result), naming
    the output file and the seed of the constrained realisation."""
    _planck_file(tmp_path / "planck.fits", nest=True)
    out = tmp_path / "g.fits"
    status = main(["inpaint", "--quiet", *map(str, _sphere_args(tmp_path, "gcr", "planck.fits", "g.fits", "--seed", "5"))])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    lines = captured.out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("combine inpaint: "), captured.out
    assert f"seed 5 -> {out}" in lines[0]
    assert fits.open(out)[1].header["COMBSEED"] == 5


def test_model_with_a_first_guess_corrects_the_sphere_native_fill(tmp_path, capsys):
    """Issue 13: ``--model DIR`` of a network with a first guess on a FITS map equals the library
    path — :func:`inpaint_healpix` with ``first_guess_map`` = the sphere-native Wiener fill
    (:func:`combine.sphere.fill_holes`, the sky's defaults) — valid pixels are unchanged, and the
    network's correction is really added (the holes differ from the sphere fill)."""
    import torch

    from combine.first_guess import FirstGuess
    from combine.healpix_inpaint import inpaint_healpix
    from combine.models import load_model, save_model
    from combine.nn import PConvUNet
    from combine.sky import Sky
    from combine.sphere import fill_holes
    from combine.sphere.wiener import DEFAULT_MARGIN_PX

    torch.manual_seed(0)
    unet = PConvUNet("t128", levels=6, channels=[8, 16, 16, 16, 16, 16], prefill="biharmonic").eval()
    save_model(unet, tmp_path / "model", first_guess=FirstGuess.for_sky("biharmonic", size=128))
    given, mask = _healpix_case(tmp_path)
    status, err = _run(capsys, "--model", tmp_path / "model", "--input", tmp_path / "map.fits", "--mask",
                       tmp_path / "mask.fits", "--output", tmp_path / "out.fits")
    assert status == 0, err
    out = read_healpix_fits(tmp_path / "out.fits").values
    sky = Sky.planck18(noise_uk_arcmin=1.0).replace(pixel_arcmin=hp.nside2resol(NSIDE, arcmin=True))
    valid = mask > 0
    sphere = fill_holes(given, valid, sky=sky, margin_px=DEFAULT_MARGIN_PX).apply(np.asarray(given, np.float64))
    ref = inpaint_healpix(load_model(tmp_path / "model"), given, mask, first_guess_map=sphere, progress=False)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(out[valid], given[valid])
    correction = out[~valid].astype(np.float64) - sphere[~valid]
    assert np.isfinite(out).all() and np.abs(correction).min() > 0
