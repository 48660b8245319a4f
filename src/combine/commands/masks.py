"""``combine masks``: N binary masks (1 = valid, 0 = hole) into one ``.npy`` file, with a preview."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..sky.defaults import MIN_PATCH_SIZE, PATCH_SIZE

#: Largest mask side accepted (a 4096² float32 mask is 64 MB; beyond that the flat sky is moot).
MAX_SIZE = 4096

#: Default hole radius of ``--kind circle``, px.
DEFAULT_RADIUS_PX = 16.0

#: Masks drawn in the preview grid (at most).
PREVIEW_MASKS = 8

#: Largest side of one preview panel, px (larger masks are block-averaged for display).
PREVIEW_PANEL_PX = 256

DESCRIPTION = f"""\
Draw N masks (float32, 1 = observed, 0 = hole) of one kind and write them as an (N, size, size)
.npy file. The same --seed gives the same masks.

random   lines, circles and ellipses of random number, size and position (the original
         CoMBInE's masks); about 25% of the pixels are holes on average at any --size
         (shape sizes scale with the side).
circle   one disc of radius --radius px (default {DEFAULT_RADIUS_PX:g}) at --center X Y (column, row,
         in px; default the patch centre); the N masks are identical.
points   point-source holes: discs with diameters log-uniform in 3-30 arcmin at 1.7177'
         pixels, 1-20 per 128² patch (count scaled with the area); ~3% of the pixels.
files    masks read from --from DIR (*.png: white = valid; *.npy: 0/1), augmented as the
         original CoMBInE did: random rotation (1.5x zoom), random hole dilation, random crop.

--preview PNG draws up to {PREVIEW_MASKS} of the masks over one simulated planck18 CMB patch
(holes in grey)."""


def register(subparsers, common):
    p = subparsers.add_parser(
        "masks",
        parents=[common],
        help="draw binary masks (random shapes, circles, point sources, files) into a .npy file",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--kind", required=True, choices=("random", "circle", "points", "files"), help="mask generator")
    p.add_argument("--n", required=True, type=int, metavar="N", help="number of masks")
    p.add_argument("--out", required=True, metavar="MASKS.npy", help="output file (N, size, size) float32")
    p.add_argument("--size", type=int, default=PATCH_SIZE,
                   help=f"mask side in pixels, {MIN_PATCH_SIZE}..{MAX_SIZE} (default %(default)s)")
    p.add_argument("--radius", type=float, metavar="R",
                   help=f"--kind circle: hole radius in px (default {DEFAULT_RADIUS_PX:g})")
    p.add_argument("--center", type=float, nargs=2, metavar=("X", "Y"),
                   help="--kind circle: hole centre, px (column, row; 0 = first pixel centre; default the patch centre)")
    p.add_argument("--from", dest="from_dir", metavar="DIR", help="--kind files: directory of *.png / *.npy masks")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: fresh, printed)")
    p.add_argument("--preview", metavar="PNG", help="also draw sample masks over a simulated patch into this PNG")
    p.set_defaults(run=run)


# ------------------------------------------------------------------------------ checks
def _check_out_path(path: Path, option: str, suffix: str) -> None:
    if path.suffix.lower() != suffix:
        raise InputError(f"{option} {path}: must be a {suffix} file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a {suffix} file")
    parent = path.parent
    # an existing ancestor must be a writable directory (missing directories are created)
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{path}: directory {parent} is not writable")


def _check_args(args) -> None:
    if args.n < 1:
        raise InputError(f"--n: need at least one mask, got {args.n}")
    if not MIN_PATCH_SIZE <= args.size <= MAX_SIZE:
        raise InputError(f"--size: mask side must be in {MIN_PATCH_SIZE}..{MAX_SIZE} px, got {args.size}")
    if args.seed is not None and args.seed < 0:
        raise InputError(f"--seed: must be >= 0, got {args.seed}")
    if args.kind != "circle":
        for option, value in (("--radius", args.radius), ("--center", args.center)):
            if value is not None:
                raise InputError(f"{option}: applies only to --kind circle (got --kind {args.kind})")
    if args.kind != "files" and args.from_dir is not None:
        raise InputError(f"--from: applies only to --kind files (got --kind {args.kind})")
    if args.kind == "circle":
        r = DEFAULT_RADIUS_PX if args.radius is None else args.radius
        if not (math.isfinite(r) and r > 0):
            raise InputError(f"--radius: must be a positive number of pixels, got {r:g}")
        if r > args.size:
            raise InputError(f"--radius: {r:g} px is larger than the {args.size} px patch")
        if args.center is not None:
            x, y = args.center
            lo, hi = -0.5, args.size - 0.5
            if not all(math.isfinite(v) and lo <= v <= hi for v in (x, y)):
                raise InputError(f"--center: ({x:g}, {y:g}) is outside the patch (pixel coordinates "
                                 f"{lo:g}..{hi:g} for --size {args.size})")
    if args.kind == "files":
        if args.from_dir is None:
            raise InputError("--from: --kind files needs a directory of *.png / *.npy masks")
        if not Path(args.from_dir).is_dir():
            raise InputError(f"{args.from_dir}: mask directory does not exist")
    out = Path(args.out)
    _check_out_path(out, "--out", ".npy")
    if args.preview is not None:
        preview = Path(args.preview)
        _check_out_path(preview, "--preview", ".png")
        if preview.resolve() == out.resolve():
            raise InputError(f"--preview {preview}: same file as --out")


# ------------------------------------------------------------------------------ drawing
def mask_stream(kind: str, size: int, rng, *, radius_px=None, center=None, directory=None):
    """A function drawing the next mask of ``kind`` (the sequence ``generate_masks`` returns)."""
    from .. import masks as M

    if kind == "random":
        return lambda: M.random_shapes_mask(size, rng)
    if kind == "points":
        return lambda: M.point_source_mask(size, rng)
    if kind == "files":
        from ..progress import progress

        files = M.FileMasks(directory, size)
        files.validate(progress=lambda it: progress(it, desc="check files", unit="file"))
        return lambda: files.sample(rng)
    radius_px = DEFAULT_RADIUS_PX if radius_px is None else float(radius_px)
    one = M.circle_mask(size, radius_px, center)
    if one.min() == 1:
        raise InputError(f"--radius: {radius_px:g} px leaves no hole pixel (its nearest pixel lies outside the patch)")
    if one.max() == 0:
        raise InputError(f"--radius: the hole covers the whole {size}×{size} patch (no valid pixel)")
    return lambda: one


def _source(args) -> str:
    return args.from_dir if args.kind == "files" else f"--kind {args.kind}"


def run(args):
    _check_args(args)
    from ..atomic import atomic_path
    from ..progress import progress

    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % (2**63))
    rng = np.random.default_rng(seed)
    draw = mask_stream(args.kind, args.size, rng, radius_px=args.radius,
                       center=None if args.center is None else tuple(args.center), directory=args.from_dir)
    n, size = int(args.n), int(args.size)
    hole_fraction = np.empty(n)
    with contextlib.ExitStack() as stack:
        # both files go to temporary names; they appear only when both are complete
        tmp = stack.enter_context(atomic_path(Path(args.out)))
        tmp_png = stack.enter_context(atomic_path(Path(args.preview))) if args.preview else None
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, size, size))
        try:
            for i in progress(range(n), desc="masks", total=n, unit="mask"):
                mask = draw()
                if mask.max() == 0:
                    raise InputError(f"{_source(args)}: mask {i} (seed {seed}) has no valid pixel")
                out[i] = mask
                hole_fraction[i] = 1.0 - float(mask.mean(dtype=np.float64))
            out.flush()
            if tmp_png is not None:
                k = 1 if args.kind == "circle" else min(n, PREVIEW_MASKS)
                if args.kind == "circle":
                    r = DEFAULT_RADIUS_PX if args.radius is None else args.radius
                    where = "centred" if args.center is None else "at ({:g}, {:g})".format(*args.center)
                    title = f"circle r = {r:g} px {where}  ({size}×{size} px)"
                else:
                    title = f"combine masks --kind {args.kind}  ({size}×{size} px, seed {seed})"
                plot_mask_preview(tmp_png, np.asarray(out[:k]), seed=seed, title=title)
        finally:
            del out  # close the memory map before the rename
    if not args.quiet:
        spread = f" ± {hole_fraction.std():.3f}" if n > 1 else ""
        print(f"wrote {n} {args.kind} masks ({size}×{size}) to {args.out}; hole fraction "
              f"{hole_fraction.mean():.3f}{spread}; seed {seed}", file=sys.stdout)
    return 0


# ------------------------------------------------------------------------------ preview
def _block_mean(a: np.ndarray, factor: int) -> np.ndarray:
    h, w = a.shape[-2:]
    a = a[..., : h - h % factor, : w - w % factor]
    return a.reshape(a.shape[:-2] + (h // factor, factor, w // factor, factor)).mean(axis=(-3, -1))


def plot_mask_preview(path, masks: np.ndarray, *, seed: int = 0, title: str = "", labels=None,
                      ncol: int = 4) -> Path:
    """Draw ``masks`` (k, H, W) in a grid (``ncol`` wide) over one simulated planck18 CMB patch
    (seed ``seed``); holes grey. ``labels`` prefix the panel titles (default ``#i``).

    Masks larger than :data:`PREVIEW_PANEL_PX` are block-averaged for display (a partly masked
    display pixel is drawn partly grey, so one-pixel holes stay visible), and the CMB is then
    simulated directly at the display resolution (the same sky area, coarser pixels).
    """
    from matplotlib.colors import to_rgb
    from matplotlib.figure import Figure

    from ..sky.defaults import PIXEL_ARCMIN
    from ..sky.flat import simulate_flat_patches

    masks = np.asarray(masks, dtype=np.float32)
    k, size = masks.shape[0], masks.shape[-1]
    factor = max(1, -(-size // PREVIEW_PANEL_PX))
    if factor > 1:
        masks = _block_mean(masks, factor)
    side = masks.shape[-1]
    sky = simulate_flat_patches(1, side, pixel_arcmin=PIXEL_ARCMIN * size / side, seed=seed)[0]
    vmax = float(np.percentile(np.abs(sky), 99.5))
    grey = np.empty(masks.shape[1:] + (4,), np.float32)
    grey[..., :3] = to_rgb("0.55")
    ncol = min(k, int(ncol))
    nrow = -(-k // ncol)
    fig = Figure(figsize=(max(4.0, 2.4 * ncol + 0.9), 2.5 * nrow + (0.4 if title else 0.1)), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False)
    im = None
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i >= k:
            continue
        im = ax.imshow(sky, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        grey[..., 3] = 1.0 - masks[i]
        ax.imshow(grey, interpolation="nearest")
        label = f"#{i}" if labels is None else labels[i]
        ax.set_title(f"{label}: {100 * (1 - masks[i].mean()):.1f}% holes", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="T [μK]")
    path = Path(path)
    fig.savefig(path, format="png", dpi=100)
    return path
