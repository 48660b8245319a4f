"""Mask generators: random shapes, circles, point sources and masks read from files.

Convention (docs/DESIGN.md): a mask is float32 (H, W) with 1 = observed (valid) and 0 = hole.
Shapes are drawn with OpenCV as in the original CoMBInE (its ``MaskGenerator``), which drew
lines, circles and ellipses on a canvas and inverted it.

Generators
----------
* :func:`random_shapes_mask` — lines, circles and ellipses of random number, size and position.
  Shape sizes scale with the patch side, so a 512² mask looks like a 128² mask magnified.
* :func:`circle_mask` — one disc of chosen centre and radius, the round(π r²) pixels nearest the
  centre (the original analysis swept centred radii 5 … 65 px).
* :func:`point_source_mask` — many small discs, diameters log-uniform in 3–30 arcmin
  (Planck-like point-source holes), number per patch uniform in 1 … 20 per 128² patch.
* :func:`masks_from_files` / :class:`FileMasks` — PNG or NPY masks from a directory (strictly
  binary: the one rule of :func:`combine.image_io.read_mask_file`), augmented
  as the original CoMBInE did (random rotation with 1.5× zoom, random hole dilation, random crop).
* :class:`MaskSampler` — draws one mask from a probability mix of the above (training).

Every generator takes a ``numpy.random.Generator`` so that a mask is a pure function of its seed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import InputError
from .sky.defaults import PIXEL_ARCMIN

#: Reference side (px) at which shape sizes are specified; they scale by ``size / 128``.
REFERENCE_SIZE = 128

#: Random shapes are drawn on a canvas at least this many px across, then block-averaged to
#: the mask size, so that their coverage does not depend on the mask size.
SHAPE_CANVAS_MIN = 512

#: Point-source hole diameters, arcmin (log-uniform): Planck point-source holes are 3–30'.
POINT_DIAMETER_ARCMIN = (3.0, 30.0)

#: Point sources per 128² patch: uniform integer in this range (scaled by area).
POINTS_PER_REFERENCE_PATCH = (1, 20)

#: Training circles: radius log-uniform in this range (px at 128², scaled with size).
CIRCLE_RADIUS_PX = (2.0, 40.0)

KINDS = ("random", "circle", "points", "files")


def _check_size(size) -> int:
    size = int(size)
    if size < 8:
        raise InputError(f"--size: mask side must be at least 8 px, got {size}")
    return size


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def random_shapes_mask(size: int = 128, rng=None) -> np.ndarray:
    """Random lines, circles and ellipses (the original CoMBInE's random mask), 1 = valid.

    Between 1 and 12 shapes of each kind, at uniform integer positions; in units of
    ``size/128`` px, line and ellipse thickness is uniform in 2…7, circle radii 2…7.5, ellipse
    semi-axes 2…48, with random angle and an arc of 30…360°. The original drew 1–20 of each
    with ``size = 0.03·(W+H)``, which covers ~45% of a 128² patch; the numbers here are tuned
    to the ~25% its README states.

    The shapes are drawn on a canvas of at least :data:`SHAPE_CANVAS_MIN` px (``size`` times an
    odd integer factor) and block-averaged down, a pixel being a hole if more than half of it
    is covered. OpenCV's rasterisation widens thin shapes by about a pixel, a large fraction of
    a 2-px line at 128² (drawn directly, 1–9 shapes of each kind covered 0.241 of a 128² mask on
    average but 0.207 of a 512² one); on the fine canvas the mask is the same continuous figure
    at every size, so a 512² mask is a 128² mask magnified.

    Measured hole fraction (seed 1): 128², 10,000 masks: mean 0.249, standard deviation 0.081,
    5–95% range 0.11–0.38; 512², 2,000 masks: mean 0.251, standard deviation 0.081 (256²:
    0.244 ± 0.003, 64²: 0.248 ± 0.003). ``tests/test_masks.py`` checks the means at 128² and
    512². Drawing a 128² mask takes about 1 ms.
    """
    size = _check_size(size)
    rng = _rng(rng)
    factor = -(-SHAPE_CANVAS_MIN // size)  # integer block averaging ...
    factor += 1 - factor % 2  # ... over an odd number of sub-pixels: no pixel half covered
    side = size * factor
    s = side / REFERENCE_SIZE
    canvas = np.zeros((side, side), np.uint8)

    def xy():
        return int(rng.integers(0, side)), int(rng.integers(0, side))

    def px(lo, hi):
        return max(1, int(round(rng.uniform(lo, hi) * s)))

    for _ in range(int(rng.integers(1, 13))):
        cv2.line(canvas, xy(), xy(), 1, px(2, 7))
    for _ in range(int(rng.integers(1, 13))):
        cv2.circle(canvas, xy(), px(2, 7.5), 1, -1)
    for _ in range(int(rng.integers(1, 13))):
        start = float(rng.uniform(0, 360))
        cv2.ellipse(canvas, xy(), (px(2, 48), px(2, 48)), float(rng.uniform(0, 180)), start,
                    start + float(rng.uniform(30, 360)), 1, px(2, 7))
    if factor > 1:
        covered = cv2.resize(canvas.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
        return (covered < 0.5).astype(np.float32)
    return (1 - canvas).astype(np.float32)


def circle_mask(size: int = 128, radius_px: float = 16.0, center=None) -> np.ndarray:
    """One circular hole: the ``n = round(π r²)`` pixels nearest the centre are 0, the rest 1.

    ``center`` is ``(x, y)`` in pixels (column, row), default the patch centre
    ``((size − 1)/2, (size − 1)/2)``; it may be anywhere, on or off the patch.

    Rule: pixels are ranked by the distance of their centres from ``center`` on the unbounded
    pixel lattice, and the first ``n`` form the hole, so that

        |hole| = n = round(π r²)   (half up; at least 1, so any r > 0 makes a hole)

    and the area is within half a pixel of π r² (within 2% for r ≥ 4 px; ``tests/test_masks.py``
    checks r = 4…63 px at 128² and 129²). Every hole pixel is at least as near the centre as
    every valid pixel; the hole contains every pixel within r − 1 and none beyond r + 1 (lattice
    counting bounds). Pixels at the same distance as the n-th are taken in order of angle
    (``atan2``, then position), spread evenly over that ring when only some of them are needed.
    A centred hole is therefore symmetric (under both flips and the transpose) except for this
    last, partial ring, which keeps its centroid near the centre. (A hole of all pixel centres
    within r, as before, enters in whole rings of 4 or 8 pixels: up to 9% off π r² at r = 5.)

    A disc cut by the patch edge keeps only its in-patch pixels among the n nearest: its area is
    then smaller than π r² by the part outside. For a disc edge crossing the patch with r more
    than about twice the patch side (box of candidates over ``(4·size + 8)²`` pixels), the hole
    is all pixel centres within r instead, to bound the work (a negligible difference there).
    Takes about 0.1 ms for r = 16 px, a few ms for r = 256 px at 512².
    """
    size = _check_size(size)
    radius_px = float(radius_px)
    if not np.isfinite(radius_px) or radius_px <= 0:
        raise InputError(f"--radius: must be a positive number of pixels, got {radius_px}")
    cx, cy = ((size - 1) / 2.0,) * 2 if center is None else (float(center[0]), float(center[1]))
    if not (np.isfinite(cx) and np.isfinite(cy)):
        raise InputError(f"--center: must be finite pixel coordinates, got ({cx}, {cy})")
    mask = np.ones((size, size), np.float32)
    reach = radius_px + 1.0  # the n nearest pixels all lie within r + 1 of the centre
    x0, x1 = int(np.ceil(cx - reach)), int(np.floor(cx + reach))
    y0, y1 = int(np.ceil(cy - reach)), int(np.floor(cy + reach))
    if x1 < 0 or y1 < 0 or x0 >= size or y0 >= size:
        return mask  # the disc misses the patch
    far = np.hypot(max(cx, size - 1 - cx), max(cy, size - 1 - cy))
    if far <= radius_px - 1.0:
        return np.zeros_like(mask)  # every pixel within r − 1: all hole
    if (x1 - x0 + 1) * (y1 - y0 + 1) > (4 * size + 8) ** 2:
        yy, xx = np.ogrid[0:size, 0:size]
        return ((xx - cx) ** 2 + (yy - cy) ** 2 > radius_px ** 2).astype(np.float32)
    dx = np.arange(x0, x1 + 1, dtype=np.float64) - cx
    dy = np.arange(y0, y1 + 1, dtype=np.float64) - cy
    d2 = dy[:, None] ** 2 + dx[None, :] ** 2  # the box of candidates, (rows, columns)
    flat = d2.ravel()
    n = min(max(1, int(np.floor(np.pi * radius_px ** 2 + 0.5))), flat.size)
    last = np.partition(flat, n - 1)[n - 1]  # distance² of the n-th nearest pixel
    hole = d2 < last
    tied = np.flatnonzero(flat == last)
    need = n - int(np.count_nonzero(hole))
    if need >= tied.size:
        pick = tied
    else:  # part of the last ring: evenly spaced in angle, starting from atan2 = −π
        iy, ix = np.divmod(tied, d2.shape[1])
        ring = tied[np.lexsort((tied, np.arctan2(dy[iy], dx[ix])))]
        pick = ring[((2 * np.arange(need) + 1) * ring.size) // (2 * need)]
    hole.ravel()[pick] = True
    # write the in-patch part of the box
    px0, px1, py0, py1 = max(x0, 0), min(x1, size - 1), max(y0, 0), min(y1, size - 1)
    mask[py0:py1 + 1, px0:px1 + 1] = ~hole[py0 - y0:py1 - y0 + 1, px0 - x0:px1 - x0 + 1]
    return mask


def point_source_mask(size: int = 128, rng=None, *, pixel_arcmin: float = PIXEL_ARCMIN, n_sources=None,
                      diameter_arcmin=POINT_DIAMETER_ARCMIN) -> np.ndarray:
    """Many small discs (point-source holes), 1 = valid.

    Diameters ``d`` are log-uniform in ``diameter_arcmin`` (default 3–30'), i.e. density
    ∝ 1/d, so most holes are small as in Planck's point-source masks; centres are uniform
    over the patch. ``n_sources`` defaults to a uniform integer in 1…20 per 128² patch,
    scaled by the area. A pixel is a hole if its centre lies within a disc (radius at least
    half a pixel).

    Measured with the default 1.7177' pixels: a 3' hole covers 1–4 px, a 30' hole ≈ 240 px
    (π r², r = 8.7 px); hole fraction at 128² mean 0.031, standard deviation 0.021 (2,000
    masks), at 512² mean 0.033 (scaled source counts). At 0.5' pixels the equivalent
    diameters of 363 isolated holes span 2.99–29.96' with median 9.5' (log-uniform: √(3·30) =
    9.49'); ``tests/test_masks.py`` checks this distribution.
    """
    size = _check_size(size)
    rng = _rng(rng)
    if n_sources is None:
        area = (size / REFERENCE_SIZE) ** 2
        lo, hi = POINTS_PER_REFERENCE_PATCH
        n_sources = int(rng.integers(max(1, round(lo * area)), max(1, round(hi * area)) + 1))
    d_lo, d_hi = (float(v) for v in diameter_arcmin)
    diam = np.exp(rng.uniform(np.log(d_lo), np.log(d_hi), int(n_sources)))
    radius_px = 0.5 * diam / float(pixel_arcmin)
    cx = rng.uniform(0, size, int(n_sources)) - 0.5
    cy = rng.uniform(0, size, int(n_sources)) - 0.5
    pix = np.arange(size, dtype=np.float64)
    hole = np.zeros((size, size), bool)
    for x, y, r in zip(cx, cy, radius_px):
        # bounding box only: cheap for many small discs
        x0, x1 = max(0, int(x - r) - 1), min(size, int(x + r) + 2)
        y0, y1 = max(0, int(y - r) - 1), min(size, int(y + r) + 2)
        if x0 >= x1 or y0 >= y1:
            continue
        sub = (pix[None, x0:x1] - x) ** 2 + (pix[y0:y1, None] - y) ** 2 < max(r, 0.5) ** 2
        hole[y0:y1, x0:x1] |= sub
    return (~hole).astype(np.float32)


def random_circle_mask(size: int = 128, rng=None, radius_px=CIRCLE_RADIUS_PX) -> np.ndarray:
    """One disc with radius log-uniform in ``radius_px`` (px at 128², scaled) and a centre
    uniform over the central half of the patch (so the hole lies mostly inside it)."""
    size = _check_size(size)
    rng = _rng(rng)
    s = size / REFERENCE_SIZE
    r = float(np.exp(rng.uniform(np.log(radius_px[0]), np.log(radius_px[1])))) * s
    c = rng.uniform(size * 0.25, size * 0.75, 2) - 0.5
    return circle_mask(size, r, center=(c[0], c[1]))


# --------------------------------------------------------------------------------- files
def _read_mask_file(path: Path) -> np.ndarray:
    """A 2-D mask file as uint8 0/1 (1 = valid), by the one rule of
    :func:`combine.image_io.read_mask_file` (strictly binary; grey PNG levels are an error)."""
    from .image_io import read_mask_file

    arr = np.squeeze(read_mask_file(path))
    if arr.ndim != 2:
        raise InputError(f"{path}: mask must be 2-D, got shape {arr.shape}")
    return arr.astype(np.uint8)


class FileMasks:
    """Masks read from a directory of ``*.png`` / ``*.npy`` files (1/white = valid), augmented.

    Augmentation, as the original CoMBInE (after Liu et al.): rotate by a uniform angle in
    [−180°, 180°) with zoom 1.5 (``cv2.getRotationMatrix2D``; pixels rotated in from outside
    are valid), dilate the holes with a square kernel of side uniform in 1 … ``max_dilation_px``
    (``cv2.erode`` of the valid region), then crop a random ``size``² window (images smaller
    than ``size`` are first resized up with nearest-neighbour sampling).

    Files are read when first drawn and kept in memory (one byte per pixel) up to
    ``cache_bytes``; :meth:`validate` reads every file once, so that a bad file is reported
    before any work rather than when it happens to be drawn.
    """

    def __init__(self, directory, size: int = 128, *, max_dilation_px: int = 5,
                 cache_bytes: int = 512 * 2**20):
        directory = Path(directory)
        if not directory.is_dir():
            raise InputError(f"{directory}: mask directory does not exist")
        self.files = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".png", ".npy"))
        if not self.files:
            raise InputError(f"{directory}: no .png or .npy mask files")
        self.size, self.max_dilation_px = _check_size(size), int(max_dilation_px)
        self.cache_bytes = int(cache_bytes)
        self._cache: dict[Path, np.ndarray] = {}
        self._cached_bytes = 0

    def _load(self, path):
        mask = self._cache.get(path)
        if mask is None:
            mask = _read_mask_file(path)
            if self._cached_bytes + mask.nbytes <= self.cache_bytes:
                self._cache[path] = mask
                self._cached_bytes += mask.nbytes
        return mask

    def validate(self, progress=None) -> None:
        """Read every file once (InputError naming the first bad one, or one with no valid pixel).

        ``progress`` optionally wraps the file list (e.g. :func:`combine.progress.progress`).
        """
        for path in (progress(self.files) if progress else self.files):
            if not self._load(path).any():
                raise InputError(f"{path}: mask has no valid (=1) pixel")

    def sample(self, rng=None) -> np.ndarray:
        """One augmented mask (size, size) float32 from a random file."""
        rng = _rng(rng)
        mask = self._load(self.files[int(rng.integers(len(self.files)))])
        h, w = _upsized_shape(mask.shape, self.size)
        angle = float(rng.uniform(-180, 180))
        k = int(rng.integers(1, self.max_dilation_px + 1))
        y0 = int(rng.integers(0, h - self.size + 1))
        x0 = int(rng.integers(0, w - self.size + 1))
        return augment_mask(mask, self.size, angle_deg=angle, dilation_px=k, crop_yx=(y0, x0))


def _upsized_shape(shape, size: int) -> tuple[int, int]:
    h, w = shape
    if min(h, w) >= size:
        return h, w
    f = size / min(h, w)
    return max(size, round(h * f)), max(size, round(w * f))


def augment_mask(mask, size: int, *, angle_deg: float = 0.0, dilation_px: int = 1, crop_yx=(0, 0),
                 zoom: float = 1.5) -> np.ndarray:
    """The original CoMBInE's mask augmentation with explicit parameters (1 = valid).

    ``mask`` (H, W) 0/1 is first resized up (nearest neighbour) if a side is under ``size``,
    rotated by ``angle_deg`` about its centre with magnification ``zoom`` (pixels from outside
    the image are valid), its holes dilated by a ``dilation_px``² square (no change for 1), and
    the ``size``² window at ``crop_yx`` (row, column of its top-left pixel) returned as float32.
    """
    mask = (np.asarray(mask) > 0).astype(np.uint8)
    h, w = _upsized_shape(mask.shape, size)
    if (h, w) != mask.shape:
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), float(angle_deg), float(zoom))
    mask = cv2.warpAffine(mask, rot, (w, h), flags=cv2.INTER_NEAREST, borderValue=1)
    if int(dilation_px) > 1:
        mask = cv2.erode(mask, np.ones((int(dilation_px),) * 2, np.uint8))
    y0, x0 = (int(v) for v in crop_yx)
    if not (0 <= y0 <= h - size and 0 <= x0 <= w - size):
        raise ValueError(f"crop {crop_yx} outside the {h}×{w} mask for a {size}² window")
    return (mask[y0:y0 + size, x0:x0 + size] > 0).astype(np.float32)


def masks_from_files(directory, n: int, size: int = 128, seed=None) -> np.ndarray:
    """``n`` augmented masks (n, size, size) from a directory of PNG/NPY files (see FileMasks)."""
    fm = FileMasks(directory, size)
    rng = _rng(seed)
    return np.stack([fm.sample(rng) for _ in range(int(n))])


# --------------------------------------------------------------------------------- sampling
class MaskSampler:
    """Draw one mask from a mix of generators: ``MaskSampler(mix, size, rng).sample()``.

    ``mix`` maps a kind to its probability (normalised): ``random`` (random shapes),
    ``circle`` (one disc, :func:`random_circle_mask`), ``points`` (point sources) or
    ``files:DIR`` (augmented masks from a directory).
    """

    def __init__(self, mix: dict, size: int = 128, rng=None):
        if not mix:
            raise InputError("mask mix is empty")
        self.size, self.rng = _check_size(size), _rng(rng)
        self.kinds, probs = [], []
        self._files = {}
        for kind, p in dict(mix).items():
            p = float(p)
            if not np.isfinite(p) or p < 0:
                raise InputError(f"mask kind {kind!r}: probability must be >= 0, got {p}")
            if kind.startswith("files:"):
                self._files[kind] = FileMasks(kind[len("files:"):], self.size)
            elif kind not in ("random", "circle", "points"):
                raise InputError(f"unknown mask kind {kind!r} (expected random, circle, points or files:DIR)")
            self.kinds.append(kind)
            probs.append(p)
        total = sum(probs)
        if total <= 0:
            raise InputError(f"mask mix {dict(mix)} has no positive probability")
        self.probs = np.asarray(probs) / total

    def sample(self) -> np.ndarray:
        kind = self.kinds[int(self.rng.choice(len(self.kinds), p=self.probs))] if len(self.kinds) > 1 else self.kinds[0]
        if kind == "random":
            return random_shapes_mask(self.size, self.rng)
        if kind == "circle":
            return random_circle_mask(self.size, self.rng)
        if kind == "points":
            return point_source_mask(self.size, self.rng)
        return self._files[kind].sample(self.rng)


def generate_masks(kind: str, n: int, size: int = 128, *, seed=None, radius_px: float = 16.0,
                   center=None, directory=None) -> np.ndarray:
    """``n`` masks (n, size, size) float32 of one kind: ``random``, ``circle`` (fixed
    ``radius_px`` and ``center``), ``points`` or ``files`` (from ``directory``)."""
    n = int(n)
    if n < 1:
        raise InputError(f"--n: need at least one mask, got {n}")
    size = _check_size(size)
    rng = _rng(seed)
    if kind == "random":
        return np.stack([random_shapes_mask(size, rng) for _ in range(n)])
    if kind == "circle":
        return np.repeat(circle_mask(size, radius_px, center)[None], n, axis=0)
    if kind == "points":
        return np.stack([point_source_mask(size, rng) for _ in range(n)])
    if kind == "files":
        if directory is None:
            raise InputError("--from: kind 'files' needs a directory of PNG/NPY masks")
        return masks_from_files(directory, n, size, rng)
    raise InputError(f"--kind: unknown mask kind {kind!r} (expected one of {', '.join(KINDS)})")
