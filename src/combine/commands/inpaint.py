"""``combine inpaint``: fill the holes of a map (patches, PNG image or full-sky HEALPix) with a model."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError

DESCRIPTION = """\
Fill the holes (mask = 0) of a map with a CoMBInE model. Valid pixels (mask = 1) of the output are
bit-identical to the input; only holes change. The file types follow the extensions:

  .fits / .fits.gz  full-sky HEALPix map (μK) and HEALPix mask; RING unless the header says
                    NESTED. Holes are projected onto gnomonic patches at the model's pixel size,
                    filled in batches and written back to exactly the masked pixels. The output
                    keeps the input's ordering, Nside, unit and header keywords. Masked pixels may
                    hold UNSEEN or NaN. A mask FITS in the other ordering is reordered.
  .npy              patches (H, W), (N, H, W) or (N, C, H, W) in μK with a mask that broadcasts;
                    images larger than the model's patch are tiled and blended. A 1-D .npy of
                    12*Nside^2 pixels is a HEALPix map (RING unless --nest).
  .png              grey-level image: level g in 0..255 is T = (g - 127.5) * scale μK (default
                    scale 500/127.5, i.e. black = -500 μK, white = +500 μK); mask PNG white =
                    valid, black = hole. A PNG output is clipped to the scale's range (warning);
                    write .npy to keep the filled values unclipped.

Bad input (shape or Nside mismatch, non-binary mask, NaN/UNSEEN in a valid pixel, a FITS that is
not a HEALPix map, a corrupt model directory, a model with another number of channels, a hole
too large for the model's patch) exits with status 2 and one line; no output is written."""


def register(subparsers, common):
    from ..image_io import PNG_SCALE_UK

    p = subparsers.add_parser(
        "inpaint",
        parents=[common],
        help="fill the holes of a map (.npy patches, .png image, .fits HEALPix) with a model",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="NAME|DIR", help="shipped model name or model directory")
    p.add_argument("--input", required=True, metavar="FILE", help="map: .fits/.fits.gz, .npy or .png")
    p.add_argument("--mask", required=True, metavar="FILE", help="mask (1 = valid, 0 = hole): .fits, .npy or .png")
    p.add_argument("--output", required=True, metavar="FILE", help="filled map: same kind as the input (.png <-> .npy allowed)")
    p.add_argument("--batch-size", type=int, default=16, help="patches per network call (default %(default)s)")
    p.add_argument("--nest", action="store_true",
                   help="HEALPix NESTED ordering for inputs that do not say (1-D .npy, FITS without ORDERING)")
    p.add_argument("--field", type=int, default=0, metavar="N",
                   help="column of a multi-column FITS map to inpaint (default 0; the output holds only it)")
    p.add_argument("--png-scale", type=float, default=PNG_SCALE_UK, metavar="UK",
                   help="μK per PNG grey level (default 500/127.5 = %(default).4f)")
    p.add_argument("--cluster-radius", type=float, default=None, metavar="PX",
                   help="HEALPix: holes within this many patch pixels of a larger one share its patch "
                        "(default: the usable patch radius; 0 = one patch per hole)")
    p.set_defaults(run=run)


def _check_args(args):
    if args.batch_size < 1:
        raise InputError(f"--batch-size: must be >= 1, got {args.batch_size}")
    if not (np.isfinite(args.png_scale) and args.png_scale > 0):
        raise InputError(f"--png-scale: must be > 0 μK per level, got {args.png_scale}")
    if args.field < 0:
        raise InputError(f"--field: must be >= 0, got {args.field}")
    if args.cluster_radius is not None and not (np.isfinite(args.cluster_radius) and args.cluster_radius >= 0):
        raise InputError(f"--cluster-radius: must be >= 0 px, got {args.cluster_radius}")
    from ..image_io import file_kind

    kinds = {name: file_kind(getattr(args, name)) for name in ("input", "mask", "output")}
    for name in ("input", "mask"):
        if not Path(getattr(args, name)).is_file():
            raise InputError(f"{getattr(args, name)}: no such file")
    return kinds


def _npy_ndim(path) -> int | None:
    """Number of dimensions of a .npy file from its header (None if unreadable: read_npy reports it)."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False).ndim
    except Exception:
        return None


def run(args):
    kinds = _check_args(args)
    healpix = kinds["input"] == "fits" or (kinds["input"] == "npy" and _npy_ndim(args.input) == 1)
    from ..models import load_model

    model = load_model(args.model)
    if healpix:
        summary = _run_healpix(args, kinds, model)
    else:
        summary = _run_patches(args, kinds, model)
    if not args.quiet:
        print(f"combine inpaint: {summary} -> {args.output}")
    return 0


# --------------------------------------------------------------------------------------------
# HEALPix
# --------------------------------------------------------------------------------------------
def _read_healpix(path, kind, field, nest_flag, what):
    """(values, nest, HealpixMap or None) of a map or mask file in HEALPix mode."""
    from ..image_io import read_healpix_fits, read_npy

    if kind == "fits":
        hm = read_healpix_fits(path, field=field if what == "map" else 0)
        if hm.ordering_in_header:
            if nest_flag and not hm.nest:
                raise InputError(f"--nest: {path} says ORDERING = RING")
            return hm.values, hm.nest, hm
        return hm.values, bool(nest_flag), hm
    if kind == "npy":
        arr = read_npy(path, ndims=(1,))
        return arr, None, None
    raise InputError(f"{path}: a HEALPix {what} must be .fits/.fits.gz or a 1-D .npy, not .{kind}")


def _run_healpix(args, kinds, model):
    import healpy as hp

    from ..healpix_inpaint import inpaint_healpix
    from ..image_io import write_healpix_fits, write_npy

    if kinds["output"] not in ("fits", "npy"):
        raise InputError(f"{args.output}: a HEALPix map is written as .fits/.fits.gz or .npy, not .{kinds['output']}")
    hmap, nest, meta = _read_healpix(args.input, kinds["input"], args.field, args.nest, "map")
    if nest is None:
        nest = bool(args.nest)
    hmask, mask_nest, _ = _read_healpix(args.mask, kinds["mask"], 0, False, "mask")
    if hmask.size != hmap.size:
        def nside_of(n):
            return hp.npix2nside(n) if hp.isnpixok(n) else f"? ({n} pixels)"
        raise InputError(f"{args.mask}: mask has Nside {nside_of(hmask.size)}, map {args.input} has Nside "
                         f"{nside_of(hmap.size)}")
    if mask_nest is not None and mask_nest != nest:
        bad = ~((hmask == 0) | (hmask == 1))
        if bad.any():  # reordering first would hide where the problem is; report it as is
            raise InputError(f"{args.mask}: mask is not binary ({int(bad.sum())} pixels other than 0 and 1)")
        hmask = hp.reorder(hmask, n2r=True) if mask_nest else hp.reorder(hmask, r2n=True)
    channels = int(getattr(model, "in_channels", 1))
    if channels != 1:
        raise InputError(f"{args.model}: model takes {channels} channels; {args.input} is a one-channel "
                         "(temperature) HEALPix map")
    n_holes = int(np.count_nonzero(hmask == 0))
    filled = inpaint_healpix(model, hmap, hmask, nest=nest, batch_size=args.batch_size, progress=True,
                             cluster_radius_px=args.cluster_radius, map_source=str(args.input),
                             mask_source=str(args.mask))
    del hmap, hmask
    if kinds["output"] == "fits":
        write_healpix_fits(
            args.output, filled, nest=nest,
            unit=meta.unit if meta is not None else "uK",
            column=meta.column if meta is not None else "T",
            header=meta.header if meta is not None else None,
            primary_header=meta.primary_header if meta is not None else None,
            history=f"combine inpaint: {n_holes} masked pixels filled with model {model.name}",
        )
    else:
        write_npy(args.output, filled)
    return f"filled {n_holes} masked pixels (Nside {hp.npix2nside(filled.size)}, {'NESTED' if nest else 'RING'})"


# --------------------------------------------------------------------------------------------
# patches and images
# --------------------------------------------------------------------------------------------
def _run_patches(args, kinds, model):
    from ..image_io import read_npy, read_png, read_png_mask, write_npy, write_png
    from ..validation import check_maps_and_masks

    if kinds["output"] not in ("npy", "png"):
        raise InputError(f"{args.output}: patches and images are written as .npy or .png, not .{kinds['output']}")
    if kinds["mask"] == "fits":
        raise InputError(f"{args.mask}: a FITS (HEALPix) mask does not fit patch input {args.input}")
    maps = read_png(args.input, scale_uk=args.png_scale) if kinds["input"] == "png" else read_npy(args.input)
    masks = read_png_mask(args.mask) if kinds["mask"] == "png" else read_npy(args.mask)
    _, mask_b = check_maps_and_masks(maps, masks, str(args.input), str(args.mask))
    n_holes = int(np.count_nonzero(mask_b == 0))
    del mask_b
    channels = maps.shape[1] if maps.ndim == 4 else 1
    if channels != model.in_channels:
        raise InputError(f"{args.input}: maps have {channels} channel(s), model {args.model} takes {model.in_channels}")
    if kinds["output"] == "png" and not (maps.ndim == 2 or maps.shape[:-2] in ((1,), (1, 1))):
        raise InputError(f"{args.output}: a PNG holds one image; input {args.input} has shape {maps.shape} (write .npy)")
    filled = model.inpaint(maps, masks, batch_size=args.batch_size)
    if kinds["output"] == "png":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            write_png(args.output, filled.reshape(filled.shape[-2:]), scale_uk=args.png_scale)
        for w in caught:
            if not args.quiet:
                sys.stderr.write(f"combine inpaint: warning: {w.message}\n")
    else:
        write_npy(args.output, filled)
    return f"filled {n_holes} hole pixels in {maps.shape} {'image' if maps.ndim == 2 else 'maps'}"
