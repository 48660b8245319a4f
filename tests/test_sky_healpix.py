"""Full-sky simulation (small Nside only): spectrum, variance, noise, RNG isolation, patch centres."""

import healpy as hp
import numpy as np
import pytest

from combine.errors import InputError
from combine.sky.healpix import (
    healpix_patches,
    patch_centres,
    simulate_healpix_map,
    simulate_healpix_patches,
)
from combine.sky.projection import patch_from_healpix
from combine.sky.spectra import gaussian_beam_bl, healpix_pixel_window

NSIDE = 128
LMAX = 3 * NSIDE - 1
ELL = np.arange(LMAX + 1)


@pytest.fixture(scope="module")
def white_cl():
    cl = np.zeros(LMAX + 1)
    cl[2:] = 1.0
    return cl


@pytest.fixture(scope="module")
def sky(white_cl):
    """A map of a white spectrum through a 60' beam and the pixel window, and its theory C_ℓ."""
    hmap = simulate_healpix_map(NSIDE, cl_uk2=white_cl, beam_fwhm_arcmin=60.0, pixwin=True, seed=7)
    theory = white_cl * (gaussian_beam_bl(60.0, LMAX) * healpix_pixel_window(NSIDE, LMAX)) ** 2
    return hmap.astype(np.float64), theory


def test_power_spectrum_matches_beam_and_pixel_window(sky):
    """Band powers (Δℓ = 32, ℓ < 2 Nside where anafast is accurate) within 4σ, σ = sqrt(2/N_modes)."""
    hmap, theory = sky
    cl_hat = hp.anafast(hmap, lmax=LMAX)
    for lo in range(2, 2 * NSIDE, 32):
        band = slice(lo, lo + 32)
        n_modes = np.sum(2 * ELL[band] + 1)
        ratio = np.sum((2 * ELL[band] + 1) * cl_hat[band]) / np.sum((2 * ELL[band] + 1) * theory[band])
        assert abs(ratio - 1) < 4 * np.sqrt(2 / n_modes), (lo, ratio)


def test_pixel_variance_matches_theory(sky):
    """Var T = Σ (2ℓ+1)/4π C_ℓ B_ℓ² w_ℓ², standard error sqrt(Σ 2(2ℓ+1) (C̃_ℓ/4π)²)."""
    hmap, theory = sky
    expected = np.sum((2 * ELL + 1) / (4 * np.pi) * theory)
    se = np.sqrt(np.sum(2 * (2 * ELL + 1) * (theory / (4 * np.pi)) ** 2))
    assert abs(np.mean(hmap**2) - expected) < 4 * se


def test_seed_determinism_and_global_rng_untouched(white_cl):
    np.random.seed(99)
    before = np.random.get_state()[1].copy()
    a = simulate_healpix_map(32, cl_uk2=white_cl[:96], seed=3)
    b = simulate_healpix_map(32, cl_uk2=white_cl[:96], rng=np.random.default_rng(3))
    c = simulate_healpix_map(32, cl_uk2=white_cl[:96], seed=4)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.dtype == np.float32 and a.size == hp.nside2npix(32)


def test_noise_adds_sigma_pix(white_cl):
    nside, noise = 64, 100.0
    a = simulate_healpix_map(nside, cl_uk2=white_cl[:192], seed=1).astype(np.float64)
    b = simulate_healpix_map(nside, cl_uk2=white_cl[:192], noise_uk_arcmin=noise, seed=1)
    diff = b - a
    sigma2 = (noise / hp.nside2resol(nside, arcmin=True)) ** 2
    assert diff.var() == pytest.approx(sigma2, rel=4 * np.sqrt(2 / diff.size))


@pytest.mark.parametrize("region", ["central", "all", "high-lat"])
def test_patch_centres_do_not_overlap(region):
    size, pix = 64, 6.87
    lon, lat = patch_centres(40, size, pix, region=region, lat_limit_deg=30.0, seed=1)
    assert lon.shape == (40,)
    if region == "central":
        assert np.all(np.abs(lat) <= 30.0)
    if region == "high-lat":
        assert np.all(np.abs(lat) >= 30.0)
    vec = hp.ang2vec(np.deg2rad(90 - lat), np.deg2rad(lon))
    sep = np.arccos(np.clip(vec @ vec.T, -1, 1)) + 10 * np.eye(40)
    min_sep = 2 * np.arctan(np.sqrt(2) / 2 * size * np.deg2rad(pix / 60))
    assert sep.min() >= min_sep * (1 - 1e-9)
    lon2, lat2 = patch_centres(40, size, pix, region=region, seed=1)
    np.testing.assert_array_equal(lon, lon2)


def test_patch_centres_impossible_request():
    with pytest.raises(InputError, match="cannot place"):
        patch_centres(50, 128, 60.0, region="central", seed=0, max_tries_per_patch=50)


def test_healpix_patches_are_projection_cuts(white_cl):
    """Smoke + consistency: healpix_patches equals patch_from_healpix at each centre."""
    hmap = simulate_healpix_map(64, cl_uk2=white_cl[:192], seed=2)
    centres = patch_centres(3, 64, 20.0, seed=3)
    cut = healpix_patches(hmap, centres, 64, 20.0)
    assert cut.shape == (3, 64, 64) and cut.dtype == np.float32
    np.testing.assert_allclose(cut[1], patch_from_healpix(hmap, centres[0][1], centres[1][1], 64, 20.0), rtol=1e-6)


def test_simulate_healpix_patches_noise_and_seed(white_cl):
    """One map, 10 patches: the same seed gives the same patches; noise adds white σ_pix =
    noise / pixel_arcmin per patch pixel (variance within 4·sqrt(2/N))."""
    cl = white_cl[:192]
    kw = dict(nside=64, patches_per_map=10, pixel_arcmin=20.0, cl_uk2=cl)
    a = simulate_healpix_patches(10, 64, seed=5, **kw)
    b = simulate_healpix_patches(10, 64, seed=5, **kw)
    c = simulate_healpix_patches(10, 64, seed=5, noise_uk_arcmin=200.0, **kw)
    assert a.shape == (10, 64, 64) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    diff = c.astype(np.float64) - a
    assert diff.var() == pytest.approx((200.0 / 20.0) ** 2, rel=4 * np.sqrt(2 / diff.size))


@pytest.mark.parametrize("nside", [0, 100, "x"])
def test_bad_nside(nside):
    with pytest.raises(InputError, match="nside"):
        simulate_healpix_map(nside, cl_uk2=np.ones(10))
