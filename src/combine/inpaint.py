"""Inpainting images larger than the network's patch: overlapping tiles blended with smooth weights.

The original CoMBInE's ``ImageChunker`` cut a large image into overlapping chunks, inpainted each and
pasted them back. Here each tile's prediction enters with a smooth weight so that no seam appears
where one tile's prediction takes over from the next.

Scheme
------
Tiles have the model's patch side :math:`T` (``model.patch_size`` rounded up to a multiple of the
network's ``2**levels``). An image side :math:`L < T` is first padded to :math:`T` by reflection
(``numpy.pad(mode="symmetric")``: data and mask alike), and cropped back at the end. Along an
axis of length :math:`L \\ge T` the tile starts are

.. math::

    s_k = \\operatorname{round}\\Big(k\\,\\frac{L - T}{n - 1}\\Big), \\quad k = 0 \\ldots n-1,
    \\qquad n = \\Big\\lceil \\frac{L - T}{T - o} \\Big\\rceil + 1,

so neighbouring tiles overlap by at least :math:`o` (``overlap_px``, default :math:`T/4`) and
the first and last tiles touch the image edges. Tile :math:`k` carries the separable weight
:math:`w_k(i, j) = r_k(i)\\, c_k(j)`, where along each axis the window rises over the first
:math:`o` pixels and falls over the last :math:`o` pixels as a raised cosine,

.. math::

    r(t) = \\sin^2\\!\\Big(\\frac{\\pi}{2}\\,\\frac{t + 1/2}{o}\\Big), \\quad 0 \\le t < o,

and is 1 elsewhere and on any side that lies on the image edge (where no other tile takes
over). The raw prediction of the whole image is the weighted mean

.. math::

    P(i, j) = \\frac{\\sum_k w_k(i, j)\\, P_k(i - s^{row}_k, j - s^{col}_k)}{\\sum_k w_k(i, j)},

which is a partition of unity (a prediction that is the same in every tile comes back exactly)
and continuous across tile edges up to :math:`r(0) = \\sin^2(\\pi/4o)` (6·10⁻⁴ of the
difference between neighbouring predictions for :math:`o = 32`).

Tiles without a valid pixel
---------------------------
The network cannot fill a tile that is all hole. Such tiles are skipped in a first pass. If
some pixels are then covered by no tile (a hole wider than a tile), the composite of the first
pass (input where valid, blended prediction where filled) becomes the input of a second pass in
which the filled pixels count as valid, and the skipped tiles that now hold a filled pixel are
predicted; this repeats, filling large holes from their edges inwards, until every pixel is
covered. Each pass fills at least one more tile as long as the image has a valid pixel, so the
loop ends; the result never holds NaN.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InputError


def _size_multiple(model) -> int:
    """Sides the model accepts are multiples of this (``2**levels`` for a PConvUNet)."""
    unet = getattr(model, "unet", None)
    if unet is not None and hasattr(unet, "input_size_multiple"):
        return int(unet.input_size_multiple)
    return int(getattr(model, "input_size_multiple", 1))


def tile_size(model) -> int:
    """Tile side used for ``model``: its ``patch_size`` rounded up to a multiple it accepts."""
    multiple = _size_multiple(model)
    return int(math.ceil(int(model.patch_size) / multiple) * multiple)


def tile_starts(length: int, tile: int, overlap_px: int) -> np.ndarray:
    """Start indices of tiles of side ``tile`` covering ``[0, length)`` with overlap >= ``overlap_px``.

    .. math::

        n = \\lceil (L - T)/(T - o) \\rceil + 1, \\qquad s_k = \\operatorname{round}(k (L - T)/(n - 1))

    ``length >= tile`` is required (pad smaller images first).
    """
    if length < tile:
        raise ValueError(f"length {length} < tile {tile}: pad first")
    if length == tile:
        return np.zeros(1, dtype=np.int64)
    stride = tile - overlap_px
    n = int(math.ceil((length - tile) / stride)) + 1
    return np.rint(np.arange(n) * (length - tile) / (n - 1)).astype(np.int64)


def ramp_window(tile: int, overlap_px: int, *, rise: bool, fall: bool) -> np.ndarray:
    """One-dimensional tile weight: raised-cosine ramps of ``overlap_px`` pixels, 1 elsewhere.

    .. math:: r(t) = \\sin^2\\big(\\tfrac{\\pi}{2}\\,(t + \\tfrac12)/o\\big), \\quad 0 \\le t < o

    on the first ``overlap_px`` pixels if ``rise`` and mirrored on the last ones if ``fall``.
    Every value is > 0, so pixels covered by a single tile keep a defined weight.
    """
    w = np.ones(tile, dtype=np.float64)
    o = min(int(overlap_px), tile // 2)
    if o > 0:
        ramp = np.sin(0.5 * np.pi * (np.arange(o) + 0.5) / o) ** 2
        if rise:
            w[:o] = ramp
        if fall:
            w[tile - o:] = ramp[::-1]
    return w


def _pad_to(x: np.ndarray, tile: int):
    """Pad the last two axes of ``x`` to at least ``tile`` by reflection; return padded, crop slices."""
    h, w = x.shape[-2:]
    ph, pw = max(tile - h, 0), max(tile - w, 0)
    if ph == 0 and pw == 0:
        return x, (slice(0, h), slice(0, w))
    before = (ph // 2, pw // 2)
    pads = [(0, 0)] * (x.ndim - 2) + [(before[0], ph - before[0]), (before[1], pw - before[1])]
    # "symmetric" repeats the edge pixel; numpy reflects repeatedly if the pad exceeds the side
    return np.pad(x, pads, mode="symmetric"), (slice(before[0], before[0] + h), slice(before[1], before[1] + w))


def inpaint_tiled(model, x_nchw, m_nchw, *, batch_size: int = 16, overlap_px: int | None = None) -> np.ndarray:
    """Raw prediction (N, C, H, W) float32 for images of any size, from overlapping blended tiles.

    Parameters
    ----------
    model
        Anything with ``patch_size`` and ``predict(x_nchw, m_nchw, batch_size) -> (n, C, T, T)``
        (a :class:`combine.models.InpaintingModel`); tile sides are ``patch_size`` rounded up to a
        multiple of ``model.unet.input_size_multiple`` (or ``model.input_size_multiple``).
    x_nchw : ndarray (N, C, H, W)
        Maps in μK; hole values are never used (may be NaN).
    m_nchw : ndarray (N, 1, H, W) or (N, C, H, W)
        Binary masks, 1 = valid. Every image needs at least one valid pixel.
    batch_size : int
        Tiles per call of ``model.predict``.
    overlap_px : int, optional
        Minimum overlap of neighbouring tiles and width of the blending ramps; default
        ``T // 4`` (32 px for 128-px tiles). 0 abuts the tiles without blending.

    Returns
    -------
    ndarray (N, C, H, W) float32
        The blended prediction at every pixel (see the module docstring for the weights and for
        tiles that hold no valid pixel). Callers composite: valid pixels from the input,
        holes from this.

    Examples
    --------
    >>> pred = inpaint_tiled(model, maps[:, None], masks[:, None])      # doctest: +SKIP
    >>> filled = np.where(masks[:, None] > 0, maps[:, None], pred)       # doctest: +SKIP
    """
    x = np.asarray(x_nchw)
    m = np.asarray(m_nchw)
    if x.ndim != 4 or m.ndim != 4 or m.shape[0] != x.shape[0] or m.shape[2:] != x.shape[2:] \
            or m.shape[1] not in (1, x.shape[1]):
        raise InputError(f"maps: need (N, C, H, W) maps and (N, 1|C, H, W) masks, got {x.shape} and {m.shape}")
    if int(batch_size) < 1:
        raise InputError(f"batch_size: must be >= 1, got {batch_size!r}")
    tile = tile_size(model)
    overlap = tile // 4 if overlap_px is None else int(overlap_px)
    if not 0 <= overlap < tile:
        raise InputError(f"overlap_px: must lie in [0, {tile - 1}] for {tile}-px tiles, got {overlap_px!r}")
    n, c, h, w = x.shape
    valid = m > 0
    if not valid.reshape(n, -1).any(axis=1).all():
        raise InputError("mask: an image has no valid (=1) pixel; nothing to inpaint from")
    xp, crop = _pad_to(np.where(valid, x, 0.0).astype(np.float32), tile)
    vp, _ = _pad_to(valid, tile)
    hp_, wp_ = xp.shape[-2:]
    rows, cols = tile_starts(hp_, tile, overlap), tile_starts(wp_, tile, overlap)
    win_r = [ramp_window(tile, overlap, rise=r > 0, fall=r + tile < hp_) for r in rows]
    win_c = [ramp_window(tile, overlap, rise=q > 0, fall=q + tile < wp_) for q in cols]
    tiles = [(i, a, b) for i in range(n) for a in range(len(rows)) for b in range(len(cols))]

    acc = np.zeros((n, c, hp_, wp_), dtype=np.float64)
    wsum = np.zeros((n, 1, hp_, wp_), dtype=np.float64)
    todo = tiles
    inputs, known = xp, vp  # known: valid or already filled (from the second pass on)
    while todo:
        ready = [t for t in todo if known[t[0], :, rows[t[1]]:rows[t[1]] + tile,
                                         cols[t[2]]:cols[t[2]] + tile].reshape(known.shape[1], -1).any(axis=1).all()]
        if not ready:  # cannot happen while every image has a valid pixel
            raise RuntimeError("inpaint_tiled: no tile can be filled")
        chunk = max(int(batch_size), 1) * 4
        for k in range(0, len(ready), chunk):
            part = ready[k:k + chunk]
            xt = np.stack([inputs[i, :, rows[a]:rows[a] + tile, cols[b]:cols[b] + tile] for i, a, b in part])
            mt = np.stack([known[i, :, rows[a]:rows[a] + tile, cols[b]:cols[b] + tile] for i, a, b in part])
            pred = np.asarray(model.predict(xt, mt.astype(np.float32), batch_size=int(batch_size)))
            for (i, a, b), p in zip(part, pred):
                wt = np.outer(win_r[a], win_c[b])
                sl = (i, slice(None), slice(rows[a], rows[a] + tile), slice(cols[b], cols[b] + tile))
                acc[sl] += wt * p
                wsum[sl] += wt
        done = set(ready)
        todo = [t for t in todo if t not in done]
        if todo:  # next pass: pixels filled so far count as known
            blended = acc / np.where(wsum > 0, wsum, 1.0)
            inputs = np.where(vp, xp, blended).astype(np.float32)
            known = vp | (wsum > 0)
            # tiles already predicted from the original data keep their prediction; only the
            # skipped ones run again, now with the filled ring around them as context
    out = acc / wsum
    return out[..., crop[0], crop[1]].astype(np.float32)


__all__ = ["inpaint_tiled", "tile_starts", "ramp_window", "tile_size"]
