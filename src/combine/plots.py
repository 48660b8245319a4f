"""Figures of the evaluation report (PNG, matplotlib Agg, written atomically).

Every function takes plain arrays or the evaluation records of :mod:`combine.evaluate` and
writes one PNG through :func:`combine.atomic.atomic_path`, so a failed plot never leaves a
partial file. Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot, no
global state), which renders with the Agg backend whatever the session's backend is.

Colour conventions: maps and differences in μK on a diverging colormap (``RdBu_r``) centred on
zero; all map panels of one figure share one colour scale, all difference panels another.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .atomic import atomic_path

MAP_CMAP = "RdBu_r"
DPI = 110

#: Stable colours per method, so that every figure of a report uses the same one.
METHOD_COLOURS = {
    "nn": "#d62728",
    "wiener": "#1f77b4",
    "gcr": "#2ca02c",
    "diffusive": "#ff7f0e",
    "biharmonic": "#9467bd",
    "gmrf": "#bcbd22",
    "lwiener": "#aec7e8",
    "telea": "#8c564b",
    "ns": "#e377c2",
    "mean": "#7f7f7f",
    "oracle": "#17becf",
    "zero_fsky": "#7f7f7f",
}


def method_colour(method: str) -> str:
    """Colour of ``method`` (a fixed palette entry, or a deterministic fallback)."""
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    palette = ["#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a"]
    return palette[sum(map(ord, method)) % len(palette)]


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return path


def _symmetric_limit(arrays, percentile: float = 99.9) -> float:
    values = np.concatenate([np.abs(np.asarray(a, dtype=np.float64)).ravel() for a in arrays])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 1.0
    lim = float(np.percentile(values, percentile))
    return lim if lim > 0 else 1.0


def _hole_contour(ax, mask) -> None:
    mask = np.asarray(mask)
    if mask.min() < 1:
        ax.contour(mask, levels=[0.5], colors="k", linewidths=0.6)


def plot_panels(path, target_uk, mask, filled_uk: dict, *, title: str = "") -> Path:
    r"""Target / masked / filled / difference panels for one patch and several methods.

    Top row: the target, the masked input (holes blank) and each method's filled patch, on one
    symmetric colour scale :math:`\pm\max|T|` (99.9th percentile); bottom row: the differences
    :math:`T_\mathrm{fill} - T_\mathrm{target}` on their own shared symmetric scale. The hole
    boundary is drawn as a black contour.

    Parameters
    ----------
    path : path-like
        Output PNG.
    target_uk, mask : (H, W) arrays
        The true patch (μK) and its mask (1 = valid, 0 = hole).
    filled_uk : dict[str, (H, W) array]
        Filled patch of each method, in display order.
    """
    target = np.asarray(target_uk, dtype=np.float64)
    mask = np.asarray(mask, dtype=np.float64)
    methods = list(filled_uk)
    ncol = 2 + len(methods)
    fig = Figure(figsize=(2.1 * ncol, 4.6))
    axes = fig.subplots(2, ncol, squeeze=False)
    vmax = _symmetric_limit([target])
    diffs = {m: np.asarray(filled_uk[m], dtype=np.float64) - target for m in methods}
    dmax = _symmetric_limit(list(diffs.values())) if diffs else 1.0
    masked = np.where(mask > 0, target, np.nan)
    panels = [("target", target), ("masked", masked)] + [(m, filled_uk[m]) for m in methods]
    im = None
    for ax, (name, image) in zip(axes[0], panels):
        im = ax.imshow(image, cmap=MAP_CMAP, vmin=-vmax, vmax=vmax, origin="upper", interpolation="nearest")
        _hole_contour(ax, mask)
        ax.set_title(name, fontsize=9)
    dim = None
    for ax, m in zip(axes[1, 2:], methods):
        dim = ax.imshow(diffs[m], cmap=MAP_CMAP, vmin=-dmax, vmax=dmax, origin="upper", interpolation="nearest")
        _hole_contour(ax, mask)
        rms = float(np.sqrt(np.mean(diffs[m][mask < 0.5] ** 2))) if (mask < 0.5).any() else 0.0
        ax.set_title(f"{m} − target\nhole rms {rms:.2f} μK", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[1, :2]:
        ax.set_axis_off()
    if im is not None:
        fig.colorbar(im, ax=list(axes[0]), shrink=0.85, pad=0.01, label="T [μK]")
    if dim is not None:
        fig.colorbar(dim, ax=list(axes[1]), shrink=0.85, pad=0.01, label="ΔT [μK]")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _records(records, **match):
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def plot_metric_vs_radius(path, records, metric: str, *, methods=None, ylabel: str | None = None,
                          logy: bool = False, reference: float | None = None) -> Path:
    """One metric against the radius of centred circular holes, one line per method.

    Reads the records whose ``metric`` matches and which carry ``radius_px`` (circle masks),
    drawing ``value`` with ``err`` as error bars when present. ``reference`` draws a dashed
    horizontal line (e.g. 1 for ratios).
    """
    rows = [r for r in records if r["metric"] == metric and r.get("radius_px") is not None
            and r.get("ell_bin") is None]
    if methods is None:
        methods = list(dict.fromkeys(r["method"] for r in rows))
    fig = Figure(figsize=(5.6, 3.9))
    ax = fig.subplots()
    for m in methods:
        pts = sorted((r["radius_px"], r["value"], r.get("err") or 0.0) for r in rows if r["method"] == m)
        pts = [p for p in pts if p[1] is not None and math.isfinite(p[1]) and (p[1] > 0 or not logy)]
        if not pts:
            continue
        x, y, e = map(np.asarray, zip(*pts))
        ax.errorbar(x, y, yerr=e if np.any(e > 0) else None, marker="o", ms=4, capsize=2,
                    label=m, color=method_colour(m))
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=0.8)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("hole radius [px]")
    ax.set_ylabel(ylabel or metric)
    ax.set_title(f"{metric} against hole radius", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def plot_power_ratio(path, records, mask_spec: str, *, methods=None) -> Path:
    r"""Binned power-spectrum ratio :math:`P_\mathrm{fill}(\ell)/P_\mathrm{target}(\ell)` per method.

    The grey band is the cosmic-variance error of each ℓ bin (``err`` of the records), around 1.
    """
    rows = _records(records, metric="power_ratio", mask=mask_spec)
    if methods is None:
        methods = list(dict.fromkeys(r["method"] for r in rows))
    fig = Figure(figsize=(5.8, 3.9))
    ax = fig.subplots()
    band = sorted({(r["ell_bin"], r.get("err") or 0.0) for r in rows})
    if band:
        ell, err = map(np.asarray, zip(*band))
        # one error per bin: all methods share the target's bins
        uniq_ell, idx = np.unique(ell, return_index=True)
        ax.fill_between(uniq_ell, 1 - err[idx], 1 + err[idx], color="0.85", label="cosmic variance")
    for m in methods:
        pts = sorted((r["ell_bin"], r["value"]) for r in rows if r["method"] == m)
        if pts:
            x, y = map(np.asarray, zip(*pts))
            ax.plot(x, y, marker=".", label=m, color=method_colour(m))
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    values = np.array([r["value"] for r in rows if r["value"] is not None and r["value"] > 0])
    if values.size and (values.max() > 5 or values.min() < 0.2):
        ax.set_yscale("log")  # one wild method (e.g. an untrained model) must not flatten the others
    ax.set_xlabel("multipole ℓ")
    ax.set_ylabel("P_fill / P_target")
    ax.set_title(f"power-spectrum ratio, mask {mask_spec}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def _gauss(x, mu, sigma):
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def plot_hole_histograms(path, truth_uk, filled_uk: dict, *, fits: dict | None = None,
                         title: str = "", bins: int = 50) -> Path:
    r"""Histograms of hole-pixel values (μK) of the truth and each method, with Gaussian fits.

    ``fits`` maps a name (``"truth"`` or a method) to ``(mu, sigma)``; when absent the sample
    mean and standard deviation are used. Curves are the normal density
    :math:`\mathcal N(\mu, \sigma^2)` scaled like the (density-normalised) histograms.
    """
    truth = np.asarray(truth_uk, dtype=np.float64).ravel()
    fits = dict(fits or {})
    allv = [truth] + [np.asarray(v, dtype=np.float64).ravel() for v in filled_uk.values()]
    lo = min(float(np.min(v)) for v in allv if v.size)
    hi = max(float(np.max(v)) for v in allv if v.size)
    if not hi > lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    xs = np.linspace(lo, hi, 400)
    methods = list(filled_uk)
    ncol = min(4, max(1, len(methods)))
    nrow = max(1, math.ceil(len(methods) / ncol))
    fig = Figure(figsize=(3.2 * ncol, 2.6 * nrow))
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    mu_t, sd_t = fits.get("truth", (float(truth.mean()), float(truth.std())))
    truth_density = np.histogram(truth, bins=edges, density=True)[0]
    for ax, m in zip(axes, methods):
        v = np.asarray(filled_uk[m], dtype=np.float64).ravel()
        # np.histogram + stairs: one artist per histogram (ax.hist draws one patch per bin)
        heights = truth_density
        ax.stairs(heights, edges, color="k", label="truth")
        # a very smooth fill is a narrow spike: keep the truth's histogram readable
        ax.set_ylim(0, 2.5 * float(np.max(heights)) if np.max(heights) > 0 else None)
        ax.set_autoscaley_on(False)
        ax.stairs(np.histogram(v, bins=edges, density=True)[0], edges, fill=True, alpha=0.45,
                  color=method_colour(m), label=m)
        if sd_t > 0:
            ax.plot(xs, _gauss(xs, mu_t, sd_t), "k--", lw=0.8)
        mu, sd = fits.get(m, (float(v.mean()), float(v.std())))
        if sd > 0:
            ax.plot(xs, _gauss(xs, mu, sd), color=method_colour(m), lw=1.0)
        ax.set_title(f"{m}: μ={mu:.1f}, σ={sd:.1f} μK\n(truth σ={sd_t:.1f})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("T [μK]", fontsize=8)
    for ax in axes[len(methods):]:
        ax.set_axis_off()
    if len(methods):
        axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_metric_vs_epoch(path, epoch_records, metric: str = "rmse_hole", *, reference_records=None,
                         ylabel: str | None = None, logy: bool = True,
                         reference_value: float | None = None) -> Path:
    """A metric of each checkpoint of a training run against its epoch, one line per mask.

    ``epoch_records`` carry an ``epoch`` field; ``reference_records`` (e.g. the Wiener filter
    on the same patches, also with ``epoch`` absent) are drawn as dashed horizontal lines in the
    colour of their mask; ``reference_value`` (e.g. 1 for ratios) as a black dashed line.
    """
    rows = [r for r in epoch_records if r["metric"] == metric and r.get("ell_bin") is None]
    masks = list(dict.fromkeys(r["mask"] for r in rows))
    fig = Figure(figsize=(5.8, 3.9))
    ax = fig.subplots()
    cmap = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    for i, mk in enumerate(masks):
        colour = cmap[i % len(cmap)]
        pts = sorted((r["epoch"], r["value"]) for r in rows if r["mask"] == mk)
        x, y = map(np.asarray, zip(*pts))
        ax.plot(x, y, marker="o", ms=3, color=colour, label=mk)
        for ref in reference_records or []:
            if ref["metric"] == metric and ref["mask"] == mk and ref.get("ell_bin") is None:
                ax.axhline(ref["value"], color=colour, ls="--", lw=0.8)
    if reference_value is not None:
        ax.axhline(reference_value, color="k", ls="--", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel or metric)
    if logy:
        ax.set_yscale("log")
    dashed = "Wiener filter per mask" if reference_records else ("reference" if reference_value is not None else "")
    ax.set_title(f"{metric} per checkpoint" + (f" (dashed: {dashed})" if dashed else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def plot_fullsky_ratio(path, ell, ratios: dict, *, errors=None, title: str = "", lmin: int = 2) -> Path:
    r"""Full-sky angular power-spectrum ratios against ℓ.

    ``ratios`` maps a label (e.g. ``"filled / truth"``, ``"zero-filled / f_sky / truth"``) to
    an array over ``ell``; ``errors`` (optional, same length) draws the cosmic-variance band
    :math:`\sqrt{2/(2\ell+1)}` (binned if ``ell`` is binned) around 1.
    """
    ell = np.asarray(ell, dtype=np.float64)
    sel = ell >= lmin
    fig = Figure(figsize=(6.2, 3.9))
    ax = fig.subplots()
    if errors is not None:
        err = np.asarray(errors, dtype=np.float64)
        ax.fill_between(ell[sel], 1 - err[sel], 1 + err[sel], color="0.85", label="cosmic variance")
    styles = ["#d62728", "#7f7f7f", "#1f77b4", "#2ca02c"]
    for i, (label, ratio) in enumerate(ratios.items()):
        ax.plot(ell[sel], np.asarray(ratio)[sel], lw=1.0, color=styles[i % len(styles)], label=label)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("multipole ℓ")
    ax.set_ylabel("C_ℓ ratio")
    ax.set_title(title or "full-sky spectrum ratio", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
