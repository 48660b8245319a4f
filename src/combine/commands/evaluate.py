"""``combine evaluate``: a model and the classical baselines on the same masked patches.

Writes REPORT_DIR/report.md (tables and figures) and REPORT_DIR/results.json (every number),
atomically as one directory. See :mod:`combine.evaluate` for the metrics.

T, Q, U data (a dataset written by ``combine simulate --fields TQU``, or ``--data simulate:N
--fields TQU``) are evaluated by :mod:`combine.evaluation.tqu` (per-field hole RMSE, flat-sky
E/B) and, with ``--fullsky-map`` (a 3-column T, Q, U map) or ``--fullsky-simulate NSIDE``, on the
sphere by :mod:`combine.evaluation.fullsky_tqu` (anafast EE and BB against the truth and the cut
sky, for a pure-E and a lensed sky). T-only evaluation is unchanged.
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
                   help=f"comma-separated mask specs circle-rN, random, points (default {','.join(DEFAULT_MASK_SPECS)}; "
                        "T, Q, U: circle-r4,circle-r8,circle-r16,points)")
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
    p.add_argument("--fullsky-map", default=None, metavar="FITS", help="full-sky HEALPix truth map (μK); for T, Q, U data its I/Q/U_STOKES (or T, Q, U) "
                        "columns, TUNIT and POLCCONV read as by combine inpaint --fields TQU")
    p.add_argument("--fullsky-mask", default=None, metavar="FITS", help="full-sky HEALPix mask (1 valid, 0 hole)")
    p.add_argument("--batch-size", type=int, default=16, help="model batch size (default 16)")
    p.add_argument("--fields", choices=("T", "TQU"), default=None,
                   help="evaluate temperature (T) or T, Q, U patches (default: the dataset's fields; T for "
                        "simulate:N); --fields T on a T, Q, U dataset evaluates its T maps")
    p.add_argument("--pure-e", action="store_true",
                   help="simulate:N with --fields TQU: a sky without B modes (C^BB = 0), so that any BB of a "
                        "filled patch beyond the truth's estimator floor is leakage")
    p.add_argument("--fullsky-simulate", type=int, default=None, metavar="NSIDE",
                   help="T, Q, U: also evaluate simulated full skies of this Nside (the data's sky; see "
                        "--fullsky-skies) with --fullsky-mask or a drawn point-source mask (--fullsky-holes)")
    p.add_argument("--fullsky-skies", default="pure-e,lensed", metavar="LIST",
                   help="skies of --fullsky-simulate: pure-e (no B), lensed (lensing B) (default both)")
    p.add_argument("--fullsky-holes", type=int, default=200, metavar="N",
                   help="point sources of the drawn mask of --fullsky-simulate (default 200; smallest radius "
                        "max(15', 1.5 pixels))")
    p.add_argument("--fullsky-beam", type=float, default=None, metavar="ARCMIN",
                   help="T, Q, U full sky: beam FWHM of the full-sky sky (default: the data's)")
    p.add_argument("--fullsky-noise", type=float, default=None, metavar="UK_ARCMIN",
                   help="T, Q, U full sky: white noise (default 0 for --fullsky-simulate: the leakage is then "
                        "measured against anafast's floor; the data's level for --fullsky-map)")
    p.add_argument("--fullsky-band", default=None, metavar="LMIN,LMAX",
                   help="T, Q, U full sky: ℓ band of the band means (default 30,2·Nside)")
    p.add_argument("--seed", type=int, default=0, help="seed of masks, simulations and GCR (default 0)")
    p.set_defaults(run=run)


# --------------------------------------------------------------------------------------------

def _split_list(text):
    return [t.strip() for t in str(text).split(",") if t.strip()]


def simulation_sky(noise_uk_arcmin=None, ns=None):
    """The sky of ``--data simulate:N``: planck18 with the evaluation noise (or ``--noise``) and ``--ns``."""
    from ..sky import Sky

    noise = EVAL_NOISE_UK_ARCMIN if noise_uk_arcmin is None else float(noise_uk_arcmin)
    sky = Sky.planck18(noise_uk_arcmin=noise)
    return sky if ns is None else sky.with_ns(ns)


def load_eval_data(spec: str, *, n_patches, size, noise_uk_arcmin, seed, ns=None, fields=None, pure_e=False):
    """Resolve ``--data``: (maps μK, the one :class:`combine.sky.Sky` of the data, description).

    ``simulate:N`` simulates N planck18 patches of that sky; a dataset file gives its recorded
    sky (:meth:`combine.sky.Sky.from_legacy_attrs` of its attributes). ``--ns`` selects a
    spectral-index class (and that class's spectrum), ``--noise`` sets the noise level.
    The maps are (N, H, W) temperature patches, or (N, 3, H, W) T, Q, U patches when the
    dataset has three channels (unless ``fields == "T"``: its T maps) or ``simulate:N`` is
    asked for ``fields == "TQU"`` (``pure_e``: a sky without B modes).
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
        sky = simulation_sky(noise_uk_arcmin, ns)
        if fields == "TQU":
            from ..sky.polarisation import pure_e_sky, simulate_flat_tqu

            if pure_e:
                sky = pure_e_sky(sky)
            maps = simulate_flat_tqu(n, size, sky=sky, seed=seed, min_size=16)
            return (np.asarray(maps, dtype=np.float32), sky,
                    f"{n} simulated planck18 T, Q, U patches ({size}², seed {seed}{', pure E' if pure_e else ''})")
        if pure_e:
            raise InputError("--pure-e: only with T, Q, U patches (--fields TQU)")
        from ..sky.flat import simulate_flat_patches

        maps = simulate_flat_patches(n, size=size, sky=sky, seed=seed)
        return np.asarray(maps, dtype=np.float32), sky, f"{n} simulated planck18 patches ({size}², seed {seed})"

    path = Path(spec)
    if path.is_dir():
        path = path / "test.h5"
    if not path.is_file():
        raise InputError(f"{path}: no such dataset file")
    if pure_e:
        raise InputError(f"--pure-e: only for simulated data (simulate:N), not the dataset {path}")
    from ..data import read_dataset

    maps, ns_arr, attrs = read_dataset(path)
    sky = Sky.from_legacy_attrs(attrs, source=str(path))
    maps = np.asarray(maps)
    if maps.ndim == 4:
        if maps.shape[1] == 3 and fields != "T":
            pass  # T, Q, U patches
        elif maps.shape[1] == 3:
            maps = maps[:, 0]  # --fields T: the temperature maps of a T, Q, U dataset
        elif maps.shape[1] == 1:
            maps = maps[:, 0]
        else:
            raise InputError(f"{path}: evaluation handles temperature (C = 1) or T, Q, U (C = 3) maps, got "
                             f"{maps.shape[1]} channels")
    if fields == "TQU" and maps.ndim != 4:
        raise InputError(f"{path}: --fields TQU but the dataset holds temperature maps only "
                         f"(fields {attrs.get('fields', 'T')}, shape {tuple(np.shape(maps))})")
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

    if (args.fullsky_map is None) != (args.fullsky_mask is None) and args.fullsky_simulate is None:
        raise InputError("--fullsky-map/--fullsky-mask: give both or neither")
    if args.fullsky_map is not None and args.fullsky_mask is None:
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
    if data_fields(args.data, args.fields) == "TQU":
        return run_tqu(args, model_early)
    for flag, value in (("--pure-e", args.pure_e or None), ("--fullsky-simulate", args.fullsky_simulate)):
        if value is not None:
            raise InputError(f"{flag}: only for T, Q, U evaluation (--fields TQU or a T, Q, U dataset)")
    methods, mask_specs = resolve_methods_and_masks(args, model_early)
    maps, sky, data_desc = load_eval_data(args.data, n_patches=args.n_patches, size=args.size,
                                          noise_uk_arcmin=args.noise, seed=args.seed, ns=args.ns,
                                          fields=args.fields)
    size = maps.shape[-1]
    for spec in mask_specs:
        ev_mod.parse_mask_spec(spec, size=size)
    model = resolve_model(args.model)
    if model is not None:
        channels = int(getattr(model, "in_channels", 1))
        if channels != 1 and "nn" in methods:
            raise InputError(f"{args.model}: model takes {channels} channels (T, Q, U); the data are temperature "
                             "maps (give T, Q, U data, or leave nn out of --methods)")
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


def data_fields(spec: str, fields) -> str:
    """``"T"`` or ``"TQU"``: ``--fields`` if given, else T for simulate:N and the dataset's channels
    (C = 3: T, Q, U) for a file (read from its header only)."""
    if fields is not None:
        return fields
    if str(spec).startswith("simulate:"):
        return "T"
    path = Path(spec)
    if path.is_dir():
        path = path / "test.h5"
    if not path.is_file():
        return "T"  # load_eval_data reports the missing file
    from ..data import read_header

    shape = read_header(path)[0]
    if len(shape) == 4 and shape[1] not in (1, 3):
        raise InputError(f"{path}: evaluation handles temperature (C = 1) or T, Q, U (C = 3) maps, got "
                         f"{shape[1]} channels")
    return "TQU" if len(shape) == 4 and shape[1] == 3 else "T"


def _parse_band(text):
    if text is None:
        return None
    try:
        lo, hi = (int(v) for v in str(text).split(","))
    except ValueError:
        raise InputError(f"--fullsky-band: expected LMIN,LMAX (integers), got {text!r}") from None
    return lo, hi


def _read_fullsky_tqu(map_path, mask_path):
    """(T, Q, U truth (3, Npix) μK RING in healpy's convention, binary mask) from --fullsky-map and
    --fullsky-mask: the columns, TUNIT and POLCCONV rules of :mod:`combine.tqu_fits` (as
    ``combine inpaint --fields TQU``); a map without units is taken to be in μK unless it looks
    like kelvin."""
    import healpy as hp

    from ..evaluation.fullsky_tqu import check_fullsky_tqu
    from ..image_io import looks_like_kelvin
    from ..tqu_fits import read_tqu_table

    table = read_tqu_table(map_path)
    factors = [1.0 if f is None else f for f in table.factors_to_uk]
    tqu = np.asarray(table.to_uk(factors), dtype=np.float64)
    if all(f is None for f in table.factors_to_uk) and looks_like_kelvin(tqu[0][np.isfinite(tqu[0])]):
        raise InputError(f"{map_path}: map has no unit and its T looks like kelvin; give its columns a TUNIT")
    if table.table.nest:
        tqu = np.stack([hp.reorder(c, n2r=True) for c in tqu])
    hmask = _read_healpix(mask_path)
    if hmask.size != tqu.shape[1]:
        raise InputError(f"{mask_path}: mask has {hmask.size} pixels, the map has {tqu.shape[1]}")
    return check_fullsky_tqu(tqu, hmask, str(map_path), str(mask_path))


def _check_fullsky_tqu_args(args, methods):
    """Validate the T, Q, U full-sky options before any work; return (sphere methods, band, skies)."""
    from ..evaluation import fullsky_tqu as fs

    sphere_methods = tuple(m for m in methods if m in fs.SPHERE_TQU_METHODS)
    if not sphere_methods:
        raise InputError("--fullsky-*: none of --methods has a full-sky T, Q, U version "
                         f"({', '.join(fs.SPHERE_TQU_METHODS)})")
    band = _parse_band(args.fullsky_band)
    for name, v in (("--fullsky-noise", args.fullsky_noise), ("--fullsky-beam", args.fullsky_beam)):
        if v is not None and not v >= 0:
            raise InputError(f"{name}: must be >= 0, got {v}")
    labels = _split_list(args.fullsky_skies)
    if not labels or any(x not in ("pure-e", "lensed") for x in labels):
        raise InputError(f"--fullsky-skies: expected pure-e and/or lensed, got {args.fullsky_skies!r}")
    if args.fullsky_simulate is not None:
        import healpy as hp

        if not hp.isnsideok(args.fullsky_simulate, nest=True) or args.fullsky_simulate < 8:
            raise InputError(f"--fullsky-simulate: Nside must be a power of 2 of at least 8, got {args.fullsky_simulate}")
        if band is not None and not 2 <= band[0] < band[1] <= 3 * args.fullsky_simulate - 1:
            raise InputError(f"--fullsky-band: need 2 <= {band[0]} < {band[1]} <= 3 Nside - 1")
    return sphere_methods, band, tuple(dict.fromkeys(labels))


def _fullsky_tqu_runs(args, sky, sphere_methods, band, labels, fullsky_input=None, model=None):
    """The full-sky T, Q, U evaluations asked for (a list of fullsky_tqu_evaluation results)."""
    import healpy as hp

    from ..evaluation import fullsky_tqu as fs
    from ..sky.polarisation import pure_e_sky

    runs = []
    if fullsky_input is not None:
        truth, hmask = fullsky_input
        nside = hp.npix2nside(truth.shape[1])
        base = sky if args.fullsky_noise is None else sky.replace(noise_uk_arcmin=args.fullsky_noise)
        fsky = fs.fullsky_sky(base, nside, beam_fwhm_arcmin=args.fullsky_beam)
        runs.append(fs.fullsky_tqu_evaluation(truth, hmask, sky=fsky, methods=sphere_methods, seed=args.seed,
                                              band_ell=band, sky_label=Path(args.fullsky_map).name, model=model))
    if args.fullsky_simulate is not None:
        nside = int(args.fullsky_simulate)
        base = sky.replace(noise_uk_arcmin=0.0 if args.fullsky_noise is None else args.fullsky_noise,
                           noise_pol_uk_arcmin=None)
        hmask_given = None
        if args.fullsky_mask is not None and args.fullsky_map is None:
            hmask_given = _read_healpix(args.fullsky_mask)
            if hmask_given.size != hp.nside2npix(nside):
                raise InputError(f"{args.fullsky_mask}: mask has {hmask_given.size} pixels, --fullsky-simulate "
                                 f"{nside} needs {hp.nside2npix(nside)}")
        if "lensed" in labels and not np.any(base.spectra_uk2()["bb"]):
            raise InputError("--fullsky-skies: 'lensed' needs B modes, but the data's sky has C^BB = 0")
        for label in labels:
            sky_l = fs.fullsky_sky(pure_e_sky(base) if label == "pure-e" else base, nside,
                                   beam_fwhm_arcmin=args.fullsky_beam)
            truth, hmask = fs.simulate_fullsky_tqu(nside, sky=sky_l, n_holes=args.fullsky_holes, seed=args.seed)
            if hmask_given is not None:
                truth, hmask = fs.check_fullsky_tqu(truth, hmask_given, mask_source=str(args.fullsky_mask))
            runs.append(fs.fullsky_tqu_evaluation(truth, hmask, sky=sky_l, methods=sphere_methods, seed=args.seed,
                                                  band_ell=band, sky_label=f"{label} Nside {nside}", model=model))
    return runs


def resolve_tqu_methods_and_masks(args, has_model: bool):
    """(methods, mask specs) of a T, Q, U evaluation: every TQU method (nn with a model) and
    :data:`combine.evaluation.tqu.TQU_DEFAULT_MASK_SPECS` unless given."""
    from ..evaluation import RADIUS_SWEEP_PX
    from ..evaluation.tqu import TQU_DEFAULT_MASK_SPECS, TQU_METHODS, parse_tqu_methods

    if args.methods is None:
        methods = tuple(m for m in TQU_METHODS if has_model or m != "nn")
    else:
        methods = parse_tqu_methods(_split_list(args.methods))
        if "nn" in methods and not has_model:
            raise InputError("--methods: method 'nn' needs a model (--model is 'none')")
    if args.radius_sweep:
        mask_specs = tuple(f"circle-r{r}" for r in RADIUS_SWEEP_PX)
    elif args.masks is not None:
        mask_specs = tuple(_split_list(args.masks))
        if not mask_specs:
            raise InputError("--masks: no mask specification given")
    else:
        mask_specs = TQU_DEFAULT_MASK_SPECS
    return methods, mask_specs


def run_tqu(args, has_model: bool):
    """The T, Q, U branch of :func:`run` (module docstring)."""
    from ..evaluation.report_tqu import tqu_rmse_table, write_tqu_report
    from ..evaluation.tqu import check_tqu_model, run_tqu_evaluation

    if args.run_dir is not None:
        raise InputError("--run: per-checkpoint analysis is for temperature models only")
    if args.fullsky_holes < 1:
        raise InputError(f"--fullsky-holes: must be at least 1, got {args.fullsky_holes}")
    methods, mask_specs = resolve_tqu_methods_and_masks(args, has_model)
    want_fullsky = args.fullsky_map is not None or args.fullsky_simulate is not None
    if want_fullsky:
        sphere_methods, band, labels = _check_fullsky_tqu_args(args, methods)
    maps, sky, data_desc = load_eval_data(args.data, n_patches=args.n_patches, size=args.size,
                                          noise_uk_arcmin=args.noise, seed=args.seed, ns=args.ns, fields="TQU",
                                          pure_e=args.pure_e)
    size = maps.shape[-1]
    from ..evaluation import parse_mask_spec

    for spec in mask_specs:
        parse_mask_spec(spec, size=size)
    model = resolve_model(args.model)
    if model is not None and "nn" in methods:
        check_tqu_model(model, str(args.model))
    fullsky_input = _read_fullsky_tqu(args.fullsky_map, args.fullsky_mask) if args.fullsky_map is not None else None
    ev = run_tqu_evaluation(model, maps, sky=sky, methods=methods, mask_specs=mask_specs, seed=args.seed,
                            n_random=args.n_random, batch_size=args.batch_size, progress=True)
    fullsky = []
    if want_fullsky:
        # the full skies start from the data's sky with its B modes (--pure-e applies to the patches)
        base = simulation_sky(args.noise, args.ns) if str(args.data).startswith("simulate:") else sky
        fullsky = _fullsky_tqu_runs(args, base, sphere_methods, band, labels, fullsky_input, model=model)
    notes = []
    if want_fullsky:
        left_out = [m for m in methods if m not in sphere_methods and m != "zero"]
        notes.append(f"full sky: {', '.join(sphere_methods)}"
                     + (f" ({', '.join(left_out)}: no full-sky T, Q, U fill here)" if left_out else ""))
    command = _command_line(args, methods, mask_specs, len(maps))
    write_tqu_report(args.out, ev, command=command, fullsky=fullsky, notes=notes,
                     title=f"CoMBInE T, Q, U evaluation: model {args.model}, {data_desc}")
    print(tqu_rmse_table(ev.records, list(ev.methods), list(ev.mask_specs)))
    from ..progress import summary

    n_figures = len(list(Path(args.out).glob("*.png")))
    summary(f"wrote {Path(args.out) / 'report.md'}, results.json and {n_figures} figure(s); {len(maps)} T, Q, U "
            f"patches ({size}²), methods {','.join(methods)}, masks {','.join(mask_specs)}"
            + (f", {len(fullsky)} full sk{'y' if len(fullsky) == 1 else 'ies'}" if fullsky else "")
            + f"; seed {args.seed}")
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
    if getattr(args, "fields", None) is not None:
        parts += ["--fields", args.fields]
    if getattr(args, "pure_e", False):
        parts += ["--pure-e"]
    if getattr(args, "fullsky_simulate", None) is not None:
        parts += ["--fullsky-simulate", str(args.fullsky_simulate), "--fullsky-skies", args.fullsky_skies,
                  "--fullsky-holes", str(args.fullsky_holes)]
        if args.fullsky_mask is not None and args.fullsky_map is None:
            parts += ["--fullsky-mask", str(args.fullsky_mask)]
    for flag, name in (("--fullsky-beam", "fullsky_beam"), ("--fullsky-noise", "fullsky_noise")):
        if getattr(args, name, None) is not None:
            parts += [flag, f"{getattr(args, name):g}"]
    if getattr(args, "fullsky_band", None) is not None:
        parts += ["--fullsky-band", args.fullsky_band]
    return " ".join(shlex.quote(p) for p in parts)
