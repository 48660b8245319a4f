"""Local Wiener filter: the exact conditional mean of each hole given the observed pixels near it.

The exact Wiener filter (:mod:`combine.baselines.wiener`) conditions every hole on all the valid
pixels of the patch through the dense 16384² precision matrix of a 128² patch (2.1 GB, minutes
to build once). The weights of that conditional mean fall off fast with the distance from the
hole (the valid pixels next to the hole screen the ones behind them), so each hole ``h`` (an
8-connected group of masked pixels) is filled here from the valid pixels ``o`` of a window
around it alone, the pixels within an L1 (diamond) distance ``margin_px`` of the hole:

.. math::

    T_h = C_{ho} \\, (C_{oo} + \\sigma_N^2 I)^{-1} \\, d_o ,

with :math:`C_{ij} = \\xi(\\Delta_{pix} |r_i - r_j|)` the beam-convolved signal covariance
(:func:`correlation_table_for_sky`, from :meth:`combine.sky.Sky.correlation_uk2`) and
:math:`\\sigma_N^2` the white-noise variance per pixel (the noise of the hole pixels, like the
exact filter's "truth", is not predictable and not added). One Cholesky factorisation of
:math:`C_{oo}` per hole geometry (``torch.linalg.cholesky``), shared by maps with the same mask.

Holes whose window holds more than ``max_window_px`` valid pixels (large, elongated holes:
lines of the random-shape masks) would cost a dense factorisation of that size; they are filled
by the GMRF conditional mean (:func:`combine.baselines.gmrf.gmrf_fill`) instead. The cap grows
with the margin (:func:`default_max_window_px`), so a wider window does not send discs to the GMRF.

:func:`local_wiener_fill` takes a :class:`combine.sky.Sky`; :func:`local_wiener_fill_table`
takes the precomputed correlation table, noise variance and GMRF coefficients (what a model
directory stores, so a model's first guess needs no CAMB).

Choice of ``margin_px = 8`` (measured on 32 planck18 patches, 1 μK·arcmin noise, hole RMSE over
the exact Wiener filter's for centred discs of radius 4 / 8 / 16 / 32 px, point sources, random
shapes with every hole local): margin 4 gives 1.077 / 1.077 / 1.060 / 1.005 / 1.072 / 1.017,
margin 8 gives 1.021 / 1.027 / 1.039 / 0.999 / 1.038 / 1.004 (the GMRF fill: 1.24 / 1.12 /
1.10 / 1.03 / 1.20 / 1.11). Cost per 128² patch at margin 8 on one core: 1 ms (r = 8 px),
4 ms (16 px), 32 ms (32 px), 22 ms (point sources); random shapes 12 s with every hole local,
262 ms (and 1.094) with the default ``max_window_px`` sending their long lines to the GMRF.

Window of the shipped model's first guess: ``margin_px = 12`` (``planck18-t128``'s
``config.json``; the baseline's default stays 8). Measured with
``benchmarks/bench_lwiener_margin.py`` (48 independent planck18 patches, seed 2026,
1 μK·arcmin; random shapes on 8) with the cap growing with the margin
(:func:`default_max_window_px`), hole RMSE over the exact Wiener filter's for r = 4 / 8 / 16 /
32 px, point sources, random shapes: margin 8 gives 1.002 / 1.003 / 1.021 / 1.019 / 0.994 /
1.078, margin 12 1.004 / 1.003 / 1.020 / 1.011 / 0.990 / 1.053, margin 16 1.004 / 1.003 /
1.022 / 1.015 / 0.993, margin 24 1.001 / 1.005 / 1.020 / 1.003 / 0.990 (no disc falls back to
the GMRF; ratios below 1 are the flat simulations' departure from the curved-sky covariance,
module :mod:`combine.baselines.covariance`). These pooled ratios carry the sampling noise of
the patches; the distance of the fill from the exact one (RMS over the exact filter's RMSE, on
the 8 patches of ``tests/test_pretrained.py``) shows the gain more directly: r = 4 / 8 / 16 / 32
px, margin 8: 0.278 / 0.147 / 0.179 / 0.211, margin 12: 0.068 / 0.138 / 0.161 / 0.164, margin 16:
0.046 / 0.138 / 0.138 / 0.142. Cost per patch (same run, 2 cores shared by ~15 processes, so
3–5× the free-machine figures above) grows with the margin: r = 32 px 131 / 363 / 731 / 1762
ms, point sources 145 / 625 / 2088 / 9542 ms for margins 8 / 12 / 16 / 24. Margin 12 takes
most of the gain at about 3× the cost of margin 8; the network's output follows its first
guess within 0.3 % at every margin (same benchmark, ``--model planck18-t128``).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from .classical import _prepare, same_hole_groups
from .covariance import correlation_table_uk2, covariance_between
from .gmrf import LEGACY_SKY_KEYWORDS, coefficients_for_sky, gmrf_fill_coeffs, resolve_sky

#: Default window: valid pixels within this L1 distance (pixels) of the hole.
DEFAULT_MARGIN_PX = 8

#: The default ``max_window_px`` is the area of the ``margin_px``-wide ring around a disc of this
#: radius (px), so that the cap grows with the margin (see :func:`default_max_window_px`).
LOCAL_DISC_RADIUS_PX = 56


def default_max_window_px(margin_px: int) -> int:
    """Default cap on a hole's window: :math:`\\lceil \\pi m (2R + m) \\rceil`, the area of the
    ring of width :math:`m` = ``margin_px`` around a disc of radius :math:`R` =
    :data:`LOCAL_DISC_RADIUS_PX` (3016 px at m = 8, the former fixed 3000; 10 255 at m = 24). A
    disc hole of radius up to R (its L1 window is smaller than that Euclidean ring) stays local
    whatever the margin; long random-shape lines go to the GMRF."""
    m = int(margin_px)
    return int(math.ceil(math.pi * m * (2 * LOCAL_DISC_RADIUS_PX + m)))


_TABLES: dict[tuple, np.ndarray] = {}


def correlation_table_for_sky(sky, shape) -> np.ndarray:
    """``T[dy, dx] = ξ(Δ_pix √(dy² + dx²))`` (μK²), shape ``shape`` = (H, W), of ``sky``
    (:func:`combine.baselines.covariance.correlation_table_uk2`, from :meth:`Sky.correlation_uk2`),
    cached per sky and shape in this process (read-only)."""
    h, w = (int(s) for s in shape)
    key = (sky.fingerprint(), h, w)
    if key not in _TABLES:
        if len(_TABLES) >= 8:
            _TABLES.pop(next(iter(_TABLES)))
        table = correlation_table_uk2((h, w), sky)
        table.setflags(write=False)
        _TABLES[key] = table
    return _TABLES[key]


def hole_windows(hole: np.ndarray, margin_px: int):
    """8-connected holes of a (H, W) bool ``hole`` map, each with its window of valid pixels.

    Returns a list of ``(hole_yx (k, 2), window_yx (m, 2))`` integer pixel coordinates: the
    window is the valid pixels within L1 distance ``margin_px`` of the hole (binary dilation
    with the 4-neighbour cross, ``margin_px`` >= 1 times).
    """
    import scipy.ndimage as ndi

    labels, _ = ndi.label(hole, structure=np.ones((3, 3), dtype=bool))
    h, w = hole.shape
    out = []
    for j, sl in enumerate(ndi.find_objects(labels), start=1):
        y0, y1 = max(sl[0].start - margin_px, 0), min(sl[0].stop + margin_px, h)
        x0, x1 = max(sl[1].start - margin_px, 0), min(sl[1].stop + margin_px, w)
        comp = labels[y0:y1, x0:x1] == j
        win = ndi.binary_dilation(comp, iterations=margin_px) & ~hole[y0:y1, x0:x1]
        out.append((np.argwhere(comp) + (y0, x0), np.argwhere(win) + (y0, x0)))
    return out


def _weights(table: np.ndarray, noise_var, hole_yx: np.ndarray, win_yx: np.ndarray) -> np.ndarray:
    """:math:`(C_{oo} + N_{oo})^{-1} C_{oh}`, shape (m, k), float64; ``noise_var`` a scalar or an
    (H, W) per-pixel variance (μK²)."""
    import torch

    c_oo = torch.from_numpy(covariance_between(table, win_yx, win_yx))
    floor = 1e-8 * float(table[0, 0])
    if np.ndim(noise_var) == 0:
        c_oo.diagonal().add_(max(float(noise_var), floor))
    else:
        c_oo.diagonal().add_(torch.from_numpy(np.maximum(noise_var[win_yx[:, 0], win_yx[:, 1]], floor)))
    chol, info = torch.linalg.cholesky_ex(c_oo)
    if int(info) != 0:
        raise InputError("sky: window covariance is not positive definite")
    return torch.cholesky_solve(torch.from_numpy(covariance_between(table, win_yx, hole_yx)), chol).numpy()


def _noise_for(sky, shape):
    """White per-pixel variance of ``sky``, or its (H, W) noise-variance map when it has one."""
    if sky.noise_var_uk2 is None:
        return sky.noise_var_pix_uk2
    var = np.asarray(sky.noise_var_uk2, dtype=np.float64)
    if var.shape != tuple(shape):
        raise InputError(f"sky: noise_var_uk2 has shape {var.shape}, the maps are {tuple(shape)} patches")
    return var


def local_wiener_fill(maps, masks, *, sky=None, seed=None, margin_px: int = DEFAULT_MARGIN_PX,
                      max_window_px: int | None = None, gmrf_coeffs=None, **options) -> np.ndarray:
    """Local Wiener fill :math:`T_h = C_{ho}(C_{oo} + \\sigma_N^2)^{-1} d_o` of every hole (module docstring).

    The baseline convention ``fill(maps, masks, *, sky, seed=None, **options)``; ``sky=None`` is
    ``Sky.planck18(noise_uk_arcmin=1)``. The covariance comes from :meth:`Sky.correlation_uk2`,
    the noise from the sky's white level (or its (H, W) noise-variance map). Holes with more
    than ``max_window_px`` (default :func:`default_max_window_px`) valid pixels in their window
    take the GMRF fill (``gmrf_coeffs``, default fitted to the same sky). ``seed`` is ignored
    (the fill is deterministic). Everything after the sky is :func:`local_wiener_fill_table`.
    """
    legacy = {k: options.pop(k) for k in LEGACY_SKY_KEYWORDS if k in options}
    sky = resolve_sky(sky, legacy)
    shape = np.shape(maps)[-2:]
    if len(shape) != 2:
        raise InputError(f"maps: expected (H, W), (N, H, W) or (N, C, H, W), got shape {np.shape(maps)}")
    return local_wiener_fill_table(
        maps, masks, xi_table_uk2=correlation_table_for_sky(sky, shape), noise_var_uk2=_noise_for(sky, shape),
        gmrf_coeffs=coefficients_for_sky(sky) if gmrf_coeffs is None else gmrf_coeffs,
        margin_px=margin_px, max_window_px=max_window_px)


def local_wiener_fill_table(maps, masks, *, xi_table_uk2, noise_var_uk2, gmrf_coeffs,
                            margin_px: int = DEFAULT_MARGIN_PX, max_window_px: int | None = None) -> np.ndarray:
    """:func:`local_wiener_fill` from precomputed tensors alone (what a model directory stores):
    no Sky, no CAMB, no cache.

    Parameters
    ----------
    xi_table_uk2 : ndarray (>= H, >= W)
        Signal covariance by pixel offset, ``T[dy, dx] = ξ(Δ_pix √(dy² + dx²))`` μK²
        (:func:`correlation_table_for_sky`).
    noise_var_uk2 : float or ndarray (H, W)
        Per-pixel noise variance (μK²) added to :math:`C_{oo}`.
    gmrf_coeffs : sequence of float
        GMRF :math:`a_k` for the holes whose window exceeds ``max_window_px``.
    margin_px, max_window_px : int
        Window (L1 distance from the hole) and its cap (default :func:`default_max_window_px`).
    """
    margin_px = int(margin_px)
    max_window_px = default_max_window_px(margin_px) if max_window_px is None else int(max_window_px)
    if margin_px < 1 or max_window_px < 1:
        raise InputError(f"margin_px / max_window_px: need >= 1, got {margin_px}, {max_window_px}")
    data, holes, out, out3 = _prepare(maps, masks)
    h, w = data.shape[-2:]
    table = np.asarray(xi_table_uk2, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] < h or table.shape[1] < w:
        raise InputError(f"xi_table_uk2: shape {table.shape} does not cover the offsets of {h}x{w} maps")
    noise_var = noise_var_uk2 if np.ndim(noise_var_uk2) == 0 else np.asarray(noise_var_uk2, dtype=np.float64)
    if np.ndim(noise_var) not in (0, 2) or (np.ndim(noise_var) == 2 and noise_var.shape != (h, w)):
        raise InputError(f"noise_var_uk2: expected a number or an ({h}, {w}) map, got shape {np.shape(noise_var)}")
    for members in same_hole_groups(holes):
        windows = hole_windows(holes[members[0]], margin_px)
        block = data[members]
        if any(len(win) > max_window_px for _, win in windows):
            out3[members] = gmrf_fill_coeffs(block, (~holes[members]).astype(np.uint8), gmrf_coeffs)
        for hole_yx, win_yx in windows:
            if len(win_yx) > max_window_px:
                continue
            if len(win_yx) == 0:
                raise InputError("masks: a hole has no valid pixel within margin_px of it; nothing to condition on")
            wts = _weights(table, noise_var, hole_yx, win_yx)
            vals = block[:, win_yx[:, 0], win_yx[:, 1]] @ wts  # (n_maps, k)
            for j, i in enumerate(members):
                out3[i][hole_yx[:, 0], hole_yx[:, 1]] = vals[j]
    return out


__all__ = ["local_wiener_fill", "local_wiener_fill_table", "correlation_table_for_sky", "hole_windows",
           "default_max_window_px", "DEFAULT_MARGIN_PX"]
