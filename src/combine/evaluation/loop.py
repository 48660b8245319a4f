"""The evaluation loop: every method on the same masked patches, one :class:`Sky` for all.

:func:`run_evaluation` builds the masks of each specification, fills the masked patches with
every method and measures them (:func:`combine.evaluation.cell.cell_metrics`). Every method
receives the same :class:`combine.sky.Sky`: what one method is given never depends on which
other methods are in the list.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..sky.model import PRESETS, Sky
from .cell import cell_metrics
from .specs import ALL_METHODS, DEFAULT_MASK_SPECS, make_masks, parse_mask_spec, parse_methods, spec_seed


def call_fill(fill, maps, masks, *, sky, seed=None):
    """Call a fill with the baselines' convention ``fill(maps, masks, *, sky, seed=None, **opts)``.

    A fill that takes no ``sky`` keyword (written for the first API) gets the loose keywords
    of the same sky instead: ``cl_uk2=sky.cl_tt``, ``pixel_arcmin``, ``beam_fwhm_arcmin``,
    ``noise_uk_arcmin`` (and ``seed``), those it accepts. Either way the spectrum is always
    the sky's: it never depends on which other methods run.
    """
    try:
        params = inspect.signature(fill).parameters
    except (TypeError, ValueError):
        params = None
    takes_any = params is None or any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())
    if params is not None and "sky" in params:
        kwargs = {"sky": sky, "seed": seed}
    else:
        kwargs = {"cl_uk2": sky.cl_tt, "pixel_arcmin": sky.pixel_arcmin, "beam_fwhm_arcmin": sky.beam_fwhm_arcmin,
                  "noise_uk_arcmin": sky.noise_uk_arcmin, "seed": seed}
    if not takes_any:
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fill(maps, masks, **kwargs)


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
    #: the one sky every method was given
    sky: Sky | None = None
    seed: int = 0
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


def run_evaluation(model, maps, *, sky: Sky | None = None, methods=ALL_METHODS, mask_specs=DEFAULT_MASK_SPECS,
                   seed: int = 0, progress: bool = True, n_random: int | None = None, fills: dict | None = None,
                   batch_size: int = 16, example_index: int = 0, **legacy_sky) -> Evaluation:
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
    sky : Sky, optional
        The data's sky, given to every method (:func:`call_fill`); default the
        ``planck18-eval`` preset (1 μK·arcmin). The loose keywords of the first API
        (``pixel_arcmin``, ``beam_fwhm_arcmin``, ``noise_uk_arcmin``, ``cl_uk2``, ``ns``) are
        accepted instead.
    seed : int
        Seeds the random masks and the GCR fluctuations.
    n_random : int, optional
        Use only the first ``n_random`` patches for masks that differ per patch (each costs
        its own Wiener factorisation).
    fills : dict[str, callable], optional
        Extra or replacement methods ``fill(maps, masks, *, sky, seed=None) -> maps`` (tests use an oracle).

    Returns
    -------
    Evaluation
    """
    from ..progress import progress as progress_bar

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
        from ..baselines import get_baseline

        registry = {m: get_baseline(m, "--methods") for m in baseline_names}
    if sky is None and not legacy_sky:
        sky = PRESETS["planck18-eval"]()
    else:
        from ..sky.model import sky_from_keywords
        from ..sky.defaults import EVAL_NOISE_UK_ARCMIN

        sky = sky_from_keywords(sky, default_noise_uk_arcmin=EVAL_NOISE_UK_ARCMIN, **legacy_sky)
    seed = int(seed)

    ev = Evaluation(methods=methods, mask_specs=tuple(s.name for s in specs), sky=sky, seed=seed)
    ev.records.append({"method": "all", "mask": "all", "metric": "sky", "value": None, "sky": sky.to_json(),
                       "sky_fingerprint": sky.fingerprint(), "seed": seed, "n_patches": int(n)})
    exact = [m for m in baseline_names if m in ("wiener", "gcr")]
    if exact:
        # The one-off precision matrix of the sky (minutes at 128²) is timed on its own, so that
        # seconds_per_patch is the per-geometry factorisation plus the per-patch solve.
        from ..baselines.wiener import get_filter

        wf = get_filter((size, size), sky)
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
        masks = make_masks(spec, n_use, size, spec_seed(seed, spec))
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
                out = call_fill(fills[method], masked_input, masks, sky=sky, seed=seed)
            elif method == "nn":
                out = model.inpaint(masked_input, masks, batch_size=batch_size)
            else:
                out = call_fill(registry[method], masked_input, masks, sky=sky, seed=seed)
            seconds = time.perf_counter() - t0
            out = np.asarray(out, dtype=np.float32).reshape(target.shape)
            if not np.all(np.isfinite(out[hole])):
                raise RuntimeError(f"method {method} returned non-finite values in the holes of {spec.name}")
            filled = np.where(hole, out, target)  # valid pixels are the data, whatever the method did
            cell, samples = cell_metrics(filled, target, masks, pixel_arcmin=sky.pixel_arcmin, rng=rng)
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

    Keywords as :func:`run_evaluation` (``sky``, ``methods``, ``mask_specs``, ``seed``,
    ``progress``, ``n_random``).
    """
    return run_evaluation(model, maps, **kwargs).records


__all__ = ["Evaluation", "run_evaluation", "evaluate", "check_model_fits", "call_fill"]
