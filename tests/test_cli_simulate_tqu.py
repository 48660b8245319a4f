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


def test_tqu_patches_cut_from_healpix_maps(tmp_path, capsys):
    """--fields TQU --method healpix into DIR: (N, 3, H, W) patches equal to
    simulate_healpix_tqu_patches with the file's seed stream (Q/U rotated into the patch frame),
    their rms at the T and Q/U levels, reproducible from the seed."""
    from combine.sky import Sky
    from combine.sky.healpix import simulate_healpix_tqu_patches

    out = tmp_path / "hp"
    argv = ["simulate", "--quiet", "--out", str(out), "--n-patches", "6", "--size", "64", "--fields", "TQU",
            "--method", "healpix", "--nside", "256", "--patches-per-map", "6", "--split", "1,0,0", "--seed", "2",
            "--pixel-arcmin", "13.74", "--beam-fwhm", "20", "--noise", "2"]
    assert main(argv) == 0, capsys.readouterr().err
    maps, _, attrs = read_dataset(out / "train.h5")
    assert maps.shape == (6, 3, 64, 64) and attrs["fields"] == "TQU" and attrs["method"] == "healpix"
    sky = Sky.from_json(attrs["sky"])
    rng = np.random.default_rng(np.random.SeedSequence(2).spawn(3)[0])  # the train split's stream
    ref = simulate_healpix_tqu_patches(6, 64, nside=256, patches_per_map=6, sky=sky, rng=rng)
    np.testing.assert_array_equal(maps, ref)
    rms = np.sqrt(np.mean(maps.astype(np.float64) ** 2, axis=(0, 2, 3)))
    assert 30 < rms[0] < 300 and 0.5 < rms[1] < 15 and 0.5 < rms[2] < 15, rms


def _binned_z(cl_hat, cl_var, expected, edges):
    """z-scores of ℓ-binned power: (Σ Ĉ_ℓ - Σ C_ℓ) / sqrt(Σ Var Ĉ_ℓ) per bin [edges[i], edges[i+1])."""
    return np.array([(cl_hat[a:b].sum() - expected[a:b].sum()) / np.sqrt(cl_var[a:b].sum())
                     for a, b in zip(edges[:-1], edges[1:])])


def test_full_sky_tqu_map_has_the_skys_spectra(tmp_path, capsys, single_openmp_thread):
    """--out FILE.fits --fields TQU: a 3-column map (I/Q/U_STOKES, uK_CMB, POLCCONV COSMO, RING,
    the sky in COMBSKY) whose anafast TT, EE, BB, TE match the sky's beamed, pixel-windowed spectra:
    every ℓ-bin (Δℓ = 16, 8 ≤ ℓ < 136, Nside 64) within 4.5σ of cosmic variance,
    Var Ĉ_ℓ = 2 C_ℓ² / (2ℓ+1) (TE: (C_TE² + C_TT C_EE) / (2ℓ+1)), and each spectrum's pooled
    z within 4. Measured: a U sign flip (IAU instead of COSMO) or a Q/U swap gives BB bins at z > 900."""
    import healpy as hp
    from astropy.io import fits

    from combine.sky import Sky
    from combine.sky.polarisation import beamed_spectra_uk2
    from combine.sky.spectra import healpix_pixel_window

    nside, lmax = 64, 135
    out = tmp_path / "sky.fits"
    argv = ["simulate", "--quiet", "--fields", "TQU", "--method", "healpix", "--nside", str(nside), "--out", str(out),
            "--seed", "11", "--beam-fwhm", "30"]
    assert main(argv) == 0, capsys.readouterr().err
    hdu = fits.open(out)[1]
    assert hdu.columns.names == ["I_STOKES", "Q_STOKES", "U_STOKES"]
    assert [c.unit for c in hdu.columns] == ["uK_CMB"] * 3
    assert hdu.header["POLCCONV"] == "COSMO" and hdu.header["ORDERING"] == "RING" and hdu.header["COMBSEED"] == 11
    sky = Sky.from_json(hdu.header["COMBSKY"])
    assert sky.beam_fwhm_arcmin == 30 and sky.noise_uk_arcmin == 0
    tqu = np.stack([hdu.data[n].ravel() for n in hdu.columns.names]).astype(np.float64)
    tt, ee, bb, te = hp.anafast(tqu, lmax=lmax)[:4]
    exp = beamed_spectra_uk2(sky, healpix_pixel_window(nside, 3 * nside - 1))
    ell = np.arange(lmax + 1)
    modes = 2 * ell + 1
    edges = np.arange(8, lmax + 2, 16)
    for name, hat in (("tt", tt), ("ee", ee), ("bb", bb)):
        c = exp[name][: lmax + 1]
        var = 2 * c ** 2 / modes
        z = _binned_z(hat, var, c, edges)
        assert np.abs(z).max() < 4.5, (name, z)
        pooled = _binned_z(hat, var, c, edges[[0, -1]])
        assert abs(pooled[0]) < 4, (name, pooled)
    c = exp["te"][: lmax + 1]
    var = (c ** 2 + exp["tt"][: lmax + 1] * exp["ee"][: lmax + 1]) / modes
    assert np.abs(_binned_z(te, var, c, edges)).max() < 4.5
    # reproducible from the seed; an existing file is kept without --overwrite
    assert main(argv) == 2 and "already exists" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    np.testing.assert_array_equal(np.stack([fits.open(out)[1].data[n].ravel() for n in hdu.columns.names]), tqu)


def test_simulate_then_inpaint_tqu_round_trip(tmp_path, capsys):
    """simulate --fields TQU (Nside 32) -> inpaint --fields TQU --method wiener with a mask of
    three holes: valid pixels bit-identical to the simulated file, holes equal to
    sphere_tqu_fill of the map read back with zeros in the holes (to float32 rounding: so the
    truth left in the file's holes is never read), and a real fill (hole RMSE well below the
    field's rms for T, Q and U)."""
    import healpy as hp

    from combine.baselines.sphere_wiener_pol import sphere_tqu_fill
    from combine.sky import Sky

    nside = 32
    sim = tmp_path / "sim.fits"
    assert main(["simulate", "--quiet", "--fields", "TQU", "--nside", str(nside), "--out", str(sim), "--seed", "5",
                 "--noise", "1"]) == 0, capsys.readouterr().err
    truth = hp.read_map(sim, field=None, dtype=np.float32)
    mask = np.ones(truth.shape[1], np.float32)
    for lon, lat in ((40, 20), (130, -50), (250, 5)):
        mask[hp.query_disc(nside, hp.ang2vec(lon, lat, lonlat=True), np.radians(3.0))] = 0
    np.save(tmp_path / "mask.npy", mask)
    out = tmp_path / "filled.fits"
    assert main(["inpaint", "--quiet", "--fields", "TQU", "--method", "wiener", "--input", str(sim), "--mask",
                 str(tmp_path / "mask.npy"), "--output", str(out)]) == 0, capsys.readouterr().err
    filled = hp.read_map(out, field=None, dtype=np.float32)
    np.testing.assert_array_equal(filled[:, mask > 0], truth[:, mask > 0])
    sky = Sky.planck18(noise_uk_arcmin=1.0).replace(pixel_arcmin=hp.nside2resol(nside, arcmin=True))
    ref = sphere_tqu_fill(np.where(mask > 0, truth, 0), mask, sky=sky)  # the CLI's input has the truth in holes
    holes = mask == 0
    scale = np.abs(ref[:, holes]).max(axis=1, keepdims=True)
    np.testing.assert_allclose(filled[:, holes] / scale, ref[:, holes] / scale, rtol=1e-6, atol=1e-6)
    err = np.sqrt(np.mean((filled[:, holes].astype(np.float64) - truth[:, holes]) ** 2, axis=1))
    assert (err < 0.8 * truth[:, holes].std(axis=1)).all(), err
