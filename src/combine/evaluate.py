"""Evaluation: a model and the classical baselines side by side on the same patches and holes.

For every method (the network ``"nn"``, the exact Wiener filter, the Gaussian constrained
realisation and the classical fills of :mod:`combine.baselines`) and every mask specification
(centred circles ``circle-rN`` of radius N px, ``random`` shapes, ``points``), the same masked
patches are filled and compared with the truth. Each number becomes one record

``{"method": ..., "mask": ..., "metric": ..., "value": float, "n_patches": int, ...}``

with optional fields ``radius_px`` (circle masks), ``ell_bin``/``ell_min``/``ell_max`` (per-ℓ-bin
metrics), ``err`` (1σ error), ``truth`` (the same statistic of the true hole pixels), ``epoch``
(per-checkpoint analysis). The metrics (pooled over the patches of one mask specification):

* ``rmse_hole`` — :math:`\\sqrt{\\sum_{i,p\\in\\mathrm{hole}} (\\hat T - T)^2 / N_\\mathrm{hole}}`, μK;
  ``err`` from the scatter of the per-patch mean squared errors;
* ``rmse_hole_ratio_wiener`` — ``rmse_hole`` divided by the Wiener filter's on the same patches;
* ``abs_diff_{mean,std,percent}_{hole,patch}`` — the original CoMBInE's statistics of
  :math:`|\\hat T - T|` in the hole and on the whole (composited) patch; percent is
  :math:`100\\,\\langle|\\hat T - T|\\rangle / \\langle|T|\\rangle`;
* ``hole_variance_ratio`` — variance of filled hole pixels over that of the true ones;
* ``power_ratio`` (per ℓ bin) — :math:`\\sum_i P_{\\hat T_i}(\\ell_b) / \\sum_i P_{T_i}(\\ell_b)` of the
  apodised flat-sky spectra, ``err`` the cosmic-variance error of the bin; ``power_ratio_band``
  its mean over the bins with centre in [``POWER_BAND_ELL``];
* ``ks_statistic`` / ``ks_pvalue`` — two-sample Kolmogorov–Smirnov test of the filled against
  the true hole-pixel values;
* ``gauss_mu_hole`` / ``gauss_sigma_hole`` — Gaussian fit of the filled hole-pixel values
  (``truth``: the fit of the true ones);
* ``seconds_per_patch`` — wall time of the fill divided by the number of patches (includes the
  factorisation of the Wiener filter / GCR for the mask geometry: ``setup`` notes it);
* ``seconds_precision_matrix`` (mask ``"all"``) — the one-off precision matrix of the sky that
  the Wiener filter and GCR share (not in ``seconds_per_patch``).

Centred circles are one geometry per radius, so the Wiener filter factorises once per radius and
reuses it across patches; random and point-source masks differ per patch, so every patch costs a
factorisation of its own (``n_random`` limits the number of patches used for those masks).
"""

from __future__ import annotations

import inspect
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .sky.defaults import BEAM_FWHM_ARCMIN, EVAL_NOISE_UK_ARCMIN, PIXEL_ARCMIN

ALL_METHODS = ("nn", "wiener", "gcr", "lwiener", "gmrf", "diffusive", "biharmonic", "telea", "ns", "mean")
DEFAULT_MASK_SPECS = ("circle-r4", "circle-r8", "circle-r16", "circle-r32", "random")
#: The original CoMBInE's sweep of centred holes, 5 … 65 px.
RADIUS_SWEEP_PX = (5, 15, 25, 35, 45, 55, 65)
#: ℓ range whose per-bin power ratios are averaged into ``power_ratio_band``.
POWER_BAND_ELL = (300.0, 3000.0)
#: Hole pixels kept per (method, mask) for histograms (a random subset beyond this).
MAX_HOLE_SAMPLES = 200_000

_CIRCLE_RE = re.compile(r"^circle-r(\d+(?:\.\d+)?)$")


# --------------------------------------------------------------------------------------------
# Mask specifications and methods
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MaskSpec:
    """A parsed mask specification: ``circle-rN`` (centred circle of radius N px), ``random``
    (random shapes, one per patch) or ``points`` (point-source holes, one set per patch)."""

    name: str
    kind: str
    radius_px: float | None = None

    @property
    def same_geometry(self) -> bool:
        """True when every patch shares one mask (Wiener factorises once)."""
        return self.kind == "circle"


def parse_mask_spec(spec: str, *, size: int | None = None, source: str = "--masks") -> MaskSpec:
    """Parse ``circle-rN`` / ``random`` / ``points``; raise InputError for anything else.

    A circle must leave valid pixels (radius below the patch half-diagonal minus 1 px; radii
    beyond the half side, like the original CoMBInE's 65 px on 128², keep the corners) and have a radius
    of at least 0.5 px (smaller ones, one-pixel holes, are taken to be mistakes).
    """
    spec = str(spec).strip()
    m = _CIRCLE_RE.match(spec)
    if m:
        radius = float(m.group(1))
        if radius < 0.5:
            raise InputError(f"{source}: mask spec {spec!r} is too small (radius must be at least 0.5 px)")
        if size is not None and radius >= size / math.sqrt(2) - 1:
            raise InputError(f"{source}: mask spec {spec!r} leaves no valid pixel in a {size}×{size} patch "
                             f"(radius must be < {size / math.sqrt(2) - 1:.0f} px)")
        radius_out = int(radius) if radius.is_integer() else radius
        return MaskSpec(spec, "circle", radius_out)
    if spec in ("random", "points"):
        return MaskSpec(spec, spec, None)
    raise InputError(f"{source}: unknown mask spec {spec!r} (expected circle-rN, random or points)")


def parse_methods(methods, *, source: str = "--methods", extra=()) -> tuple[str, ...]:
    """Validate method names against :data:`ALL_METHODS` (plus ``extra``); keep order, drop repeats."""
    out = []
    for name in methods:
        name = str(name).strip()
        if not name:
            continue
        if name not in ALL_METHODS and name not in extra:
            raise InputError(f"{source}: unknown method {name!r} (expected one of {', '.join(ALL_METHODS)})")
        if name not in out:
            out.append(name)
    if not out:
        raise InputError(f"{source}: no method given")
    return tuple(out)


def make_masks(spec: MaskSpec, n: int, size: int, seed: int) -> np.ndarray:
    """Masks (n, size, size) float32 for one specification (1 = valid, 0 = hole)."""
    from . import masks as masks_mod

    if spec.kind == "circle":
        one = np.asarray(masks_mod.circle_mask(size, spec.radius_px), dtype=np.float32)
        return np.broadcast_to(one, (n, size, size)).copy()
    return np.asarray(masks_mod.generate_masks(spec.kind, n, size, seed=seed), dtype=np.float32)


def _spec_seed(seed: int, spec: MaskSpec) -> int:
    """A seed per mask specification, stable across runs and independent of spec order."""
    key = sum((i + 1) * ord(c) for i, c in enumerate(spec.name))
    return int(np.random.SeedSequence([int(seed), key]).generate_state(1)[0])


def _call_fill(fill, maps, masks, sky_kwargs):
    """Call a baseline ``fill(maps, masks, **kw)`` with the sky keywords it accepts."""
    try:
        params = inspect.signature(fill).parameters
    except (TypeError, ValueError):
        return fill(maps, masks, **sky_kwargs)
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fill(maps, masks, **sky_kwargs)
    return fill(maps, masks, **{k: v for k, v in sky_kwargs.items() if k in params})


def check_model_fits(model, size: int, source: str = "--model") -> None:
    """Raise InputError when the model cannot take ``size``×``size`` patches."""
    unet = getattr(model, "unet", None)
    multiple = getattr(unet, "input_size_multiple", None)
    if multiple and size % int(multiple):
        raise InputError(f"{source}: model needs patch sizes that are multiples of {int(multiple)} px, "
                         f"data has {size}×{size}")
    config = getattr(model, "config", None) or {}
    for key in ("patch_size", "size"):
        trained = config.get(key) if isinstance(config, dict) else None
        if isinstance(trained, int) and trained != size and not config.get("tiling", False):
            # models that tile large images accept any multiple; others were trained on one size
            if size % trained and trained % size:
                raise InputError(f"{source}: model was trained on {trained}×{trained} patches, data has {size}×{size}")


# --------------------------------------------------------------------------------------------
# Metrics of one (method, mask) cell
# --------------------------------------------------------------------------------------------

def _pooled_rmse(filled, target, hole):
    """Pooled hole RMSE and its 1σ error from the scatter of per-patch MSEs.

    .. math:: \\mathrm{RMSE} = \\sqrt{\\sum_i s_i / \\sum_i n_i},\\quad
              \\sigma_\\mathrm{RMSE} \\approx \\sigma(\\mathrm{MSE}_i) / (2\\,\\mathrm{RMSE}\\sqrt{N})
    """
    d2 = np.where(hole, (filled.astype(np.float64) - target) ** 2, 0.0)
    s = d2.reshape(len(d2), -1).sum(axis=1)
    n = hole.reshape(len(hole), -1).sum(axis=1)
    keep = n > 0
    if not keep.any():
        return float("nan"), float("nan")
    rmse = math.sqrt(s[keep].sum() / n[keep].sum())
    per_patch = s[keep] / n[keep]
    if keep.sum() > 1 and rmse > 0:
        err = float(per_patch.std(ddof=1) / math.sqrt(keep.sum()) / (2 * rmse))
    else:
        err = float("nan")
    return rmse, err


def cell_metrics(filled, target, masks, *, pixel_arcmin: float, rng=None) -> tuple[list[dict], dict]:
    """All metrics of one method on one set of patches and masks.

    Parameters
    ----------
    filled, target : (N, H, W) arrays, μK
        Filled patches (valid pixels already composited from the target) and the truth.
    masks : (N, H, W) array
        1 = valid, 0 = hole.
    pixel_arcmin : float
        Pixel side, for the flat-sky spectra.

    Returns
    -------
    records : list of dict
        ``{"metric", "value", ...}`` without method/mask (the caller adds them).
    samples : dict
        ``{"filled": hole values, "truth": hole values}`` (subsampled to ``MAX_HOLE_SAMPLES``).
    """
    from . import metrics

    filled = np.asarray(filled, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    hole = np.asarray(masks) < 0.5
    rec = []

    def add(metric, value, **extra):
        rec.append({"metric": metric, "value": None if value is None else float(value), **extra})

    rmse, err = _pooled_rmse(filled, target, hole)
    add("rmse_hole", rmse, err=err)

    valid = (~hole).astype(np.float32)
    for region in ("hole", "patch"):
        st = metrics.abs_diff_stats(filled, target, valid, region=region)
        add(f"abs_diff_mean_{region}", st["mean"])
        add(f"abs_diff_std_{region}", st["std"])
        add(f"abs_diff_percent_{region}", st["percent"])

    add("hole_variance_ratio", metrics.hole_variance_ratio(filled, target, 1.0 - hole))

    ell, ratio, ratio_err, edges = _power_ratio(filled, target, pixel_arcmin)
    for b in range(len(ell)):
        add("power_ratio", ratio[b], err=float(ratio_err[b]), ell_bin=float(ell[b]),
            ell_min=float(edges[b]), ell_max=float(edges[b + 1]))
    band = (ell >= POWER_BAND_ELL[0]) & (ell <= POWER_BAND_ELL[1]) & np.isfinite(ratio)
    if band.any():
        add("power_ratio_band", float(np.mean(ratio[band])),
            err=float(np.sqrt(np.sum(ratio_err[band] ** 2)) / band.sum()),
            ell_min=POWER_BAND_ELL[0], ell_max=POWER_BAND_ELL[1])

    fv = filled[hole]
    tv = target[hole]
    ks_stat, ks_p = metrics.ks_test(fv, tv)
    add("ks_statistic", ks_stat)
    add("ks_pvalue", ks_p)
    mu_f, sd_f = metrics.gaussian_fit(fv)
    mu_t, sd_t = metrics.gaussian_fit(tv)
    add("gauss_mu_hole", mu_f, truth=float(mu_t))
    add("gauss_sigma_hole", sd_f, truth=float(sd_t))

    if fv.size > MAX_HOLE_SAMPLES:
        rng = np.random.default_rng(0) if rng is None else rng
        idx = rng.choice(fv.size, MAX_HOLE_SAMPLES, replace=False)
        fv, tv = fv[idx], tv[idx]
    return rec, {"filled": fv.astype(np.float32), "truth": tv.astype(np.float32),
                 "fit": (float(mu_f), float(sd_f)), "fit_truth": (float(mu_t), float(sd_t))}


def _power_ratio(filled, target, pixel_arcmin):
    """(ell centres, ratio, cosmic-variance error, bin edges) of the pooled flat-sky spectra."""
    from . import metrics

    out = metrics.power_ratio(filled, target, pixel_arcmin=pixel_arcmin)
    return tuple(np.asarray(x, dtype=np.float64) for x in (out["ell"], out["ratio"], out["err"], out["edges"]))


# --------------------------------------------------------------------------------------------
# The evaluation loop
# --------------------------------------------------------------------------------------------

@dataclass
class Evaluation:
    """Everything an evaluation produced: the records and what the figures need."""

    records: list = field(default_factory=list)
    #: mask name -> {"target", "mask", "filled": {method: (H, W)}} for one example patch
    examples: dict = field(default_factory=dict)
    #: mask name -> {"truth": values, "filled": {method: values}, "fits": {name: (mu, sigma)}}
    hole_samples: dict = field(default_factory=dict)
    methods: tuple = ()
    mask_specs: tuple = ()
    sky: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def _as_nhw(maps, source="data"):
    maps = np.asarray(maps)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim == 4:
        if maps.shape[1] != 1:
            raise InputError(f"{source}: evaluation handles temperature only (C = 1), got {maps.shape[1]} channels")
        maps = maps[:, 0]
    if maps.ndim != 3 or maps.shape[1] != maps.shape[2]:
        raise InputError(f"{source}: expected square patches (N, H, W), got shape {maps.shape}")
    if not np.all(np.isfinite(maps)):
        raise InputError(f"{source}: maps hold NaN or inf")
    return np.ascontiguousarray(maps, dtype=np.float32)


def run_evaluation(model, maps, *, methods=ALL_METHODS, mask_specs=DEFAULT_MASK_SPECS,
                   pixel_arcmin: float = PIXEL_ARCMIN, beam_fwhm_arcmin: float = BEAM_FWHM_ARCMIN,
                   noise_uk_arcmin: float = EVAL_NOISE_UK_ARCMIN, cl_uk2=None, seed: int = 0,
                   progress: bool = True, n_random: int | None = None, fills: dict | None = None,
                   batch_size: int = 16, example_index: int = 0) -> Evaluation:
    """Fill the same masked patches with every method and measure them (see module docstring).

    Parameters
    ----------
    model : object with ``.inpaint(maps, masks)`` or None
        The network (method ``"nn"``); None evaluates the baselines only.
    maps : (N, H, W) or (N, 1, H, W) array, μK
        The true patches.
    methods : sequence of str
        Subset of :data:`ALL_METHODS` (plus the names in ``fills``).
    mask_specs : sequence of str
        ``circle-rN``, ``random``, ``points``.
    pixel_arcmin, beam_fwhm_arcmin, noise_uk_arcmin, cl_uk2 :
        The sky model of the data, passed to the Wiener filter and GCR (``cl_uk2`` defaults to
        the planck18 lensed TT spectrum).
    seed : int
        Seeds the random masks and the GCR fluctuations.
    n_random : int, optional
        Use only the first ``n_random`` patches for masks that differ per patch (each costs
        its own Wiener factorisation).
    fills : dict[str, callable], optional
        Extra or replacement methods ``fill(maps, masks, **sky) -> maps`` (tests use an oracle).

    Returns
    -------
    Evaluation
    """
    from .progress import progress as progress_bar

    fills = dict(fills or {})
    methods = parse_methods(methods, extra=tuple(fills), source="methods")
    maps = _as_nhw(maps)
    n, size = maps.shape[0], maps.shape[-1]
    specs = [parse_mask_spec(s, size=size, source="masks") for s in mask_specs]
    if not specs:
        raise InputError("masks: no mask specification given")
    if "nn" in methods and "nn" not in fills:
        if model is None:
            raise InputError("--methods: method 'nn' needs a model (--model NAME|DIR)")
        check_model_fits(model, size)
    baseline_names = [m for m in methods if m != "nn" and m not in fills]
    registry = {}
    if baseline_names:
        from .baselines import BASELINES

        for m in baseline_names:
            if m not in BASELINES:
                raise InputError(f"--methods: baseline {m!r} is not available")
            registry[m] = BASELINES[m]
    if cl_uk2 is None and any(m in ("wiener", "gcr") for m in baseline_names):
        from .sky.spectra import lensed_tt_cl_uk2

        cl_uk2 = lensed_tt_cl_uk2()
    sky = dict(pixel_arcmin=float(pixel_arcmin), beam_fwhm_arcmin=float(beam_fwhm_arcmin),
               noise_uk_arcmin=float(noise_uk_arcmin), cl_uk2=cl_uk2, seed=int(seed))

    ev = Evaluation(methods=methods, mask_specs=tuple(s.name for s in specs),
                    sky={k: v for k, v in sky.items() if k != "cl_uk2"})
    exact = [m for m in baseline_names if m in ("wiener", "gcr")]
    if exact:
        # The one-off precision matrix of the sky (minutes at 128²) is timed on its own, so that
        # seconds_per_patch is the per-geometry factorisation plus the per-patch solve.
        from .baselines.wiener import get_filter

        wf = get_filter((size, size), pixel_arcmin=sky["pixel_arcmin"], beam_fwhm_arcmin=sky["beam_fwhm_arcmin"],
                        noise_uk_arcmin=sky["noise_uk_arcmin"], cl_uk2=cl_uk2)
        source = wf.precision_source
        t0 = time.perf_counter()
        wf.precision
        setup = time.perf_counter() - t0
        for m in exact:
            ev.records.append({"method": m, "mask": "all", "metric": "seconds_precision_matrix", "value": setup,
                               "n_patches": int(n), "n_pixels": int(size * size), "source": source})
        how = {"compute": "computed", "disk": "read from the disk cache", "memory": "already in memory"}[source]
        ev.notes.append(f"wiener/gcr: the {size * size}² pixel precision matrix was {how} in {setup:.1f} s "
                        "(once, shared by both; not included in seconds per patch)")
    jobs = [(s, m) for s in specs for m in methods]
    bar = progress_bar(total=len(jobs), desc="evaluate") if progress else None
    rng = np.random.default_rng(seed)
    for spec in specs:
        n_use = n if (spec.same_geometry or n_random is None) else max(1, min(n, int(n_random)))
        if n_use < n:
            ev.notes.append(f"mask {spec.name}: {n_use} of {n} patches (masks differ per patch; "
                            "each costs its own Wiener factorisation)")
        target = maps[:n_use]
        masks = make_masks(spec, n_use, size, _spec_seed(seed, spec))
        hole = masks < 0.5
        masked_input = np.where(hole, np.float32(0.0), target)
        common = {"mask": spec.name, "n_patches": int(n_use)}
        if spec.radius_px is not None:
            common["radius_px"] = spec.radius_px
        ex = min(example_index, n_use - 1)
        ev.examples[spec.name] = {"target": target[ex].copy(), "mask": masks[ex].copy(), "filled": {}}
        ev.hole_samples[spec.name] = {"truth": None, "filled": {}, "fits": {}}
        rmse_by_method = {}
        for method in methods:
            if bar is not None:
                bar.set_postfix_str(f"{spec.name} {method}")
            t0 = time.perf_counter()
            if method in fills:
                out = _call_fill(fills[method], masked_input, masks, sky)
            elif method == "nn":
                out = model.inpaint(masked_input, masks, batch_size=batch_size)
            else:
                out = _call_fill(registry[method], masked_input, masks, sky)
            seconds = time.perf_counter() - t0
            out = np.asarray(out, dtype=np.float32).reshape(target.shape)
            if not np.all(np.isfinite(out[hole])):
                raise RuntimeError(f"method {method} returned non-finite values in the holes of {spec.name}")
            filled = np.where(hole, out, target)  # valid pixels are the data, whatever the method did
            cell, samples = cell_metrics(filled, target, masks, pixel_arcmin=sky["pixel_arcmin"], rng=rng)
            for r in cell:
                ev.records.append({"method": method, **common, **r})
            setup_note = ("one factorisation per geometry, amortised" if spec.same_geometry
                          else "one factorisation per patch")
            ev.records.append({"method": method, **common, "metric": "seconds_per_patch",
                               "value": seconds / n_use, "seconds_total": seconds,
                               **({"setup": setup_note} if method in ("wiener", "gcr") else {})})
            rmse_by_method[method] = next(r["value"] for r in cell if r["metric"] == "rmse_hole")
            ev.examples[spec.name]["filled"][method] = filled[ex].copy()
            hs = ev.hole_samples[spec.name]
            hs["truth"] = samples["truth"]
            hs["filled"][method] = samples["filled"]
            hs["fits"][method] = samples["fit"]
            hs["fits"]["truth"] = samples["fit_truth"]
            if bar is not None:
                bar.update(1)
        if "wiener" in rmse_by_method and rmse_by_method["wiener"] > 0:
            for method, value in rmse_by_method.items():
                ev.records.append({"method": method, **common, "metric": "rmse_hole_ratio_wiener",
                                   "value": value / rmse_by_method["wiener"]})
    if bar is not None:
        bar.close()
    return ev


def evaluate(model, maps, **kwargs) -> list[dict]:
    """Evaluate ``model`` (or None: baselines only) on ``maps``; return the list of records.

    Keywords as :func:`run_evaluation` (``methods``, ``mask_specs``, ``pixel_arcmin``,
    ``beam_fwhm_arcmin``, ``noise_uk_arcmin``, ``cl_uk2``, ``seed``, ``progress``, ``n_random``).
    """
    return run_evaluation(model, maps, **kwargs).records


# --------------------------------------------------------------------------------------------
# Per-epoch analysis of a training run
# --------------------------------------------------------------------------------------------

def _epoch_of(directory: Path, index: int) -> int:
    import json

    cfg = directory / "config.json"
    if cfg.is_file():
        try:
            data = json.loads(cfg.read_text())
            for holder in (data, data.get("training", {}) if isinstance(data, dict) else {}):
                if isinstance(holder, dict) and isinstance(holder.get("epoch"), int):
                    return holder["epoch"]
        except (ValueError, OSError):
            pass
    digits = re.findall(r"\d+", directory.name)
    return int(digits[-1]) if digits else index


def list_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """(epoch, model directory) of every checkpoint of a training run, sorted by epoch."""
    run_dir = Path(run_dir)
    ck = run_dir / "checkpoints"
    if not ck.is_dir():
        raise InputError(f"{run_dir}: not a training run (no checkpoints/ directory)")
    dirs = sorted(p for p in ck.iterdir() if p.is_dir() and (p / "config.json").is_file()
                  and not p.name.startswith("."))
    if not dirs:
        raise InputError(f"{ck}: no checkpoint (model directory with config.json)")
    return sorted((_epoch_of(p, i), p) for i, p in enumerate(dirs))


def evaluate_run(run_dir, maps, *, mask_specs=DEFAULT_MASK_SPECS, n_patches: int = 8,
                 progress: bool = True, reference_methods=("wiener",), **sky) -> list[dict]:
    """Evaluate every checkpoint of a training run on the first ``n_patches`` patches.

    Returns records of method ``"nn"`` with an ``epoch`` field (the original CoMBInE's
    per-epoch analysis), plus records of ``reference_methods`` on the same patches and masks
    (``epoch`` None) for comparison lines. Only scalar metrics (no ℓ bins) are kept.
    """
    from .models import load_model
    from .progress import progress as progress_bar

    maps = _as_nhw(maps)[:n_patches]
    checkpoints = list_checkpoints(run_dir)
    out = []
    wiener_rmse = {}
    if reference_methods:
        recs = evaluate(None, maps, methods=reference_methods, mask_specs=mask_specs, progress=False, **sky)
        out += [{**r, "epoch": None} for r in recs if r.get("ell_bin") is None]
        wiener_rmse = {r["mask"]: r["value"] for r in recs
                       if r["method"] == "wiener" and r["metric"] == "rmse_hole" and r["value"]}
    for epoch, directory in (progress_bar(checkpoints, desc="checkpoints") if progress else checkpoints):
        model = load_model(directory)
        recs = evaluate(model, maps, methods=("nn",), mask_specs=mask_specs, progress=False, **sky)
        for r in recs:
            if r.get("ell_bin") is None:
                out.append({**r, "epoch": int(epoch), "checkpoint": directory.name})
                if r["metric"] == "rmse_hole" and r["mask"] in wiener_rmse:
                    out.append({**r, "metric": "rmse_hole_ratio_wiener", "value": r["value"] / wiener_rmse[r["mask"]],
                                "epoch": int(epoch), "checkpoint": directory.name})
                    out[-1].pop("err", None)
    return out


# --------------------------------------------------------------------------------------------
# Full-sky evaluation
# --------------------------------------------------------------------------------------------

def fullsky_spectra(truth_map, mask, filled_map, *, lmax: int | None = None, delta_ell: int = 20,
                    iterations: int = 0):
    r"""Angular power spectra of a filled full-sky map against the truth and the masked sky.

    With :math:`C_\ell^X` the ``anafast`` spectrum of map :math:`X`,

    .. math::

        r^\mathrm{fill}_b = \frac{\sum_{\ell\in b} C_\ell^\mathrm{filled}}{\sum_{\ell\in b} C_\ell^\mathrm{truth}},
        \qquad
        r^\mathrm{zero}_b = \frac{\sum_{\ell\in b} C_\ell^{M\cdot T} / f_\mathrm{sky}}{\sum_{\ell\in b} C_\ell^\mathrm{truth}},

    with :math:`f_\mathrm{sky} = \langle M \rangle` (the naive pseudo-:math:`C_\ell` correction).
    The cosmic-variance error of a bin is :math:`\sqrt{2 / \sum_{\ell\in b}(2\ell+1)}`.
    ``iterations`` is anafast's ``iter``: 0 (one spherical transform per map instead of the
    seven of healpy's default 3) is enough for ratios, whose quadrature errors largely cancel.

    Returns
    -------
    dict with ``ell`` (bin centres), ``edges``, ``ratio_filled``, ``ratio_zero_fsky``,
    ``err``, ``f_sky`` and the unbinned spectra ``cl_truth``, ``cl_filled``, ``cl_zero``.
    """
    import healpy as hp

    truth = np.asarray(truth_map, dtype=np.float64)
    filled = np.asarray(filled_map, dtype=np.float64)
    m = np.asarray(mask, dtype=np.float64)
    if truth.shape != filled.shape or truth.shape != m.shape:
        raise InputError(f"fullsky: map, mask and filled map differ in shape ({truth.shape}, {m.shape}, {filled.shape})")
    nside = hp.npix2nside(truth.size)
    lmax = int(lmax) if lmax else 3 * nside - 1
    f_sky = float(m.mean())
    if f_sky <= 0:
        raise InputError("fullsky mask: no valid pixel")
    zero = np.where(m > 0, truth, 0.0)
    it = int(iterations)
    cl_truth = hp.anafast(truth, lmax=lmax, iter=it)
    cl_filled = hp.anafast(filled, lmax=lmax, iter=it)
    cl_zero = hp.anafast(zero, lmax=lmax, iter=it) / f_sky
    edges = np.arange(2, lmax + 2, delta_ell)
    if edges[-1] != lmax + 1:
        edges = np.append(edges, lmax + 1)
    ell = np.arange(lmax + 1)
    centres, rf, rz, err = [], [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sl = slice(lo, hi)
        t = cl_truth[sl].sum()
        centres.append(float(ell[sl].mean()))
        rf.append(cl_filled[sl].sum() / t if t > 0 else np.nan)
        rz.append(cl_zero[sl].sum() / t if t > 0 else np.nan)
        err.append(math.sqrt(2.0 / np.sum(2 * ell[sl] + 1)))
    return {"ell": np.array(centres), "edges": edges, "ratio_filled": np.array(rf),
            "ratio_zero_fsky": np.array(rz), "err": np.array(err), "f_sky": f_sky,
            "cl_truth": cl_truth, "cl_filled": cl_filled, "cl_zero": cl_zero}


def fill_healpix(model, hmap, hmask, *, batch_size: int = 16, progress: bool = True):
    """Fill a RING HEALPix map's holes with ``model`` (:func:`combine.healpix_inpaint.inpaint_healpix`).

    Returns the filled map (float64).
    """
    from .healpix_inpaint import inpaint_healpix

    out = inpaint_healpix(model, hmap, hmask, nest=False, batch_size=batch_size, progress=progress)
    return np.asarray(out, dtype=np.float64)


def fullsky_records(spectra: dict, *, method: str, mask_name: str = "fullsky") -> list[dict]:
    """Records (metric ``fullsky_power_ratio`` per ℓ bin) of :func:`fullsky_spectra`."""
    out = []
    edges = spectra["edges"]
    for b, ell in enumerate(spectra["ell"]):
        for name, key in ((method, "ratio_filled"), ("zero_fsky", "ratio_zero_fsky")):
            out.append({"method": name, "mask": mask_name, "metric": "fullsky_power_ratio",
                        "value": float(spectra[key][b]), "err": float(spectra["err"][b]),
                        "ell_bin": float(ell), "ell_min": int(edges[b]), "ell_max": int(edges[b + 1] - 1),
                        "f_sky": spectra["f_sky"]})
    return out


# --------------------------------------------------------------------------------------------
# The report: REPORT_DIR/report.md, its figures, results.json
# --------------------------------------------------------------------------------------------

def _clean(value):
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _lookup(records, method, mask, metric):
    for r in records:
        if r["method"] == method and r["mask"] == mask and r["metric"] == metric and r.get("ell_bin") is None:
            return r
    return None


def _fmt(value, digits=3):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def results_table(records, methods, masks) -> str:
    """Markdown table: hole RMSE (μK) and its ratio to the Wiener filter per mask, cost per patch."""
    head = "| method | " + " | ".join(masks) + " | s/patch |"
    sep = "|---|" + "---:|" * (len(masks) + 1)
    lines = [head, sep]
    for m in methods:
        cells = []
        costs = []
        for mk in masks:
            r = _lookup(records, m, mk, "rmse_hole")
            q = _lookup(records, m, mk, "rmse_hole_ratio_wiener")
            c = _lookup(records, m, mk, "seconds_per_patch")
            if c is not None:
                costs.append(c["value"])
            if r is None:
                cells.append("–")
            else:
                cells.append(f"{_fmt(r['value'])}" + (f" ({q['value']:.2f}×)" if q and q["value"] is not None else ""))
        cost = _fmt(float(np.mean(costs)), 2) if costs else "–"
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {cost} |")
    return "\n".join(lines)


#: Rows of the README summary table, in this order (those present in the records).
SUMMARY_METHODS = ("nn", "wiener", "gcr", "lwiener", "gmrf", "diffusive", "biharmonic", "telea", "ns", "mean")
METHOD_LABELS = {"nn": "CoMBInE (PConv UNet)", "wiener": "Wiener filter (exact)",
                 "gcr": "constrained realisation", "lwiener": "local Wiener (8 px)", "gmrf": "GMRF fill", "diffusive": "diffusive", "biharmonic": "biharmonic",
                 "telea": "OpenCV Telea", "ns": "OpenCV Navier–Stokes", "mean": "mean fill"}


def _fmt_num(value: float) -> str:
    """3 significant digits, integers from 1000 up (no exponent below 1e6)."""
    return f"{value:.0f}" if 1000 <= abs(value) < 1e6 else f"{value:.3g}"


def summary_table(records, *, methods=SUMMARY_METHODS, power_masks=("circle-r32", "random"),
                  labels=None) -> str:
    """The README results table: per method, the hole RMSE (μK, with its ratio to the Wiener
    filter) for each centred circle (ascending radius) and the random masks, the power ratio
    ``power_ratio_band`` on ``power_masks``, and the cost per patch (mean over the mask sets).
    """
    labels = dict(METHOD_LABELS if labels is None else labels)
    scalar = [r for r in records if r.get("ell_bin") is None and r.get("epoch") is None]
    present = [m for m in methods if any(r["method"] == m and r["metric"] == "rmse_hole" for r in scalar)]
    circles = sorted({(r["radius_px"], r["mask"]) for r in scalar
                      if r["metric"] == "rmse_hole" and r.get("radius_px") is not None})
    rmse_masks = [mk for _, mk in circles] + [mk for mk in ("random", "points")
                                              if any(r["mask"] == mk and r["metric"] == "rmse_hole" for r in scalar)]
    power_masks = [mk for mk in power_masks if any(r["mask"] == mk for r in scalar)]
    head = (["method"] + [f"RMSE {mk.replace('circle-r', 'r = ')} px" if mk.startswith("circle-r") else f"RMSE {mk}"
                          for mk in rmse_masks]
            + [f"P ratio {mk.replace('circle-r', 'r = ')}" for mk in power_masks] + ["s / patch"])
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for m in present:
        cells = [labels.get(m, m)]
        for mk in rmse_masks:
            r = _lookup(scalar, m, mk, "rmse_hole")
            q = _lookup(scalar, m, mk, "rmse_hole_ratio_wiener")
            cell = "–" if r is None or r["value"] is None else _fmt_num(r["value"])
            if q is not None and q["value"] is not None and r is not None:
                cell += f" ({q['value']:.2f}×)"
            cells.append(cell)
        for mk in power_masks:
            r = _lookup(scalar, m, mk, "power_ratio_band")
            cells.append("–" if r is None or r["value"] is None else
                         (f"{r['value']:.3f}" if r["value"] < 10 else _fmt_num(r["value"])))
        costs = [r["value"] for r in scalar if r["method"] == m and r["metric"] == "seconds_per_patch"
                 and r["mask"] in rmse_masks]
        cells.append(f"{np.mean(costs):.2g}" if costs else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metric_table(records, methods, masks, metric, digits=3) -> str:
    """Markdown table of one scalar metric, methods × masks."""
    lines = ["| method | " + " | ".join(masks) + " |", "|---|" + "---:|" * len(masks)]
    for m in methods:
        cells = []
        for mk in masks:
            r = _lookup(records, m, mk, metric)
            cells.append(_fmt(r["value"], digits) if r else "–")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metric_table_by_epoch(epoch_records, epochs, metric: str = "rmse_hole") -> str:
    """Markdown table: ``metric`` of the network per checkpoint (rows) and mask (columns), with
    its ratio to the Wiener filter when known."""
    masks = list(dict.fromkeys(r["mask"] for r in epoch_records if r.get("epoch") is not None))
    lines = ["| epoch | " + " | ".join(masks) + " |", "|---|" + "---:|" * len(masks)]
    for e in epochs:
        cells = []
        for mk in masks:
            val = [r for r in epoch_records if r.get("epoch") == e and r["mask"] == mk and r["metric"] == metric]
            rat = [r for r in epoch_records if r.get("epoch") == e and r["mask"] == mk
                   and r["metric"] == f"{metric}_ratio_wiener"]
            cell = _fmt(val[0]["value"]) if val else "–"
            if rat and rat[0]["value"] is not None:
                cell += f" ({rat[0]['value']:.2f}×)"
            cells.append(cell)
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_table(records, methods, masks) -> str:
    """Markdown table: seconds per patch of each method on each mask set."""
    lines = ["| method | " + " | ".join(masks) + " |", "|---|" + "---:|" * len(masks)]
    for m in methods:
        cells = []
        for mk in masks:
            r = _lookup(records, m, mk, "seconds_per_patch")
            cells.append(f"{r['value']:.3g}" if r else "–")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_figures(directory, ev: Evaluation, *, epoch_records=None, fullsky=None,
                  fullsky_method: str = "filled", extra_figures=None) -> dict[str, list[str]]:
    """Write every figure of a report into ``directory``; return {section: [file names]}.

    ``extra_figures`` maps a report section (``"panels"``, ..., ``"fullsky"``) to a callable
    ``writer(directory) -> file name`` that adds one figure to it.
    """
    from . import plots

    directory = Path(directory)
    figs: dict[str, list[str]] = {"panels": [], "radius": [], "power": [], "hist": [], "epoch": [], "fullsky": []}
    for mk, ex in ev.examples.items():
        name = f"panels_{mk}.png"
        plots.plot_panels(directory / name, ex["target"], ex["mask"], ex["filled"],
                          title=f"mask {mk}: one example patch")
        figs["panels"].append(name)
    radii = {r["radius_px"] for r in ev.records if r.get("radius_px") is not None}
    if len(radii) >= 2:
        for metric, kw in (("rmse_hole", dict(logy=True, ylabel="hole RMSE [μK]")),
                           ("rmse_hole_ratio_wiener", dict(reference=1.0, logy=True, ylabel="hole RMSE / Wiener")),
                           ("hole_variance_ratio", dict(reference=1.0, ylabel="Var(fill) / Var(truth) in hole")),
                           ("power_ratio_band", dict(reference=1.0,
                                                     ylabel=f"P ratio, ℓ∈[{POWER_BAND_ELL[0]:g},{POWER_BAND_ELL[1]:g}]")),
                           ("abs_diff_percent_hole", dict(logy=True, ylabel="mean |Δ| / mean |T| in hole [%]")),
                           ("ks_statistic", dict(ylabel="KS statistic (hole pixels)"))):
            if any(r["metric"] == metric for r in ev.records):
                name = f"radius_{metric}.png"
                plots.plot_metric_vs_radius(directory / name, ev.records, metric, methods=list(ev.methods), **kw)
                figs["radius"].append(name)
    for mk in ev.mask_specs:
        if any(r["metric"] == "power_ratio" and r["mask"] == mk for r in ev.records):
            name = f"power_ratio_{mk}.png"
            plots.plot_power_ratio(directory / name, ev.records, mk, methods=list(ev.methods))
            figs["power"].append(name)
    for mk, hs in ev.hole_samples.items():
        if hs["truth"] is not None and hs["filled"]:
            name = f"hist_{mk}.png"
            plots.plot_hole_histograms(directory / name, hs["truth"], hs["filled"], fits=hs["fits"],
                                       title=f"hole-pixel values, mask {mk}")
            figs["hist"].append(name)
    if epoch_records:
        nn_rows = [r for r in epoch_records if r["method"] == "nn"]
        refs = [r for r in epoch_records if r["method"] != "nn"]
        for metric, kw in (("rmse_hole", dict(ylabel="hole RMSE [μK]", reference_records=refs or None)),
                           ("rmse_hole_ratio_wiener", dict(ylabel="hole RMSE / Wiener", reference_value=1.0)),
                           ("power_ratio_band", dict(ylabel=f"P ratio, ℓ∈[{POWER_BAND_ELL[0]:g},"
                                                            f"{POWER_BAND_ELL[1]:g}]", logy=False,
                                                     reference_value=1.0)),
                           ("hole_variance_ratio", dict(ylabel="Var(fill) / Var(truth) in hole", logy=False,
                                                        reference_value=1.0))):
            if any(r["metric"] == metric for r in nn_rows):
                name = f"epochs_{metric}.png"
                plots.plot_metric_vs_epoch(directory / name, nn_rows, metric, **kw)
                figs["epoch"].append(name)
    if fullsky is not None:
        name = "fullsky_spectrum_ratio.png"
        plots.plot_fullsky_ratio(directory / name, fullsky["ell"],
                                 {f"{fullsky_method} / truth": fullsky["ratio_filled"],
                                  "zero-filled / f_sky / truth": fullsky["ratio_zero_fsky"]},
                                 errors=fullsky["err"],
                                 title=f"full sky: anafast ratios (f_sky = {fullsky['f_sky']:.4f})")
        figs["fullsky"].append(name)
    for section, writer in (extra_figures or {}).items():
        figs.setdefault(section, []).append(writer(directory))
    return figs


def report_markdown(ev: Evaluation, figs: dict, *, command: str, title: str = "CoMBInE evaluation",
                    notes=(), epoch_records=None, fullsky=None, fullsky_method: str = "filled",
                    fullsky_summary: str | None = None) -> str:
    """The text of report.md (tables of the records, relative links to the figures)."""
    methods, masks = list(ev.methods), list(ev.mask_specs)
    n_by_mask = {}
    for r in ev.records:
        n_by_mask.setdefault(r["mask"], r.get("n_patches"))
    sky = ev.sky
    out = [f"# {title}", ""]
    for note in notes:
        out += [f"> **{note}**", ""]
    out += ["Generated by:", "", "```", command, "```", "",
            f"Sky: pixel {sky.get('pixel_arcmin', float('nan')):.4f} arcmin, beam FWHM "
            f"{sky.get('beam_fwhm_arcmin', float('nan')):g} arcmin, white noise "
            f"{sky.get('noise_uk_arcmin', float('nan')):g} μK·arcmin; seed {sky.get('seed')}. "
            "Patches per mask: " + ", ".join(f"{k} {v}" for k, v in n_by_mask.items() if k in masks) + ".",
            ""]
    for note in ev.notes:
        out += [f"- {note}"]
    if ev.notes:
        out.append("")
    out += ["## Hole RMSE [μK] (ratio to the Wiener filter) and cost", "",
            "Pooled over all hole pixels of all patches. `s/patch`: wall time per patch, mean over the "
            "mask sets (Wiener/GCR include their factorisation: once per radius for centred circles, "
            "once per patch for random masks; the one-off precision matrix is listed above).", "",
            results_table(ev.records, methods, masks), "",
            "## Summary (README table)", "",
            "Hole RMSE [μK] (× the exact Wiener filter's), power ratio in ℓ ∈ "
            f"[{POWER_BAND_ELL[0]:g}, {POWER_BAND_ELL[1]:g}] (1 = right power), cost per patch.", "",
            summary_table(ev.records, methods=[m for m in SUMMARY_METHODS if m in methods]
                          + [m for m in methods if m not in SUMMARY_METHODS]), "",
            f"## Power ratio, mean over ℓ ∈ [{POWER_BAND_ELL[0]:g}, {POWER_BAND_ELL[1]:g}]", "",
            "Ratio of the summed apodised flat-sky spectra of filled and true patches (1 = right power; "
            "a smooth fill lacks small-scale power inside the hole).", "",
            metric_table(ev.records, methods, masks, "power_ratio_band", 4), "",
            "## Hole variance ratio Var(fill)/Var(truth)", "",
            metric_table(ev.records, methods, masks, "hole_variance_ratio"), "",
            "## Mean |fill − truth| in the hole, % of mean |truth| (the original CoMBInE's statistic)", "",
            metric_table(ev.records, methods, masks, "abs_diff_percent_hole"), "",
            "## KS statistic of hole-pixel values (fill vs truth)", "",
            metric_table(ev.records, methods, masks, "ks_statistic"), "",
            "## Seconds per patch", "", cost_table(ev.records, methods, masks), ""]
    sections = (("panels", "Example patches: target / masked / filled / difference"),
                ("radius", "Metrics against hole radius"),
                ("power", "Power-spectrum ratios (grey: cosmic variance of the bin)"),
                ("hist", "Hole-pixel distributions with Gaussian fits"),
                ("epoch", "Metrics against epoch (training run checkpoints)"),
                ("fullsky", "Full-sky spectrum ratios"))
    for key, heading in sections:
        if figs.get(key):
            out += [f"## {heading}", ""]
            if key == "fullsky" and fullsky_summary:
                out += [fullsky_summary, ""]
            if key == "fullsky" and fullsky is not None:
                sel = (fullsky["ell"] >= 30) & np.isfinite(fullsky["ratio_filled"])
                out += [f"f_sky = {fullsky['f_sky']:.4f}. Mean ratio over ℓ ≥ 30: {fullsky_method} / truth "
                        f"{np.mean(fullsky['ratio_filled'][sel]):.4f}, zero-filled / f_sky / truth "
                        f"{np.mean(fullsky['ratio_zero_fsky'][sel]):.4f}.", ""]
            if key == "epoch" and epoch_records:
                ep = sorted({r["epoch"] for r in epoch_records if r.get("epoch") is not None})
                if ep:
                    n_ep = next(r.get("n_patches") for r in epoch_records if r.get("epoch") is not None)
                    out += [f"{len(ep)} checkpoints (epochs {ep[0]}–{ep[-1]}), {n_ep} patches each; "
                            "dashed lines: the exact Wiener filter on the same patches.", "",
                            metric_table_by_epoch(epoch_records, ep), ""]
            out += [f"![{name}]({name})" for name in figs[key]] + [""]
    out += ["`results.json` holds every number (one record per method, mask, metric and ℓ bin).", ""]
    return "\n".join(out)


def write_report(out_dir, ev: Evaluation, *, command: str, title: str = "CoMBInE evaluation", notes=(),
                 epoch_records=None, fullsky=None, fullsky_method: str = "filled",
                 extra_records=(), fullsky_summary: str | None = None, extra_figures=None) -> Path:
    """Write REPORT_DIR (report.md, PNG figures, results.json) atomically as one directory.

    ``fullsky`` is the dict of :func:`fullsky_spectra` (with ``fullsky_summary`` a sentence for
    its section); ``extra_records`` are appended to results.json; ``extra_figures`` as in
    :func:`write_figures`.
    """
    import json

    from .atomic import atomic_dir

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a directory")
    records = list(ev.records) + list(epoch_records or []) + list(extra_records)
    with atomic_dir(out_dir) as tmp:
        tmp = Path(tmp)
        figs = write_figures(tmp, ev, epoch_records=epoch_records, fullsky=fullsky, fullsky_method=fullsky_method,
                             extra_figures=extra_figures)
        text = report_markdown(ev, figs, command=command, title=title, notes=notes,
                               epoch_records=epoch_records, fullsky=fullsky, fullsky_method=fullsky_method,
                               fullsky_summary=fullsky_summary)
        (tmp / "report.md").write_text(text, encoding="utf-8")
        (tmp / "results.json").write_text(json.dumps(_clean(records), indent=1, allow_nan=False) + "\n",
                                          encoding="utf-8")
    return out_dir
