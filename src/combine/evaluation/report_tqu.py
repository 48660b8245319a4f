"""The report of a T, Q, U evaluation: report.md (per-field RMSE and E/B tables), figures, results.json."""

from __future__ import annotations

import json
import math
from pathlib import Path


from ..errors import InputError
from .report import _clean, _fmt
from .tqu import EB_BAND_ELL, FIELDS, TQUEvaluation


def _find(records, method, mask, metric, field=None):
    for r in records:
        if (r["method"] == method and r["mask"] == mask and r["metric"] == metric and r.get("ell_bin") is None
                and r.get("field") == field):
            return r
    return None


def tqu_rmse_table(records, methods, masks) -> str:
    """Markdown: per method and mask, the T / Q / U hole RMSE (μK) and, under it, the ratios to Wiener."""
    head = "| method | " + " | ".join(f"{mk}: T / Q / U" for mk in masks) + " |"
    lines = [head, "|---|" + "---:|" * len(masks)]
    for m in methods:
        cells = []
        for mk in masks:
            vals = [_find(records, m, mk, "rmse_hole", f) for f in FIELDS]
            rats = [_find(records, m, mk, "rmse_hole_ratio_wiener", f) for f in FIELDS]
            cell = " / ".join("–" if v is None else _fmt(v["value"]) for v in vals)
            if all(r is not None and r["value"] is not None for r in rats):
                cell += " (" + " / ".join(f"{r['value']:.2f}" for r in rats) + "×)"
            cells.append(cell)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_methods(records, methods, masks) -> list[str]:
    """One sentence per mask: the method with the lowest hole RMSE in each field (ties to 0.5 %)."""
    out = []
    for mk in masks:
        parts = []
        for f in FIELDS:
            vals = {m: _find(records, m, mk, "rmse_hole", f) for m in methods}
            vals = {m: r["value"] for m, r in vals.items() if r is not None and r["value"] is not None}
            if not vals:
                continue
            best = min(vals.values())
            tied = [m for m, v in vals.items() if v <= best * 1.005]
            parts.append(f"{f}: {', '.join(tied)} ({_fmt(best)} μK)")
        out.append(f"- {mk}: lowest hole RMSE — " + "; ".join(parts))
    return out


def eb_table(records, methods, masks) -> str:
    """Markdown: per method and mask, EE ratio, BB ratio and BB excess (E power leaked to B) over the band."""
    lines = ["| method | mask | EE fill / truth | BB fill / truth | BB excess / EE | BB of error / EE |",
             "|---|---|---:|---:|---:|---:|"]
    for mk in masks:
        for m in methods:
            cells = []
            for metric in ("ee_ratio_band", "bb_ratio_band", "bb_excess_band", "bb_residual_band"):
                r = _find(records, m, mk, metric)
                if r is None or r["value"] is None:
                    cells.append("–")
                else:
                    err = r.get("err")
                    cells.append(f"{r['value']:.4g}" + (f" ± {err:.2g}" if err is not None and math.isfinite(err)
                                                        else ""))
            lines.append(f"| {m} | {mk} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fullsky_table(fullsky: dict) -> str:
    """Markdown: per method, band EE and BB over the truth's, band BB (μK²), zero-filled BB over it, time."""
    lo, hi = fullsky["band"]
    bm = fullsky["band_mean"]
    lines = [f"| method | EE / truth | BB / truth | BB, {lo} ≤ ℓ ≤ {hi} [μK²] | zero-filled BB / this BB | s |",
             "|---|---:|---:|---:|---:|---:|"]
    t = bm["truth"]
    for name in ("truth", "zero_fsky", *fullsky["methods"]):
        b = bm[name]
        zero_over = "–" if name == "truth" else f"{bm['zero_fsky']['bb'] / b['bb']:.3g}"
        secs = fullsky["seconds"].get(name)
        lines.append(f"| {name} | {b['ee'] / t['ee']:.4f} | {b['bb'] / t['bb']:.4g} | {b['bb']:.3e} | {zero_over} | "
                     + ("–" if secs is None else f"{secs:.2g}") + " |")
    return "\n".join(lines)


def write_tqu_figures(directory, ev: TQUEvaluation, fullsky=None) -> dict[str, list[str]]:
    from .. import plots, plots_pol

    directory = Path(directory)
    pix = ev.sky.pixel_arcmin if ev.sky is not None else None
    kw = {} if pix is None else {"pixel_arcmin": pix}
    figs = {"panels": [], "eb": [], "fullsky": []}
    for mk, ex in ev.examples.items():
        # Stokes Q only (U looks alike; the T fills are the temperature evaluation's)
        fname = f"panels_{mk}_Q.png"
        plots.plot_panels(directory / fname, ex["target"][1], ex["mask"], {m: v[1] for m, v in ex["filled"].items()},
                          title=f"mask {mk}, Stokes Q: one example patch", **kw)
        figs["panels"].append(fname)
    def key(m):
        # legend names say what ran: on patches above 64² "wiener" / "gcr" are the local TQU filter
        return f"{m}-local" if m in ("wiener", "gcr") and ev.variants.get(m, "").startswith("local") else m

    for mk, s in ev.spectra.items():
        if "ell" in s:
            fname = f"bb_leakage_{mk}.png"
            plots_pol.plot_flat_bb_leakage(directory / fname, s["ell"], s["bb_truth"], s["ee_truth"],
                                           {key(m): v for m, v in s["methods"].items()}, mask_spec=mk, **kw)
            figs["eb"].append(fname)
    for i, fs in enumerate(fullsky or []):
        label = str(fs.get("sky_label") or i)
        fname = "fullsky_bb_leakage_" + "".join(c if c.isalnum() or c in "-." else "_" for c in label) + ".png"
        plots_pol.plot_fullsky_bb_leakage(directory / fname, fs["ell"], fs["binned"], f_sky=fs["f_sky"],
                                          nside=fs["nside"], methods=fs["methods"],
                                          title=f"Full-sky E→B leakage by method: {fs.get('sky_label') or 'map'}")
        figs["fullsky"].append(fname)
    return figs


def tqu_report_markdown(ev: TQUEvaluation, figs: dict, *, command: str, title: str, notes=(), fullsky=None) -> str:
    methods, masks = list(ev.methods), list(ev.mask_specs)
    out = [f"# {title}", ""]
    for note in notes:
        out += [f"> **{note}**", ""]
    sky_text = "unknown" if ev.sky is None else ev.sky.describe()
    out += ["Generated by:", "", "```", command, "```", "",
            f"Sky (given to every method): {sky_text}; seed {ev.seed}.", ""]
    out += [f"- {m}: {v}" for m, v in ev.variants.items() if v]
    out += [f"- {n}" for n in ev.notes] + [""]
    if methods and masks:
        out += ["## Hole RMSE [μK] per field T / Q / U (ratio to the TQU Wiener fill)", "",
                "Pooled over all hole pixels of all patches (one mask for T, Q and U).", "",
                tqu_rmse_table(ev.records, methods, masks), ""]
        out += best_methods(ev.records, methods, masks) + [""]
        out += [f"## Flat-sky E/B of the filled patches, ℓ ∈ [{EB_BAND_ELL[0]:g}, {EB_BAND_ELL[1]:g}]", "",
                "Apodised (Hann) flat-sky spectra, the same estimator on fill and truth, pooled over the "
                "patches. BB excess / EE: (BB of the filled patches − BB of the truth) / EE of the truth, "
                "the fraction of the E power that the fill adds to B; BB of error / EE: the B power of "
                "(fill − truth). ± is the scatter of per-patch values over √N. For a pure-E truth the "
                "truth's BB is the estimator's own E→B floor.", "",
                eb_table(ev.records, methods, masks), ""]
    for fs in fullsky or []:
        label = fs.get("sky_label") or "map"
        out += [f"## Full sky ({label}): anafast EE and BB of the filled maps", "",
                f"Nside {fs['nside']}, f_sky = {fs['f_sky']:.4f}; band means over {fs['band'][0]} ≤ ℓ ≤ "
                f"{fs['band'][1]}; zero_fsky is the cut sky (zeros in the holes) divided by f_sky; wiener and gcr "
                "are the local joint T, Q, U fills on the sphere, the classical fills run per field.", "",
                fullsky_table(fs), ""]
    for key, heading in (("panels", "Example patches (Stokes Q): truth / masked / fills / errors"),
                         ("eb", "Flat-sky BB leakage by method"), ("fullsky", "Full-sky BB leakage by method")):
        if figs.get(key):
            out += [f"## {heading}", ""] + [f"![{n}]({n})" for n in figs[key]] + [""]
    out += ["`results.json` holds every number (one record per method, mask, metric, field and ℓ bin).", ""]
    return "\n".join(out)


def write_tqu_report(out_dir, ev: TQUEvaluation, *, command: str, title: str = "CoMBInE T, Q, U evaluation",
                     notes=(), fullsky=None) -> Path:
    """Write REPORT_DIR (report.md, PNG figures, results.json) atomically; ``fullsky`` is a list of
    :func:`combine.evaluation.fullsky_tqu.fullsky_tqu_evaluation` results."""
    from ..atomic import atomic_dir

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a directory")
    records = list(ev.records) + [r for fs in (fullsky or []) for r in fs["records"]]
    with atomic_dir(out_dir) as tmp:
        tmp = Path(tmp)
        figs = write_tqu_figures(tmp, ev, fullsky)
        (tmp / "report.md").write_text(tqu_report_markdown(ev, figs, command=command, title=title, notes=notes,
                                                           fullsky=fullsky), encoding="utf-8")
        (tmp / "results.json").write_text(json.dumps(_clean(records), indent=1, allow_nan=False) + "\n",
                                          encoding="utf-8")
    return out_dir


__all__ = ["tqu_rmse_table", "eb_table", "fullsky_table", "best_methods", "write_tqu_report", "write_tqu_figures",
           "tqu_report_markdown"]
