"""Flat-sky Gaussian CMB patches: FFT realisations on a large periodic grid, cut into patches.

Method
------
A Gaussian random field with angular power :math:`C_\\ell B_\\ell^2` is drawn on a periodic
square grid of ``G × G`` pixels of side :math:`\\Delta` (radians), ``G >= 8 × size``, box side
:math:`L = G\\Delta`. With :math:`w` unit white noise on the grid,

.. math::

    T = \\mathcal F^{-1}\\big[\\mathcal F[w](\\mathbf k)\\;\\sqrt{C_{|\\mathbf k|} B_{|\\mathbf k|}^2}\\,/\\Delta\\big],
    \\qquad \\mathbf k = 2\\pi\\mathbf n/L,

(numpy's FFT convention: forward unnormalised, inverse with :math:`1/G^2`) so that

.. math::

    \\langle T^2\\rangle = \\frac{1}{L^2}\\sum_{\\mathbf k} C_{|\\mathbf k|}B_{|\\mathbf k|}^2
    \\;\\approx\\; \\int\\frac{d^2\\ell}{(2\\pi)^2} C_\\ell B_\\ell^2
    \\;\\approx\\; \\sum_\\ell \\frac{2\\ell+1}{4\\pi} C_\\ell B_\\ell^2 .

:math:`C_\\ell` is interpolated linearly at :math:`\\ell = |\\mathbf k| - 1/2` (the usual flat-sky
correspondence :math:`P_\\ell(\\cos\\theta) \\approx J_0((\\ell+\\tfrac12)\\theta)`, which removes a
0.4 % deficit at small lags that :math:`\\ell = |\\mathbf k|` leaves) and taken as zero beyond
the array's :math:`\\ell_{max}` and at :math:`\\mathbf k = 0`. The grid lacks the modes with
:math:`\\ell < 2\\pi/L` (:math:`\\ell \\lesssim 12` for the default 1024² grid of 1.7177' pixels,
29° across) and samples :math:`\\ell \\lesssim 50` coarsely: the pixel variance about zero is
therefore below the full-sky sum, by 11 % for 128² patches (1024² grid) and 16 % for 64²
patches (512² grid) with the default sky (that power would be a near-constant offset over a patch), while statistics inside a patch (the variogram, the variance about the patch mean) match
the full-sky theory. :func:`grid_pixel_variance_uk2` gives the exact expectation of the
generator.

The grid is cut into ``(G // size)²`` non-overlapping patches, so each patch sees at most 1/8
of the period in each direction and its pixels never correlate across the wrap at short lag.
Patches are **point samples** of the beam-convolved sky: no pixel window is applied. White
noise of ``noise_uk_arcmin`` μK·arcmin adds :math:`\\sigma_{pix} = ` ``noise_uk_arcmin /
pixel_arcmin`` μK per pixel.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from ..errors import InputError
from .defaults import ARCMIN_RAD, MIN_PATCH_SIZE
from .model import Sky, sky_from_keywords

#: The periodic grid is at least this many patch sides across.
GRID_FACTOR = 8


def grid_side_px(size: int) -> int:
    """Side of the periodic simulation grid for patches of ``size`` pixels (>= 8·size, FFT-fast)."""
    return scipy.fft.next_fast_len(GRID_FACTOR * int(size), real=True)


def _grid_power(cl_b2: np.ndarray, grid_px: int, pixel_arcmin: float) -> np.ndarray:
    """:math:`C_{|k|}B^2_{|k|}/\\Delta^2` on the rfft2 half plane (shape (G, G//2+1))."""
    delta = pixel_arcmin * ARCMIN_RAD
    freq = 2.0 * np.pi * np.fft.fftfreq(grid_px, d=delta)
    rfreq = 2.0 * np.pi * np.fft.rfftfreq(grid_px, d=delta)
    ell = np.sqrt(freq[:, None] ** 2 + rfreq[None, :] ** 2)
    lmax = cl_b2.size - 1
    # flat-sky mode |k| carries the full-sky multipole ℓ = |k| - 1/2 (P_ℓ(cos θ) ≈ J_0((ℓ+½)θ))
    power = np.interp(ell - 0.5, np.arange(lmax + 1), cl_b2, right=0.0)
    power[0, 0] = 0.0
    return power / delta**2


def grid_pixel_variance_uk2(sky: Sky, grid_px: int) -> float:
    """Exact expected pixel variance of :func:`simulate_flat_patches` (no noise), μK².

    .. math:: \\sigma^2 = \\frac{1}{L^2}\\sum_{\\mathbf k\\neq 0} C_{|\\mathbf k|}B_{|\\mathbf k|}^2
    """
    power = _grid_power(sky.beamed_cl_uk2("tt"), int(grid_px), sky.pixel_arcmin)
    weight = np.full(power.shape[1], 2.0)  # rfft half plane: interior columns count twice
    weight[0] = 1.0
    if grid_px % 2 == 0:
        weight[-1] = 1.0
    return float(np.sum(power * weight) / grid_px**2)


def theory_pixel_variance_uk2(sky: Sky, lmin: int = 0) -> float:
    """Full-sky pixel variance of the beam-convolved field (point samples), μK².

    .. math:: \\xi(0) = \\sum_{\\ell \\ge \\ell_{min}} \\frac{2\\ell+1}{4\\pi} C_\\ell B_\\ell^2
    """
    cl_b2 = sky.beamed_cl_uk2("tt")
    ell = np.arange(cl_b2.size)
    keep = ell >= lmin
    return float(np.sum((2 * ell[keep] + 1) / (4 * np.pi) * cl_b2[keep]))


def theory_variogram_uk2(lag_arcmin, sky: Sky) -> np.ndarray:
    """Semivariogram :math:`\\gamma(r) = \\tfrac12\\langle (T(x+r)-T(x))^2\\rangle = \\xi(0) - \\xi(r)`, μK².

    ``lag_arcmin`` is the angular separation (arcmin); ξ from :meth:`Sky.correlation_uk2`.
    Insensitive to the missing low-ℓ modes of the flat grid.
    """
    lag = np.atleast_1d(np.asarray(lag_arcmin, dtype=np.float64)) * ARCMIN_RAD
    xi = sky.correlation_uk2(np.concatenate([[0.0], lag]))
    return xi[0] - xi[1:]


def simulate_flat_patches(
    n_patches,
    size=128,
    *,
    sky: Sky | None = None,
    seed=None,
    rng=None,
    progress_callback=None,
    **legacy_sky,
) -> np.ndarray:
    """Gaussian CMB temperature patches (μK) on the flat sky.

    Parameters
    ----------
    n_patches : int
        Number of patches (>= 1).
    size : int
        Patch side, pixels (>= 64).
    sky : Sky, optional
        Spectrum, beam, pixel side and white noise (:math:`\\sigma_{pix}` = noise_uk_arcmin /
        pixel_arcmin); default ``Sky.planck18()`` (no noise). Callers of the first API may
        give the loose keywords ``pixel_arcmin``, ``beam_fwhm_arcmin``, ``noise_uk_arcmin``,
        ``ns``, ``cl_uk2`` instead (:func:`combine.sky.model.sky_from_keywords`).
    seed : int, optional
        Seed for ``numpy.random.default_rng``; or pass ``rng`` (not both).
    progress_callback : callable, optional
        Called with the number of patches made after each grid.

    Returns
    -------
    ndarray, float32, shape (n_patches, size, size)
        Point samples of the beam-convolved field plus noise; see the module docstring for the
        FFT normalisation. Patch ``p`` of grid ``g`` is ``(row, col)`` block of the grid in
        row-major order; consecutive grids come from one random stream, so the output is a
        deterministic function of the seed.
    """
    if int(n_patches) != n_patches or int(n_patches) < 1:
        raise InputError(f"n_patches: must be a positive integer, got {n_patches!r}")
    if int(size) != size or int(size) < MIN_PATCH_SIZE:
        raise InputError(f"size: patch side must be an integer >= {MIN_PATCH_SIZE}, got {size!r}")
    n_patches, size = int(n_patches), int(size)
    sky = sky_from_keywords(sky, **legacy_sky)
    if sky.noise_var_uk2 is not None:
        raise InputError("sky: flat simulations take white noise only (noise_uk_arcmin), not a noise map")
    if seed is not None and rng is not None:
        raise InputError("seed: give either seed or rng, not both")
    if rng is None:
        rng = np.random.default_rng(seed)

    grid_px = grid_side_px(size)
    per_side = grid_px // size
    amplitude = np.sqrt(_grid_power(sky.beamed_cl_uk2("tt"), grid_px, sky.pixel_arcmin))
    amplitude = amplitude.astype(np.float32)
    sigma_pix_uk = sky.noise_uk_arcmin / sky.pixel_arcmin

    out = np.empty((n_patches, size, size), dtype=np.float32)
    made = 0
    while made < n_patches:
        white = rng.standard_normal((grid_px, grid_px), dtype=np.float32)
        spec = scipy.fft.rfft2(white, workers=2)
        spec *= amplitude
        field = scipy.fft.irfft2(spec, s=(grid_px, grid_px), workers=2)
        take = min(per_side * per_side, n_patches - made)
        blocks = field[: per_side * size, : per_side * size].reshape(per_side, size, per_side, size)
        blocks = blocks.transpose(0, 2, 1, 3).reshape(per_side * per_side, size, size)
        out[made : made + take] = blocks[:take]
        if sigma_pix_uk > 0:
            out[made : made + take] += sigma_pix_uk * rng.standard_normal((take, size, size), dtype=np.float32)
        made += take
        if progress_callback is not None:
            progress_callback(take)
    return out


__all__ = [
    "simulate_flat_patches",
    "grid_side_px",
    "grid_pixel_variance_uk2",
    "theory_pixel_variance_uk2",
    "theory_variogram_uk2",
    "GRID_FACTOR",
]
