"""Local Wiener filter (combine.baselines.local_wiener): equal to the exact Wiener filter when the
window covers the patch, close to it with the default 8 px window, the GMRF fallback, and the
UNet prefill."""

import numpy as np
import pytest
import torch

from combine.baselines import BASELINES, gmrf_fill, wiener_fill
from combine.baselines.local_wiener import hole_windows, local_wiener_fill
from combine.errors import InputError
from combine.masks import circle_mask, generate_masks
from combine.sky.flat import simulate_flat_patches

SKY = dict(pixel_arcmin=1.7177, beam_fwhm_arcmin=5.0, noise_uk_arcmin=1.0)


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
    local = local_wiener_fill(patches32, masks, margin_px=64, max_window_px=10_000, **SKY)
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
        local = local_wiener_fill(maps, masks, **SKY)
        e_exact, e_local = _hole_rmse(exact, maps, masks), _hole_rmse(local, maps, masks)
        assert e_local < 1.10 * e_exact, (e_local, e_exact)
        assert _hole_rmse(local, exact, masks) < 0.25 * e_exact


def test_large_windows_fall_back_to_the_gmrf(patches32):
    masks = generate_masks("random", len(patches32), 32, seed=3)
    fallback = local_wiener_fill(patches32, masks, max_window_px=1, **SKY)
    np.testing.assert_array_equal(fallback, gmrf_fill(patches32, masks, **SKY))


def test_valid_pixels_untouched_and_hole_values_ignored(patches32):
    masks = generate_masks("points", len(patches32), 32, seed=4)
    a = local_wiener_fill(patches32, masks, **SKY)
    b = local_wiener_fill(np.where(masks > 0, patches32, np.nan), masks, **SKY)
    assert np.array_equal(a[masks > 0], patches32[masks > 0])
    assert np.array_equal(a, b)


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


def test_untrained_local_wiener_unet_equals_its_prefill():
    from combine.nn import PConvUNet
    from combine.nn.prefill import local_wiener_prefill

    net = PConvUNet("t128-lw", levels=4).eval()
    assert net.config()["prefill"] == "lwiener"
    rng = np.random.default_rng(4)
    x = (100 * rng.standard_normal((2, 1, 64, 64))).astype(np.float32)
    m = generate_masks("points", 2, 64, seed=5)[:, None].astype(np.float32)
    with torch.no_grad():
        y = net(torch.from_numpy(x * m), torch.from_numpy(m)).numpy()
    ref = local_wiener_fill(x, m)
    hole = np.broadcast_to(m < 0.5, y.shape)
    assert np.abs(y - ref)[hole].max() < 1e-3  # μK, float32 round-off
    # maps without a valid pixel get the prior mean, 0
    empty = local_wiener_prefill(torch.ones((1, 1, 16, 16)), torch.zeros((1, 1, 16, 16)), None)
    assert torch.equal(empty, torch.zeros((1, 1, 16, 16)))
