"""Tests of the exact Wiener filter, constrained realisations and the pixel covariance.

All on small patches (24² px) with a stand-in spectrum (no CAMB): every statistic is compared
with patches drawn from the *same* covariance via its Cholesky factor, so the model is exact.
"""

import math

import numpy as np
import pytest

from combine.baselines import BASELINES, WienerFilter, gcr_fill, wiener_fill
from combine.baselines.covariance import (
    correlation_table_uk2,
    covariance_from_table,
    pixel_covariance_uk2,
)
from combine.baselines.wiener import get_filter
from combine.errors import InputError
from combine.sky import Sky
from combine.sky.spectra import gaussian_beam_bl

SIZE = 24
SKY = dict(pixel_arcmin=5.0, beam_fwhm_arcmin=10.0, noise_uk_arcmin=2.0)


def stand_in_cl(lmax=3000):
    """CMB-like stand-in: flat D_ell = 3000 μK², raw C_ell = 2π D / ℓ(ℓ+1)."""
    ell = np.arange(lmax + 1, dtype=np.float64)
    cl = np.zeros(lmax + 1)
    cl[2:] = 2 * np.pi * 3000.0 / (ell[2:] * (ell[2:] + 1))
    return cl


CL = stand_in_cl()
#: the same sky as one Sky (the API of new code); SKY + cl_uk2 are the loose keywords of the first API
THE_SKY = Sky(cl_tt_uk2=CL, **SKY)


def circle(size, radius, cy, cx):
    yy, xx = np.mgrid[:size, :size]
    mask = np.ones((size, size), dtype=np.float32)
    mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 0
    return mask


@pytest.fixture(scope="module")
def cov():
    return pixel_covariance_uk2(SIZE, THE_SKY)


@pytest.fixture(scope="module")
def wf():
    return WienerFilter(SIZE, sky=THE_SKY)


def test_loose_keywords_build_the_same_filter(cov, wf):
    """The first API's keywords describe the same sky: identical covariance and precision."""
    np.testing.assert_array_equal(pixel_covariance_uk2(SIZE, cl_uk2=CL, **SKY), cov)
    legacy = WienerFilter(SIZE, cl_uk2=CL, **SKY)
    assert legacy.sky == THE_SKY and legacy._key == wf._key
    with pytest.raises(InputError, match="not both"):
        WienerFilter(SIZE, sky=THE_SKY, noise_uk_arcmin=1.0)


def draw(cov, n, seed):
    chol = np.linalg.cholesky(cov)
    z = np.random.default_rng(seed).standard_normal((cov.shape[0], n))
    return (chol @ z).T.reshape(n, SIZE, SIZE)


def dense_posterior(cov, mask):
    h = mask.ravel() == 0
    v = ~h
    c_vv = cov[np.ix_(v, v)]
    gain = np.linalg.solve(c_vv, cov[np.ix_(v, h)]).T  # C_hv C_vv^-1
    sigma = cov[np.ix_(h, h)] - gain @ cov[np.ix_(v, h)]
    return h, v, gain, sigma


# ------------------------------------------------------------------------------------------
# covariance
# ------------------------------------------------------------------------------------------
def test_correlation_function_matches_legendre_series():
    """ξ(θ) = Σ (2ℓ+1)/4π C_ℓ B_ℓ² P_ℓ(cos θ), checked against numpy's Legendre series."""
    cl = stand_in_cl(400)
    theta = np.array([0.0, 1e-3, 5e-3, 2e-2])
    bl = gaussian_beam_bl(10.0, 400)
    coeff = (2 * np.arange(401) + 1) / (4 * np.pi) * cl * bl**2
    ref = np.polynomial.legendre.legval(np.cos(theta), coeff)
    np.testing.assert_allclose(Sky(cl_tt_uk2=cl, beam_fwhm_arcmin=10.0).correlation_uk2(theta), ref, rtol=1e-10)


def test_covariance_is_stationary_table_plus_noise(cov):
    table = correlation_table_uk2(SIZE, THE_SKY)
    ys, xs = np.divmod(np.arange(SIZE * SIZE), SIZE)
    ref = table[np.abs(ys[:, None] - ys[None]), np.abs(xs[:, None] - xs[None])]
    noise_var = (SKY["noise_uk_arcmin"] / SKY["pixel_arcmin"]) ** 2
    np.testing.assert_array_equal(cov, ref + noise_var * np.eye(SIZE * SIZE))
    # table at offset (3, 4) is ξ at 5 pixels
    xi5 = THE_SKY.correlation_uk2(5 * SKY["pixel_arcmin"] * math.pi / 10800)
    assert table[3, 4] == pytest.approx(float(xi5), rel=1e-12)
    # rectangular patches build too
    rect = covariance_from_table(table[:3, :5], 0.0)
    assert rect.shape == (15, 15) and rect[0, 6] == table[1, 1]


# ------------------------------------------------------------------------------------------
# Wiener filter
# ------------------------------------------------------------------------------------------
def test_precision_is_inverse_covariance(wf, cov):
    q = wf.precision.numpy()
    np.testing.assert_allclose(q @ cov, np.eye(SIZE * SIZE), atol=1e-8)


def test_wiener_matches_dense_solve(wf, cov):
    """μ_h = -Q_hh⁻¹ Q_hv d_v equals C_hv C_vv⁻¹ d_v to 1e-6 relative (float64 data)."""
    mask = circle(SIZE, 5, 11, 13)
    mask[2:4, 18:22] = 0  # a second, separate hole
    maps = draw(cov, 6, seed=1)
    out = wf.fill(maps, mask)
    h, v, gain, _ = dense_posterior(cov, mask)
    ref = maps.reshape(6, -1)[:, v] @ gain.T
    got = out.reshape(6, -1)[:, h]
    assert np.abs(got - ref).max() <= 1e-6 * np.abs(ref).max()
    np.testing.assert_array_equal(out.reshape(6, -1)[:, v], maps.reshape(6, -1)[:, v])
    assert out.dtype == np.float64


def test_posterior_covariance_and_expected_mse_match_dense(wf, cov):
    mask = circle(SIZE, 4, 8, 9)
    _, _, _, sigma = dense_posterior(cov, mask)
    np.testing.assert_allclose(wf.posterior_covariance(mask), sigma, rtol=1e-7, atol=1e-7 * sigma.max())
    assert wf.expected_mse(mask) == pytest.approx(np.trace(sigma) / sigma.shape[0], rel=1e-8)
    assert wf.expected_mse(np.ones((SIZE, SIZE))) == 0.0


def test_realised_mse_matches_expected(wf, cov):
    """Mean hole MSE over N = 3000 patches vs tr(Σ_h)/n_h.

    Residuals r ~ N(0, Σ_h): Var(|r|²/n_h) = 2 tr(Σ_h²)/n_h², so the standard error of the mean
    over N patches is sqrt(2 tr(Σ_h²)/N)/n_h (≈ 1-2 % here); tolerance 4 standard errors.
    """
    n = 3000
    mask = circle(SIZE, 6, 12, 12)
    maps = draw(cov, n, seed=2)
    out = wf.fill(maps, mask)
    hole = mask == 0
    mse = ((out - maps)[:, hole] ** 2).mean()
    sigma = wf.posterior_covariance(mask)
    n_h = sigma.shape[0]
    expected = wf.expected_mse(mask)
    se = math.sqrt(2 * np.sum(sigma * sigma) / n) / n_h
    assert abs(mse - expected) < 4 * se, (mse, expected, se)
    # the fill is worse than nothing? no: far better than the prior variance
    assert expected < 0.5 * cov[0, 0]


def test_gcr_variance_and_mse(wf, cov):
    """GCR hole pixels have the truth's variance and twice the Wiener MSE.

    Variance: pooled mean of x_h² vs tr(C_hh)/n_h, standard error sqrt(2 tr(C_hh²)/N)/n_h.
    MSE: GCR − truth = x − r with x, r independent N(0, Σ_h), so E = 2 tr(Σ_h)/n_h and the
    standard error is sqrt(8 tr(Σ_h²)/N)/n_h. Tolerance 4 standard errors each (N = 3000).
    """
    n = 3000
    mask = circle(SIZE, 6, 12, 12)
    hole = mask == 0
    maps = draw(cov, n, seed=3)
    out = wf.constrained_realisation(maps, mask, seed=7)
    c_hh = cov[np.ix_(hole.ravel(), hole.ravel())]
    n_h = c_hh.shape[0]
    prior = np.trace(c_hh) / n_h
    se_var = math.sqrt(2 * np.sum(c_hh * c_hh) / n) / n_h
    assert abs((out[:, hole] ** 2).mean() - prior) < 4 * se_var
    assert abs((maps[:, hole] ** 2).mean() - prior) < 4 * se_var
    sigma = wf.posterior_covariance(mask)
    se_mse = math.sqrt(8 * np.sum(sigma * sigma) / n) / n_h
    mse = ((out - maps)[:, hole] ** 2).mean()
    assert abs(mse - 2 * wf.expected_mse(mask)) < 4 * se_mse
    # the Wiener fill is under-dispersed: μ ~ N(0, C_hh − Σ_h), E|μ|²/n_h = prior − expected MSE
    wiener_var = (wf.fill(maps, mask)[:, hole] ** 2).mean()
    c_mu = c_hh - sigma
    se_mu = math.sqrt(2 * np.sum(c_mu * c_mu) / n) / n_h
    assert abs(wiener_var - (prior - wf.expected_mse(mask))) < 4 * se_mu


def test_gcr_is_seeded(wf, cov):
    maps = draw(cov, 3, seed=4)
    mask = circle(SIZE, 3, 5, 5)
    a = gcr_fill(maps, mask, cl_uk2=CL, seed=11, **SKY)
    b = gcr_fill(maps, mask, cl_uk2=CL, seed=11, **SKY)
    c = gcr_fill(maps, mask, cl_uk2=CL, seed=12, **SKY)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c)[:, mask == 0].min() > 0
    np.testing.assert_array_equal(a[:, mask == 1], maps[:, mask == 1])


def test_sample_residual_statistics(wf):
    """Residual draws have covariance Σ_h: pooled variance within 4 standard errors."""
    mask = circle(SIZE, 3, 12, 12)
    rng = np.random.default_rng(5)
    draws = np.stack([wf.sample_residual(mask, rng) for _ in range(2000)])
    assert np.all(draws[:, mask == 1] == 0)
    sigma = wf.posterior_covariance(mask)
    n_h = sigma.shape[0]
    se = math.sqrt(2 * np.sum(sigma * sigma) / 2000) / n_h
    assert abs((draws[:, mask == 0] ** 2).mean() - np.trace(sigma) / n_h) < 4 * se


def test_geometry_cache_one_entry_per_geometry(cov):
    wf = WienerFilter(SIZE, cl_uk2=CL, **SKY)
    a, b = circle(SIZE, 3, 6, 6), circle(SIZE, 5, 14, 12)
    maps = draw(cov, 5, seed=6)
    masks = np.stack([a, b, a, b, a])
    first = wf.fill(maps, masks)
    assert wf.n_cached_geometries == 2
    second = wf.fill(maps, masks)
    assert wf.n_cached_geometries == 2
    np.testing.assert_array_equal(first, second)
    # per-geometry grouping gives the same result as filling one patch at a time
    single = np.stack([wf.fill(maps[i], masks[i]) for i in range(5)])
    np.testing.assert_allclose(single, first, rtol=0, atol=1e-9 * np.abs(first).max())
    wf.fill(maps[:1], circle(SIZE, 2, 20, 3))
    assert wf.n_cached_geometries == 3


def test_geometry_cache_respects_memory_budget(cov):
    wf = WienerFilter(SIZE, cl_uk2=CL, geometry_cache_bytes=1, **SKY)
    maps = draw(cov, 1, seed=6)
    for r in (2, 3, 4):
        wf.fill(maps, circle(SIZE, r, 12, 12))
    assert wf.n_cached_geometries == 1  # only the most recent is kept


def test_hole_values_ignored_and_layouts(wf, cov):
    maps = draw(cov, 2, seed=8).astype(np.float32)
    mask = circle(SIZE, 4, 10, 10)
    ref = wf.fill(maps, mask)
    poisoned = maps.copy()
    poisoned[:, mask == 0] = np.nan
    np.testing.assert_array_equal(wf.fill(poisoned, mask), ref)
    assert ref.dtype == np.float32
    np.testing.assert_array_equal(wf.fill(maps[0], mask), ref[0])
    np.testing.assert_array_equal(wf.fill(maps[:, None], mask[None, None])[:, 0], ref)


def test_registry_wiener_uses_sky_kwargs_and_ignores_unknown(cov):
    maps = draw(cov, 2, seed=9)
    mask = circle(SIZE, 4, 10, 10)
    out = BASELINES["wiener"](maps, mask, cl_uk2=CL, seed=3, something_else=1, **SKY)
    ref = WienerFilter(SIZE, cl_uk2=CL, **SKY).fill(maps, mask)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    assert get_filter((SIZE, SIZE), cl_uk2=CL, **SKY) is get_filter((SIZE, SIZE), cl_uk2=CL, **SKY)


def test_noiseless_sky_is_regularised_and_accurate(wf):
    """noise 0: the diagonal floor 1e-8 ξ(0) keeps Q finite and the realised MSE is the expected one.

    Tolerance 4 standard errors, sqrt(2 tr(Σ_h²)/N)/n_h with N = 400.
    """
    sky = dict(SKY, noise_uk_arcmin=0.0)
    wf0 = WienerFilter(SIZE, cl_uk2=CL, **sky)
    cov0 = pixel_covariance_uk2(SIZE, cl_uk2=CL, **sky)
    cov0[np.diag_indices_from(cov0)] += 1e-8 * cov0[0, 0]
    n = 400
    maps = draw(cov0, n, seed=10)
    mask = circle(SIZE, 3, 12, 12)
    out = wf0.fill(maps, mask)
    mse = ((out - maps)[:, mask == 0] ** 2).mean()
    sigma = wf0.posterior_covariance(mask)
    se = math.sqrt(2 * np.sum(sigma * sigma) / n) / sigma.shape[0]
    assert abs(mse - wf0.expected_mse(mask)) < 4 * se
    assert wf0.expected_mse(mask) < wf.expected_mse(mask)  # less noise, smaller error


def test_bad_inputs():
    wf = WienerFilter(SIZE, cl_uk2=CL, **SKY)
    maps = np.zeros((SIZE, SIZE))
    with pytest.raises(InputError, match="mask"):
        wf.fill(maps, np.full((SIZE, SIZE), 0.5))
    with pytest.raises(InputError, match="shape"):
        wf.fill(np.zeros((SIZE + 1, SIZE + 1)), np.ones((SIZE + 1, SIZE + 1)))
    with pytest.raises(InputError, match="no valid"):
        wf.fill(maps, np.zeros((SIZE, SIZE)))
    with pytest.raises(InputError, match="cl_uk2"):
        WienerFilter(SIZE, cl_uk2=-CL, **SKY)
    with pytest.raises(InputError, match="noise_uk_arcmin"):
        WienerFilter(SIZE, cl_uk2=CL, pixel_arcmin=5.0, beam_fwhm_arcmin=10.0, noise_uk_arcmin=-1)
    with pytest.raises(InputError, match="size"):
        WienerFilter(0, cl_uk2=CL, **SKY)


def test_precision_cache_is_shared_and_bounded(monkeypatch):
    from combine.baselines import wiener

    a = WienerFilter(SIZE, cl_uk2=CL, **SKY)
    b = WienerFilter(SIZE, cl_uk2=CL, **SKY)
    assert a.precision is b.precision  # one matrix per configuration
    one_matrix = (SIZE * SIZE) ** 2 * 8
    monkeypatch.setattr(wiener, "PRECISION_CACHE_BYTES", one_matrix)
    monkeypatch.setattr(wiener, "_PRECISION_CACHE", type(wiener._PRECISION_CACHE)())
    q_a = a.precision
    c = WienerFilter(SIZE, cl_uk2=CL, **dict(SKY, noise_uk_arcmin=3.0))
    q_c = c.precision
    assert len(wiener._PRECISION_CACHE) == 1 and wiener._cache_bytes() <= one_matrix
    assert not np.allclose(q_a.numpy(), q_c.numpy())
    np.testing.assert_array_equal(a.precision.numpy(), q_a.numpy())  # recomputed identically


def test_precision_disk_cache(monkeypatch, tmp_path):
    from combine.baselines import wiener

    monkeypatch.setenv("COMBINE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(wiener, "DISK_CACHE_MIN_PIXELS", 1)
    monkeypatch.setattr(wiener, "_PRECISION_CACHE", type(wiener._PRECISION_CACHE)())
    sky = dict(SKY, noise_uk_arcmin=2.5)  # a configuration no other test uses
    first = WienerFilter(SIZE, cl_uk2=CL, **sky)
    assert first.precision_source == "compute"
    q = first.precision.numpy().copy()
    assert first.precision_source == "memory"
    files = list((tmp_path / "wiener").glob("*.npy"))
    assert len(files) == 1 and not list((tmp_path / "wiener").glob("*tmp*"))
    wiener._PRECISION_CACHE.clear()
    assert WienerFilter(SIZE, cl_uk2=CL, **sky).precision_source == "disk"

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although cached on disk")

    monkeypatch.setattr(wiener, "precision_matrix", fail)
    np.testing.assert_array_equal(WienerFilter(SIZE, cl_uk2=CL, **sky).precision.numpy(), q)
    # a corrupt entry is recomputed and overwritten
    files[0].write_bytes(b"garbage")
    wiener._PRECISION_CACHE.clear()
    monkeypatch.undo()
    monkeypatch.setenv("COMBINE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(wiener, "DISK_CACHE_MIN_PIXELS", 1)
    monkeypatch.setattr(wiener, "_PRECISION_CACHE", type(wiener._PRECISION_CACHE)())
    np.testing.assert_array_equal(WienerFilter(SIZE, cl_uk2=CL, **sky).precision.numpy(), q)
    assert np.load(files[0]).shape == q.shape
    # disabled by the environment variable
    monkeypatch.setenv("COMBINE_WIENER_DISK_CACHE", "0")
    WienerFilter(SIZE, cl_uk2=CL, **dict(sky, noise_uk_arcmin=2.6)).precision
    assert len(list((tmp_path / "wiener").glob("*.npy"))) == 1
