"""Full-sky HEALPix simulation and gnomonic patches cut from it.

Memory: a map at Nside 2048 has 50 M pixels (200 MB in float32) and its harmonic
coefficients up to ℓ = 6143 take 300 MB; with healpy's work arrays the simulation needs about
**2 GB** of RAM and takes a minute or more per map on two cores. Use Nside 256-512 to try things.

Random numbers: healpy's ``synfast`` draws from numpy's *global* random state and its
``pixwin=True`` downloads the pixel window tables (impossible on offline machines). We draw the
:math:`a_{\\ell m}` ourselves from a ``numpy.random.Generator`` (so a seed makes the map
reproducible and the global state is untouched), multiply by the beam and by the pixel window
of :func:`combine.sky.spectra.healpix_pixel_window`, and call ``healpy.alm2map``.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from .defaults import ARCMIN_RAD, NSIDE_DEFAULT, PIXEL_ARCMIN
from .model import Sky, sky_from_keywords
from .projection import patch_from_healpix
from .spectra import healpix_pixel_window

#: Regions from which :func:`patch_centres` draws centres.
REGIONS = ("central", "all", "high-lat")


def _check_nside(nside) -> int:
    import healpy as hp

    try:
        ok = int(nside) == nside and hp.isnsideok(int(nside), nest=True)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"nside: must be a power of 2 (e.g. 256, 2048), got {nside!r}")
    return int(nside)


def synthesize_alm(cl_uk2: np.ndarray, lmax: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian :math:`a_{\\ell m}` (healpy ordering) with :math:`\\langle|a_{\\ell m}|^2\\rangle = C_\\ell`.

    .. math::

        a_{\\ell 0} = \\sqrt{C_\\ell}\\, g, \\qquad
        a_{\\ell m} = \\sqrt{C_\\ell/2}\\,(g_1 + i g_2) \\quad (m > 0)

    with independent standard normals, drawn in order of m (so ``rng`` fixes the result).
    """
    amp = np.sqrt(np.asarray(cl_uk2[: lmax + 1], dtype=np.float64))
    nalm = (lmax + 1) * (lmax + 2) // 2
    alm = np.empty(nalm, dtype=np.complex128)
    start = 0
    for m in range(lmax + 1):
        n = lmax + 1 - m  # ℓ = m .. lmax
        a = amp[m:]
        if m == 0:
            alm[start : start + n] = a * rng.standard_normal(n)
        else:
            z = rng.standard_normal((2, n))
            alm[start : start + n] = a * np.sqrt(0.5) * (z[0] + 1j * z[1])
        start += n
    return alm


def simulate_healpix_map(
    nside=NSIDE_DEFAULT,
    *,
    sky: Sky | None = None,
    pixwin=True,
    lmax=None,
    seed=None,
    rng=None,
    **legacy_sky,
) -> np.ndarray:
    """A full-sky Gaussian CMB temperature map (μK, RING ordering, float32).

    .. math::

        T(\\hat n) = \\sum_{\\ell \\le \\ell_{max}} \\sum_m a_{\\ell m} B_\\ell\\, w_\\ell\\, Y_{\\ell m}(\\hat n)
        + n(\\hat n), \\qquad \\langle |a_{\\ell m}|^2\\rangle = C_\\ell

    with :math:`B_\\ell` the Gaussian beam, :math:`w_\\ell` the HEALPix pixel window (if
    ``pixwin``), :math:`\\ell_{max} = \\min(3N_{side}-1, \\text{len}(C_\\ell)-1)` by default and
    white noise of :math:`\\sigma_{pix}` = ``noise_uk_arcmin`` / (pixel side in arcmin,
    :math:`\\sqrt{4\\pi/N_{pix}}`). Nside 2048 needs about 2 GB of RAM (module docstring).

    Parameters
    ----------
    nside : int
        HEALPix resolution (power of 2; default 2048).
    sky : Sky, optional
        Spectrum, beam and white noise (default ``Sky.planck18()``; its ``pixel_arcmin`` is not
        used: the noise per pixel follows the map's resolution). The loose keywords
        ``cl_uk2``, ``ns``, ``beam_fwhm_arcmin``, ``noise_uk_arcmin`` are accepted instead
        (:func:`combine.sky.model.sky_from_keywords`).
    seed, rng
        Seed for ``numpy.random.default_rng`` or a Generator (not both). numpy's global random
        state is not used.
    """
    import healpy as hp

    nside = _check_nside(nside)
    sky = sky_from_keywords(sky, **legacy_sky)
    noise_uk_arcmin = sky.noise_uk_arcmin
    if seed is not None and rng is not None:
        raise InputError("seed: give either seed or rng, not both")
    if rng is None:
        rng = np.random.default_rng(seed)
    n_ell = sky.cl_tt.size
    if lmax is None:
        lmax = min(3 * nside - 1, n_ell - 1)
    lmax = int(lmax)
    if not 2 <= lmax <= n_ell - 1:
        raise InputError(f"lmax: must lie in [2, {n_ell - 1}] (the spectrum's length), got {lmax}")
    window = healpix_pixel_window(nside, lmax) if pixwin else None
    alm = synthesize_alm(sky.beamed_cl_uk2("tt", pixel_window=window)[: lmax + 1], lmax, rng)
    hmap = hp.alm2map(alm, nside, lmax=lmax).astype(np.float32)
    del alm
    if noise_uk_arcmin > 0:
        sigma_pix_uk = noise_uk_arcmin / hp.nside2resol(nside, arcmin=True)
        hmap += (sigma_pix_uk * rng.standard_normal(hmap.size)).astype(np.float32)
    return hmap


def patch_centres(
    n,
    size,
    pixel_arcmin=PIXEL_ARCMIN,
    *,
    region="central",
    lat_limit_deg=30.0,
    seed=None,
    rng=None,
    max_tries_per_patch=2000,
):
    """Random centres of non-overlapping gnomonic patches.

    Centres are uniform on the sphere (uniform longitude, uniform :math:`\\sin b`) within the
    region, and accepted only if every earlier centre is at least
    :math:`2\\arctan(\\tfrac{\\sqrt2}{2}\\,\\mathrm{size}\\,\\Delta)` away (twice the tangent-plane
    half-diagonal), so the patches cannot overlap whatever their orientation.

    Parameters
    ----------
    n : int
        Number of centres.
    size, pixel_arcmin
        Patch side (pixels) and pixel size (arcmin).
    region : {"central", "all", "high-lat"}
        ``"central"``: the band :math:`|b| \\le` ``lat_limit_deg`` (the middle of a Mollweide
        view, as the original CoMBInE, which took 10 patches per map there); ``"all"``: the whole
        sphere; ``"high-lat"``: :math:`|b| \\ge` ``lat_limit_deg`` (away from a Galactic plane).
    lat_limit_deg : float
        Latitude limit of ``"central"`` and ``"high-lat"``, degrees (default 30).

    Returns
    -------
    lon_deg, lat_deg : ndarray, shape (n,)
    """
    if int(n) != n or int(n) < 1:
        raise InputError(f"patches per map: must be a positive integer, got {n!r}")
    if region not in REGIONS:
        raise InputError(f"region: must be one of {', '.join(REGIONS)}, got {region!r}")
    lat_limit = float(lat_limit_deg)
    if not 0 < lat_limit <= 90:
        raise InputError(f"lat_limit_deg: must lie in (0, 90], got {lat_limit_deg!r}")
    if seed is not None and rng is not None:
        raise InputError("seed: give either seed or rng, not both")
    if rng is None:
        rng = np.random.default_rng(seed)
    n = int(n)
    half_diag = math.atan(math.sqrt(2) / 2 * int(size) * float(pixel_arcmin) * ARCMIN_RAD)
    cos_min_sep = math.cos(min(2 * half_diag, math.pi))
    s = math.sin(math.radians(lat_limit))
    vecs, lons, lats = [], [], []
    tries = 0
    while len(lons) < n:
        tries += 1
        if tries > max_tries_per_patch * n:
            raise InputError(
                f"patches per map: cannot place {n} non-overlapping {size}-px patches in region "
                f"{region!r} (placed {len(lons)}); ask for fewer or a larger region"
            )
        lon = rng.uniform(0.0, 360.0)
        if region == "central":
            sin_lat = rng.uniform(-s, s)
        elif region == "all":
            sin_lat = rng.uniform(-1.0, 1.0)
        else:
            sin_lat = rng.uniform(s, 1.0) * rng.choice((-1.0, 1.0))
        lat = math.degrees(math.asin(sin_lat))
        cl_, lo = math.cos(math.radians(lat)), math.radians(lon)
        v = np.array([cl_ * math.cos(lo), cl_ * math.sin(lo), sin_lat])
        if vecs and np.max(np.asarray(vecs) @ v) > cos_min_sep:
            continue
        vecs.append(v)
        lons.append(lon)
        lats.append(lat)
    return np.array(lons), np.array(lats)


def healpix_patches(hmap, centres, size, pixel_arcmin=PIXEL_ARCMIN, nest=False) -> np.ndarray:
    """Gnomonic patches (bilinear interpolation) at ``centres = (lon_deg, lat_deg)``.

    Returns float32 (N, size, size) in the map's units; orientation as in
    :mod:`combine.sky.projection` (row down = south, column right = east).
    """
    lons, lats = (np.atleast_1d(np.asarray(c, dtype=np.float64)) for c in centres)
    if lons.shape != lats.shape:
        raise InputError("centres: need matching lon and lat arrays")
    out = np.empty((lons.size, int(size), int(size)), dtype=np.float32)
    for i, (lon, lat) in enumerate(zip(lons, lats)):
        out[i] = patch_from_healpix(hmap, lon, lat, size, pixel_arcmin, nest=nest)
    return out


def simulate_healpix_patches(
    n_patches,
    size=128,
    *,
    nside=NSIDE_DEFAULT,
    patches_per_map=10,
    sky: Sky | None = None,
    region="central",
    lat_limit_deg=30.0,
    seed=None,
    rng=None,
    progress_callback=None,
    **legacy_sky,
) -> np.ndarray:
    """Patches cut from successive full-sky maps, ``patches_per_map`` non-overlapping per map.

    Each map is :func:`simulate_healpix_map` (beam and pixel window, no noise); white noise of
    ``noise_uk_arcmin / pixel_arcmin`` μK per *patch* pixel is added after cutting, as for
    flat patches. Patches carry the HEALPix pixel window and the slight smoothing of bilinear
    interpolation, unlike the point samples of :func:`combine.sky.flat.simulate_flat_patches`.
    Nside 2048 needs about 2 GB of RAM. ``sky`` (or the loose keywords, as
    :func:`simulate_flat_patches`) gives the spectrum, beam, patch pixel side and noise.

    Returns float32 (n_patches, size, size), μK.
    """
    if int(n_patches) != n_patches or int(n_patches) < 1:
        raise InputError(f"n_patches: must be a positive integer, got {n_patches!r}")
    if int(patches_per_map) != patches_per_map or int(patches_per_map) < 1:
        raise InputError(f"patches_per_map: must be a positive integer, got {patches_per_map!r}")
    nside = _check_nside(nside)
    sky = sky_from_keywords(sky, **legacy_sky)
    pixel_arcmin, noise_uk_arcmin = sky.pixel_arcmin, sky.noise_uk_arcmin
    if seed is not None and rng is not None:
        raise InputError("seed: give either seed or rng, not both")
    if rng is None:
        rng = np.random.default_rng(seed)
    map_sky = sky.replace(noise_uk_arcmin=0.0)  # noise is added per patch pixel below
    n_patches, size = int(n_patches), int(size)
    out = np.empty((n_patches, size, size), dtype=np.float32)
    made = 0
    while made < n_patches:
        take = min(int(patches_per_map), n_patches - made)
        hmap = simulate_healpix_map(nside, sky=map_sky, rng=rng)
        centres = patch_centres(take, size, pixel_arcmin, region=region, lat_limit_deg=lat_limit_deg, rng=rng)
        out[made : made + take] = healpix_patches(hmap, centres, size, pixel_arcmin)
        del hmap
        if noise_uk_arcmin > 0:
            sigma = noise_uk_arcmin / pixel_arcmin
            out[made : made + take] += (sigma * rng.standard_normal((take, size, size))).astype(np.float32)
        made += take
        if progress_callback is not None:
            progress_callback(take)
    return out


def simulate_healpix_tqu_patches(n_patches, size=128, *, nside=NSIDE_DEFAULT, patches_per_map=10, sky: Sky,
                                 region="central", lat_limit_deg=30.0, seed=None, rng=None,
                                 progress_callback=None) -> np.ndarray:
    """T, Q, U patches cut from successive full-sky T, Q, U maps (the counterpart of
    :func:`simulate_healpix_patches`).

    Each map is :func:`combine.sky.polarisation.simulate_healpix_tqu` (beam and pixel window, no
    noise); ``patches_per_map`` non-overlapping centres (:func:`patch_centres`) are cut with
    :func:`combine.sky.polarisation.tqu_patch_from_healpix` (bilinear interpolation, Q/U rotated
    from healpy's frame into the patch frame of docs/DESIGN.md); white noise of
    ``sky.noise_uk_arcmin / pixel_arcmin`` on T and ``sky.noise_qu_uk_arcmin / pixel_arcmin`` on
    Q, U is added per patch pixel.

    Returns float32 (n_patches, 3, size, size), μK.
    """
    from .polarisation import simulate_healpix_tqu, tqu_patch_from_healpix

    if int(n_patches) != n_patches or int(n_patches) < 1:
        raise InputError(f"n_patches: must be a positive integer, got {n_patches!r}")
    if int(patches_per_map) != patches_per_map or int(patches_per_map) < 1:
        raise InputError(f"patches_per_map: must be a positive integer, got {patches_per_map!r}")
    if not isinstance(sky, Sky):
        raise InputError(f"sky: expected a combine.sky.Sky, got {type(sky).__name__}")
    nside = _check_nside(nside)
    if seed is not None and rng is not None:
        raise InputError("seed: give either seed or rng, not both")
    if rng is None:
        rng = np.random.default_rng(seed)
    pix = sky.pixel_arcmin
    sigma = np.array([sky.noise_uk_arcmin, sky.noise_qu_uk_arcmin, sky.noise_qu_uk_arcmin]) / pix
    map_sky = sky.replace(noise_uk_arcmin=0.0, noise_pol_uk_arcmin=0.0)  # noise per patch pixel below
    n_patches, size = int(n_patches), int(size)
    out = np.empty((n_patches, 3, size, size), dtype=np.float32)
    made = 0
    while made < n_patches:
        take = min(int(patches_per_map), n_patches - made)
        tqu = simulate_healpix_tqu(nside, sky=map_sky, rng=rng)
        lons, lats = patch_centres(take, size, pix, region=region, lat_limit_deg=lat_limit_deg, rng=rng)
        for i, (lon, lat) in enumerate(zip(lons, lats)):
            out[made + i] = tqu_patch_from_healpix(tqu, lon, lat, size, pix)
        del tqu
        if sigma.any():
            out[made:made + take] += (sigma[None, :, None, None]
                                      * rng.standard_normal((take, 3, size, size))).astype(np.float32)
        made += take
        if progress_callback is not None:
            progress_callback(take)
    return out


__all__ = [
    "simulate_healpix_map",
    "simulate_healpix_patches",
    "simulate_healpix_tqu_patches",
    "patch_centres",
    "healpix_patches",
    "synthesize_alm",
    "REGIONS",
]
