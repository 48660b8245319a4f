"""E/B metrics: apodised flat-sky spectra of T, Q, U patches and full-sky anafast with f_sky correction."""

import healpy as hp
import numpy as np
import pytest

from combine.errors import InputError
from combine.metrics_pol import band_mean, bias_over_cosmic_variance, flat_spectra_tqu, fullsky_spectra_tqu
from combine.sky.polarisation import eb_to_qu_flat

ARCMIN_RAD = np.pi / (180 * 60)


def test_flat_white_noise_spectra(rng):
    """White Q, U of variance σ² are E and B with C = σ²Δ² each (any window), TE = EB = 0."""
    pix, sigma = 2.0, 3.0
    p = sigma * rng.standard_normal((40, 3, 32, 32))
    s = flat_spectra_tqu(p, pix)
    expect = sigma**2 * (pix * ARCMIN_RAD) ** 2
    n = s["n_modes"].sum() * len(p)  # pooled over all bins
    # pooled estimate of a flat spectrum: relative error ~ sqrt(2/n_eff) (Hann: n_eff = n w2²/w4)
    tol = 5 * np.sqrt(2 / n) / np.sqrt(4 / 9)
    for name in ("tt", "ee", "bb"):
        pooled = np.sum(s[name].mean(0) * s["n_modes"]) / s["n_modes"].sum()
        assert abs(pooled / expect - 1) < tol, name
    for name in ("te", "eb", "tb"):
        pooled = np.sum(s[name].mean(0) * s["n_modes"]) / s["n_modes"].sum()
        assert abs(pooled / expect) < tol, name


def test_flat_pure_e_plane_wave_has_no_b_without_apodisation():
    n = 32
    rows, cols = np.mgrid[0:n, 0:n]
    e = np.cos(2 * np.pi * (2 * cols + 5 * rows) / n)
    q, u = eb_to_qu_flat(e, np.zeros_like(e))
    s = flat_spectra_tqu(np.stack([e, q, u]), 1.0, apodization=None)
    assert np.nansum(s["ee"]) > 0
    assert np.nansum(np.abs(s["bb"])) < 1e-20 * np.nansum(s["ee"])


def test_fullsky_fsky_correction(rng):
    """Zero-filled cut-sky spectra divided by f_sky recover white noise of pixel variance σ²: C = σ² Ω_pix."""
    nside, sigma = 32, 2.0
    npix = hp.nside2npix(nside)
    m = sigma * rng.standard_normal((3, npix))
    mask = np.ones(npix)
    mask[: npix // 3] = 0
    s = fullsky_spectra_tqu(m, mask)
    expect = sigma**2 * 4 * np.pi / npix
    lmax = s["ee"].size - 1
    n_modes = (lmax + 1) ** 2 * mask.mean()
    for name in ("tt", "ee", "bb"):
        assert abs(band_mean(s[name], 2, lmax) / expect - 1) < 5 * np.sqrt(2 / n_modes) + 0.01, name
    beam = np.full(lmax + 1, 0.5)
    sb = fullsky_spectra_tqu(m, mask, beam_bl=beam)
    np.testing.assert_allclose(sb["ee"], 4 * s["ee"])


def test_metrics_reject_bad_input():
    with pytest.raises(InputError, match="T, Q, U"):
        flat_spectra_tqu(np.zeros((2, 2, 8, 8)), 1.0)
    with pytest.raises(InputError, match="NaN"):
        flat_spectra_tqu(np.full((3, 8, 8), np.nan), 1.0)
    with pytest.raises(InputError, match="mask"):
        fullsky_spectra_tqu(np.zeros((3, 12 * 16)), np.full(12 * 16, 0.5))
    with pytest.raises(InputError, match="no valid"):
        fullsky_spectra_tqu(np.zeros((3, 12 * 16)), np.zeros(12 * 16))


def test_bias_over_cosmic_variance_is_the_band_offset_in_units_of_its_error():
    """A spectrum 1 % above a flat truth: in the band [100, 150) the cosmic-variance error is
    C sqrt(2 / sum(2l+1)) with sum(2l+1) = 150² - 100² = 12500, so the bias is 0.01 / sqrt(2/12500)."""
    truth = np.full(400, 2.0)
    z = bias_over_cosmic_variance(1.01 * truth, truth, 100, 200, 50)
    assert len(z) == 2
    np.testing.assert_allclose(z[0], 0.01 / np.sqrt(2 / 12500), rtol=1e-12)
    np.testing.assert_allclose(z[1], 0.01 / np.sqrt(2 / (200**2 - 150**2)), rtol=1e-12)
    # a reference spectrum twice the truth halves it (the BB of a pure-E sky measured against its EE)
    np.testing.assert_allclose(bias_over_cosmic_variance(1.01 * truth, truth, 100, 150, 50, reference=2 * truth)[0],
                               z[0] / 2, rtol=1e-12)
