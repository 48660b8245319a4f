"""Classical (non-statistical) hole fills: diffusive, biharmonic, OpenCV Telea / Navier–Stokes, mean.

All take ``maps`` (H, W), (N, H, W) or (N, C, H, W) in μK and a mask (1 = valid, 0 = hole) of
a shape that broadcasts (see :func:`combine.validation.check_maps_and_masks`), return a copy
whose valid pixels are bit-identical to the input (floating dtype kept, otherwise float32), and
ignore unknown keyword arguments (so that every baseline can be called with the same sky
keywords: the baselines' convention ``fill(maps, masks, *, sky, seed=None, **options)``).
Hole values of the input are never read.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ..validation import check_maps_and_masks


def _prepare(maps, masks):
    """Validated (k, H, W) float64 data, (k, H, W) bool holes, output copy and its (k, H, W) view."""
    raw = np.asarray(maps)
    _, m = check_maps_and_masks(raw, masks)
    out = np.array(raw, dtype=raw.dtype if np.issubdtype(raw.dtype, np.floating) else np.float32, copy=True)
    h, w = raw.shape[-2:]
    data = raw.reshape(-1, h, w).astype(np.float64)
    holes = m.reshape(-1, h, w) == 0
    data[holes] = 0.0  # hole values may be NaN / UNSEEN: never read
    return data, holes, out, out.reshape(-1, h, w)


def same_hole_groups(holes: np.ndarray) -> list[list[int]]:
    """Indices of the (k, H, W) bool ``holes`` maps grouped by identical hole pattern (maps
    without a hole left out), so that a fill factorises each hole geometry once."""
    groups: dict[bytes, list[int]] = {}
    for i in range(holes.shape[0]):
        if holes[i].any():
            groups.setdefault(np.packbits(holes[i]).tobytes(), []).append(i)
    return list(groups.values())


# --------------------------------------------------------------------------------------------
# diffusive
# --------------------------------------------------------------------------------------------
def _neighbour_sum(x: np.ndarray) -> np.ndarray:
    """Sum of the 4-connected in-image neighbours of every pixel of (k, H, W) ``x``."""
    s = np.zeros_like(x)
    s[:, 1:, :] += x[:, :-1, :]
    s[:, :-1, :] += x[:, 1:, :]
    s[:, :, 1:] += x[:, :, :-1]
    s[:, :, :-1] += x[:, :, 1:]
    return s


def diffusive_fill(maps, masks, *, method: str = "sor", tol_uk: float = 1e-3, max_iter: int = 20000,
                   **_ignored) -> np.ndarray:
    """Diffusive inpainting: every hole pixel becomes the mean of its neighbours, iterated to convergence.

    The fixed point is the discrete harmonic interpolant of the hole from its boundary,

    .. math:: T_p = \\frac{1}{|\\mathcal{N}_p|}\\sum_{q \\in \\mathcal{N}_p} T_q \\quad (p \\in \\text{hole}),

    with :math:`\\mathcal{N}_p` the 4-connected neighbours inside the image (2 or 3 on edges), the
    valid pixels held fixed. This is the Planck point-source "diffusive inpainting" (there: plain
    neighbour averaging repeated a fixed number of times, ~2000). Holes start at the mean of the
    valid pixels bordering them.

    Parameters
    ----------
    method : {"sor", "jacobi"}
        ``"jacobi"``: plain simultaneous averaging (Planck); converges in O(D²) sweeps for a hole
        of diameter D pixels (thousands at D = 64). ``"sor"`` (default): red–black Gauss–Seidel
        averaging with over-relaxation :math:`\\omega = 2/(1+\\sin(\\pi/(D+1)))`, O(D) sweeps, the
        same fixed point.
    tol_uk : float
        Stop when :math:`\\max_p |\\bar T_{\\mathcal{N}_p} - T_p| <` ``tol_uk`` μK over all hole
        pixels (the residual of the equation above), checked every 10 sweeps.
    max_iter : int
        Cap on the sweeps (then the current iterate is returned).
    """
    if method not in ("sor", "jacobi"):
        raise InputError(f"method: expected 'sor' or 'jacobi', got {method!r}")
    data, holes, out, out3 = _prepare(maps, masks)
    full_counts = _neighbour_sum(np.ones((1,) + data.shape[1:]))[0]
    for i in range(data.shape[0]):  # one map at a time: the result does not depend on the batch
        if holes[i].any():
            out3[i][holes[i]] = _diffuse_one(data[i], holes[i], full_counts, method, tol_uk, max_iter)
    return out


def _diffuse_one(image, hole_full, full_counts, method, tol_uk, max_iter) -> np.ndarray:
    """Hole values of one (H, W) map after diffusive filling (see :func:`diffusive_fill`)."""
    # work on the bounding box of the holes plus one pixel of context: every hole pixel is then
    # at least one pixel inside the box (or on an image edge), so all its neighbours are in it
    rows = np.flatnonzero(hole_full.any(axis=1))
    cols = np.flatnonzero(hole_full.any(axis=0))
    y0, y1 = max(rows[0] - 1, 0), min(rows[-1] + 2, image.shape[0])
    x0, x1 = max(cols[0] - 1, 0), min(cols[-1] + 2, image.shape[1])
    x = image[None, y0:y1, x0:x1].copy()
    hole = hole_full[None, y0:y1, x0:x1]
    counts = full_counts[y0:y1, x0:x1]  # 4, or 2-3 on image edges
    # initial value: mean of the valid pixels bordering the holes
    border = (_neighbour_sum(hole.astype(np.float64)) > 0) & ~hole
    x[hole] = x[border].mean() if border.any() else image[~hole_full].mean()
    extent = max(y1 - y0, x1 - x0)
    omega = 2.0 / (1.0 + math.sin(math.pi / (extent + 1))) if method == "sor" else 1.0
    parity = (np.add.outer(np.arange(y0, y1), np.arange(x0, x1)) % 2).astype(bool)[None]
    colours = [hole & ~parity, hole & parity] if method == "sor" else [hole]
    for it in range(1, max_iter + 1):
        for sel in colours:
            avg = _neighbour_sum(x) / counts
            x[sel] += omega * (avg[sel] - x[sel])
        if it % 10 == 0 or it == max_iter:
            if np.abs(_neighbour_sum(x) / counts - x)[hole].max() < tol_uk:
                break
    return x[hole]


# --------------------------------------------------------------------------------------------
# biharmonic (scikit-image)
# --------------------------------------------------------------------------------------------
def biharmonic_fill(maps, masks, **_ignored) -> np.ndarray:
    """Biharmonic inpainting (``skimage.restoration.inpaint_biharmonic``): the hole solves

    .. math:: \\Delta^2 T = 0

    with the surrounding valid pixels as boundary values (exact for linear and many quadratic
    fields). One map at a time, float64.
    """
    from skimage.restoration import inpaint_biharmonic

    data, holes, out, out3 = _prepare(maps, masks)
    for i in range(data.shape[0]):
        if holes[i].any():
            filled = inpaint_biharmonic(data[i], holes[i])
            out3[i][holes[i]] = filled[holes[i]].astype(out.dtype)
    return out


# --------------------------------------------------------------------------------------------
# OpenCV
# --------------------------------------------------------------------------------------------
def _cv2_fill(maps, masks, flag: int, inpaint_radius_px: float) -> np.ndarray:
    import cv2

    data, holes, out, out3 = _prepare(maps, masks)
    for i in range(data.shape[0]):
        if holes[i].any():
            # cv2.inpaint accepts 1-channel float32 directly (no 8-bit quantisation); subtract the
            # valid mean so that float32 keeps ~1e-7 relative precision of the fluctuations.
            offset = data[i][~holes[i]].mean()
            src = (data[i] - offset).astype(np.float32)
            filled = cv2.inpaint(src, holes[i].astype(np.uint8), float(inpaint_radius_px), flag)
            out3[i][holes[i]] = (filled[holes[i]].astype(np.float64) + offset).astype(out.dtype)
    return out


def telea_fill(maps, masks, *, inpaint_radius_px: float = 3.0, **_ignored) -> np.ndarray:
    """OpenCV fast-marching inpainting (Telea 2004, ``cv2.INPAINT_TELEA``) on float32 maps.

    Each hole pixel, in order of distance from the boundary, is a weighted first-order Taylor
    extrapolation from known pixels within ``inpaint_radius_px``. ``cv2.inpaint`` takes 1-channel
    float32 input, so no quantisation happens: precision is float32 (~1e-7 relative).
    """
    import cv2

    return _cv2_fill(maps, masks, cv2.INPAINT_TELEA, inpaint_radius_px)


def navier_stokes_fill(maps, masks, *, inpaint_radius_px: float = 3.0, **_ignored) -> np.ndarray:
    """OpenCV Navier–Stokes inpainting (Bertalmio et al. 2001, ``cv2.INPAINT_NS``) on float32 maps.

    Isophote directions are propagated into the hole (fluid-dynamics analogy); float32 input,
    no quantisation.
    """
    import cv2

    return _cv2_fill(maps, masks, cv2.INPAINT_NS, inpaint_radius_px)


# --------------------------------------------------------------------------------------------
# mean
# --------------------------------------------------------------------------------------------
def mean_fill(maps, masks, **_ignored) -> np.ndarray:
    """Fill each map's holes with the mean of its valid pixels: :math:`T_h = \\langle T_v \\rangle`."""
    data, holes, out, out3 = _prepare(maps, masks)
    for i in range(data.shape[0]):
        if holes[i].any():
            out3[i][holes[i]] = out.dtype.type(data[i][~holes[i]].mean())
    return out


__all__ = ["diffusive_fill", "biharmonic_fill", "telea_fill", "navier_stokes_fill", "mean_fill"]
