"""``combine evaluate``: a model and the classical baselines on the same masked patches.

Writes REPORT_DIR/report.md (tables and figures) and REPORT_DIR/results.json (every number),
atomically as one directory. See :mod:`combine.evaluate` for the metrics.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..sky.defaults import EVAL_NOISE_UK_ARCMIN, PATCH_SIZE

DEFAULT_N_PATCHES = 48
#: Patches used for masks that differ per patch (random, points): each costs its own Wiener
#: factorisation.
DEFAULT_N_RANDOM = 16


def register(subparsers, common):
    from ..evaluation import ALL_METHODS, DEFAULT_MASK_SPECS, RADIUS_SWEEP_PX

    p = subparsers.add_parser(
        "evaluate", parents=[common],
        help="compare a model with the Wiener filter and classical fills; write a report",
        description="Fill the same masked patches with a model and the baselines; write "
                    "REPORT_DIR/report.md, its PNG figures and results.json.")
    p.add_argument("--model", required=True, metavar="NAME|DIR|none",
                   help="shipped model name, model directory, or 'none' (baselines only)")
    p.add_argument("--data", required=True, metavar="FILE|DIR|simulate:N",
                   help="dataset .h5, a directory holding test.h5, or simulate:N (N fresh planck18 patches)")
    p.add_argument("--out", required=True, metavar="REPORT_DIR",
                   help="report directory (written atomically; an existing one only with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing REPORT_DIR")
    p.add_argument("--methods", default=None, metavar="LIST",
                   help=f"comma-separated subset of {','.join(ALL_METHODS)} (default: all; nn only with a model)")
    p.add_argument("--masks", default=None, metavar="LIST",
                   help=f"comma-separated mask specs circle-rN, random, points (default {','.join(DEFAULT_MASK_SPECS)})")
    p.add_argument("--radius-sweep", action="store_true",
                   help="centred circles of radius " + ",".join(map(str, RADIUS_SWEEP_PX))
                        + " px (the original CoMBInE's sweep) instead of the default masks")
    p.add_argument("--n-patches", type=int, default=None, metavar="N",
                   help=f"patches to evaluate (default {DEFAULT_N_PATCHES}, or N of simulate:N)")
    p.add_argument("--n-random", type=int, default=DEFAULT_N_RANDOM, metavar="N",
                   help=f"patches used for masks that differ per patch (default {DEFAULT_N_RANDOM}; "
                        "each needs its own Wiener factorisation)")
    p.add_argument("--noise", type=float, default=None, metavar="UK_ARCMIN",
                   help="white noise: simulated level for simulate:N (default "
                        f"{EVAL_NOISE_UK_ARCMIN:g}); for files, overrides the level the Wiener filter assumes")
    p.add_argument("--size", type=int, default=PATCH_SIZE, help="patch side for simulate:N (default 128)")
    p.add_argument("--ns", type=float, default=None, metavar="V",
                   help="evaluate only the patches of spectral-index class V (needed when the data mixes classes)")
    p.add_argument("--run", dest="run_dir", default=None, metavar="RUN_DIR",
                   help="training run: also evaluate every checkpoint (metrics against epoch)")
    p.add_argument("--epoch-patches", type=int, default=8, metavar="N",
                   help="patches per checkpoint for --run (default 8)")
    p.add_argument("--fullsky-map", default=None, metavar="FITS", help="full-sky HEALPix truth map (μK)")
    p.add_argument("--fullsky-mask", default=None, metavar="FITS", help="full-sky HEALPix mask (1 valid, 0 hole)")
    p.add_argument("--batch-size", type=int, default=16, help="model batch size (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of masks, simulations and GCR (default 0)")
    p.set_defaults(run=run)


# --------------------------------------------------------------------------------------------

def _split_list(text):
    return [t.strip() for t in str(text).split(",") if t.strip()]


def load_eval_data(spec: str, *, n_patches, size, noise_uk_arcmin, seed, ns=None):
    """Resolve ``--data``: (maps (N,H,W) μK, the one :class:`combine.sky.Sky` of the data, description).

    ``simulate:N`` simulates N planck18 patches of that sky; a dataset file gives its recorded
    sky (:meth:`combine.sky.Sky.from_legacy_attrs` of its attributes). ``--ns`` selects a
    spectral-index class (and that class's spectrum), ``--noise`` sets the noise level.
    """
    from ..sky import Sky

    if spec.startswith("simulate:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            raise InputError(f"--data: {spec!r}: expected simulate:N with an integer N") from None
        if n < 1:
            raise InputError(f"--data: {spec!r}: N must be at least 1")
        if n_patches is not None:
            n = min(n, n_patches)
        noise = EVAL_NOISE_UK_ARCMIN if noise_uk_arcmin is None else float(noise_uk_arcmin)
        sky = Sky.planck18(noise_uk_arcmin=noise)
        if ns is not None:
            sky = sky.with_ns(ns)
        from ..sky.flat import simulate_flat_patches

        maps = simulate_flat_patches(n, size=size, sky=sky, seed=seed)
        return np.asarray(maps, dtype=np.float32), sky, f"{n} simulated planck18 patches ({size}², seed {seed})"

    path = Path(spec)
    if path.is_dir():
        path = path / "test.h5"
    if not path.is_file():
        raise InputError(f"{path}: no such dataset file")
    from ..data import read_dataset

    maps, ns_arr, attrs = read_dataset(path)
    sky = Sky.from_legacy_attrs(attrs, source=str(path))
    maps = np.asarray(maps)
    if maps.ndim == 4:
        if maps.shape[1] != 1:
            raise InputError(f"{path}: evaluation handles temperature maps only (C = 1), got {maps.shape[1]} channels")
        maps = maps[:, 0]
    ns_value = None
    if ns_arr is not None:
        ns_arr = np.asarray(ns_arr, dtype=np.float64)
        classes = np.unique(ns_arr)
        if ns is not None:
            keep = np.isclose(ns_arr, ns)
            if not keep.any():
                raise InputError(f"{path}: no patch with ns = {ns:g} (classes: {', '.join(f'{c:g}' for c in classes)})")
            maps = maps[keep]
            ns_value = float(ns)
        elif classes.size > 1:
            raise InputError(f"{path}: patches mix spectral-index classes ({', '.join(f'{c:g}' for c in classes)}); "
                             "choose one with --ns V (the Wiener filter needs one spectrum)")
        else:
            ns_value = float(classes[0])
    elif ns is not None:
        raise InputError(f"{path}: --ns given but the dataset has no ns labels")
    if ns_value is not None and sky.cl_tt_uk2 is None and not np.isclose(sky.ns, ns_value):
        sky = sky.with_ns(ns_value)
    if noise_uk_arcmin is not None:
        sky = sky.replace(noise_uk_arcmin=float(noise_uk_arcmin))
    n_total = len(maps)
    n = DEFAULT_N_PATCHES if n_patches is None else n_patches
    maps = maps[:n]
    return (np.asarray(maps, dtype=np.float32), sky,
            f"{len(maps)} of {n_total} patches of {path}" + (f" (ns = {ns_value:g})" if ns_value else ""))


def resolve_model(name):
    """``--model``: None for 'none', else :func:`combine.load_model`."""
    if str(name).lower() == "none":
        return None
    from .. import load_model

    return load_model(name)


def resolve_methods_and_masks(args, has_model: bool):
    from ..evaluation import ALL_METHODS, DEFAULT_MASK_SPECS, RADIUS_SWEEP_PX, parse_methods

    if args.methods is None:
        methods = tuple(m for m in ALL_METHODS if has_model or m != "nn")
    else:
        methods = parse_methods(_split_list(args.methods))
        if "nn" in methods and not has_model:
            raise InputError("--methods: method 'nn' needs a model (--model is 'none')")
    if args.radius_sweep:
        masks = [f"circle-r{r}" for r in RADIUS_SWEEP_PX]
        if args.masks is not None:
            masks += [m for m in _split_list(args.masks) if m not in masks]
    elif args.masks is not None:
        masks = _split_list(args.masks)
        if not masks:
            raise InputError("--masks: no mask specification given")
    else:
        masks = list(DEFAULT_MASK_SPECS)
    return methods, tuple(masks)


def _read_healpix(path):
    """A HEALPix FITS map (:func:`combine.image_io.read_healpix_fits`) as float64 in RING order.

    Masked pixels holding UNSEEN/NaN are kept as they are (the caller validates).
    """
    import healpy as hp

    from ..image_io import read_healpix_fits

    hm = read_healpix_fits(path)
    values = np.asarray(hm.values, dtype=np.float64)
    if hm.nest:
        values = hp.reorder(values, n2r=True)
    return values


def _read_fullsky(map_path, mask_path):
    """(truth map, binary mask float64) from --fullsky-map/--fullsky-mask, validated."""
    sky_map = _read_healpix(map_path)
    hmask = _read_healpix(mask_path)
    if sky_map.shape != hmask.shape:
        raise InputError(f"{mask_path}: mask has {hmask.size} pixels, map has {sky_map.size}")
    from ..validation import as_binary_mask

    hmask = as_binary_mask(hmask, str(mask_path)).astype(np.float64)
    if not hmask.any():
        raise InputError(f"{mask_path}: mask has no valid (=1) pixel")
    if not np.all(np.isfinite(sky_map)) or np.any(sky_map < -1e30):
        raise InputError(f"{map_path}: the truth map must be complete (no NaN/UNSEEN pixel)")
    return sky_map, hmask


def fill_fullsky(model, sky_map, mask, *, batch_size=16):
    """Fill a HEALPix map's holes with the model (:func:`combine.evaluation.fullsky.fill_healpix`).

    Returns (filled map, method label); InputError without a model.
    """
    import healpy as hp

    from ..evaluation import fill_healpix

    if model is None:
        raise InputError("--fullsky-map: a full-sky fill needs a model (--model is 'none')")
    masked = np.where(mask > 0, sky_map, hp.UNSEEN)
    return fill_healpix(model, masked, mask, batch_size=batch_size, progress=True), "nn"


def run(args):
    from .. import evaluation as ev_mod

    if (args.fullsky_map is None) != (args.fullsky_mask is None):
        raise InputError("--fullsky-map/--fullsky-mask: give both or neither")
    for name in ("n_patches", "n_random", "epoch_patches", "batch_size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise InputError(f"--{name.replace('_', '-')}: must be at least 1, got {v}")
    if args.noise is not None and not args.noise >= 0:
        raise InputError(f"--noise: must be >= 0, got {args.noise}")
    out = Path(args.out)
    if out.exists() and not args.overwrite and not (out.is_dir() and not any(out.iterdir())):
        raise InputError(f"{out}: exists; give --overwrite to replace it")
    if args.run_dir is not None and not Path(args.run_dir).is_dir():
        raise InputError(f"{args.run_dir}: no such training run directory")

    model_early = str(args.model).lower() != "none"
    methods, mask_specs = resolve_methods_and_masks(args, model_early)
    maps, sky, data_desc = load_eval_data(args.data, n_patches=args.n_patches, size=args.size,
                                          noise_uk_arcmin=args.noise, seed=args.seed, ns=args.ns)
    size = maps.shape[-1]
    for spec in mask_specs:
        ev_mod.parse_mask_spec(spec, size=size)
    model = resolve_model(args.model)
    if model is not None:
        ev_mod.check_model_fits(model, size, source=str(args.model))

    if args.run_dir is not None:
        ev_mod.list_checkpoints(args.run_dir)  # a run without checkpoints fails before any work
    fullsky_input = None
    if args.fullsky_map is not None:
        if model is None:
            raise InputError("--fullsky-map: a full-sky fill needs a model (--model is 'none')")
        fullsky_input = _read_fullsky(args.fullsky_map, args.fullsky_mask)

    # one Sky (the data's, with --ns / --noise applied) for every method and checkpoint
    ev = ev_mod.run_evaluation(model, maps, sky=sky, methods=methods, mask_specs=mask_specs, seed=args.seed,
                               n_random=args.n_random, batch_size=args.batch_size, progress=True)

    epoch_records = None
    if args.run_dir is not None:
        epoch_records = ev_mod.evaluate_run(args.run_dir, maps, mask_specs=mask_specs, sky=sky, seed=args.seed,
                                            n_patches=args.epoch_patches)

    fullsky = None
    fullsky_records = []
    fullsky_method = "filled"
    if fullsky_input is not None:
        sky_map, hmask = fullsky_input
        filled, fullsky_method = fill_fullsky(model, sky_map, hmask, batch_size=args.batch_size)
        fullsky = ev_mod.fullsky_spectra(sky_map, hmask, filled)
        fullsky_records = ev_mod.fullsky_records(fullsky, method=fullsky_method)

    notes = []
    command = _command_line(args, methods, mask_specs, len(maps))
    ev_mod.write_report(args.out, ev, command=command, notes=notes, epoch_records=epoch_records,
                        fullsky=fullsky, fullsky_method=fullsky_method, extra_records=fullsky_records,
                        title=f"CoMBInE evaluation: model {args.model}, {data_desc}")
    print(ev_mod.results_table(ev.records, list(ev.methods), list(ev.mask_specs)))
    from ..progress import summary

    n_figures = len(list(Path(args.out).glob("*.png")))
    summary(f"wrote {Path(args.out) / 'report.md'}, results.json and {n_figures} figure(s); {len(maps)} patches "
            f"({size}²), methods {','.join(methods)}, masks {','.join(mask_specs)}; seed {args.seed}")
    return 0


def _command_line(args, methods, mask_specs, n_patches):
    parts = ["combine", "evaluate", "--model", str(args.model), "--data", str(args.data),
             "--out", str(args.out), "--methods", ",".join(methods), "--masks", ",".join(mask_specs),
             "--n-patches", str(n_patches), "--n-random", str(args.n_random), "--seed", str(args.seed)]
    if args.noise is not None:
        parts += ["--noise", f"{args.noise:g}"]
    if args.data.startswith("simulate:"):
        parts += ["--size", str(args.size)]
    if args.ns is not None:
        parts += ["--ns", f"{args.ns:g}"]
    if args.run_dir is not None:
        parts += ["--run", str(args.run_dir), "--epoch-patches", str(args.epoch_patches)]
    if args.fullsky_map is not None:
        parts += ["--fullsky-map", str(args.fullsky_map), "--fullsky-mask", str(args.fullsky_mask)]
    return " ".join(shlex.quote(p) for p in parts)
