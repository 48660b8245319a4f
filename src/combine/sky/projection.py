"""Gnomonic (tangent-plane) projection between HEALPix maps and square patches.

Patch geometry
--------------
A patch of ``size × size`` pixels of side ``pixel_arcmin`` is centred on the sky position
(``lon_deg``, ``lat_deg``) (healpy/galactic-style longitude and latitude, degrees). Pixel
(row ``i``, col ``j``) sits at tangent-plane coordinates

.. math::

    x = (j - c)\\,\\Delta, \\qquad y = (c - i)\\,\\Delta, \\qquad c = (\\mathrm{size} - 1)/2,

with :math:`\\Delta` the pixel side in radians. ``x`` points east (increasing longitude), ``y``
points north (increasing latitude). So the **row index increases southwards** (image "down" =
decreasing latitude) and the **column index increases eastwards** (increasing longitude). Note that
this is the view from *outside* the sphere (like a geographic map); astronomical displays
(healpy ``flip="astro"``) show east to the left, i.e. the mirror image of our column order.

The tangent point ``x = y = 0`` is the exact patch centre, which for even ``size`` falls between
the four central pixels. The sky direction of a tangent-plane point is

.. math::

    \\hat u \\propto \\hat n_0 + x\\,\\hat e + y\\,\\hat n,

where :math:`\\hat n_0` is the unit vector of the centre, :math:`\\hat e` the local east and
:math:`\\hat n` the local north unit vectors. The inverse is
:math:`x = \\hat u\\cdot\\hat e / \\hat u\\cdot\\hat n_0`, :math:`y = \\hat u\\cdot\\hat n / \\hat u\\cdot\\hat n_0`,
defined only on the hemisphere :math:`\\hat u\\cdot\\hat n_0 > 0` (NaN elsewhere).

Angles follow healpy: colatitude ``theta = π/2 − lat`` and ``phi = lon`` in radians, ``phi`` in
[0, 2π).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .defaults import ARCMIN_RAD


def _check_geometry(lon_deg, lat_deg, size, pixel_arcmin):
    try:
        lon = float(lon_deg)
        lat = float(lat_deg)
        pix = float(pixel_arcmin)
    except (TypeError, ValueError):
        raise InputError(
            f"patch centre: lon/lat/pixel_arcmin must be numbers, got {lon_deg!r}, {lat_deg!r}, {pixel_arcmin!r}"
        ) from None
    if not (np.isfinite(lon) and np.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise InputError(f"patch centre: need finite lon and -90 <= lat <= 90, got ({lon}, {lat})")
    if not (np.isfinite(pix) and pix > 0):
        raise InputError(f"pixel_arcmin: must be a positive number, got {pixel_arcmin!r}")
    if int(size) != size or int(size) < 1:
        raise InputError(f"size: must be a positive integer, got {size!r}")
    # A gnomonic patch must stay well inside the hemisphere around its centre.
    half_width_rad = 0.5 * int(size) * pix * ARCMIN_RAD
    if half_width_rad >= 1.0:  # tan^-1(1) = 45°: beyond that the distortion is absurd
        raise InputError(
            f"size: patch of {int(size)} x {pix}' spans more than 90 degrees; gnomonic projection unsuitable"
        )
    return lon, lat, int(size), pix


def _tangent_basis(lon_deg: float, lat_deg: float):
    """Unit vectors (centre, east, north) of the tangent plane at (lon, lat)."""
    lon = np.deg2rad(lon_deg)
    lat = np.deg2rad(lat_deg)
    n0 = np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    east = np.array([-np.sin(lon), np.cos(lon), 0.0])
    north = np.array([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)])
    return n0, east, north


def tangent_plane_offsets(size: int, pixel_arcmin: float):
    """Tangent-plane coordinates (x east, y north), radians, of every patch pixel.

    Returns
    -------
    x, y : ndarray, shape (size, size)
        ``x[i, j] = (j - c) Δ`` and ``y[i, j] = (c - i) Δ`` with ``c = (size - 1)/2``.
    """
    c = 0.5 * (size - 1)
    delta = pixel_arcmin * ARCMIN_RAD
    idx = np.arange(size, dtype=np.float64)
    x = np.broadcast_to((idx - c) * delta, (size, size))
    y = np.broadcast_to(((c - idx) * delta)[:, None], (size, size))
    return np.array(x), np.array(y)


def gnomonic_pixel_centres(lon_deg, lat_deg, size, pixel_arcmin):
    """Sky positions of the pixel centres of a gnomonic patch.

    Parameters
    ----------
    lon_deg, lat_deg : float
        Patch centre (the tangent point), degrees.
    size : int
        Patch side, pixels.
    pixel_arcmin : float
        Pixel side on the tangent plane, arcmin.

    Returns
    -------
    theta, phi : ndarray, shape (size, size)
        healpy colatitude and longitude, radians. Row index increases southwards, column
        index eastwards (see the module docstring).
    """
    lon, lat, size, pix = _check_geometry(lon_deg, lat_deg, size, pixel_arcmin)
    n0, east, north = _tangent_basis(lon, lat)
    x, y = tangent_plane_offsets(size, pix)
    vec = n0[:, None, None] + x[None] * east[:, None, None] + y[None] * north[:, None, None]
    vec /= np.sqrt(np.sum(vec * vec, axis=0))
    theta = np.arccos(np.clip(vec[2], -1.0, 1.0))
    phi = np.mod(np.arctan2(vec[1], vec[0]), 2.0 * np.pi)
    return theta, phi


def _check_map(hmap, nest):
    import healpy as hp

    hmap = np.asarray(hmap)
    if hmap.ndim != 1 or not hp.isnpixok(hmap.size):
        raise InputError(f"map: not a HEALPix map (shape {hmap.shape}; need 12*Nside^2 pixels)")
    return hmap


def patch_from_healpix(hmap, lon_deg, lat_deg, size, pixel_arcmin, nest=False):
    """Cut a gnomonic patch out of a HEALPix map by bilinear interpolation.

    .. math::

        P[i, j] = \\mathrm{interp}\\big(m; \\theta_{ij}, \\phi_{ij}\\big)

    with :math:`(\\theta_{ij}, \\phi_{ij})` from :func:`gnomonic_pixel_centres` and the
    interpolation of ``healpy.get_interp_val`` (bilinear over the 4 nearest pixel centres).
    Interpolation smooths slightly on scales of the HEALPix pixel; ``UNSEEN``/NaN pixels of
    the map contaminate their neighbours, so cut patches from complete maps.

    Returns
    -------
    ndarray, shape (size, size), float64 in the map's units.
    """
    import healpy as hp

    hmap = _check_map(hmap, nest)
    theta, phi = gnomonic_pixel_centres(lon_deg, lat_deg, size, pixel_arcmin)
    vals = hp.get_interp_val(hmap, theta.ravel(), phi.ravel(), nest=bool(nest))
    return np.asarray(vals, dtype=np.float64).reshape(theta.shape)


def sky_to_patch_coords(theta, phi, lon_deg, lat_deg, size, pixel_arcmin):
    """Fractional (row, col) patch coordinates of sky directions (inverse gnomonic).

    .. math::

        \\mathrm{col} = c + \\frac{\\hat u\\cdot\\hat e}{\\Delta\\,\\hat u\\cdot\\hat n_0},
        \\qquad
        \\mathrm{row} = c - \\frac{\\hat u\\cdot\\hat n}{\\Delta\\,\\hat u\\cdot\\hat n_0}

    NaN where :math:`\\hat u\\cdot\\hat n_0 \\le 0` (behind the tangent plane). Coordinates
    outside ``[-0.5, size - 0.5]`` lie outside the patch.
    """
    lon, lat, size, pix = _check_geometry(lon_deg, lat_deg, size, pixel_arcmin)
    theta = np.asarray(theta, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    n0, east, north = _tangent_basis(lon, lat)
    st = np.sin(theta)
    u = np.stack([st * np.cos(phi), st * np.sin(phi), np.cos(theta)])
    dot0 = np.tensordot(n0, u, axes=1)
    dote = np.tensordot(east, u, axes=1)
    dotn = np.tensordot(north, u, axes=1)
    c = 0.5 * (size - 1)
    delta = pix * ARCMIN_RAD
    with np.errstate(divide="ignore", invalid="ignore"):
        front = dot0 > 0
        col = np.where(front, c + dote / np.where(front, dot0, 1.0) / delta, np.nan)
        row = np.where(front, c - dotn / np.where(front, dot0, 1.0) / delta, np.nan)
    return row, col


def healpix_to_patch_coords(nside, pixels, lon_deg, lat_deg, size, pixel_arcmin, nest=False):
    """Fractional patch coordinates (row, col) of HEALPix pixel centres.

    Parameters
    ----------
    nside : int
        HEALPix resolution.
    pixels : array_like of int
        Pixel indices (RING unless ``nest``).
    lon_deg, lat_deg, size, pixel_arcmin
        The patch, as in :func:`gnomonic_pixel_centres`.

    Returns
    -------
    row, col : ndarray of float, shape of ``pixels``
        ``(row, col) = (i, j)`` exactly at the patch pixel centre (i, j); NaN for pixels behind
        the tangent plane. See :func:`sky_to_patch_coords` for the equation.
    """
    import healpy as hp

    if not hp.isnsideok(nside, nest=bool(nest)):
        raise InputError(f"nside: {nside!r} is not a valid HEALPix Nside")
    pixels = np.asarray(pixels)
    if pixels.size and (not np.issubdtype(pixels.dtype, np.integer) or pixels.min() < 0
                        or pixels.max() >= hp.nside2npix(nside)):
        raise InputError(f"pixels: need integer indices in [0, 12*{nside}^2)")
    theta, phi = hp.pix2ang(int(nside), pixels, nest=bool(nest))
    return sky_to_patch_coords(theta, phi, lon_deg, lat_deg, size, pixel_arcmin)


__all__ = [
    "gnomonic_pixel_centres",
    "patch_from_healpix",
    "healpix_to_patch_coords",
    "sky_to_patch_coords",
    "tangent_plane_offsets",
]
