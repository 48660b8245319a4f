"""Local Wiener filter (combine.baselines.local_wiener): equal to the exact Wiener filter when the
window covers the patch, close to it with the default 8 px window, the GMRF fallback, and the
UNet prefill."""

import numpy as np
import pytest
import torch

from combine.baselines import BASELINES, gmrf_fill, wiener_fill
from combine.baselines.gmrf import PLANCK18_GMRF_COEFFS
from combine.baselines.local_wiener import (correlation_table_for_sky, default_max_window_px, hole_windows,
                                            local_wiener_fill, local_wiener_fill_table)
from combine.errors import InputError
from combine.masks import circle_mask, generate_masks
from combine.sky import Sky
from combine.sky.flat import simulate_flat_patches

SKY = dict(pixel_arcmin=1.7177, beam_fwhm_arcmin=5.0, noise_uk_arcmin=1.0)  # wiener_fill's keywords
EVAL_SKY = Sky.planck18(noise_uk_arcmin=1.0)


def _hole_rmse(fill, truth, masks):
    hole = np.broadcast_to(masks < 0.5, truth.shape)
    return float(np.sqrt(np.mean((fill[hole] - truth[hole]) ** 2)))


@pytest.fixture(scope="module")
def patches32():
    # 32² corners of 64² patches (the simulator's smallest patch): same pixel statistics
    return np.ascontiguousarray(simulate_flat_patches(6, size=64, noise_uk_arcmin=1.0, seed=41)[:, :32, :32])


def test_registered_as_a_baseline():
    assert BASELINES["lwiener"] is local_wiener_fill


def test_window_covering_the_patch_is_the_exact_wiener_filter(patches32):
    """With every valid pixel in the window, T_h = C_ho (C_oo + N)^-1 d_o is the exact conditional
    mean: equal to wiener_fill (dense precision, -Q_hh^-1 Q_hv d_v) to 1e-6 of the hole rms."""
    masks = generate_masks("points", len(patches32), 32, seed=2)
    masks[:, 10:14, 20:25] = 0  # a second, larger hole
    exact = wiener_fill(patches32, masks, **SKY)
    local = local_wiener_fill(patches32, masks, sky=EVAL_SKY, margin_px=64, max_window_px=10_000)
    hole = masks < 0.5
    scale = np.sqrt(np.mean(exact[hole] ** 2))
    assert np.abs(local[hole] - exact[hole]).max() < 1e-6 * scale


def test_default_window_is_close_to_the_exact_filter():
    """Margin 8 px on 64² patches, r = 4 px and point sources: hole RMSE within 10 % of the exact
    Wiener filter's (measured on these 12 patches: 1.056 and 1.035; at 128² on 32 patches 1.021
    and 1.038), and the two fills differ by less than 0.25 of the exact filter's error (measured
    0.14 and 0.11; the GMRF fill: 0.74 and 0.53)."""
    maps = simulate_flat_patches(12, size=64, noise_uk_arcmin=1.0, seed=7).reshape(12, 64, 64)
    for masks in (np.repeat(circle_mask(64, 4.0)[None], 12, axis=0), generate_masks("points", 12, 64, seed=8)):
        exact = wiener_fill(maps, masks, **SKY)
        local = local_wiener_fill(maps, masks, sky=EVAL_SKY)
        e_exact, e_local = _hole_rmse(exact, maps, masks), _hole_rmse(local, maps, masks)
        assert e_local < 1.10 * e_exact, (e_local, e_exact)
        assert _hole_rmse(local, exact, masks) < 0.25 * e_exact


def test_large_windows_fall_back_to_the_gmrf(patches32):
    masks = generate_masks("random", len(patches32), 32, seed=3)
    fallback = local_wiener_fill(patches32, masks, sky=EVAL_SKY, max_window_px=1)
    np.testing.assert_array_equal(fallback, gmrf_fill(patches32, masks, sky=EVAL_SKY))


def test_valid_pixels_untouched_and_hole_values_ignored(patches32):
    masks = generate_masks("points", len(patches32), 32, seed=4)
    a = local_wiener_fill(patches32, masks, sky=EVAL_SKY)
    b = local_wiener_fill(np.where(masks > 0, patches32, np.nan), masks, sky=EVAL_SKY)
    assert np.array_equal(a[masks > 0], patches32[masks > 0])
    assert np.array_equal(a, b)


def test_table_entry_needs_no_sky_and_matches_the_sky_entry(patches32, monkeypatch):
    """local_wiener_fill_table (correlation table, noise variance, GMRF coefficients) gives
    local_wiener_fill's output bit for bit, with CAMB unimportable; the table is ξ(Δ_pix r) of
    Sky.correlation_uk2 (equal to the first API's table of the default spectrum to 1e-12)."""
    import sys

    from combine.baselines.covariance import correlation_table_uk2

    masks = generate_masks("points", len(patches32), 32, seed=6)
    masks[:, 2:20, 3:5] = 0  # a line that goes to the GMRF with a small cap
    table = correlation_table_for_sky(EVAL_SKY, (40, 40))
    np.testing.assert_allclose(table, correlation_table_uk2(40, cl_uk2=EVAL_SKY.cl_tt), rtol=1e-12, atol=0)
    ref = local_wiener_fill(patches32, masks, sky=EVAL_SKY, max_window_px=150)
    monkeypatch.setitem(sys.modules, "camb", None)
    out = local_wiener_fill_table(patches32, masks, xi_table_uk2=table, noise_var_uk2=EVAL_SKY.noise_var_pix_uk2,
                                  gmrf_coeffs=PLANCK18_GMRF_COEFFS, max_window_px=150)
    assert np.array_equal(out, ref)
    with pytest.raises(InputError, match="xi_table_uk2"):
        local_wiener_fill_table(patches32, masks, xi_table_uk2=table[:20, :20], noise_var_uk2=0.1,
                                gmrf_coeffs=PLANCK18_GMRF_COEFFS)


def test_sky_sets_spectrum_and_noise_and_legacy_keywords_agree(patches32):
    """The fill follows its Sky: with ns = 0.5 and a window covering the patch it is the exact
    Wiener filter of the ns = 0.5 spectrum (1e-6), 0.7 % away from the planck18 fill at r = 3 px,
    and loose ns=0.5 gives the same Sky; a
    constant noise-variance map equal to the white level gives the white-noise fill to 1e-12;
    a Sky and loose keywords together are refused."""
    masks = np.repeat(circle_mask(32, 3.0)[None], len(patches32), 0)
    base = local_wiener_fill(patches32, masks)  # sky=None: planck18 at 1 μK·arcmin
    assert np.array_equal(base, local_wiener_fill(patches32, masks, sky=EVAL_SKY))
    tilted = local_wiener_fill(patches32, masks, sky=EVAL_SKY.with_ns(0.5))
    hole = masks < 0.5
    assert np.abs(tilted - base)[hole].max() > 0.003 * np.abs(base[hole]).max()
    assert np.array_equal(tilted, local_wiener_fill(patches32, masks, ns=0.5, noise_uk_arcmin=1.0))
    full = local_wiener_fill(patches32, masks, sky=EVAL_SKY.with_ns(0.5), margin_px=64, max_window_px=10_000)
    exact = wiener_fill(patches32, masks, ns=0.5, **SKY)
    assert np.abs(full - exact)[hole].max() < 1e-6 * np.abs(exact[hole]).max()
    var_map = np.full((32, 32), EVAL_SKY.noise_var_pix_uk2)
    np.testing.assert_allclose(local_wiener_fill(patches32, masks, sky=EVAL_SKY.replace(noise_var_uk2=var_map)),
                               base, rtol=0, atol=1e-12 * np.abs(base).max())
    with pytest.raises(InputError, match="noise_var_uk2"):
        local_wiener_fill(patches32, masks, sky=EVAL_SKY.replace(noise_var_uk2=np.ones((8, 8))))
    with pytest.raises(InputError, match="not both"):
        local_wiener_fill(patches32, masks, sky=EVAL_SKY, pixel_arcmin=2.0)


def test_window_cap_grows_with_the_margin():
    """At margin 24 px the window of an r = 16 px disc (~4000 valid pixels, over the former fixed
    cap of 3000) stays local: the default cap is π m (2·56 + m)."""
    assert default_max_window_px(8) == 3016 and default_max_window_px(24) == 10255
    hole = circle_mask(96, 16.0) < 0.5
    (_, win), = hole_windows(hole, 24)
    assert 3000 < len(win) < default_max_window_px(24)
    (_, win), = hole_windows(circle_mask(128, 56.0) < 0.5, 8)
    assert len(win) < default_max_window_px(8)  # discs up to R = 56 px stay local at any margin


def test_hole_windows():
    hole = np.zeros((12, 12), bool)
    hole[5, 5] = True
    (h, w), = hole_windows(hole, 2)
    assert h.tolist() == [[5, 5]]
    assert len(w) == 12  # the L1 diamond of radius 2 (13 pixels) without its centre
    assert np.abs(w - [5, 5]).sum(axis=1).max() == 2
    hole[6, 6] = True  # diagonal neighbours are one hole
    hole[0, 11] = True  # a corner hole's window is clipped by the patch edge
    windows = hole_windows(hole, 1)
    assert sorted(len(h) for h, _ in windows) == [1, 2]
    corner = next(w for h, w in windows if len(h) == 1)
    assert sorted(map(tuple, corner)) == [(0, 10), (1, 11)]


def test_bad_inputs():
    with pytest.raises(InputError, match="margin_px"):
        local_wiener_fill(np.ones((16, 16)), circle_mask(16, 2.0), margin_px=0)
    with pytest.raises(InputError, match="no valid"):
        local_wiener_fill(np.ones((16, 16)), np.zeros((16, 16)))


def test_untrained_local_wiener_unet_equals_its_first_guess():
    from combine.first_guess import FirstGuess
    from combine.nn import PConvUNet

    net = PConvUNet("t128-lw", levels=4).eval()
    assert net.config()["prefill"] == "lwiener"
    fg = FirstGuess.for_sky("lwiener", size=64)
    rng = np.random.default_rng(4)
    x = (100 * rng.standard_normal((2, 1, 64, 64))).astype(np.float32)
    m = generate_masks("points", 2, 64, seed=5)[:, None].astype(np.float32)
    with torch.no_grad():
        y = net(torch.from_numpy(x * m), torch.from_numpy(m), first_guess=torch.from_numpy(fg.fill(x, m))).numpy()
    ref = local_wiener_fill(x, m, sky=EVAL_SKY)
    hole = np.broadcast_to(m < 0.5, y.shape)
    assert np.abs(y - ref)[hole].max() < 1e-3  # μK, float32 round-off
    # maps without a valid pixel get the prior mean, 0
    empty = fg.fill(np.ones((1, 1, 16, 16)), np.zeros((1, 1, 16, 16)))
    assert np.array_equal(empty, np.zeros((1, 1, 16, 16)))
