"""Gaussian Markov random field (GMRF) fill: a sparse stand-in for the Wiener filter.

The exact Wiener filter (:mod:`combine.baselines.wiener`) minimises :math:`T^\\top C^{-1} T` over
the hole given the valid pixels, with the dense 16384² precision :math:`C^{-1}` of a 128² patch.
Here the precision is replaced by a polynomial in the discrete Laplacian :math:`\\Delta` (5-point
stencil, reflecting edges), a stationary sparse operator,

.. math::

    Q = \\sum_{k=0}^{K} a_k (-\\Delta)^k, \\qquad a_k \\ge 0,

and the fill is the conditional mean of that GMRF,

.. math:: T_h = -Q_{hh}^{-1} Q_{hv} T_v

(one sparse LU solve per hole geometry; 2 ms for a 4 px hole, 0.3 s for a 32 px one).
:math:`-\\Delta` has eigenvalues :math:`\\lambda(k) = 4\\sin^2(k_x/2) + 4\\sin^2(k_y/2)` on the
Fourier mode :math:`k` (radians per pixel, :math:`\\ell \\approx |k|/\\Delta_\\mathrm{pix}`), so the
:math:`a_k` are fitted (non-negative least squares, relative error) to the sky's precision
spectrum

.. math:: P(k) = \\bigl(C_\\ell B_\\ell^2 / \\Omega_\\mathrm{pix} + N_\\mathrm{pix}\\bigr)^{-1}

over the Fourier modes of a 256² grid where the beamed signal exceeds the white noise
(:math:`N_\\mathrm{pix} = \\sigma_N^2/\\Delta_\\mathrm{pix}^2`, noise at least 1 μK·arcmin). Only the
ratios of the :math:`a_k` matter (the fill is invariant under :math:`Q \\to cQ`); they are
normalised to :math:`\\max_k a_k = 1`.

Choice of :math:`K = 4` (measured on 16 planck18 patches, 1 μK·arcmin noise, hole RMSE over the
exact Wiener filter's for centred discs of radius 4 / 8 / 16 / 32 px, point sources, random
shapes): K = 4 gives 1.21 / 1.11 / 1.09 / 1.02 / 1.28 / 1.13; K = 6 and 8 fit the spectrum
better in the fitted range but overshoot beyond it and fill far worse (2.5× and 5.4× at 4 px);
fitting all modes instead of the signal-dominated ones gives 1.25 / 1.25 / 1.15 / 1.08 / 1.35 /
1.26. For comparison, biharmonic inpainting (:math:`Q = \\Delta^2`) gives 2.0 / 2.0 / 1.16 /
1.03 / 1.8 / 1.9. Truncating the exact precision to a stencil instead fails outright (its rows
cancel to 1e-8 of their terms at low ℓ; the truncated fill is off by 10²–10⁴). Optimising
directly on the hole MSE (adjoint gradients, L-BFGS-B, 8 training patches) over every
D4-symmetric polynomial :math:`\\sum c_{mn}(L_x^m L_y^n + L_x^n L_y^m)` in the 1-D second
differences, of degree 4, 5 or 6, found nothing better (1.235 at 4 px): a polynomial precision
cannot follow the beam's :math:`e^{\\ell^2\\sigma^2}`. :mod:`combine.baselines.local_wiener`
is the accurate cheap fill.
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import InputError
from ..sky.defaults import EVAL_NOISE_UK_ARCMIN
from ..sky.model import LEGACY_KEYWORDS as LEGACY_SKY_KEYWORDS
from .classical import _prepare, same_hole_groups

#: Polynomial order K of the default GMRF precision (see the module docstring for the choice).
GMRF_ORDER = 4

#: Size of the Fourier grid the coefficients are fitted on.
FIT_GRID_PX = 256

#: Smallest white-noise level (μK·arcmin) used to choose the signal-dominated modes of the fit.
MIN_FIT_NOISE_UK_ARCMIN = 1.0

#: ``gmrf_coefficients()`` for the default sky (planck18 lensed TT, 5' beam, 1.7177' pixels,
#: 1 μK·arcmin): a_0 … a_4. Stored so that models need neither CAMB nor a fit to rebuild their
#: prefill; ``tests/test_baselines_gmrf.py`` checks that the fit reproduces them.
PLANCK18_GMRF_COEFFS = (0.0, 0.010741, 0.0, 0.0, 1.0)

def resolve_sky(sky=None, legacy: dict | None = None):
    """The :class:`~combine.sky.Sky` a fill works on: ``sky``; else the Sky of the loose keywords
    of the first API (:func:`combine.sky.model.sky_from_keywords`); by default
    ``Sky.planck18(noise_uk_arcmin=EVAL_NOISE_UK_ARCMIN)``. A Sky and loose keywords together are
    an InputError."""
    from ..sky.model import sky_from_keywords

    return sky_from_keywords(sky, default_noise_uk_arcmin=EVAL_NOISE_UK_ARCMIN, **(legacy or {}))


def _is_planck18_fit_sky(sky) -> bool:
    """True when ``sky`` fits to :data:`PLANCK18_GMRF_COEFFS` (the planck18 spectra, beam and
    pixel, white noise at most the fit's floor of 1 μK·arcmin), judged without running CAMB."""
    from ..sky import Sky

    if sky.cl_tt_uk2 is not None or sky.noise_var_uk2 is not None or sky.noise_uk_arcmin > MIN_FIT_NOISE_UK_ARCMIN:
        return False
    ref = Sky(noise_uk_arcmin=MIN_FIT_NOISE_UK_ARCMIN)
    return sky.replace(preset=None, noise_uk_arcmin=MIN_FIT_NOISE_UK_ARCMIN, noise_pol_uk_arcmin=None) == ref


def gmrf_coefficients(sky=None, *, order: int = GMRF_ORDER, grid_px: int = FIT_GRID_PX) -> np.ndarray:
    """Non-negative :math:`a_0 \\ldots a_K` (max 1) of :math:`Q = \\sum_k a_k(-\\Delta)^k` fitted to
    :math:`P(k) = (C_\\ell B_\\ell^2/\\Omega + N)^{-1}` (module docstring) of ``sky`` (default
    planck18 at 1 μK·arcmin; :meth:`Sky.beamed_cl_uk2` gives :math:`C_\\ell B_\\ell^2`), rounded to
    5 significant digits."""
    from scipy.optimize import nnls

    sky = resolve_sky(sky)
    order = int(order)
    if order < 1:
        raise InputError(f"order: the GMRF order must be >= 1, got {order}")
    cl_beamed = sky.beamed_cl_uk2("tt")
    ell = np.arange(cl_beamed.size, dtype=np.float64)
    pix_rad = np.deg2rad(sky.pixel_arcmin / 60.0)
    k1 = 2 * np.pi * np.fft.fftfreq(int(grid_px))
    kx, ky = np.meshgrid(k1, k1)
    k_abs = np.hypot(kx, ky).ravel()
    lam = (4 * np.sin(kx / 2) ** 2 + 4 * np.sin(ky / 2) ** 2).ravel()
    signal = np.interp(k_abs / pix_rad, ell, cl_beamed, right=0.0) / pix_rad**2  # μK² per DFT mode
    noise = max(float(sky.noise_uk_arcmin), MIN_FIT_NOISE_UK_ARCMIN) ** 2 / sky.pixel_arcmin**2
    precision = 1.0 / (signal + noise)
    fit = (k_abs > 0) & (signal > noise)
    if fit.sum() < order + 1:
        raise InputError("sky: too few signal-dominated modes to fit a GMRF precision")
    design = np.stack([lam[fit] ** j for j in range(order + 1)], axis=1)
    weight = 1.0 / precision[fit]  # relative error
    a, _ = nnls(design * weight[:, None], precision[fit] * weight)
    a = a / a.max()
    return np.array([float(f"{v:.5g}") for v in a])


_FITTED: dict[str, tuple] = {}


def coefficients_for_sky(sky) -> tuple:
    """GMRF coefficients of ``sky``: :data:`PLANCK18_GMRF_COEFFS` for the default sky (no CAMB,
    no fit), else :func:`gmrf_coefficients` (cached per sky in this process)."""
    if _is_planck18_fit_sky(sky):
        return PLANCK18_GMRF_COEFFS
    key = sky.fingerprint()
    if key not in _FITTED:
        if len(_FITTED) >= 16:
            _FITTED.pop(next(iter(_FITTED)))
        _FITTED[key] = tuple(gmrf_coefficients(sky))
    return _FITTED[key]


def _laplacian(h: int, w: int):
    """:math:`-\\Delta` (5-point, reflecting edges: a graph Laplacian of the pixel grid), CSR."""
    import scipy.sparse as sp

    def line(n):
        d = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="lil")
        d[0, 0] = d[n - 1, n - 1] = 1.0
        return d.tocsr()

    return (sp.kron(sp.identity(h), line(w)) + sp.kron(line(h), sp.identity(w))).tocsr()


@functools.lru_cache(maxsize=8)
def gmrf_precision(shape: tuple, coeffs: tuple):
    """Sparse :math:`Q = \\sum_k a_k (-\\Delta)^k` for an (H, W) grid (CSR, float64; cached)."""
    import scipy.sparse as sp

    h, w = (int(s) for s in shape)
    neg_lap = _laplacian(h, w)
    q = sp.csr_matrix((h * w, h * w))
    power = sp.identity(h * w, format="csr")
    for j, a in enumerate(coeffs):
        if j > 0:
            power = (power @ neg_lap).tocsr()
        if a != 0.0:
            q = q + float(a) * power
    return q.tocsr()


def check_coeffs(coeffs) -> tuple:
    """``coeffs`` as a tuple of non-negative floats with a positive term of order >= 1."""
    try:
        c = tuple(float(v) for v in coeffs)
    except (TypeError, ValueError):
        raise InputError(f"coeffs: expected a list of numbers, got {coeffs!r}") from None
    if not c or not all(np.isfinite(c)) or min(c) < 0 or max(c[1:], default=0.0) <= 0:
        raise InputError(f"coeffs: GMRF coefficients must be finite, >= 0, with a positive a_k for some k >= 1; got {c}")
    return c


def gmrf_fill(maps, masks, *, sky=None, seed=None, coeffs=None, **options) -> np.ndarray:
    """GMRF conditional mean :math:`T_h = -Q_{hh}^{-1} Q_{hv} T_v` in every hole (module docstring).

    The baseline convention ``fill(maps, masks, *, sky, seed=None, **options)``: ``coeffs`` (the
    :math:`a_k`) default to those fitted to ``sky`` (:func:`coefficients_for_sky`; ``sky=None``
    is planck18 at 1 μK·arcmin, whose coefficients are stored: no CAMB, no fit). With ``coeffs``
    given the sky is not used (:func:`gmrf_fill_coeffs`). ``seed`` is ignored (the fill is
    deterministic). A mask without a valid pixel is an :class:`InputError`, as for every baseline.
    """
    legacy = {k: options.pop(k) for k in LEGACY_SKY_KEYWORDS if k in options}
    if coeffs is None:
        coeffs = coefficients_for_sky(resolve_sky(sky, legacy))
    return gmrf_fill_coeffs(maps, masks, coeffs)


def gmrf_fill_coeffs(maps, masks, coeffs) -> np.ndarray:
    """:func:`gmrf_fill` from its precomputed coefficients :math:`a_0 \\ldots a_K` alone (what a
    model directory stores): no sky, no CAMB. Maps sharing a mask share one LU factorisation."""
    from scipy.sparse.linalg import splu

    coeffs = check_coeffs(coeffs)
    data, holes, out, out3 = _prepare(maps, masks)
    q = gmrf_precision(data.shape[-2:], coeffs)
    for members in same_hole_groups(holes):
        hole = holes[members[0]].ravel()
        h_idx, v_idx = np.flatnonzero(hole), np.flatnonzero(~hole)
        flat = data[members].reshape(len(members), -1)
        q_h = q[h_idx]
        lu = splu(q_h[:, h_idx].tocsc())
        fill = lu.solve(-(q_h[:, v_idx] @ flat[:, v_idx].T)).T
        for j, i in enumerate(members):
            out3[i].reshape(-1)[h_idx] = fill[j]
    return out


__all__ = ["gmrf_fill", "gmrf_fill_coeffs", "gmrf_coefficients", "coefficients_for_sky", "gmrf_precision",
           "resolve_sky", "PLANCK18_GMRF_COEFFS", "GMRF_ORDER"]
