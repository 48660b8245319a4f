"""Flat-sky simulation against theory: variance, variogram, wrap-around, noise, determinism.

Statistical tolerances are 4 standard errors, each derived from the number of independent
samples: for the pixel variance, from the mode count of each periodic grid (every grid is one
independent realisation); for within-patch statistics, from the scatter of per-patch values over
the number of patches (patches are independent at these scales: they share only the ℓ ≲ 50
modes of their grid, which barely change lags ≤ 32 px). A small systematic allowance covers the
flat-sky approximation (measured 0.1-0.2 % at lags 1-32 px with 10,000 128² patches).
"""

import numpy as np
import pytest

from combine.errors import InputError
from combine.sky import Sky
from combine.sky.flat import (
    _grid_power,
    grid_pixel_variance_uk2,
    grid_side_px,
    simulate_flat_patches,
    theory_pixel_variance_uk2,
    theory_variogram_uk2,
)

PIX = 1.7177
SIZE = 64  # grid 512², 64 patches per grid
N_GRIDS = 24


@pytest.fixture(scope="module")
def sky():
    return Sky.planck18()


@pytest.fixture(scope="module")
def cl(sky):
    return sky.cl_tt


@pytest.fixture(scope="module")
def patches(sky):
    return simulate_flat_patches(64 * N_GRIDS, SIZE, sky=sky, seed=2024).astype(np.float64)


def test_loose_keywords_are_the_same_sky(sky, cl):
    """The first API's keywords (cl_uk2, beam, ...) give the same patches as the Sky."""
    a = simulate_flat_patches(3, 64, sky=sky.replace(noise_uk_arcmin=2.0), seed=4)
    b = simulate_flat_patches(3, 64, cl_uk2=cl, noise_uk_arcmin=2.0, seed=4)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="not both"):
        simulate_flat_patches(3, 64, sky=sky, noise_uk_arcmin=2.0)


def test_shape_dtype_and_grid():
    assert grid_side_px(128) == 1024 and grid_side_px(64) == 512
    x = simulate_flat_patches(70, 64, cl_uk2=np.r_[0, 0, np.ones(500)], seed=0)
    assert x.shape == (70, 64, 64) and x.dtype == np.float32
    assert np.all(np.isfinite(x))


def test_pixel_variance_matches_grid_theory(sky, patches):
    """Mean T² over whole grids vs (1/L²) Σ_k C B², tolerance from the grid's mode count.

    The grid mean of T² is Σ_k q_k |W_k|²/G² with q_k = C_{|k|}B²/(Δ²G²) and |W_k|²/G²
    exponential (mean 1, variance 1; ±k share one), so its variance is Σ_k 2 q_k² per grid.
    """
    g = grid_side_px(SIZE)
    expected = grid_pixel_variance_uk2(sky, g)
    q = _grid_power(sky.beamed_cl_uk2("tt"), g, PIX) / g**2
    weight = np.full(q.shape[1], 2.0)
    weight[[0, -1]] = 1.0
    se = np.sqrt(np.sum(weight * 2 * q**2) / N_GRIDS)  # 7 % per grid -> 1.5 % for 24 grids
    measured = np.mean(patches**2)
    assert abs(measured - expected) < 4 * se
    # the grid's sum agrees with the full-sky sum over the multipoles it holds (ℓ >= 2π/L)
    # to 5 % (coarse sampling of the lowest modes), and lacks ~15-20 % of the full variance
    ell_fund = 2 * np.pi / (g * PIX * np.pi / 10800)
    assert expected == pytest.approx(theory_pixel_variance_uk2(sky, lmin=int(np.ceil(ell_fund))), rel=0.05)
    assert 0.75 < expected / theory_pixel_variance_uk2(sky) < 0.9


def test_within_patch_variance_matches_theory(sky, patches):
    """E[variance about the patch mean] = (1/n⁴) Σ_{pixel pairs} γ(r_ij), full-sky γ."""
    d = np.arange(-SIZE + 1, SIZE)
    count = (SIZE - np.abs(d))[:, None] * (SIZE - np.abs(d))[None, :]
    r = np.hypot(d[:, None], d[None, :]).ravel() * PIX
    unique_r, inverse = np.unique(r, return_inverse=True)
    gamma = np.zeros_like(unique_r)
    gamma[1:] = theory_variogram_uk2(unique_r[1:], sky)
    expected = np.sum(count.ravel() * gamma[inverse]) / SIZE**4
    per_patch = patches.var(axis=(1, 2))
    se = per_patch.std(ddof=1) / np.sqrt(per_patch.size)
    assert abs(per_patch.mean() - expected) < 4 * se + 0.005 * expected


@pytest.mark.parametrize("lag", [1, 2, 4, 8, 16, 32])
def test_variogram_matches_theory(sky, patches, lag):
    """γ(r) = ½⟨(T(x+r) − T(x))²⟩ along rows and columns vs ξ(0) − ξ(r) (Legendre sum)."""
    diff_c = (patches[:, :, lag:] - patches[:, :, :-lag]) ** 2
    diff_r = (patches[:, lag:, :] - patches[:, :-lag, :]) ** 2
    per_patch = 0.25 * (diff_c.mean(axis=(1, 2)) + diff_r.mean(axis=(1, 2)))
    expected = theory_variogram_uk2(lag * PIX, sky)[0]
    se = per_patch.std(ddof=1) / np.sqrt(per_patch.size)
    assert abs(per_patch.mean() - expected) < 4 * se + 0.005 * expected


def test_no_wrap_around_between_opposite_edges(sky, patches):
    """Opposite edges are size-1 px apart, not 1 px: their variogram is γ(63 px), not γ(1 px).

    A generator whose patches tiled its own period would make them neighbours. The grid lacks
    the ℓ < 2π/L modes, which lowers γ at 63 px (1.8°) by ~1 %: allowance 3 %.
    """
    lag = SIZE - 1
    per_patch = 0.25 * (
        ((patches[:, :, -1] - patches[:, :, 0]) ** 2).mean(axis=1)
        + ((patches[:, -1, :] - patches[:, 0, :]) ** 2).mean(axis=1)
    )
    expected = theory_variogram_uk2(lag * PIX, sky)[0]
    neighbour = theory_variogram_uk2(PIX, sky)[0]
    se = per_patch.std(ddof=1) / np.sqrt(per_patch.size)
    assert abs(per_patch.mean() - expected) < 4 * se + 0.03 * expected
    assert per_patch.mean() > 20 * neighbour


def test_noise_adds_white_sigma_pix(cl):
    """Within one grid the signal is identical with and without noise; the difference is white
    noise of σ_pix = noise/pixel: variance within 4·sqrt(2/N) relative, lag-1 correlation ~0."""
    noise, pix = 10.0, 2.0
    a = simulate_flat_patches(64, 64, cl_uk2=cl, pixel_arcmin=pix, seed=5).astype(np.float64)
    b = simulate_flat_patches(64, 64, cl_uk2=cl, pixel_arcmin=pix, noise_uk_arcmin=noise, seed=5)
    diff = b.astype(np.float64) - a
    sigma2 = (noise / pix) ** 2
    n = diff.size
    assert diff.var() == pytest.approx(sigma2, rel=4 * np.sqrt(2 / n))
    corr = np.mean(diff[:, :, 1:] * diff[:, :, :-1]) / diff.var()
    assert abs(corr) < 4 / np.sqrt(n)


def test_determinism(cl):
    a = simulate_flat_patches(5, 64, cl_uk2=cl, seed=11)
    b = simulate_flat_patches(5, 64, cl_uk2=cl, seed=11)
    c = simulate_flat_patches(5, 64, cl_uk2=cl, rng=np.random.default_rng(11))
    d = simulate_flat_patches(5, 64, cl_uk2=cl, seed=12)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert not np.allclose(a, d)


def test_beam_smooths(cl):
    """Without beam the lag-1 variogram is larger (more small-scale power), ratio as theory."""
    sharp = simulate_flat_patches(64, 64, cl_uk2=cl, beam_fwhm_arcmin=0.0, seed=1).astype(np.float64)
    smooth = simulate_flat_patches(64, 64, cl_uk2=cl, beam_fwhm_arcmin=5.0, seed=1).astype(np.float64)
    g = [0.5 * np.mean((x[:, :, 1:] - x[:, :, :-1]) ** 2) for x in (sharp, smooth)]
    sharp_sky, smooth_sky = (Sky(cl_tt_uk2=cl, beam_fwhm_arcmin=b) for b in (0.0, 5.0))
    theory = theory_variogram_uk2(PIX, sharp_sky)[0] / theory_variogram_uk2(PIX, smooth_sky)[0]
    assert g[0] / g[1] == pytest.approx(theory, rel=0.05)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_patches=0), "n_patches"),
        (dict(size=32), "size"),
        (dict(noise_uk_arcmin=-1.0), "noise"),
        (dict(pixel_arcmin=0.0), "pixel"),
        (dict(ns=0.0), "ns"),
        (dict(ns=1.0, cl_uk2=np.ones(10)), "ns"),
        (dict(seed=1, rng=np.random.default_rng(1)), "seed"),
        (dict(cl_uk2=np.array([0, 0, -1.0, 1.0])), "cl_uk2"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(n_patches=2, size=64)
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        simulate_flat_patches(**args)
