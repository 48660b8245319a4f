"""T, Q, U local Wiener / GCR of holes in HEALPix maps: dense agreement, calibration, E→B leakage."""

import healpy as hp
import numpy as np
import pytest

from combine.baselines.covariance_pol import SphereTQUCovariance
from combine.baselines.sphere_wiener_pol import hole_components, sphere_tqu_fill
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


def test_hole_components_are_connected_groups():
    nside = 16
    mask = np.ones(hp.nside2npix(nside), dtype=bool)
    a = hp.query_disc(nside, hp.ang2vec(1.0, 1.0), np.radians(8))
    b = hp.query_disc(nside, hp.ang2vec(2.0, 4.0), np.radians(8))
    mask[a] = mask[b] = False
    comps = hole_components(nside, np.flatnonzero(~mask))
    assert sorted(map(len, comps)) == sorted([len(a), len(b)])
    assert {frozenset(c) for c in comps} == {frozenset(a), frozenset(b)}


def test_fill_with_a_whole_sky_window_equals_the_dense_conditional_mean():
    """Nside 8: a margin covering the sky makes the local fill the exact conditional mean, here
    against an independent dense solve with the same covariance (numpy, all 3 × 768 entries)."""
    nside = 8
    sky = Sky.planck18(beam_fwhm_arcmin=600.0, noise_uk_arcmin=30.0, lmax=40)
    m = simulate_healpix_tqu(nside, sky=sky, pixwin=True, seed=2).astype(np.float64)
    mask = np.ones(hp.nside2npix(nside))
    mask[hp.query_disc(nside, hp.ang2vec(0.7, 2.0), np.radians(12))] = 0
    filled = sphere_tqu_fill(m, mask, sky=sky, margin_arcmin=180 * 60)
    from combine.sky.spectra import healpix_pixel_window

    cov = SphereTQUCovariance(sky.replace(pixel_arcmin=hp.nside2resol(nside, arcmin=True)), theta_max_rad=np.pi,
                              pixel_window=healpix_pixel_window(nside, 40))
    vec = np.array(hp.pix2vec(nside, np.arange(hp.nside2npix(nside)))).T
    c = cov.between(vec, vec, noise=True)
    hole = np.tile(mask == 0, 3)
    ref = c[np.ix_(hole, ~hole)] @ np.linalg.solve(c[np.ix_(~hole, ~hole)], m.ravel()[~hole])
    np.testing.assert_allclose(filled.ravel()[hole], ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    np.testing.assert_array_equal(filled[:, mask == 1], m[:, mask == 1])


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
        g = sphere_tqu_fill(truth, mask, sky=sky, gcr=True, rng=rng, margin_arcmin=150)
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
    """Pure-E Nside-64 sky (60' beam), 200 holes of 1.5° radius (f_sky 0.86): BB at 20 ≤ ℓ ≤ 120 of
    the Wiener-filled map is ≥ 30× below the zero-filled map's (f_sky-corrected)."""
    nside = 64
    sky = pure_e_sky(Sky.planck18(beam_fwhm_arcmin=60.0, noise_uk_arcmin=0.0, lmax=400))
    rng = np.random.default_rng(4)
    truth = simulate_healpix_tqu(nside, sky=sky, rng=rng).astype(np.float64)
    mask = _point_source_mask(nside, 200, 1.5, rng)
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
    with pytest.raises(InputError, match="max_hole_px"):
        sphere_tqu_fill(m, big, sky=sky, max_hole_px=10)
    with pytest.raises(InputError, match="one mask"):
        sphere_tqu_fill(m, np.stack([mask, np.ones_like(mask), mask]), sky=sky)
