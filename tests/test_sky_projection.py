"""Gnomonic projection: geometry, orientation, round trips, interpolation."""

import healpy as hp
import numpy as np
import pytest

from combine.errors import InputError
from combine.sky.projection import (
    ARCMIN_RAD,
    gnomonic_pixel_centres,
    healpix_to_patch_coords,
    patch_from_healpix,
    sky_to_patch_coords,
)

CENTRES = [(0.0, 0.0), (123.4, 37.5), (300.0, -61.0), (10.0, 89.9), (45.0, -90.0)]


@pytest.mark.parametrize("lon, lat", CENTRES)
def test_patch_pixel_round_trip(lon, lat):
    size, pix = 64, 1.7177
    theta, phi = gnomonic_pixel_centres(lon, lat, size, pix)
    row, col = sky_to_patch_coords(theta, phi, lon, lat, size, pix)
    ii, jj = np.mgrid[:size, :size]
    assert np.max(np.abs(row - ii)) < 1e-6
    assert np.max(np.abs(col - jj)) < 1e-6


@pytest.mark.parametrize("lon, lat", CENTRES[:3])
def test_healpix_pixel_round_trip(lon, lat):
    """HEALPix pixel centre -> patch coords -> tangent plane -> sky gives the pixel back (1e-6 px)."""
    nside, size, pix = 256, 32, 13.74
    vec = hp.ang2vec(np.deg2rad(90 - lat), np.deg2rad(lon))
    pixels = hp.query_disc(nside, vec, np.deg2rad(2.0))
    row, col = healpix_to_patch_coords(nside, pixels, lon, lat, size, pix)
    assert np.all(np.isfinite(row))
    # back to the sky by the forward formula, evaluated at fractional coordinates
    lonr, latr = np.deg2rad(lon), np.deg2rad(lat)
    n0 = np.array([np.cos(latr) * np.cos(lonr), np.cos(latr) * np.sin(lonr), np.sin(latr)])
    e = np.array([-np.sin(lonr), np.cos(lonr), 0.0])
    n = np.array([-np.sin(latr) * np.cos(lonr), -np.sin(latr) * np.sin(lonr), np.cos(latr)])
    c, d = (size - 1) / 2, pix * ARCMIN_RAD
    x, y = (col - c) * d, (c - row) * d
    u = n0[:, None] + x * e[:, None] + y * n[:, None]
    u /= np.linalg.norm(u, axis=0)
    truth = np.array(hp.pix2vec(nside, pixels))
    err_px = np.linalg.norm(u - truth, axis=0) / d  # chord = angle at this scale; arccos loses digits
    assert err_px.max() < 1e-6


def test_orientation_and_spacing():
    """Row down = south (theta grows), col right = east (phi grows), spacing = pixel size."""
    size, pix = 64, 2.0
    theta, phi = gnomonic_pixel_centres(50.0, 20.0, size, pix)
    assert np.all(np.diff(theta, axis=0) > 0)
    assert np.all(np.diff(phi, axis=1) > 0)
    # angular distance between the two central neighbours = atan spacing (1 pixel at centre)
    c = size // 2
    v = hp.ang2vec(theta[c - 1 : c + 1, c], phi[c - 1 : c + 1, c])
    sep_arcmin = np.arccos(np.dot(v[0], v[1])) / ARCMIN_RAD
    assert sep_arcmin == pytest.approx(pix, rel=1e-4)
    # the tangent point lies midway between the four central pixels for even size
    row, col = sky_to_patch_coords(np.deg2rad(70.0), np.deg2rad(50.0), 50.0, 20.0, size, pix)
    assert row == pytest.approx((size - 1) / 2, abs=1e-9)
    assert col == pytest.approx((size - 1) / 2, abs=1e-9)


def test_behind_tangent_plane_is_nan():
    nside = 16
    # antipode of (lon 0, lat 0) is (lon 180, lat 0)
    pix = hp.ang2pix(nside, np.pi / 2, np.pi)
    row, col = healpix_to_patch_coords(nside, [pix], 0.0, 0.0, 64, 1.7177)
    assert np.isnan(row[0]) and np.isnan(col[0])


def test_patch_from_healpix_matches_smooth_field():
    """Bilinear interpolation of a smooth (l<=2) field agrees with its analytic value."""
    nside = 256
    x, y, z = hp.pix2vec(nside, np.arange(hp.nside2npix(nside)))
    field = 100.0 * x + 30.0 * z**2 - 50.0 * x * y  # μK, smooth on the pixel scale
    size, pix = 48, 6.87
    patch = patch_from_healpix(field, 77.0, -33.0, size, pix)
    theta, phi = gnomonic_pixel_centres(77.0, -33.0, size, pix)
    xt, yt, zt = hp.ang2vec(theta.ravel(), phi.ravel()).T
    truth = (100.0 * xt + 30.0 * zt**2 - 50.0 * xt * yt).reshape(size, size)
    # interpolation error ~ (curvature) * (pixel size)^2 ~ 100 μK * (0.23 deg in rad)^2 ~ 2e-3 μK
    assert np.max(np.abs(patch - truth)) < 0.02


def test_nest_ordering_gives_same_patch():
    nside = 64
    rng = np.random.default_rng(1)
    ring = hp.smoothing(rng.normal(size=hp.nside2npix(nside)), fwhm=np.deg2rad(3.0), iter=0)
    nest = hp.reorder(ring, r2n=True)
    a = patch_from_healpix(ring, 10.0, 5.0, 32, 20.0)
    b = patch_from_healpix(nest, 10.0, 5.0, 32, 20.0, nest=True)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "kwargs",
    [dict(lat_deg=91.0), dict(pixel_arcmin=0.0), dict(size=0), dict(size=2000, pixel_arcmin=10.0)],
)
def test_bad_geometry(kwargs):
    args = dict(lon_deg=0.0, lat_deg=0.0, size=64, pixel_arcmin=1.7177)
    args.update(kwargs)
    with pytest.raises(InputError):
        gnomonic_pixel_centres(**args)


def test_bad_map():
    with pytest.raises(InputError, match="HEALPix"):
        patch_from_healpix(np.zeros(1000), 0.0, 0.0, 64, 1.7177)
