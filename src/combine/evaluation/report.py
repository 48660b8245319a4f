"""The report of an evaluation: REPORT_DIR/report.md (markdown tables), its figures, results.json."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InputError
from .cell import POWER_BAND_ELL
from .loop import Evaluation


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
SUMMARY_METHODS = ("nn", "wiener", "gcr", "lwiener", "gmrf", "diffusive", "biharmonic", "telea", "navier-stokes",
                   "mean")


def _fmt_num(value: float) -> str:
    """3 significant digits, integers from 1000 up (no exponent below 1e6)."""
    return f"{value:.0f}" if 1000 <= abs(value) < 1e6 else f"{value:.3g}"


def summary_table(records, *, methods=SUMMARY_METHODS, power_masks=("circle-r32", "random"),
                  labels=None) -> str:
    """The README results table: per method, the hole RMSE (μK, with its ratio to the Wiener
    filter) for each centred circle (ascending radius) and the random masks, the power ratio
    ``power_ratio_band`` on ``power_masks``, and the cost per patch (mean over the mask sets).
    Rows are named by ``labels`` (default :data:`combine.plots.METHOD_LABELS`, the one table of
    method names; imported here, not at module level, to keep matplotlib out of the CLI start-up).
    """
    if labels is None:
        from ..plots import METHOD_LABELS as labels
    labels = dict(labels)
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
    from .. import plots

    directory = Path(directory)
    # figures label sizes in arcmin: use the pixel of the sky that was evaluated, not the default
    pix = {} if ev.sky is None else {"pixel_arcmin": ev.sky.pixel_arcmin}
    figs: dict[str, list[str]] = {"panels": [], "radius": [], "power": [], "hist": [], "epoch": [], "fullsky": []}
    for mk, ex in ev.examples.items():
        name = f"panels_{mk}.png"
        plots.plot_panels(directory / name, ex["target"], ex["mask"], ex["filled"],
                          title=f"mask {mk}: one example patch", **pix)
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
                plots.plot_metric_vs_radius(directory / name, ev.records, metric, methods=list(ev.methods), **kw, **pix)
                figs["radius"].append(name)
    for mk in ev.mask_specs:
        if any(r["metric"] == "power_ratio" and r["mask"] == mk for r in ev.records):
            name = f"power_ratio_{mk}.png"
            plots.plot_power_ratio(directory / name, ev.records, mk, methods=list(ev.methods), **pix)
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
    sky_text = "unknown" if sky is None else sky.describe()
    out = [f"# {title}", ""]
    for note in notes:
        out += [f"> **{note}**", ""]
    out += ["Generated by:", "", "```", command, "```", "",
            f"Sky (given to every method): {sky_text}; seed {ev.seed}. "
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

    from ..atomic import atomic_dir

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


__all__ = ["results_table", "summary_table", "metric_table", "metric_table_by_epoch", "cost_table",
           "write_figures", "report_markdown", "write_report", "SUMMARY_METHODS"]
