"""Pixel covariance of a flat patch of the beam-convolved CMB plus white noise.

The temperature correlation function of an isotropic sky with spectrum :math:`C_\\ell`, seen
through a Gaussian beam :math:`B_\\ell`, is the Legendre sum

.. math::

    \\xi(\\theta) = \\sum_{\\ell} \\frac{2\\ell + 1}{4\\pi}\\, C_\\ell B_\\ell^2\\, P_\\ell(\\cos\\theta)

(``healpy.bl2beam(cl * bl**2, theta)`` evaluates exactly this sum). A patch pixel
:math:`p = (y, x)` sits at flat position :math:`\\Delta_{pix}\\,(y, x)`, so

.. math::

    C_{pq} = \\xi\\big(\\Delta_{pix}\\,|p - q|\\big) + \\sigma_{pix}^2\\,\\delta_{pq},
    \\qquad \\sigma_{pix} = \\frac{\\text{noise}_{\\mu K\\,arcmin}}{\\Delta_{pix,arcmin}} .

The matrix is stationary (block Toeplitz with Toeplitz blocks): it is built from a lookup table
``T[dy, dx] = ξ(Δ_pix √(dy² + dx²))`` over the non-negative integer offsets.

Consistency with :func:`combine.sky.flat.simulate_flat_patches`. Those patches are point samples
(no pixel window) of a beam-convolved Gaussian field made by FFT on a periodic flat grid at least
8× the patch side. Their exact covariance is the flat-sky transform
:math:`\\int \\frac{d^2\\ell}{(2\\pi)^2} C_\\ell B_\\ell^2 e^{i\\ell\\cdot r}`, discretised on the
grid's modes (with :math:`\\ell = |k| - 1/2`). It differs from the curved-sky :math:`\\xi` above
(i) at :math:`\\ell` below the grid's fundamental mode
(:math:`\\ell \\approx 2\\pi/(8 \\cdot 128 \\cdot 1.7177') \\approx 12` for the default sky) and at
the coarsely sampled :math:`\\ell \\lesssim 50`: the curved sum keeps that power, 11 % of the pixel
variance for 128² patches, but over one patch it is an almost constant offset, which the
observed pixels determine, so it hardly changes a Wiener fill or its error (the benchmark
checks the realised hole MSE on flat simulations against :meth:`WienerFilter.expected_mse`);
(ii) by flat-versus-curved corrections of order :math:`\\theta^2` (< 0.1 % over a 3.7° patch).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..sky.defaults import ARCMIN_RAD
from ..sky.model import Sky, sky_from_keywords


def patch_shape(size) -> tuple[int, int]:
    """``size`` (int or (H, W)) as a pair of positive ints."""
    shape = (size, size) if np.ndim(size) == 0 else tuple(size)
    if len(shape) != 2 or any(int(s) != s or int(s) < 1 for s in shape):
        raise InputError(f"size: expected a positive int or (H, W), got {size!r}")
    return int(shape[0]), int(shape[1])


def correlation_table_uk2(size, sky: Sky | None = None, **legacy_sky) -> np.ndarray:
    """Signal covariance by integer pixel offset: ``T[dy, dx] = ξ(Δ_pix √(dy² + dx²))``, shape (H, W), μK².

    ξ is :meth:`combine.sky.Sky.correlation_uk2` (no pixel window: flat patches are point
    samples); each distinct :math:`dy^2 + dx^2` is evaluated once. ``sky`` or the loose
    keywords of the first API (``cl_uk2``, ``ns``, ``pixel_arcmin``, ``beam_fwhm_arcmin``).
    """
    h, w = patch_shape(size)
    sky = sky_from_keywords(sky, **legacy_sky)
    r2 = np.add.outer(np.arange(h) ** 2, np.arange(w) ** 2)
    unique_r2, inverse = np.unique(r2, return_inverse=True)
    xi = sky.correlation_uk2(np.sqrt(unique_r2) * sky.pixel_arcmin * ARCMIN_RAD)
    return xi[inverse].reshape(h, w)


def covariance_from_table(table_uk2: np.ndarray, noise_var_uk2: float = 0.0) -> np.ndarray:
    """Dense (H·W) × (H·W) stationary covariance from an offset table, plus ``noise_var_uk2`` on the diagonal.

    Pixels are in row-major (C) order, ``p = y·W + x``:
    :math:`C[(y_1,x_1),(y_2,x_2)] = T[|y_1-y_2|, |x_1-x_2|] + \\sigma^2\\delta`.
    Built block row by block row; no index array of the full size is made.
    """
    h, w = table_uk2.shape
    dx = np.abs(np.subtract.outer(np.arange(w), np.arange(w)))
    blocks = table_uk2[:, dx]  # (H, W, W): block for row offset dy
    cov = np.empty((h, w, h, w), dtype=np.float64)
    rows = np.arange(h)
    for y1 in range(h):
        # cov[y1, x1, y2, x2] = blocks[|y1 - y2|, x1, x2]
        cov[y1] = blocks[np.abs(y1 - rows)].transpose(1, 0, 2)
    cov = cov.reshape(h * w, h * w)
    if noise_var_uk2:
        cov[np.diag_indices(h * w)] += noise_var_uk2
    return cov


def covariance_between(table_uk2: np.ndarray, a_yx: np.ndarray, b_yx: np.ndarray) -> np.ndarray:
    """Stationary covariance :math:`C[i, j] = T[|y_i - y_j|, |x_i - x_j|]` between the pixels
    ``a_yx`` (m, 2) and ``b_yx`` (n, 2) (integer (y, x) coordinates), shape (m, n)."""
    return table_uk2[np.abs(a_yx[:, None, 0] - b_yx[None, :, 0]), np.abs(a_yx[:, None, 1] - b_yx[None, :, 1])]


def pixel_covariance_uk2(size, sky: Sky | None = None, **legacy_sky) -> np.ndarray:
    """Covariance of the H·W pixels of a flat patch (row-major order), μK².

    .. math::

        C_{pq} = \\sum_\\ell \\frac{2\\ell+1}{4\\pi} C_\\ell B_\\ell^2
                 P_\\ell\\big(\\cos(\\Delta_{pix}|p-q|)\\big)
                 + \\Big(\\frac{\\text{noise}_{\\mu K\\,arcmin}}{\\Delta_{pix,arcmin}}\\Big)^2 \\delta_{pq}

    Parameters
    ----------
    size : int or (H, W)
        Patch shape in pixels.
    sky : Sky, optional
        Spectrum, beam, pixel side and white noise (default ``Sky.planck18()``, no noise), or
        the loose keywords of the first API.

    Returns
    -------
    ndarray, shape (H·W, H·W), float64. 128² is 2.1 GB.
    """
    sky = sky_from_keywords(sky, **legacy_sky)
    return covariance_from_table(correlation_table_uk2(size, sky), sky.noise_var_pix_uk2)


__all__ = [
    "correlation_table_uk2",
    "covariance_from_table",
    "patch_shape",
    "pixel_covariance_uk2",
]
