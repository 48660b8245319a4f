"""T, Q, U local Wiener / GCR of holes in HEALPix maps: dense agreement, calibration, E→B leakage."""

import healpy as hp
import numpy as np
import pytest

from combine.baselines.covariance_pol import SphereTQUCovariance
from combine.baselines.sphere_wiener_pol import sphere_tqu_fill
from combine.errors import InputError
from combine.metrics_pol import fullsky_spectra_tqu
from combine.sky import Sky
from combine.sky.polarisation import pure_e_sky, simulate_healpix_tqu


def _point_source_mask(nside, n_holes, radius_deg, rng):
    mask = np.ones(hp.nside2npix(nside))
    for _ in range(n_holes):
        z, lon = rng.uniform(-1, 1), rng.uniform(0, 2 * np.pi)
        vec = [np.sqrt(1 - z * z) * np.cos(lon), np.sqrt(1 - z * z) * np.sin(lon), z]
        mask[hp.query_disc(nside, vec, np.radians(radius_deg))] = 0
    return mask


def test_fill_with_a_wide_window_equals_the_dense_conditional_mean():
    """Nside 8: a 60° margin (the context is half the sky) against an independent dense solve over
    the same pixels with the reference covariance (SphereTQUCovariance: θ-spline of the CAMB sums,
    arctan2 frames, field-major): the fast table, frames and pixel-major batched solve agree to
    1e-6 of the fill. The context stops short of antipodal pairs, whose frame is undefined."""
    from combine.sphere.holes import hole_groups

    nside = 8
    sky = Sky.planck18(beam_fwhm_arcmin=600.0, noise_uk_arcmin=30.0, lmax=40)
    m = simulate_healpix_tqu(nside, sky=sky, pixwin=True, seed=2).astype(np.float64)
    mask = np.ones(hp.nside2npix(nside))
    mask[hp.query_disc(nside, hp.ang2vec(0.7, 2.0), np.radians(12))] = 0
    filled = sphere_tqu_fill(m, mask, sky=sky, margin_arcmin=60 * 60)
    from combine.sky.spectra import healpix_pixel_window

    groups = hole_groups(mask == 1, nside, margin_rad=np.radians(60))
    assert len(groups) == 1 and 0.3 < groups.context(0).size / (mask == 1).sum() < 0.8
    cov = SphereTQUCovariance(sky.replace(pixel_arcmin=hp.nside2resol(nside, arcmin=True)), theta_max_rad=np.pi,
                              pixel_window=healpix_pixel_window(nside, 40))
    hole, ctx = groups.holes(0), groups.context(0)
    v_h, v_o = (np.array(hp.pix2vec(nside, p)).T for p in (hole, ctx))
    ref = cov.between(v_h, v_o) @ np.linalg.solve(cov.between(v_o, v_o, noise=True), m[:, ctx].ravel())
    np.testing.assert_allclose(filled[:, hole].ravel(), ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    np.testing.assert_array_equal(filled[:, mask == 1], m[:, mask == 1])


def test_fast_tqu_covariance_matches_the_reference_at_several_orientations():
    """The d²-table covariance with frames from two matrix products (combine.sphere.covariance_tqu,
    pixel-major) against SphereTQUCovariance (θ-spline, arctan2 frames, field-major) on pixels of
    two nearby discs at Nside 256 (pairs at every orientation, up to ~3°): every T, Q, U block
    agrees to 1e-6 of its scale; a sign or a rotation error in the frames moves Q/U entries by O(1)."""
    import torch

    from combine.sky.spectra import healpix_pixel_window
    from combine.sphere import TQUCorrelationTable

    nside = 256
    sky = Sky.planck18(beam_fwhm_arcmin=30.0, noise_uk_arcmin=1.0, lmax=800)
    pix = np.concatenate([hp.query_disc(nside, hp.ang2vec(0.4, 1.0), np.radians(0.6)),
                          hp.query_disc(nside, hp.ang2vec(0.43, 1.05), np.radians(0.4))])
    v = np.array(hp.pix2vec(nside, pix)).T
    ref = SphereTQUCovariance(sky, theta_max_rad=0.1, pixel_window=healpix_pixel_window(nside, 800)).between(v, v)
    n = pix.size
    got = TQUCorrelationTable(sky, nside, 0.1).between(torch.from_numpy(v), torch.from_numpy(v)).numpy()
    got = got.reshape(n, 3, n, 3).transpose(1, 0, 3, 2).reshape(3 * n, 3 * n)  # pixel- to field-major
    scale = np.sqrt(np.abs(np.diag(ref)))
    for f in range(3):
        for g in range(3):
            blk = np.s_[f * n:(f + 1) * n, g * n:(g + 1) * n]
            err = np.abs(got[blk] - ref[blk]).max() / (scale[f * n] * scale[g * n])
            assert err < 1e-6, (f, g, err)
    assert np.abs(ref[n:2 * n, 2 * n:]).max() > 0.05 * scale[n] ** 2  # Q-U correlations are not trivially 0


def test_tqu_gcr_is_reproducible_and_independent_of_threads():
    """Nside 32, three holes: the same seed gives the same realisation with 1 or 2 worker threads
    (draws from default_rng([seed, 0, group])); another seed another one; valid pixels untouched."""
    nside = 32
    sky = Sky.planck18(beam_fwhm_arcmin=240.0, noise_uk_arcmin=20.0, lmax=200)
    m = simulate_healpix_tqu(nside, sky=sky, seed=3).astype(np.float64)
    mask = np.ones(hp.nside2npix(nside))
    for lon, lat in ((10, 10), (100, -30), (200, 60)):
        mask[hp.query_disc(nside, hp.ang2vec(lon, lat, lonlat=True), np.radians(4.0))] = 0
    a = sphere_tqu_fill(m, mask, sky=sky, gcr=True, seed=11, threads=1)
    b = sphere_tqu_fill(m, mask, sky=sky, gcr=True, seed=11, threads=2)
    c = sphere_tqu_fill(m, mask, sky=sky, gcr=True, seed=12, threads=2)
    np.testing.assert_array_equal(a, b)
    hole = mask == 0
    assert np.abs(a[:, hole] - c[:, hole]).min(axis=1).max() > 0 and not np.allclose(a[:, hole], c[:, hole])
    np.testing.assert_array_equal(a[:, ~hole], m[:, ~hole])


def test_gcr_error_is_twice_the_wiener_error_on_the_sphere(single_openmp_thread):
    """Two Nside-64 skies (200' beam: band-limited below 3 Nside), 300 small holes: pooled over
    holes, E|gcr − truth|² / E|wiener − truth|² = 2 for Q and U within 4 standard errors."""
    nside = 64
    sky = Sky.planck18(beam_fwhm_arcmin=200.0, noise_uk_arcmin=20.0, lmax=400)
    rng = np.random.default_rng(8)
    ratios = []
    for _ in range(2):
        truth = simulate_healpix_tqu(nside, sky=sky, rng=rng).astype(np.float64)
        mask = _point_source_mask(nside, 150, 1.5, rng)
        wf = sphere_tqu_fill(truth, mask, sky=sky, margin_arcmin=150)
        g = sphere_tqu_fill(truth, mask, sky=sky, gcr=True, seed=int(rng.integers(2**31)), margin_arcmin=150)
        hole = mask == 0
        ratios.append((((g - truth)[:, hole] ** 2), ((wf - truth)[:, hole] ** 2)))
    err_g = np.concatenate([r[0] for r in ratios], axis=1)
    err_w = np.concatenate([r[1] for r in ratios], axis=1)
    for f in (1, 2):
        ratio = err_g[f].mean() / err_w[f].mean()
        # pixels of one hole are correlated: the standard error from blocks of 40 pixels
        n_blocks = err_g.shape[1] // 40
        blocks = np.array([err_g[f, i::n_blocks].mean() / err_w[f, i::n_blocks].mean() for i in range(n_blocks)])
        se = blocks.std(ddof=1) / np.sqrt(n_blocks)
        assert abs(ratio - 2.0) < 4 * se + 0.05, (f, ratio, se)


def test_wiener_fill_removes_e_to_b_leakage_of_a_pure_e_sky(single_openmp_thread):
    """Pure-E Nside-64 sky (60' beam), 80 holes of 1.5° radius (f_sky 0.95; holes whose 220'
    contexts overlap are solved together, so more holes would merge into one group too large for a
    dense solve): BB at 20 ≤ ℓ ≤ 120 of the Wiener-filled map is ≥ 30× below the zero-filled
    map's (f_sky-corrected)."""
    nside = 64
    sky = pure_e_sky(Sky.planck18(beam_fwhm_arcmin=60.0, noise_uk_arcmin=0.0, lmax=400))
    rng = np.random.default_rng(4)
    truth = simulate_healpix_tqu(nside, sky=sky, rng=rng).astype(np.float64)
    mask = _point_source_mask(nside, 80, 1.5, rng)
    wf = sphere_tqu_fill(truth, mask, sky=sky)
    bb_zero = fullsky_spectra_tqu(truth, mask)["bb"][20:121].mean()
    bb_wf = fullsky_spectra_tqu(wf)["bb"][20:121].mean()
    ee = fullsky_spectra_tqu(truth)["ee"][20:121].mean()
    assert bb_zero > 1e-3 * ee  # the cut leaks
    assert bb_wf < bb_zero / 30, (bb_zero, bb_wf, ee)


def test_sphere_fill_rejects_bad_input():
    sky = Sky.planck18(lmax=100)
    nside = 4
    m = np.zeros((3, hp.nside2npix(nside)))
    mask = np.ones(hp.nside2npix(nside))
    mask[0] = 0
    with pytest.raises(InputError, match="T, Q, U"):
        sphere_tqu_fill(m[:2], mask, sky=sky)
    with pytest.raises(InputError, match="pixels"):
        sphere_tqu_fill(m, mask[:-1], sky=sky)
    bad = m.copy()
    bad[1, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        sphere_tqu_fill(bad, mask, sky=sky)
    big = np.ones(hp.nside2npix(nside))
    big[:40] = 0
    with pytest.raises(InputError, match="too large"):
        sphere_tqu_fill(m, big, sky=sky, max_group_pixels=10)
    with pytest.raises(InputError, match="one mask"):
        sphere_tqu_fill(m, np.stack([mask, np.ones_like(mask), mask]), sky=sky)
