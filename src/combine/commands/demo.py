"""``combine demo``: the shipped model against the Wiener filter and the classical fills.

Simulates a small planck18 test set (128² patches, 1 μK·arcmin white noise), fills centred
circular holes of radius 4–32 px and random-shape holes with the shipped model
``planck18-t128``, the exact Wiener filter, the Gaussian constrained realisation and the
classical fills (:mod:`combine.evaluate`), then fills a small full-sky HEALPix map with
point-source holes through :func:`combine.healpix_inpaint.inpaint_healpix`, and writes the
evaluation report: ``OUT/report.md`` with its PNG figures and ``OUT/results.json``. It prints a
short table and where the report is.

If the shipped model is not installed, a randomly initialised network stands in and every
output says so loudly. ``--small`` is a quick check of the pipeline (tests), not a result.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..sky.defaults import BEAM_FWHM_ARCMIN, EVAL_NOISE_UK_ARCMIN, PATCH_SIZE, PIXEL_ARCMIN

SHIPPED_MODEL = "planck18-t128"
RANDOM_MODEL_WARNING = (f"WARNING: the shipped model '{SHIPPED_MODEL}' is not installed: the 'nn' results "
                        "come from a RANDOMLY INITIALISED PConvUNet (t128), not from a trained model")

#: Defaults of the full run, chosen so that the demo takes a few minutes on 2 CPU cores. The
#: largest cost is the exact Wiener filter's one-off 16384² precision matrix (Cholesky +
#: inverse, float64; the peak memory of the demo, 4.7 GB, is reached while it is built); then
#: each random-shape patch needs its own hole factorisation (~1–2 s, shared with the GCR while
#: the geometry cache of 1 GB holds them: 6 patches do). One measurement (the only figures
#: quoted; README.md quotes none): 2-core machine, empty caches, shipped model: 189 s wall, of
#: which the precision matrix 109 s and the full sky 25 s; 483 s while other jobs used the CPU.
#: Each report records its own precision-matrix time (``seconds_precision_matrix``).
DEFAULT_N_PATCHES = 48
DEFAULT_N_RANDOM = 6
DEFAULT_NSIDE = 1024
DEFAULT_N_SOURCES = 300
#: Point-source hole radii (arcmin), log-uniform; as in Planck's point-source masks most are small.
SOURCE_RADIUS_ARCMIN = (3.0, 15.0)

#: ``--small``: the whole pipeline in seconds (no exact Wiener filter / GCR: their 16384²
#: precision matrix alone takes minutes). For tests, not for results.
SMALL = dict(n_patches=4, n_random=2, nside=256, n_sources=30,
             methods=("nn", "diffusive", "telea", "mean"), masks=("circle-r4", "circle-r16", "random"))


def register(subparsers, common):
    p = subparsers.add_parser(
        "demo", parents=[common],
        help="run the shipped model and the baselines on simulated skies; write a report",
        description="Simulate a small planck18 test set, fill it with the shipped model, the exact Wiener "
                    "filter, the constrained realisation and the classical fills, fill a small full-sky "
                    "map with point-source holes, and write an evaluation report (report.md, figures, "
                    "results.json).")
    p.add_argument("--out", default="demo_output", metavar="DIR",
                   help="report directory, replaced atomically (default demo_output)")
    p.add_argument("--model", default=None, metavar="NAME|DIR",
                   help=f"model to demonstrate (default: the shipped {SHIPPED_MODEL}; a randomly "
                        "initialised stand-in, with a warning, if it is not installed)")
    p.add_argument("--n-patches", type=int, default=None, metavar="N",
                   help=f"simulated 128² patches (default {DEFAULT_N_PATCHES}; --small: {SMALL['n_patches']})")
    p.add_argument("--n-random", type=int, default=None, metavar="N",
                   help="patches used for random-shape masks; each costs its own Wiener factorisation "
                        f"(default {DEFAULT_N_RANDOM}; --small: {SMALL['n_random']})")
    p.add_argument("--nside", type=int, default=None,
                   help=f"full-sky map resolution (default {DEFAULT_NSIDE}; --small: {SMALL['nside']}); "
                        "0 skips the full-sky part")
    p.add_argument("--n-sources", type=int, default=None, metavar="N",
                   help=f"point-source holes in the full-sky map (default {DEFAULT_N_SOURCES}; "
                        f"--small: {SMALL['n_sources']})")
    p.add_argument("--batch-size", type=int, default=16, help="model batch size (default 16)")
    p.add_argument("--seed", type=int, default=2024, help="seed of simulations, masks and GCR (default 2024)")
    p.add_argument("--small", action="store_true",
                   help="a quick check of the whole pipeline (4 patches, no Wiener filter/GCR, Nside 256): "
                        "for tests, not for results")
    p.set_defaults(run=run)


# --------------------------------------------------------------------------------------------

def load_demo_model(name, say):
    """(model, warning or None, temporary directory to clean up or None).

    An explicit ``name`` must load (InputError otherwise); the default shipped model falls back
    to a randomly initialised t128 UNet with a loud warning.
    """
    from .. import load_model

    if name is not None:
        return load_model(name), None, None
    try:
        return load_model(SHIPPED_MODEL), None, None
    except InputError:
        pass
    import torch

    from ..models import save_model
    from ..nn import PConvUNet

    say(RANDOM_MODEL_WARNING)
    torch.manual_seed(0)
    tmp = tempfile.TemporaryDirectory(prefix="combine-demo-model-")
    directory = Path(tmp.name) / "random-t128"
    save_model(PConvUNet("t128").eval(), directory, extra={"note": "randomly initialised stand-in for the demo"})
    return load_model(directory), RANDOM_MODEL_WARNING, tmp


def point_source_mask_healpix(nside: int, n_sources: int, rng, radius_arcmin=SOURCE_RADIUS_ARCMIN) -> np.ndarray:
    """HEALPix (RING) mask of ``n_sources`` discs at isotropic random positions; 1 valid, 0 hole.

    Radii are log-uniform in ``radius_arcmin``; a disc smaller than a pixel masks the pixels whose
    centre it contains, or else the one pixel it is centred in (so every source makes a hole).
    Returns float32.
    """
    import healpy as hp

    mask = np.ones(hp.nside2npix(nside), dtype=np.float32)
    lo, hi = np.log(radius_arcmin[0]), np.log(radius_arcmin[1])
    radii = np.exp(rng.uniform(lo, hi, n_sources))
    z = rng.uniform(-1.0, 1.0, n_sources)
    phi = rng.uniform(0.0, 2.0 * np.pi, n_sources)
    s = np.sqrt(1.0 - z * z)
    for x, y, zz, r in zip(s * np.cos(phi), s * np.sin(phi), z, radii):
        pix = hp.query_disc(nside, (x, y, zz), np.radians(r / 60.0), inclusive=False)
        if pix.size == 0:
            pix = [hp.vec2pix(nside, x, y, zz)]
        mask[pix] = 0.0
    return mask


def _hole_zoom(truth, hmask, filled, nside: int, *, size: int = PATCH_SIZE, pixel_arcmin: float = PIXEL_ARCMIN):
    """Gnomonic cut-outs (nearest HEALPix pixel) of truth, mask and fill around the largest hole.

    The cut-out covers one model patch (``size`` × ``pixel_arcmin``); nearest-pixel look-up shows
    the HEALPix pixels as they are. Returns (truth, mask, filled) (size, size) arrays.
    """
    import healpy as hp

    from ..sky.projection import gnomonic_pixel_centres

    holes = np.flatnonzero(hmask < 0.5)
    sample = holes[:: max(1, holes.size // 500)]
    radius = np.radians(20.0 / 60.0)
    counts = [int(np.count_nonzero(hmask[hp.query_disc(nside, hp.pix2vec(nside, p), radius)] < 0.5))
              for p in sample]
    theta, phi = hp.pix2ang(nside, int(sample[int(np.argmax(counts))]))
    t, p = gnomonic_pixel_centres(math.degrees(phi), 90.0 - math.degrees(theta), size, pixel_arcmin)
    idx = hp.ang2pix(nside, t, p)
    return truth[idx], hmask[idx], filled[idx]


def fullsky_demo(model, *, nside, n_sources, seed, batch_size, sky, step):
    """Simulate, mask, fill and measure one full-sky map. Returns a dict (see :func:`run`)."""
    import healpy as hp

    from .. import evaluation as ev_mod
    from ..sky.healpix import simulate_healpix_map

    step(f"full sky: simulating an Nside {nside} map ({hp.nside2npix(nside):,} pixels, "
         f"{sky.beam_fwhm_arcmin:g}' beam, {sky.noise_uk_arcmin:g} μK·arcmin noise)")
    truth = np.asarray(simulate_healpix_map(nside, sky=sky, seed=seed), dtype=np.float64)
    hmask = point_source_mask_healpix(nside, n_sources, np.random.default_rng([seed, 1]))
    hole = hmask < 0.5
    masked = np.where(hole, hp.UNSEEN, truth)  # the holes hold no information, as in a real map
    step(f"full sky: filling {n_sources} point-source holes ({int(hole.sum()):,} pixels, "
         f"radii {SOURCE_RADIUS_ARCMIN[0]:g}–{SOURCE_RADIUS_ARCMIN[1]:g}') with the model")
    t0 = time.perf_counter()
    filled = ev_mod.fill_healpix(model, masked, hmask, batch_size=batch_size, progress=True)
    seconds = time.perf_counter() - t0
    if not np.all(np.isfinite(filled)) or np.any(filled[hole] == hp.UNSEEN):
        raise RuntimeError("full sky: the filled map has non-finite or UNSEEN pixels")
    if not np.array_equal(filled[~hole], truth[~hole]):
        raise RuntimeError("full sky: valid pixels changed by the fill")
    step("full sky: anafast spectra of the truth, the filled map and the zero-filled map")
    spectra = ev_mod.fullsky_spectra(truth, hmask, filled, delta_ell=max(10, 3 * nside // 60))
    common = {"mask": "fullsky-points", "nside": nside, "n_sources": n_sources, "n_patches": 1,
              "n_hole_pixels": int(hole.sum()), "f_sky": spectra["f_sky"]}
    records = [{**r, **common, "mask": "fullsky-points"} for r in ev_mod.fullsky_records(spectra, method="nn")]
    rmse = float(np.sqrt(np.mean((filled[hole] - truth[hole]) ** 2)))
    zero_rmse = float(np.sqrt(np.mean(truth[hole] ** 2)))
    records += [{"method": "nn", **common, "metric": "rmse_hole", "value": rmse},
                {"method": "zero_fill", **common, "metric": "rmse_hole", "value": zero_rmse},
                {"method": "nn", **common, "metric": "seconds_per_map", "value": seconds}]
    zoom = _hole_zoom(truth, hmask, filled, nside)
    return {"truth": truth, "mask": hmask, "filled": filled, "spectra": spectra, "records": records,
            "rmse": rmse, "zero_rmse": zero_rmse, "seconds": seconds, "nside": nside,
            "n_sources": n_sources, "n_hole_pixels": int(hole.sum()), "zoom": zoom}


def _model_description(model, warning) -> str:
    if warning:
        return "a randomly initialised PConvUNet (t128) — NOT a trained model"
    cfg = getattr(model, "config", {}) or {}
    tr = cfg.get("training") or {}
    arch = cfg.get("architecture") or {}
    bits = [f"model `{getattr(model, 'name', None) or getattr(model, 'directory', '?')}`"]
    if arch.get("preset"):
        bits.append(f"preset {arch['preset']}")
    if tr.get("global_step"):
        bits.append(f"{tr['global_step']:,} training steps")
    if tr.get("samples_seen"):
        bits.append(f"{tr['samples_seen']:,} patches seen")
    loss = (cfg.get("loss") or {}).get("name") or (cfg.get("loss") or {}).get("preset")
    if loss:
        bits.append(f"loss {loss}")
    return ", ".join(bits)


def _check_args(args):
    for name in ("n_patches", "n_random", "batch_size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise InputError(f"--{name.replace('_', '-')}: must be at least 1, got {v}")
    if args.n_sources is not None and args.n_sources < 1:
        raise InputError(f"--n-sources: must be at least 1, got {args.n_sources}")
    if args.nside is not None and args.nside != 0:
        import healpy as hp  # nest=True: Nside must be a power of 2

        if not hp.isnsideok(args.nside, nest=True) or not 64 <= args.nside <= 4096:
            raise InputError(f"--nside: {args.nside} is not a HEALPix Nside (power of 2) in 64…4096 (or 0)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")


def run(args):
    from .. import evaluation as ev_mod
    from ..sky import SKY_PRESETS
    from ..sky.flat import simulate_flat_patches

    t_start = time.perf_counter()
    _check_args(args)
    quiet = bool(getattr(args, "quiet", False))

    def say(text=""):
        print(text, flush=True)

    def step(text):
        if not quiet:
            print(f"[{time.perf_counter() - t_start:6.1f} s] {text}", flush=True)

    small = bool(args.small)
    n_patches = args.n_patches or (SMALL["n_patches"] if small else DEFAULT_N_PATCHES)
    n_random = args.n_random or (SMALL["n_random"] if small else DEFAULT_N_RANDOM)
    nside = args.nside if args.nside is not None else (SMALL["nside"] if small else DEFAULT_NSIDE)
    n_sources = args.n_sources or (SMALL["n_sources"] if small else DEFAULT_N_SOURCES)
    methods = SMALL["methods"] if small else ev_mod.ALL_METHODS
    masks = SMALL["masks"] if small else ev_mod.DEFAULT_MASK_SPECS
    out = Path(args.out)

    step("loading the model")
    model, warning, tmp_model = load_demo_model(args.model, say)
    notes = [warning] if warning else []
    if small:
        notes.append("--small: a quick check of the pipeline on 4 patches without the Wiener filter; "
                     "not a result")
    try:
        ev_mod.check_model_fits(model, PATCH_SIZE, source=str(args.model or SHIPPED_MODEL))
        step(f"simulating {n_patches} planck18 patches ({PATCH_SIZE}², {PIXEL_ARCMIN}' pixels, "
             f"{BEAM_FWHM_ARCMIN:g}' beam, {EVAL_NOISE_UK_ARCMIN:g} μK·arcmin noise)")
        sky = SKY_PRESETS["planck18-eval"]()  # one sky for the simulation, every method and the full sky
        maps = simulate_flat_patches(n_patches, size=PATCH_SIZE, sky=sky, seed=args.seed)
        wiener_note = (" (the exact Wiener filter first factorises the 16384² pixel covariance: "
                       "about two minutes on 2 cores)" if "wiener" in methods else "")
        step(f"filling masks {', '.join(masks)} with {', '.join(methods)}{wiener_note}")
        t_eval = time.perf_counter()
        ev = ev_mod.run_evaluation(model, maps, sky=sky, methods=methods, mask_specs=masks, n_random=n_random,
                                   seed=args.seed, batch_size=args.batch_size, progress=True)
        eval_seconds = time.perf_counter() - t_eval
        if "wiener" in methods or "gcr" in methods:
            from ..baselines.wiener import clear_caches

            clear_caches()  # free the 2 GB precision matrix before the full-sky part

        fullsky = None
        if nside:
            fullsky = fullsky_demo(model, nside=nside, n_sources=n_sources, seed=args.seed,
                                   batch_size=args.batch_size, sky=sky, step=step)

        step("writing the report")
        command = "combine demo --out " + str(out)
        for flag, value, default in (("--model", args.model, None), ("--n-patches", args.n_patches, None),
                                     ("--n-random", args.n_random, None), ("--nside", args.nside, None),
                                     ("--n-sources", args.n_sources, None), ("--seed", args.seed, 2024)):
            if value is not None and value != default:
                command += f" {flag} {value}"
        if small:
            command += " --small"
        title = ("CoMBInE demo" + (" — RANDOMLY INITIALISED MODEL" if warning else f": {_model_description(model, None)}"))
        extra = []
        if fullsky is not None:
            extra = fullsky["records"]
        for method in methods:
            extra.append({"method": method, "mask": "all", "metric": "demo_seconds_evaluation",
                          "value": eval_seconds, "n_patches": n_patches})
        _write_demo_report(out, ev, ev_mod, command=command, title=title, notes=notes, fullsky=fullsky,
                           extra_records=extra, model_text=_model_description(model, warning))
    finally:
        if tmp_model is not None:
            tmp_model.cleanup()

    elapsed = time.perf_counter() - t_start
    say()
    say("Hole RMSE [μK] (ratio to the exact Wiener filter) and cost per patch [s]:")
    say(ev_mod.results_table(ev.records, list(ev.methods), list(ev.mask_specs)))
    if fullsky is not None:
        say(f"\nFull sky (Nside {fullsky['nside']}, {fullsky['n_sources']} point sources, "
            f"{fullsky['n_hole_pixels']:,} hole pixels): hole RMSE {fullsky['rmse']:.2f} μK "
            f"(zero fill {fullsky['zero_rmse']:.1f} μK), fill {fullsky['seconds']:.1f} s")
    if warning:
        say()
        say(warning)
    say()
    say(f"Report: {out / 'report.md'}  (figures and results.json beside it; demo took {elapsed:.0f} s)")
    return 0


def _write_demo_report(out, ev, ev_mod, *, command, title, notes, fullsky, extra_records, model_text):
    """write_report plus the full-sky zoom figure and a model line."""
    zoom_writer = None
    if fullsky is not None:
        def zoom_writer(directory):
            from .. import plots

            t, m, f = fullsky["zoom"]
            name = "fullsky_hole_zoom.png"
            plots.plot_panels(Path(directory) / name, t.astype(np.float32), (m > 0.5).astype(np.float32),
                              {"nn": f.astype(np.float32)},
                              title=f"full sky, Nside {fullsky['nside']}: cut-out around the largest hole")
            return name
    ev.notes.insert(0, f"Model: {model_text}.")
    ev_mod.write_report(out, ev, command=command, title=title, notes=notes,
                        fullsky=None if fullsky is None else fullsky["spectra"], fullsky_method="nn",
                        extra_records=extra_records,
                        fullsky_summary=None if fullsky is None else _fullsky_summary(fullsky),
                        extra_figures=None if zoom_writer is None else {"fullsky": zoom_writer})


def _fullsky_summary(fs) -> str:
    return (f"Nside {fs['nside']} map ({BEAM_FWHM_ARCMIN:g}' beam, {EVAL_NOISE_UK_ARCMIN:g} μK·arcmin noise), "
            f"{fs['n_sources']} point-source holes of radius {SOURCE_RADIUS_ARCMIN[0]:g}–"
            f"{SOURCE_RADIUS_ARCMIN[1]:g}' ({fs['n_hole_pixels']:,} pixels), filled by "
            f"`combine.healpix_inpaint.inpaint_healpix` in {fs['seconds']:.1f} s. Hole RMSE "
            f"{fs['rmse']:.2f} μK (zero fill: {fs['zero_rmse']:.1f} μK).")
