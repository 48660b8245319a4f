"""Tests of the classical fills and of the common conventions of every registered baseline."""

import numpy as np
import pytest

from combine.baselines import BASELINES, biharmonic_fill, diffusive_fill, mean_fill, navier_stokes_fill, telea_fill
from combine.errors import InputError

SIZE = 32
#: sky keywords every baseline receives (a stand-in spectrum keeps the Wiener filter CAMB-free)
ELL = np.arange(3001, dtype=np.float64)
CL = np.where(ELL >= 2, 2 * np.pi * 3000.0 / np.maximum(ELL * (ELL + 1), 1), 0.0)
SKY = dict(pixel_arcmin=5.0, beam_fwhm_arcmin=10.0, noise_uk_arcmin=2.0, cl_uk2=CL, seed=0)


def circle(radius, cy=15, cx=17, size=SIZE):
    yy, xx = np.mgrid[:size, :size]
    mask = np.ones((size, size), dtype=np.float32)
    mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 0
    return mask


def smooth_maps(n, seed=0):
    """Smooth random fields (μK): white noise low-passed by FFT."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(SIZE)
    filt = np.exp(-(k[:, None] ** 2 + k[None] ** 2) / (2 * 0.08**2))
    return (np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, SIZE, SIZE))) * filt).real * 400).astype(np.float32)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_keeps_valid_pixels_and_ignores_hole_values(name):
    fill = BASELINES[name]
    maps = smooth_maps(3)
    masks = np.stack([circle(4), circle(6, 5, 5), circle(3, 30, 28)])  # the last touches the border
    out = fill(maps, masks, unknown_keyword=1, **SKY)
    assert out.shape == maps.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out[masks == 1], maps[masks == 1])
    assert np.all(np.isfinite(out))
    poisoned = maps.copy()
    poisoned[masks == 0] = np.nan
    np.testing.assert_array_equal(fill(poisoned, masks, **SKY), out)
    # a hole fill is closer to the truth than the worst case (values at ±3σ): a loose sanity bound
    hole = masks == 0
    assert np.sqrt(((out - maps)[hole] ** 2).mean()) < 3 * maps.std()
    # (H, W) and (N, 1, H, W) layouts
    np.testing.assert_array_equal(fill(maps[0], masks[0], **SKY), out[0])
    np.testing.assert_array_equal(fill(maps[:, None], masks[:, None], **SKY)[:, 0], out)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_rejects_bad_masks(name):
    maps = smooth_maps(1)[0]
    with pytest.raises(InputError, match="mask"):
        BASELINES[name](maps, np.full((SIZE, SIZE), 0.5), **SKY)
    with pytest.raises(InputError, match="no valid"):
        BASELINES[name](maps, np.zeros((SIZE, SIZE)), **SKY)


@pytest.mark.parametrize("fill", [diffusive_fill, biharmonic_fill, telea_fill, navier_stokes_fill, mean_fill])
def test_constant_field_is_filled_with_the_constant(fill):
    maps = np.full((2, SIZE, SIZE), -37.25, dtype=np.float64)
    out = fill(maps, circle(7))
    np.testing.assert_allclose(out, maps, rtol=0, atol=1e-5)
    assert out.dtype == np.float64


def test_no_hole_returns_identical_copy():
    maps = smooth_maps(2)
    for fill in BASELINES.values():
        out = fill(maps, np.ones((SIZE, SIZE)), **SKY)
        np.testing.assert_array_equal(out, maps)
        assert out is not maps


def ramp():
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    return 3.0 * yy - 1.5 * xx + 20.0


def test_biharmonic_recovers_linear_ramp():
    out = biharmonic_fill(ramp(), circle(8))
    assert np.abs(out - ramp()).max() < 1e-3


def test_diffusive_recovers_linear_ramp_and_is_harmonic():
    """A linear field is harmonic, so it is the fixed point; the residual equation holds to tol."""
    mask = circle(8)
    out = diffusive_fill(ramp(), mask, tol_uk=1e-7)
    assert np.abs(out - ramp()).max() < 1e-4
    maps = smooth_maps(2, seed=1).astype(np.float64)
    mask = circle(6, 31, 16)  # touches the bottom edge: 3-neighbour pixels
    out = diffusive_fill(maps, mask, tol_uk=1e-6)
    padded = np.pad(out, ((0, 0), (1, 1), (1, 1)))
    nsum = padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]
    counts = np.pad(np.ones((SIZE, SIZE)), 1)
    ncount = counts[:-2, 1:-1] + counts[2:, 1:-1] + counts[1:-1, :-2] + counts[1:-1, 2:]
    resid = np.abs(nsum / ncount - out)[:, mask == 0]
    assert resid.max() < 1e-6


def test_diffusive_sor_and_jacobi_reach_the_same_fixed_point():
    maps = smooth_maps(2, seed=2).astype(np.float64)
    mask = circle(5)
    sor = diffusive_fill(maps, mask, method="sor", tol_uk=1e-9)
    jac = diffusive_fill(maps, mask, method="jacobi", tol_uk=1e-9, max_iter=100000)
    np.testing.assert_allclose(sor, jac, rtol=0, atol=1e-6)
    with pytest.raises(InputError, match="method"):
        diffusive_fill(maps, mask, method="multigrid")


def test_diffusive_fill_of_a_single_pixel_is_neighbour_mean():
    maps = smooth_maps(1, seed=3)[0].astype(np.float64)
    mask = np.ones((SIZE, SIZE))
    mask[10, 11] = 0
    out = diffusive_fill(maps, mask)
    assert out[10, 11] == pytest.approx((maps[9, 11] + maps[11, 11] + maps[10, 10] + maps[10, 12]) / 4, abs=1e-9)


def test_opencv_fills_keep_float_precision_at_large_offsets():
    """cv2.inpaint runs on float32 after removing the valid mean: a 1e6 μK offset does not quantise."""
    maps = smooth_maps(1, seed=4)[0].astype(np.float64)
    mask = circle(4)
    for fill in (telea_fill, navier_stokes_fill):
        ref = fill(maps, mask)
        shifted = fill(maps + 1e6, mask)
        np.testing.assert_allclose(shifted - 1e6, ref, rtol=0, atol=1e-3)


def test_telea_and_ns_use_the_neighbourhood():
    """Both fill a hole in a tilted plane between the boundary extremes (no wild extrapolation)."""
    mask = circle(5)
    for fill in (telea_fill, navier_stokes_fill):
        out = fill(ramp(), mask)
        hole = mask == 0
        boundary = ramp()[(mask == 1)]
        assert out[hole].min() >= boundary.min() and out[hole].max() <= boundary.max()
        # within a few pixel-slopes of the plane (Telea/NS are first-order, not exact on ramps)
        assert np.abs(out - ramp())[hole].max() < 5 * 3.0 * 5


def test_mean_fill_is_mean_of_valid_pixels():
    maps = smooth_maps(2, seed=5).astype(np.float64)
    masks = np.stack([circle(4), circle(7, 8, 8)])
    out = mean_fill(maps, masks)
    for i in range(2):
        assert np.all(out[i][masks[i] == 0] == maps[i][masks[i] == 1].mean())
