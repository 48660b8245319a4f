"""``combine inpaint``: fill the holes of a map (patches, PNG image or full-sky HEALPix) with a
model or a classical method."""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError

#: Methods computed on the sphere for HEALPix maps (the others go through gnomonic patches).
SPHERE_METHODS = {"wiener": "mean", "lwiener": "mean", "gcr": "draw"}

DESCRIPTION = """\
Fill the holes (mask = 0) of a map with a CoMBInE model (--model) or a classical method
(--method). Valid pixels (mask = 1) of the output are bit-identical to the input; only holes
change. The file types follow the extensions:

  .fits / .fits.gz  full-sky HEALPix map and HEALPix mask; RING unless the header says NESTED.
                    Planck-format multi-column maps (I_STOKES, Q_STOKES, HITS, II_COV, ...): the
                    column to fill is --column (name or index, default 0); the output keeps every
                    column, the ordering, the unit (TUNIT: K, K_CMB, mK, uK, uK_CMB, μK; converted
                    to μK for the fill and back) and the header, plus COMBSKY (the sky assumed, JSON)
                    and COMBMETH keywords. A map without TUNIT is in μK, unless --unit says
                    otherwise; one whose rms looks like kelvin (< 1e-2) is refused without --unit.
                    --method wiener / lwiener: exact conditional mean of each hole computed on the
                    sphere at the true pixel positions; --method gcr: a constrained realisation
                    (that mean plus a seeded draw from the exact conditional covariance). Other
                    methods and --model: holes projected onto gnomonic patches, filled, written back.
  --fields TQU      a HEALPix T, Q, U map: the columns I_STOKES, Q_STOKES, U_STOKES (or TEMPERATURE,
                    Q_POLARISATION, U_POLARISATION; T, Q, U; else the first three), each with its
                    TUNIT (Q and U alike); POLCCONV COSMO (or none) as is, IAU: U negated on read
                    and back on write. Or a (3, Npix) .npy. The mask: one map for T, Q and U, or
                    three columns/rows (per field). wiener / lwiener / gcr: the joint T, Q, U fill
                    on the sphere (one mask; white noise with Q/U at √2 × --noise, or --noise-map:
                    columns II_COV, QQ_COV, UU_COV, or a (3, Npix) .npy); other methods fill
                    each field alone through patches (Q, U as scalars: they leak E into B);
                    a 3-channel --model: T, Q, U patches with Q/U rotated into the patch frame
                    and back (correcting the joint sphere fill if the network has a first guess).
                    The output keeps every column, ordering, unit, POLCCONV and header.
  .npy              patches (H, W), (N, H, W) or (N, C, H, W) in μK with a mask that broadcasts,
                    or a 1-D .npy of 12*Nside^2 pixels (a HEALPix map, RING unless --nest).
                    Complex arrays are refused; integer arrays are read as float32.
                    (N, 3, H, W) = T, Q, U with --method wiener / gcr / lwiener: the joint T, Q, U
                    fill (spin-2 covariance with TE; dense exact up to 64², local windows above).
  .png              grey-level image: level g in 0..255 is T = (g - 127.5) * scale μK (default
                    scale 500/127.5, i.e. black = -500 μK, white = +500 μK); mask PNG white =
                    valid, black = hole. A PNG output is clipped to the scale's range (warning).

The sky a method assumes: planck18 CAMB spectrum (or --ns, or --spectrum FILE of C_ell in μK²,
ell = 0..lmax, no beam), Gaussian beam --beam-fwhm (5'), white noise --noise (1 μK·arcmin) or a
per-pixel variance --noise-map (HEALPix FITS: column II_COV if present, else the first; its
TUNIT, e.g. K_CMB^2, or the map's unit squared; in holes where it is UNSEEN or NaN the median of
the observed pixels' variance is used).

--realisations N (gcr) writes N realisations to OUTPUT with _r0 .. _r{N-1} before the suffix;
realisation k of seed S is the same whatever N. An existing output is refused without
--overwrite; the input itself is never overwritten. Bad input exits with status 2 and one line;
no output is written."""


def register(subparsers, common):
    from ..image_io import PNG_SCALE_UK

    p = subparsers.add_parser(
        "inpaint",
        parents=[common],
        help="fill the holes of a map (.npy patches, .png image, .fits HEALPix) with a model or a method",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", metavar="NAME|DIR", help="shipped model name or model directory")
    what.add_argument("--method", metavar="NAME",
                      help="classical fill: wiener, gcr, lwiener, gmrf, diffusive, biharmonic, telea, ns, mean")
    p.add_argument("--input", required=True, metavar="FILE", help="map: .fits/.fits.gz, .npy or .png")
    p.add_argument("--mask", required=True, metavar="FILE", help="mask (1 = valid, 0 = hole): .fits, .npy or .png")
    p.add_argument("--output", required=True, metavar="FILE", help="filled map: same kind as the input (.png <-> .npy allowed)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--seed", type=int, default=None, help="seed of --method gcr (default: fresh, printed)")
    p.add_argument("--realisations", type=int, default=1, metavar="N",
                   help="--method gcr: number of constrained realisations (default 1)")
    p.add_argument("--noise", type=float, default=1.0, metavar="UK_ARCMIN",
                   help="white noise of the assumed sky, μK·arcmin (default %(default)s)")
    p.add_argument("--beam-fwhm", type=float, default=5.0, metavar="ARCMIN",
                   help="Gaussian beam FWHM of the assumed sky (default %(default)s)")
    spec = p.add_mutually_exclusive_group()
    spec.add_argument("--ns", type=float, default=None, metavar="V", help="spectral index of the CAMB spectrum")
    spec.add_argument("--spectrum", metavar="FILE", help="C_ell (μK², ell = 0..lmax, no beam): .npy or text")
    p.add_argument("--noise-map", metavar="FILE", help="HEALPix per-pixel noise variance (FITS or 1-D .npy)")
    p.add_argument("--unit", metavar="K|uK", help="unit of a map that has none in its header (K, K_CMB, mK, uK)")
    p.add_argument("--column", "--field", dest="column", default=None, metavar="NAME|INDEX",
                   help="column of a multi-column FITS map to fill (default 0)")
    p.add_argument("--fields", choices=("T", "TQU"), default="T",
                   help="T (default: one map or column) or TQU (HEALPix T, Q, U columns filled together, "
                        "or (N, 3, H, W) patches)")
    p.add_argument("--margin", type=float, default=None, metavar="PX",
                   help="sphere-native methods: context margin in map pixels (default: the measured one)")
    p.add_argument("--tqu-solve", choices=("joint", "split"), default="joint",
                   help="--fields TQU on HEALPix with --method wiener / lwiener / gcr: joint (default: the exact "
                        "T, Q, U conditional mean, T informing Q/U through TE) or split (T alone, then Q, U "
                        "jointly from Q, U alone with a narrower context, TE ignored: cheaper, slightly less "
                        "accurate; measured in docs/polarisation.md)")
    p.add_argument("--margin-qu", type=float, default=None, metavar="PX",
                   help="--tqu-solve split: Q/U context margin in map pixels (default: the measured one)")
    p.add_argument("--batch-size", type=int, default=16, help="patches per network call (default %(default)s)")
    p.add_argument("--nest", action="store_true",
                   help="HEALPix NESTED ordering for inputs that do not say (1-D .npy, FITS without ORDERING)")
    p.add_argument("--png-scale", type=float, default=PNG_SCALE_UK, metavar="UK",
                   help="μK per PNG grey level (default 500/127.5 = %(default).4f)")
    p.add_argument("--cluster-radius", type=float, default=None, metavar="PX",
                   help="patch pipeline: holes within this many patch pixels of a larger one share its patch "
                        "(default: the usable patch radius; 0 = one patch per hole)")
    p.set_defaults(run=run)


def _output_paths(args) -> list[Path]:
    out = Path(args.output)
    if args.method == "gcr" and args.realisations > 1:
        name = out.name
        suffix = next((s for s in (".fits.gz", ".fits", ".npy") if name.lower().endswith(s)), out.suffix)
        stem = name[: len(name) - len(suffix)]
        return [out.with_name(f"{stem}_r{k}{suffix}") for k in range(args.realisations)]
    return [out]


def _check_args(args):
    from ..baselines import BASELINES
    from ..image_io import file_kind

    if args.batch_size < 1:
        raise InputError(f"--batch-size: must be >= 1, got {args.batch_size}")
    if not (np.isfinite(args.png_scale) and args.png_scale > 0):
        raise InputError(f"--png-scale: must be > 0 μK per level, got {args.png_scale}")
    if args.cluster_radius is not None and not (np.isfinite(args.cluster_radius) and args.cluster_radius >= 0):
        raise InputError(f"--cluster-radius: must be >= 0 px, got {args.cluster_radius}")
    if args.method is not None and args.method not in BASELINES:
        raise InputError(f"--method: unknown method {args.method!r} (known: {', '.join(BASELINES)})")
    if args.realisations < 1 or args.realisations > 1000:
        raise InputError(f"--realisations: must be in 1..1000, got {args.realisations}")
    if args.realisations > 1 and args.method != "gcr":
        raise InputError("--realisations: applies only to --method gcr")
    if args.seed is not None and args.seed < 0:
        raise InputError(f"--seed: must be >= 0, got {args.seed}")
    for name, value, upper in (("--noise", args.noise, 1e6), ("--beam-fwhm", args.beam_fwhm, 600.0)):
        if not (math.isfinite(value) and 0 <= value <= upper):
            raise InputError(f"{name}: must lie in [0, {upper:g}], got {value}")
    if args.margin is not None and not (math.isfinite(args.margin) and 0 < args.margin <= 200):
        raise InputError(f"--margin: must lie in (0, 200] pixels, got {args.margin}")
    if args.margin_qu is not None and not (math.isfinite(args.margin_qu) and 0 < args.margin_qu <= 200):
        raise InputError(f"--margin-qu: must lie in (0, 200] pixels, got {args.margin_qu}")
    if args.margin_qu is not None and args.tqu_solve != "split":
        raise InputError("--margin-qu: applies only to --tqu-solve split")
    if args.unit is not None:
        from ..image_io import unit_to_uk

        unit_to_uk(args.unit, "--unit")
    kinds = {name: file_kind(getattr(args, name)) for name in ("input", "mask", "output")}
    for name in ("input", "mask"):
        if not Path(getattr(args, name)).is_file():
            raise InputError(f"{getattr(args, name)}: no such file")
    for opt in ("noise_map", "spectrum"):
        if getattr(args, opt) is not None and not Path(getattr(args, opt)).is_file():
            raise InputError(f"{getattr(args, opt)}: no such file (--{opt.replace('_', '-')})")
    inp = Path(args.input).resolve()
    for out in _output_paths(args):
        if out.resolve() in (inp, Path(args.mask).resolve()):
            raise InputError(f"--output {out}: is the {'input' if out.resolve() == inp else 'mask'} file; "
                             "write the filled map to another file")
        if out.exists() and not args.overwrite:
            raise InputError(f"{out}: already exists (pass --overwrite to replace it)")
    return kinds


def _npy_ndim(path) -> int | None:
    """Number of dimensions of a .npy file from its header (None if unreadable: read_npy reports it)."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False).ndim
    except Exception:
        return None


def _sky(args):
    """The Sky a method assumes (planck18, --ns or --spectrum, --beam-fwhm, --noise)."""
    from ..sky import Sky

    kw = dict(beam_fwhm_arcmin=args.beam_fwhm, noise_uk_arcmin=args.noise)
    if args.spectrum is not None:
        cl = _read_spectrum(args.spectrum)
        return Sky(cl_tt_uk2=cl, preset=None, **kw)
    sky = Sky.planck18(**kw)
    if args.ns is not None:
        sky = sky.with_ns(args.ns)
    return sky


def _read_spectrum(path) -> np.ndarray:
    path = Path(path)
    try:
        cl = np.load(path, allow_pickle=False) if path.suffix.lower() == ".npy" else np.loadtxt(path, ndmin=1)
    except Exception as exc:
        raise InputError(f"{path}: not a readable spectrum ({type(exc).__name__}: {exc})") from None
    cl = np.asarray(cl)
    if cl.ndim == 2 and cl.shape[1] == 2:  # (ell, C_ell) columns
        ell = cl[:, 0].astype(int)
        if (ell != np.arange(ell[0], ell[0] + ell.size)).any():
            raise InputError(f"{path}: the ell column must be consecutive")
        full = np.zeros(ell[-1] + 1)
        full[ell] = cl[:, 1]
        cl = full
    if cl.ndim != 1 or cl.size < 3 or not np.issubdtype(cl.dtype, np.number) or np.iscomplexobj(cl):
        raise InputError(f"{path}: expected C_ell for ell = 0..lmax (one column, or ell and C_ell), got shape {cl.shape}")
    if not np.all(np.isfinite(cl)) or (cl < 0).any():
        raise InputError(f"{path}: C_ell must be finite and non-negative (μK²)")
    return cl.astype(np.float64)


def _sky_cards(sky, args, seed):
    """Header cards recording the method, the sky (JSON) and the seed."""
    import hashlib
    import json

    data = sky.to_json()
    if isinstance(data.get("spectra"), dict):  # explicit spectra: record the file, not 6000 numbers
        data["spectra"] = {"file": str(args.spectrum),
                           "sha256": hashlib.sha256(Path(args.spectrum).read_bytes()).hexdigest()}
    if args.noise_map is not None:
        data["noise_var_map"] = str(args.noise_map)
    cards = [("COMBMETH", args.method or f"model {args.model}", ""),
             ("COMBSKY", json.dumps(data, sort_keys=True, separators=(",", ":")), "sky assumed (combine-sky JSON)")]
    if seed is not None:
        cards.append(("COMBSEED", int(seed), "seed of the constrained realisation"))
    return cards


def _import_healpy_without_plotting() -> None:
    """Import healpy without its plotting functions (``healpy.visufunc``: matplotlib.pyplot and
    axes, 0.36 s of CPU measured of healpy's 0.87 s), which ``combine inpaint`` never uses.

    healpy imports them only if ``import matplotlib`` succeeds (its ``__init__``); a ``None``
    entry in ``sys.modules`` makes that import fail for the moment healpy is imported, and is
    removed at once, so matplotlib itself stays importable (figures use it directly). Nothing is
    done if healpy or matplotlib is already imported (then healpy is whole, as before).
    """
    if "healpy" in sys.modules or "matplotlib" in sys.modules:
        return
    sys.modules["matplotlib"] = None
    try:
        import healpy  # noqa: F401
    finally:
        if "matplotlib" in sys.modules and sys.modules["matplotlib"] is None:
            del sys.modules["matplotlib"]


def run(args):
    _import_healpy_without_plotting()
    kinds = _check_args(args)
    tqu = args.fields == "TQU"
    ndim = _npy_ndim(args.input) if kinds["input"] == "npy" else None
    healpix = kinds["input"] == "fits" or ndim == (2 if tqu else 1)
    if tqu:
        from .inpaint_tqu import check_tqu_args

        if healpix:
            check_tqu_args(args)
        elif args.tqu_solve != "joint":
            raise InputError(f"--tqu-solve {args.tqu_solve}: applies to HEALPix T, Q, U maps (the sphere fills), "
                             f"not to {args.input}")
        elif kinds["input"] != "npy" or (ndim is not None and ndim != 4):
            raise InputError(f"{args.input}: --fields TQU takes a HEALPix T, Q, U map (.fits, or a (3, Npix) .npy) "
                             f"or (N, 3, H, W) .npy patches" + (f", not a {ndim}-D array" if ndim else ""))
    if args.tqu_solve != "joint" and not tqu:
        raise InputError(f"--tqu-solve {args.tqu_solve}: applies only to --fields TQU")
    model = None
    if args.model is not None:
        from ..models import load_model

        model = load_model(args.model)
    seed = args.seed
    if args.method == "gcr" and seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))
    if healpix and tqu:
        from .inpaint_tqu import run_tqu_healpix

        what = run_tqu_healpix(args, kinds, seed, sky_of=_sky, sky_cards=_sky_cards, patch_method=_patch_method,
                               output_paths=_output_paths, model=model)
    elif healpix:
        what = _run_healpix(args, kinds, model, seed)
    else:
        what = _run_patches(args, kinds, model, seed)
    from ..progress import summary

    outs = _output_paths(args)
    where = str(outs[0]) if len(outs) == 1 else f"{outs[0]} .. {outs[-1]}"
    seed_text = f", seed {seed}" if seed is not None else ""
    summary(f"{what}{seed_text} -> {where}")  # printed with --quiet too: it is the result
    return 0


# --------------------------------------------------------------------------------------------
# HEALPix
# --------------------------------------------------------------------------------------------
def _read_map(args, kind):
    """(values in μK float64-able, nest, table or None, column index, factor to μK)."""
    from ..image_io import read_healpix_table, read_npy, unit_to_uk

    if kind == "fits":
        table = read_healpix_table(args.input)
        col = table.index("0" if args.column is None else args.column, f"{args.input}: --column")
        nest = table.nest
        if not table.ordering_in_header:
            nest = bool(args.nest)
        elif args.nest and not table.nest:
            raise InputError(f"--nest: {args.input} says ORDERING = RING")
        unit = table.units[col]
        if unit is not None and args.unit is not None and unit_to_uk(unit, str(args.input)) != unit_to_uk(args.unit, "--unit"):
            raise InputError(f"--unit {args.unit}: {args.input} says TUNIT{col + 1} = {unit!r}")
        if unit is not None:
            factor = unit_to_uk(unit, f"{args.input}: TUNIT{col + 1} of column {table.names[col]}")
        else:
            factor = None if args.unit is None else unit_to_uk(args.unit, "--unit")
        return table.arrays[col], nest, table, col, factor
    if kind == "npy":
        arr = read_npy(args.input, ndims=(1,))
        return arr, bool(args.nest), None, 0, None if args.unit is None else unit_to_uk(args.unit, "--unit")
    raise InputError(f"{args.input}: a HEALPix map must be .fits/.fits.gz or a 1-D .npy, not .{kind}")


def check_mask_pixels(mask_path, map_path, n_mask: int, npix: int) -> None:
    """InputError naming both files unless the mask has the map's number of pixels (T and T, Q, U)."""
    import healpy as hp

    if n_mask != npix:
        def nside_of(n):
            return hp.npix2nside(n) if hp.isnpixok(n) else f"? ({n} pixels)"
        raise InputError(f"{mask_path}: mask has Nside {nside_of(n_mask)}, map {map_path} has Nside {nside_of(npix)}")


def _read_mask(args, kind, nest, npix):
    import healpy as hp

    from ..image_io import read_healpix_fits, read_npy

    if kind == "fits":
        hm = read_healpix_fits(args.mask, field=0, binary_mask=True)  # booleans: 1 byte a pixel, not 4
        values, mask_nest = hm.values, (hm.nest if hm.ordering_in_header else None)
    elif kind == "npy":
        values, mask_nest = read_npy(args.mask, ndims=(1,)), None
    else:
        raise InputError(f"{args.mask}: a HEALPix mask must be .fits/.fits.gz or a 1-D .npy, not .{kind}")
    check_mask_pixels(args.mask, args.input, values.size, npix)
    if mask_nest is not None and mask_nest != nest:
        bad = ~((values == 0) | (values == 1))
        if bad.any():  # reordering first would hide where the problem is; report it as is
            raise InputError(f"{args.mask}: mask is not binary ({int(bad.sum())} pixels other than 0 and 1)")
        values = hp.reorder(values, n2r=True) if mask_nest else hp.reorder(values, r2n=True)
    return values


def _read_noise_map(args, nest, npix, valid, map_factor):
    """Per-pixel noise variance in μK² (module DESCRIPTION), checked against the map."""
    import healpy as hp

    from ..image_io import file_kind, read_healpix_table, read_npy, variance_unit_to_uk2

    path = args.noise_map
    kind = file_kind(path)
    if kind == "fits":
        table = read_healpix_table(path)
        names = [n.strip().upper() for n in table.names]
        col = names.index("II_COV") if "II_COV" in names else 0
        var = np.asarray(table.arrays[col], dtype=np.float64)
        unit = table.units[col]
        factor = variance_unit_to_uk2(unit, f"{path}: TUNIT{col + 1}") if unit else (map_factor or 1.0) ** 2
        var_nest = table.nest if table.ordering_in_header else nest
    elif kind == "npy":
        var = np.asarray(read_npy(path, ndims=(1,)), dtype=np.float64)
        factor, var_nest = (map_factor or 1.0) ** 2, nest
    else:
        raise InputError(f"{path}: a noise map must be a HEALPix .fits or a 1-D .npy")
    if var.size != npix:
        nside = hp.npix2nside(var.size) if hp.isnpixok(var.size) else f"? ({var.size} pixels)"
        raise InputError(f"{path}: noise map has Nside {nside}, the map has Nside {hp.npix2nside(npix)}")
    if var_nest != nest:
        var = hp.reorder(var, n2r=True) if var_nest else hp.reorder(var, r2n=True)
    used = var[valid]
    if not np.isfinite(used).all() or (used < 0).any():
        n_bad = int((~np.isfinite(used) | (used < 0)).sum())
        raise InputError(f"{path}: noise variance must be finite and >= 0 at valid pixels ({n_bad} are not)")
    # hole pixels keep their variance (the noise a realisation draws there) when it is usable;
    # UNSEEN/NaN there becomes the median variance of the observed pixels
    usable = np.isfinite(var) & (var >= 0)
    var = np.where(valid | usable, var, np.median(used)) * factor
    return var


def _run_healpix(args, kinds, model, seed):
    import healpy as hp

    from ..healpix_inpaint import check_healpix_inputs, inpaint_healpix
    from ..image_io import looks_like_kelvin, write_healpix_table, write_npy

    if kinds["output"] not in ("fits", "npy"):
        raise InputError(f"{args.output}: a HEALPix map is written as .fits/.fits.gz or .npy, not .{kinds['output']}")
    if model is not None and int(getattr(model, "in_channels", 1)) == 3:
        raise InputError(f"--model {args.model}: model takes 3 channels (T, Q, U), a HEALPix temperature map has 1; "
                         "fill a T, Q, U map with --fields TQU")
    raw, nest, table, col, factor = _read_map(args, kinds["input"])
    hmask = _read_mask(args, kinds["mask"], nest, raw.size)
    raw, valid, nside = check_healpix_inputs(raw, hmask, str(args.input), str(args.mask))
    del hmask
    if factor is None:
        if looks_like_kelvin(raw[valid]):
            raise InputError(f"{args.input}: map has no unit and an rms of {np.sqrt(np.mean(raw[valid].astype(float) ** 2)):.2g}: "
                             "it looks like kelvin; pass --unit K (or --unit uK if it really is in μK)")
        factor = 1.0
    hmap_uk = raw.astype(np.float64) * factor if factor != 1.0 else raw
    n_holes = int(np.count_nonzero(~valid))
    sky = _sky(args).replace(pixel_arcmin=hp.nside2resol(nside, arcmin=True)) if model is None else None
    noise_var = None
    if args.noise_map is not None:
        noise_var = _read_noise_map(args, nest, raw.size, valid, factor)
    outs = _output_paths(args)
    if model is None and args.method in SPHERE_METHODS:
        from ..sphere.wiener import DEFAULT_MARGIN_PX, fill_holes

        draws = args.realisations if args.method == "gcr" else 0
        result = fill_holes(hmap_uk, valid, sky=sky, nest=nest, noise_var_map=noise_var, realisations=draws,
                            seed=seed, progress=True,
                            margin_px=DEFAULT_MARGIN_PX if args.margin is None else args.margin,
                            mask_source=str(args.mask))
        filled_uk = [result.mean_uk] if not draws else list(result.draws_uk)
        holes = result.groups.hole_pixels
        what = f"{result.groups.n_holes} holes ({len(result.groups)} groups) on the sphere with {args.method}"
    else:
        if model is None:
            filler = _patch_method(args.method, sky, seed, noise_var is not None)
        else:
            filler = model
        first_guess_map = None
        if model is not None and getattr(getattr(model, "unet", None), "prefill", "none") != "none":
            # the network corrects the sphere-native fill (projected onto its patches) instead of
            # its own patch first guess; only its correction is interpolated back
            from ..sphere.wiener import DEFAULT_MARGIN_PX, fill_holes

            sky = _sky(args).replace(pixel_arcmin=hp.nside2resol(nside, arcmin=True))
            first = fill_holes(hmap_uk, valid, sky=sky, nest=nest, noise_var_map=noise_var, progress=True,
                               margin_px=DEFAULT_MARGIN_PX if args.margin is None else args.margin,
                               mask_source=str(args.mask))
            first_guess_map = first.apply(np.asarray(hmap_uk, dtype=np.float64))
            del first
        filled = inpaint_healpix(filler, hmap_uk, valid, nest=nest, batch_size=args.batch_size, progress=True,
                                 cluster_radius_px=args.cluster_radius, map_source=str(args.input),
                                 mask_source=str(args.mask), first_guess_map=first_guess_map)
        holes = np.flatnonzero(~valid)
        filled_uk = [np.asarray(filled[holes], dtype=np.float64)]
        what = f"holes through patches with {'model ' + str(args.model) if model is not None else args.method}"
        if first_guess_map is not None:
            what += " correcting the sphere-native Wiener fill"
    cards = _sky_cards(sky, args, seed) if sky is not None else [("COMBMETH", f"model {args.model}", "")]
    for k, (out, values_uk) in enumerate(zip(outs, filled_uk)):
        values = values_uk / factor
        if table is not None and kinds["output"] == "fits":
            # the read column itself: only hole pixels change, each output overwrites all of them,
            # and the fill has finished reading the map (saves a copy: 805 MB at Nside 4096)
            column = table.arrays[col]
            if not np.issubdtype(column.dtype, np.floating):
                column = table.arrays[col] = column.astype(np.float32)
            column[holes] = values
            extra = list(cards) + ([("COMBREAL", k, "realisation index")] if len(outs) > 1 else [])
            write_healpix_table(out, table, {col: column}, header_cards=extra,
                                history=f"combine inpaint: {n_holes} masked pixels of column {table.names[col]} "
                                        f"filled ({args.method or 'model ' + str(args.model)})")
        else:
            dtype = raw.dtype if np.issubdtype(raw.dtype, np.floating) else np.dtype(np.float32)
            column = np.array(raw, dtype=dtype, copy=True)
            column[holes] = values
            if kinds["output"] == "fits":
                from ..image_io import HealpixTable

                t = HealpixTable(names=["TEMPERATURE"], arrays=[column], units=[args.unit or "uK"],
                                 formats=["D" if column.dtype == np.float64 else "E"], nside=nside, nest=nest,
                                 ordering_in_header=True, header=None, primary_header=None)
                write_healpix_table(out, t, header_cards=cards, history=f"combine inpaint: {n_holes} masked pixels filled")
            else:
                write_npy(out, column)
    return (f"filled {n_holes} masked pixels in {what} (Nside {nside}, {'NESTED' if nest else 'RING'})")


def _patch_method(name, sky, seed, has_noise_map):
    """fill(maps, masks) of a patch baseline with the sky (new ``sky=`` keyword and the loose ones)."""
    from ..baselines import BASELINES

    if has_noise_map:
        raise InputError(f"--noise-map: --method {name} on a HEALPix map goes through patches and takes no noise "
                         "map (use wiener, lwiener or gcr)")
    fill = BASELINES[name]
    kw = dict(sky=sky, seed=seed, pixel_arcmin=sky.pixel_arcmin, beam_fwhm_arcmin=sky.beam_fwhm_arcmin,
              noise_uk_arcmin=sky.noise_uk_arcmin)
    return lambda maps, masks: fill(maps, masks, **kw)


# --------------------------------------------------------------------------------------------
# patches and images
# --------------------------------------------------------------------------------------------
def _run_patches(args, kinds, model, seed):
    from ..image_io import read_npy, read_png, read_png_mask, write_npy, write_png
    from ..validation import check_maps_and_masks

    if kinds["output"] not in ("npy", "png"):
        raise InputError(f"{args.output}: patches and images are written as .npy or .png, not .{kinds['output']}")
    if kinds["mask"] == "fits":
        raise InputError(f"{args.mask}: a FITS (HEALPix) mask does not fit patch input {args.input}")
    if args.noise_map is not None:
        raise InputError("--noise-map: applies to HEALPix maps only")
    maps = read_png(args.input, scale_uk=args.png_scale) if kinds["input"] == "png" else read_npy(args.input)
    if args.fields == "TQU" and not (maps.ndim == 4 and maps.shape[1] == 3):
        raise InputError(f"{args.input}: --fields TQU: patches must be (N, 3, H, W) T, Q, U, got shape {maps.shape}")
    masks = read_png_mask(args.mask) if kinds["mask"] == "png" else read_npy(args.mask)
    _, mask_b = check_maps_and_masks(maps, masks, str(args.input), str(args.mask))
    n_holes = int(np.count_nonzero(mask_b == 0))
    del mask_b
    factor = 1.0
    if args.unit is not None:
        from ..image_io import unit_to_uk

        factor = unit_to_uk(args.unit, "--unit")
    if kinds["output"] == "png" and not (maps.ndim == 2 or maps.shape[:-2] in ((1,), (1, 1))):
        raise InputError(f"{args.output}: a PNG holds one image; input {args.input} has shape {maps.shape} (write .npy)")
    if model is not None:
        channels = maps.shape[1] if maps.ndim == 4 else 1
        if channels != model.in_channels:
            raise InputError(f"{args.input}: maps have {channels} channel(s), model {args.model} takes {model.in_channels}")
        filled = model.inpaint(maps * factor if factor != 1.0 else maps, masks, batch_size=args.batch_size)
    else:
        sky = _sky(args)
        from ..baselines import BASELINES
        from ..baselines.wiener_pol import TQU_BASELINES

        given = maps.astype(np.float32) * np.float32(factor) if factor != 1.0 else maps
        channels = maps.shape[1] if maps.ndim == 4 else 1
        if args.method in TQU_BASELINES and channels != 1:
            if channels != 3:
                raise InputError(f"{args.input}: maps have {channels} fields; --method {args.method} takes 1 (T) "
                                 "or 3 (T, Q, U)")
            if args.spectrum is not None:
                raise InputError("--spectrum: gives TT only; T, Q, U maps need the CAMB TT, EE, BB, TE spectra")
            # joint T, Q, U fill (spin-2 covariance, TE): combine.baselines.wiener_pol
            filled = TQU_BASELINES[args.method](given, masks, sky=sky, seed=seed)
        else:
            filled = BASELINES[args.method](given, masks, sky=sky, seed=seed, pixel_arcmin=sky.pixel_arcmin,
                                            beam_fwhm_arcmin=sky.beam_fwhm_arcmin,
                                            noise_uk_arcmin=sky.noise_uk_arcmin)
    if factor != 1.0:
        valid = np.broadcast_to(np.asarray(masks) > 0, np.shape(filled))
        filled = np.where(valid, maps, np.asarray(filled) / factor).astype(np.asarray(filled).dtype)
    out = _output_paths(args)[0]
    if kinds["output"] == "png":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            write_png(out, np.asarray(filled).reshape(np.shape(filled)[-2:]), scale_uk=args.png_scale)
        for w in caught:
            if not args.quiet:
                sys.stderr.write(f"combine inpaint: warning: {w.message}\n")
    else:
        write_npy(out, filled)
    return f"filled {n_holes} hole pixels in {maps.shape} {'image' if maps.ndim == 2 else 'maps'} with " \
           f"{'model ' + str(args.model) if model is not None else args.method}"
