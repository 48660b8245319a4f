"""``combine masks``: N binary masks (1 = valid, 0 = hole) into one ``.npy`` file, with a preview."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
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
sphere-points (or points with --nside N)
         a full-sky HEALPix point-source mask written as FITS (--out MASK.fits): a seeded
         Planck-like catalogue of --n sources (default 2000; uniform positions, Euclidean counts,
         radius r = r_min sqrt(1 + (2/9) ln(S/S_min)) with r_min = --radius arcmin, default 15',
         ~1.1 % of the sky), or the sources of --catalogue FILE (CSV lon, lat, radius_arcmin).
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
    p.add_argument("--kind", required=True, choices=("random", "circle", "points", "sphere-points", "files"),
                   help="mask generator")
    p.add_argument("--n", type=int, metavar="N", help="number of masks (sphere: of sources, default 2000)")
    p.add_argument("--out", required=True, metavar="MASKS.npy", help="output file (N, size, size) float32, or "
                                                                     "a HEALPix .fits for sphere masks")
    p.add_argument("--nside", type=int, default=None, help="HEALPix Nside of a sphere point-source mask")
    p.add_argument("--catalogue", metavar="CSV", help="sphere masks: sources lon, lat (deg), radius_arcmin")
    p.add_argument("--overwrite", action="store_true", help="sphere masks: replace an existing output")
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


def _check_disk(path: Path, n_bytes: int, what: str) -> None:
    """Refuse (before writing) an output larger than the free space of its file system."""
    import shutil

    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    if n_bytes > free:
        raise InputError(f"--n: {what} need {n_bytes / 1e9:.3g} GB on disk, only {free / 1e9:.3g} GB free in {parent}")


def _check_args(args) -> None:
    if args.n is None:
        raise InputError("--n: number of masks is required")
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
    _check_disk(out, args.n * args.size * args.size * 4 + 128, f"{args.n} masks of {args.size}² float32")
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


def _run_sphere(args):
    """``--kind sphere-points`` (or ``points --nside``): a HEALPix point-source mask FITS."""
    import healpy as hp

    from ..image_io import write_healpix_fits
    from ..sphere.point_sources import (DEFAULT_MIN_RADIUS_ARCMIN, DEFAULT_N_SOURCES, catalogue_mask,
                                        draw_catalogue, read_catalogue)

    if args.nside is None:
        raise InputError("--nside: a sphere point-source mask needs --nside")
    if not hp.isnsideok(args.nside, nest=True) or not 1 <= args.nside <= 8192:
        raise InputError(f"--nside: must be a power of 2 in 1..8192, got {args.nside}")
    for option, value in (("--center", args.center), ("--from", args.from_dir), ("--preview", args.preview)):
        if value is not None:
            raise InputError(f"{option}: does not apply to a sphere point-source mask")
    out = Path(args.out)
    if not str(out).lower().endswith((".fits", ".fits.gz")):
        raise InputError(f"--out {out}: a sphere mask is written as .fits or .fits.gz")
    if out.exists() and not args.overwrite:
        raise InputError(f"{out}: already exists (pass --overwrite to replace it)")
    npix = hp.nside2npix(args.nside)
    _check_disk(out, npix * 4 + 8640, f"an Nside {args.nside} mask ({npix} float32 pixels) would")
    if args.catalogue is not None:
        if args.n is not None or args.seed is not None or args.radius is not None:
            raise InputError("--catalogue: give either a catalogue or --n / --seed / --radius, not both")
        cat = read_catalogue(args.catalogue)
        seed = None
    else:
        n = DEFAULT_N_SOURCES if args.n is None else args.n
        if n < 1 or n > 10_000_000:
            raise InputError(f"--n: number of sources must be in 1..10000000, got {n}")
        if args.seed is not None and args.seed < 0:
            raise InputError(f"--seed: must be >= 0, got {args.seed}")
        seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % (2**63))
        cat = draw_catalogue(n, min_radius_arcmin=DEFAULT_MIN_RADIUS_ARCMIN if args.radius is None else args.radius,
                             seed=seed)
    mask = catalogue_mask(cat, args.nside)
    if mask.max() == 0:
        raise InputError(f"{args.catalogue or '--n'}: the sources cover the whole sky (no valid pixel)")
    write_healpix_fits(out, mask.astype(np.float32), nest=False, column="MASK",
                       history=f"combine masks --kind sphere-points: {len(cat)} sources"
                               + (f", seed {seed}" if seed is not None else f" from {args.catalogue}"))
    from ..progress import summary
    from ..sphere.holes import find_holes

    n_holes = find_holes(np.flatnonzero(mask == 0), args.nside)[0]
    src = f"seed {seed}" if seed is not None else f"catalogue {args.catalogue}"
    summary(f"wrote an Nside {args.nside} point-source mask to {out}: {len(cat)} sources, {n_holes} holes, "
            f"{100 * (1 - mask.mean()):.2f} % of the sky masked, radii {cat[:, 2].min():.1f}-{cat[:, 2].max():.1f}'; "
            f"{src}")
    return 0


def run(args):
    if args.kind == "sphere-points" or (args.kind == "points" and args.nside is not None):
        return _run_sphere(args)
    for option, value in (("--nside", args.nside), ("--catalogue", args.catalogue)):
        if value is not None:
            raise InputError(f"{option}: applies only to --kind sphere-points (or points with --nside)")
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
    from ..progress import summary

    spread = f" ± {hole_fraction.std():.3f}" if n > 1 else ""
    summary(f"wrote {n} {args.kind} masks ({size}×{size}) to {args.out}; hole fraction "
            f"{hole_fraction.mean():.3f}{spread}; seed {seed}")
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
