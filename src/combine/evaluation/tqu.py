"""T, Q, U evaluation of patches: per-field hole RMSE and flat-sky E/B metrics of every method on the same holes.

Every method fills the same masked (N, 3, H, W) patches (one mask per patch for all three
fields); the records (one per method, mask, metric, and field or ℓ bin) are

* ``rmse_hole`` with ``field`` ``"T"``, ``"Q"`` or ``"U"`` — the pooled hole RMSE of that field
  (μK; :func:`combine.evaluation.cell._pooled_rmse`), ``err`` from the per-patch scatter;
* ``rmse_hole_ratio_wiener`` (per field) — over the TQU Wiener fill's on the same patches;
* per ℓ bin of the apodised flat-sky spectra of :func:`combine.metrics_pol.flat_spectra_tqu`
  (Hann window, the same estimator for fill and truth), pooled over the N patches:
  ``ee_ratio`` :math:`\\sum_i \\hat C^{EE}_{fill,i}(b) / \\sum_i \\hat C^{EE}_{true,i}(b)`,
  ``bb_ratio`` (the same for BB; for a pure-E truth its denominator is the estimator's own E→B
  floor), ``bb_residual`` :math:`\\langle \\hat C^{BB}[\\mathrm{fill} - \\mathrm{truth}](b)\\rangle`
  in μK² (the B power of the fill's error) and ``bb_truth`` / ``ee_truth`` (μK², method
  ``"truth"``);
* band values over the bins with centre in :data:`EB_BAND_ELL`, with :math:`n_b` the modes of
  bin b and :math:`S^{XY} = \\sum_{b \\in band} n_b \\sum_i \\hat C^{XY}_i(b)`:
  ``ee_ratio_band`` :math:`S^{EE}_{fill}/S^{EE}_{true}`, ``bb_ratio_band``
  :math:`S^{BB}_{fill}/S^{BB}_{true}`, ``bb_excess_band``
  :math:`(S^{BB}_{fill} - S^{BB}_{true})/S^{EE}_{true}` (the fraction of the E power that the
  fill adds to B: the leakage) and ``bb_residual_band``
  :math:`S^{BB}[\\mathrm{fill} - \\mathrm{truth}]/S^{EE}_{true}`; ``err`` is the scatter of the
  per-patch values over :math:`\\sqrt N`;
* ``seconds_per_patch`` — wall time of the fill over N.

Methods (:data:`TQU_METHODS`): ``wiener`` / ``gcr`` / ``lwiener`` are the joint TQU fills of
:mod:`combine.baselines.wiener_pol` (``wiener`` and ``gcr`` dense up to 64² patches, the local
joint filter beyond — the record's ``variant`` says which ran); ``zero`` leaves zeros in the
holes (the cut sky); the classical scalar fills (``diffusive``, ``biharmonic``, ``telea``,
``navier-stokes``, ``mean``) run on T, Q and U separately, the baseline of what leaks; ``nn``
is a network with three input channels (``InpaintingModel.inpaint`` on (N, 3, H, W)). ``gmrf``
has no T, Q, U version (its field is fitted to the TT spectrum).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..sky.model import Sky
from .cell import POWER_BAND_ELL, _pooled_rmse
from .specs import make_masks, parse_mask_spec, spec_seed

FIELDS = ("T", "Q", "U")
TQU_METHODS = ("nn", "wiener", "gcr", "lwiener", "zero", "diffusive", "biharmonic", "telea", "navier-stokes",
               "mean")
#: Per-field scalar fills (the baselines of what leaks).
PER_FIELD_METHODS = ("diffusive", "biharmonic", "telea", "navier-stokes", "mean")
#: Default masks of a T, Q, U evaluation: no "random" shapes, whose large holes make the joint
#: local TQU window solve of a 128² patch need > 8 GB (measured: 8.4 GB resident, still running
#: after 3 min, on 2 patches); give ``--masks random`` explicitly for small patches.
TQU_DEFAULT_MASK_SPECS = ("circle-r4", "circle-r8", "circle-r16", "points")
#: ℓ range of the band E/B metrics (the temperature evaluation's power band).
EB_BAND_ELL = POWER_BAND_ELL


def parse_tqu_methods(methods, *, source: str = "--methods", extra=()) -> tuple[str, ...]:
    """Validate TQU method names (:data:`TQU_METHODS` plus ``extra``); keep order, drop repeats."""
    from ..baselines import check_method_name

    out = []
    for name in methods:
        name = str(name).strip()
        if not name:
            continue
        if name == "gmrf" and name not in extra:
            raise InputError(f"{source}: method 'gmrf' has no T, Q, U version (its GMRF is fitted to the TT "
                             "spectrum); use wiener, gcr, lwiener or a per-field classical fill")
        check_method_name(name, source, known=TQU_METHODS + tuple(extra))
        if name not in out:
            out.append(name)
    if not out:
        raise InputError(f"{source}: no method given")
    return tuple(out)


def as_tqu_patches(maps, source: str = "data") -> np.ndarray:
    """(N, 3, H, W) float32 square T, Q, U patches, finite; InputError otherwise."""
    arr = np.asarray(maps)
    if arr.ndim == 3 and arr.shape[0] == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1] != 3:
        raise InputError(f"{source}: expected T, Q, U patches (N, 3, H, W), got shape {arr.shape}")
    if arr.shape[2] != arr.shape[3]:
        raise InputError(f"{source}: expected square patches, got {arr.shape[2]}×{arr.shape[3]}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{source}: T, Q, U maps hold NaN or inf")
    return np.ascontiguousarray(arr, dtype=np.float32)


def check_tqu_model(model, source: str = "--model") -> None:
    """InputError unless ``model`` takes three channels (T, Q, U)."""
    c = int(getattr(model, "in_channels", 1))
    if c != 3:
        raise InputError(f"{source}: model takes {c} channel(s); T, Q, U data need a 3-channel model "
                         "(or leave nn out of --methods)")


def wiener_variant(method: str, size: int) -> str:
    """What ``wiener`` / ``gcr`` / ``lwiener`` compute on ``size``² TQU patches (for the report)."""
    from ..baselines.wiener_pol import DEFAULT_MARGIN_PX, DENSE_MAX_PIXELS

    local = f"local joint TQU window (valid pixels within {DEFAULT_MARGIN_PX} px, L1)"
    if method == "lwiener":
        return local
    if method in ("wiener", "gcr"):
        return ("dense exact joint TQU solve" if size * size <= DENSE_MAX_PIXELS
                else local + f" (a dense 3·{size}² solve does not fit)")
    return ""


def tqu_fill(method: str, maps, masks, *, sky: Sky, seed=None, model=None, batch_size: int = 16) -> np.ndarray:
    """Fill (N, 3, H, W) patches with ``method`` (module docstring); masks (N, H, W), 1 = valid."""
    masks = np.asarray(masks, dtype=np.float32)
    if method == "zero":
        return np.where(masks[:, None] > 0, maps, np.float32(0.0))
    if method == "nn":
        if model is None:
            raise InputError("--methods: method 'nn' needs a model (--model NAME|DIR)")
        check_tqu_model(model)
        return model.inpaint(maps, masks, batch_size=batch_size)
    if method in ("wiener", "gcr", "lwiener"):
        from ..baselines.wiener_pol import get_tqu_baseline

        return get_tqu_baseline(method, "--methods")(maps, masks, sky=sky, seed=seed)
    from ..baselines import get_baseline

    # a scalar fill on (N, 3, H, W): the mask broadcasts over T, Q, U, each field filled on its own
    return get_baseline(method, "--methods")(maps, masks, sky=sky, seed=seed)


def _band_sums(spectra: dict, name: str, band: np.ndarray) -> np.ndarray:
    """Per-patch :math:`\\sum_{b\\in band} n_b \\hat C_i(b)` (N,)."""
    return (spectra[name][:, band] * spectra["n_modes"][band]).sum(axis=1)


def eb_metrics(filled, target, pixel_arcmin: float, *, band_ell=EB_BAND_ELL) -> tuple[list[dict], dict]:
    """The flat E/B records of one fill (module docstring) and its binned spectra for figures.

    Returns (records without method/mask, ``{"ell", "edges"-free bins, "ee", "bb", "bb_residual"}``
    pooled means over the patches, and the truth's ``ee_truth`` / ``bb_truth``).
    """
    from ..metrics_pol import flat_spectra_tqu

    filled = np.asarray(filled, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    sf = flat_spectra_tqu(filled, pixel_arcmin)
    st = flat_spectra_tqu(target, pixel_arcmin)
    sr = flat_spectra_tqu(filled - target, pixel_arcmin)
    ell = sf["ell"]
    rec = []
    with np.errstate(invalid="ignore", divide="ignore"):
        ee_ratio = sf["ee"].sum(0) / st["ee"].sum(0)
        bb_ratio = sf["bb"].sum(0) / st["bb"].sum(0)
    bb_res = sr["bb"].mean(0)
    for b in range(ell.size):
        if not np.isfinite(ell[b]):
            continue
        common = {"ell_bin": float(ell[b]), "n_modes": int(sf["n_modes"][b])}
        rec.append({"metric": "ee_ratio", "value": float(ee_ratio[b]), **common})
        rec.append({"metric": "bb_ratio", "value": float(bb_ratio[b]), **common})
        rec.append({"metric": "bb_residual", "value": float(bb_res[b]), "unit": "uK2", **common})
    band = np.isfinite(ell) & (ell >= band_ell[0]) & (ell <= band_ell[1])
    if band.any():
        ee_f, ee_t = _band_sums(sf, "ee", band), _band_sums(st, "ee", band)
        bb_f, bb_t = _band_sums(sf, "bb", band), _band_sums(st, "bb", band)
        bb_r = _band_sums(sr, "bb", band)
        n = len(filled)

        def err(per_patch):
            return float(np.std(per_patch, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")

        extra = {"ell_min": float(band_ell[0]), "ell_max": float(band_ell[1])}
        rec.append({"metric": "ee_ratio_band", "value": float(ee_f.sum() / ee_t.sum()), "err": err(ee_f / ee_t), **extra})
        rec.append({"metric": "bb_ratio_band", "value": float(bb_f.sum() / bb_t.sum()), "err": err(bb_f / bb_t), **extra})
        rec.append({"metric": "bb_excess_band", "value": float((bb_f.sum() - bb_t.sum()) / ee_t.sum()),
                    "err": err((bb_f - bb_t) / ee_t), **extra})
        rec.append({"metric": "bb_residual_band", "value": float(bb_r.sum() / ee_t.sum()), "err": err(bb_r / ee_t),
                    **extra})
    curves = {"ell": ell, "ee": sf["ee"].mean(0), "bb": sf["bb"].mean(0), "bb_residual": bb_res,
              "ee_truth": st["ee"].mean(0), "bb_truth": st["bb"].mean(0)}
    return rec, curves


@dataclass
class TQUEvaluation:
    """What a T, Q, U evaluation produced: the records and what its figures need."""

    records: list = field(default_factory=list)
    #: mask name -> {"target" (3, H, W), "mask" (H, W), "filled": {method: (3, H, W)}} for one patch
    examples: dict = field(default_factory=dict)
    #: mask name -> {"ell", "ee_truth", "bb_truth", "methods": {method: {"ee", "bb", "bb_residual"}}}
    spectra: dict = field(default_factory=dict)
    methods: tuple = ()
    mask_specs: tuple = ()
    sky: Sky | None = None
    seed: int = 0
    notes: list = field(default_factory=list)
    #: method -> what it computed (e.g. the dense or local TQU Wiener filter)
    variants: dict = field(default_factory=dict)


def run_tqu_evaluation(model, maps, *, sky: Sky, methods=("wiener", "zero", "diffusive"), mask_specs=("circle-r4",),
                       seed: int = 0, n_random: int | None = None, fills: dict | None = None, batch_size: int = 16,
                       progress: bool = True, example_index: int = 0) -> TQUEvaluation:
    """Fill the same masked T, Q, U patches with every method and measure them (module docstring).

    Parameters
    ----------
    model : InpaintingModel with 3 input channels, or None
    maps : (N, 3, H, W) μK
    sky : Sky
        The data's sky (spectra TT, EE, BB, TE), given to every method.
    methods, mask_specs, seed, n_random, batch_size
        As :func:`combine.evaluation.run_evaluation`.
    fills : dict[str, callable], optional
        Extra methods ``fill(maps (N, 3, H, W), masks (N, H, W), *, sky, seed=None) -> maps``.
    """
    from ..progress import progress as progress_bar

    if not isinstance(sky, Sky):
        raise InputError(f"sky: expected a combine.sky.Sky, got {type(sky).__name__}")
    fills = dict(fills or {})
    methods = parse_tqu_methods(methods, extra=tuple(fills), source="methods")
    maps = as_tqu_patches(maps)
    n, size = maps.shape[0], maps.shape[-1]
    specs = [parse_mask_spec(s, size=size, source="masks") for s in mask_specs]
    if not specs:
        raise InputError("masks: no mask specification given")
    if "nn" in methods and "nn" not in fills:
        if model is None:
            raise InputError("--methods: method 'nn' needs a model (--model NAME|DIR)")
        check_tqu_model(model)
        from .loop import check_model_fits

        check_model_fits(model, size)
    seed = int(seed)
    ev = TQUEvaluation(methods=methods, mask_specs=tuple(s.name for s in specs), sky=sky, seed=seed)
    ev.records.append({"method": "all", "mask": "all", "metric": "sky", "value": None, "sky": sky.to_json(),
                       "sky_fingerprint": sky.fingerprint(), "seed": seed, "n_patches": int(n), "fields": "TQU"})
    for m in methods:
        if m in PER_FIELD_METHODS:
            ev.variants[m] = "scalar fill of T, Q and U separately"
        elif m == "zero":
            ev.variants[m] = "zeros in the holes (the cut sky)"
        elif m == "nn":
            ev.variants[m] = "3-channel network"
        elif m in fills:
            ev.variants[m] = "supplied fill"
        else:
            ev.variants[m] = wiener_variant(m, size)
    bar = progress_bar(total=len(specs) * len(methods), desc="evaluate TQU") if progress else None
    for spec in specs:
        n_use = n if (spec.same_geometry or n_random is None) else max(1, min(n, int(n_random)))
        if n_use < n:
            ev.notes.append(f"mask {spec.name}: {n_use} of {n} patches (masks differ per patch)")
        target = maps[:n_use]
        masks = make_masks(spec, n_use, size, spec_seed(seed, spec))
        hole = masks < 0.5
        masked = np.where(hole[:, None], np.float32(0.0), target)
        common = {"mask": spec.name, "n_patches": int(n_use)}
        if spec.radius_px is not None:
            common["radius_px"] = spec.radius_px
        ex = min(example_index, n_use - 1)
        ev.examples[spec.name] = {"target": target[ex].copy(), "mask": masks[ex].copy(), "filled": {}}
        spectra = ev.spectra[spec.name] = {"methods": {}}
        rmse = {}
        for method in methods:
            if bar is not None:
                bar.set_postfix_str(f"{spec.name} {method}")
            t0 = time.perf_counter()
            if method in fills:
                from .loop import call_fill

                out = call_fill(fills[method], masked, masks, sky=sky, seed=seed)
            else:
                out = tqu_fill(method, masked, masks, sky=sky, seed=seed, model=model, batch_size=batch_size)
            seconds = time.perf_counter() - t0
            out = np.asarray(out, dtype=np.float32).reshape(target.shape)
            filled = np.where(hole[:, None], out, target)
            if not np.all(np.isfinite(filled)):
                raise RuntimeError(f"method {method} returned non-finite values in the holes of {spec.name}")
            variant = {"variant": ev.variants[method]} if ev.variants.get(method) else {}
            for f, name in enumerate(FIELDS):
                value, err = _pooled_rmse(filled[:, f], target[:, f], hole)
                rmse[(method, name)] = value
                ev.records.append({"method": method, **common, "metric": "rmse_hole", "field": name,
                                   "value": value, "err": err, "unit": "uK", **variant})
            eb, curves = eb_metrics(filled, target, sky.pixel_arcmin)
            for r in eb:
                ev.records.append({"method": method, **common, **r})
            spectra.setdefault("ell", curves["ell"])
            spectra["ee_truth"], spectra["bb_truth"] = curves["ee_truth"], curves["bb_truth"]
            spectra["methods"][method] = {k: curves[k] for k in ("ee", "bb", "bb_residual")}
            ev.records.append({"method": method, **common, "metric": "seconds_per_patch", "value": seconds / n_use,
                               "seconds_total": seconds, **variant})
            ev.examples[spec.name]["filled"][method] = filled[ex].copy()
            if bar is not None:
                bar.update(1)
        for b, ell in enumerate(spectra["ell"]):
            if np.isfinite(ell):
                for name in ("ee_truth", "bb_truth"):
                    ev.records.append({"method": "truth", **common, "metric": name, "value": float(spectra[name][b]),
                                       "ell_bin": float(ell), "unit": "uK2"})
        if "wiener" in methods:
            for (method, name), value in rmse.items():
                ref = rmse[("wiener", name)]
                ev.records.append({"method": method, **common, "metric": "rmse_hole_ratio_wiener", "field": name,
                                   "value": value / ref if ref > 0 else float("nan")})
    if bar is not None:
        bar.close()
    return ev


__all__ = ["FIELDS", "TQU_METHODS", "TQU_DEFAULT_MASK_SPECS", "PER_FIELD_METHODS", "EB_BAND_ELL", "TQUEvaluation", "run_tqu_evaluation",
           "tqu_fill", "eb_metrics", "parse_tqu_methods", "as_tqu_patches", "check_tqu_model", "wiener_variant"]
