"""Tests of combine.metrics on hand-made inputs and on Gaussian fields of known spectrum."""

import math

import numpy as np
import pytest

from combine import metrics
from combine.errors import InputError


def test_abs_diff_stats_hand_made():
    target = np.array([[1.0, -2.0], [4.0, 10.0]])
    pred = np.array([[1.0, -2.0], [1.0, 12.0]])
    mask = np.array([[1, 1], [0, 0]])
    hole = metrics.abs_diff_stats(pred, target, mask)
    # |diff| in hole = [3, 2]: mean 2.5, std 0.5; mean |target| = 7
    assert hole["mean"] == pytest.approx(2.5)
    assert hole["std"] == pytest.approx(0.5)
    assert hole["percent"] == pytest.approx(100 * 2.5 / 7)
    assert hole["std_percent"] == pytest.approx(100 * 0.5 / 7)
    assert hole["n_pixels"] == 2
    patch = metrics.abs_diff_stats(pred, target, mask, region="patch")
    # |diff| = [0, 0, 3, 2]: mean 1.25, std sqrt(mean([0,0,9,4]) - 1.25²); mean |target| = 17/4
    assert patch["mean"] == pytest.approx(1.25)
    assert patch["std"] == pytest.approx(math.sqrt(13 / 4 - 1.25**2))
    assert patch["percent"] == pytest.approx(100 * 1.25 / 4.25)
    with pytest.raises(InputError, match="no pixel"):
        metrics.abs_diff_stats(pred, target, np.ones((2, 2)))
    with pytest.raises(InputError, match="region"):
        metrics.abs_diff_stats(pred, target, mask, region="ring")


def test_rmse_hole_pooled_and_per_patch():
    target = np.zeros((2, 2, 2))
    pred = np.zeros((2, 2, 2))
    pred[0, 0, 0] = 3.0   # patch 0: hole pixels (0,0),(0,1): diffs 3, 0
    pred[1, 0, 0] = 4.0   # patch 1: hole pixel (0,0): diff 4, (0,1) valid
    pred[1, 1, 1] = 100.0  # valid pixel: ignored
    masks = np.array([[[0, 0], [1, 1]], [[0, 1], [1, 1]]])
    assert metrics.rmse_hole(pred, target, masks) == pytest.approx(math.sqrt((9 + 0 + 16) / 3))
    np.testing.assert_allclose(metrics.rmse_hole(pred, target, masks, per_patch=True),
                               [math.sqrt(4.5), 4.0])
    with pytest.raises(InputError, match="no hole"):
        metrics.rmse_hole(pred, target, np.ones((2, 2)))
    with pytest.raises(InputError, match="binary"):
        metrics.rmse_hole(pred, target, np.full((2, 2), 0.3))
    with pytest.raises(InputError, match="shape"):
        metrics.rmse_hole(pred[0], target, masks)


def test_hole_variance_ratio_hand_made():
    target = np.array([[1.0, -1.0, 1.0, -1.0, 50.0]])
    filled = np.array([[0.5, -0.5, 0.5, -0.5, -7.0]])
    mask = np.array([[0, 0, 0, 0, 1]])
    assert metrics.hole_variance_ratio(filled, target, mask) == pytest.approx(0.25)
    # a constant offset does not change the variance
    assert metrics.hole_variance_ratio(filled + 10, target, mask) == pytest.approx(0.25)


def test_gaussian_fit_and_ks():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 2.0, 20000)
    mu, sigma = metrics.gaussian_fit(x)
    assert mu == pytest.approx(x.mean()) and sigma == pytest.approx(x.std())
    assert abs(mu - 5.0) < 4 * 2.0 / math.sqrt(x.size) and abs(sigma - 2.0) < 4 * 2.0 / math.sqrt(2 * x.size)
    d, p = metrics.ks_two_sample([0.0, 1.0, 2.0], [10.0, 11.0, 12.0])
    assert d == 1.0 and p < 0.2
    d, p = metrics.ks_two_sample(x[:10000], x[10000:])
    assert d < 0.03 and p > 1e-3
    d, _ = metrics.ks_two_sample([0.0, 1.0, 2.0, 3.0], [0.5, 1.5, 2.5, 3.5])
    assert d == pytest.approx(0.25)
    assert metrics.ks_test is metrics.ks_two_sample
    with pytest.raises(InputError):
        metrics.gaussian_fit([])


def test_power_spectrum_of_white_noise_is_sigma2_pixel_area():
    """White noise of pixel variance σ² has C_ℓ = σ² Δ² at every ℓ, whatever the window."""
    rng = np.random.default_rng(1)
    pix = 1.7177
    maps = rng.normal(0.0, 3.0, (64, 32, 32))
    delta = pix * metrics.ARCMIN_RAD
    for apod in ("hann", 0.5, None):
        ell, cl, n_eff = metrics.flat_power_spectrum(maps, pix, apodization=apod)
        mean = cl.mean(axis=0)
        err = np.sqrt(2.0 / (64 * n_eff))
        assert np.all(np.abs(mean / (9.0 * delta**2) - 1) < 4 * err)
    # ℓ binning: edges from ℓ_f with width 2ℓ_f up to Nyquist
    ell_f = 2 * math.pi / (32 * delta)
    _, _, _, edges = metrics.flat_power_spectrum(maps[0], pix, return_edges=True)
    assert edges[0] == pytest.approx(ell_f) and np.diff(edges) == pytest.approx(2 * ell_f)
    assert edges[-1] <= math.pi / delta * (1 + 1e-9)


def gaussian_patches(cl_of_ell, n_patches, size, pix, seed, embed=4):
    """Gaussian fields with spectrum C(ℓ) on a periodic grid ``embed`` × larger, cut into patches."""
    rng = np.random.default_rng(seed)
    big = size * embed
    delta = pix * metrics.ARCMIN_RAD
    ell = metrics.ell_grid((big, big), pix)
    amp = np.sqrt(cl_of_ell(np.maximum(ell, 1.0))) / delta
    amp[0, 0] = 0.0
    n_big = int(math.ceil(n_patches / embed**2))
    fields = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n_big, big, big))) * amp).real
    patches = fields.reshape(n_big, embed, size, embed, size).transpose(0, 1, 3, 2, 4).reshape(-1, size, size)
    return patches[:n_patches]


@pytest.mark.parametrize("slope", [0.0, -1.0])
def test_flat_power_spectrum_recovers_input_spectrum(slope):
    """Power law C ∝ ℓ^slope: the mean binned spectrum of N = 400 patches (32², Hann window) agrees
    with the mode-averaged input in every bin within 4σ, σ = C sqrt(2/(N n_eff)); and the scatter
    of single-patch spectra is sqrt(2/n_eff) within 25 % (checks n_eff). Steeper spectra (ℓ^-2)
    leak power from below the fundamental into the first bin: that bias is outside this test.
    """
    pix, size, n = 2.0, 32, 400

    def cl(ell):
        return 1e-3 * (ell / 1000.0) ** slope

    maps = gaussian_patches(cl, n, size, pix, seed=2)
    ell, cl_hat, n_eff, edges = metrics.flat_power_spectrum(maps, pix, return_edges=True)
    grid = metrics.ell_grid((size, size), pix).ravel()
    which = np.digitize(grid, edges) - 1
    truth = np.array([cl(grid[which == b]).mean() for b in range(ell.size)])
    ratio = cl_hat / truth
    err = np.sqrt(2.0 / (n * n_eff))
    assert np.all(np.abs(ratio.mean(axis=0) - 1) < 4 * err), (ratio.mean(axis=0) - 1) / err
    scatter = ratio.std(axis=0, ddof=1)
    np.testing.assert_allclose(scatter, np.sqrt(2.0 / n_eff), rtol=0.25)
    # the returned centres are the mean |ℓ| of the modes in each bin
    np.testing.assert_allclose(ell, [grid[which == b].mean() for b in range(ell.size)])


def test_power_ratio_hand_made():
    rng = np.random.default_rng(3)
    target = rng.normal(0, 1, (10, 32, 32))
    out = metrics.power_ratio(2.0 * target, target, pixel_arcmin=1.0)
    np.testing.assert_allclose(out["ratio"], 4.0)
    np.testing.assert_allclose(out["err"], np.sqrt(2.0 / (10 * out["n_modes"])))
    assert out["edges"].size == out["ell"].size + 1
    np.testing.assert_allclose(out["cl_filled"], 4 * out["cl_target"])
    same = metrics.power_ratio(target, target, pixel_arcmin=1.0)
    np.testing.assert_allclose(same["ratio"], 1.0)


def test_effective_modes_of_windows():
    """n_eff = n_grid ⟨w²⟩²/⟨w⁴⟩: Hann in 2-D keeps (3/8)²/(35/128) per axis, about 26 %."""
    maps = np.zeros((32, 32))
    _, _, n_none = metrics.flat_power_spectrum(maps, 1.0, apodization=None)
    _, _, n_hann = metrics.flat_power_spectrum(maps, 1.0, apodization="hann")
    np.testing.assert_allclose(n_hann / n_none, ((3 / 8) ** 2 / (35 / 128)) ** 2, rtol=1e-9)
    win = metrics.apodization_window((8, 6), 0.0)
    assert np.all(win == 1)
    with pytest.raises(InputError, match="apodization"):
        metrics.apodization_window((8, 8), 2.0)


def test_spectrum_bad_inputs():
    with pytest.raises(InputError, match="maps"):
        metrics.flat_power_spectrum(np.zeros(5), 1.0)
    with pytest.raises(InputError, match="NaN"):
        metrics.flat_power_spectrum(np.full((4, 4), np.nan), 1.0)
    with pytest.raises(InputError, match="pixel_arcmin"):
        metrics.flat_power_spectrum(np.zeros((4, 4)), 0.0)
    with pytest.raises(InputError, match="bins"):
        metrics.flat_power_spectrum(np.zeros((4, 4)), 1.0, bins=[3.0, 1.0])
