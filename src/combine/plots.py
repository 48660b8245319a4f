"""Figures of the evaluation report (PNG, matplotlib Agg, written atomically).

Every function takes plain arrays or the evaluation records of :mod:`combine.evaluation` and
writes one PNG through :func:`combine.atomic.atomic_path`, so a failed plot never leaves a
partial file. Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot, no
global state), which renders with the Agg backend whatever the session's backend is.

A figure reads on its own:

- methods are named by :data:`METHOD_LABELS` (the one table of legend names), metrics by
  :data:`METRIC_TITLES` / :data:`METRIC_AXIS_LABELS`, masks by :func:`mask_label`;
- radii and scales are in arcmin (a pixel axis on top where pixels matter), every plot axis
  is labelled with its unit;
- map panels are in μK on a diverging colormap (``RdBu_r``) centred on zero, one colour scale
  per row kind (maps, differences), with an angular scale bar; holes are hatched grey on the
  input panel and outlined in grey on the others (never the white of 0 μK);
- many panels wrap into a grid at most :data:`MAX_COLUMNS` wide;
- a cosmic-variance band is drawn visibly (and only then named in the legend);
- histograms are never clipped: a spike far above the truth's peak switches the panel to a
  logarithmic density axis.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from .atomic import atomic_path
from .sky.defaults import PIXEL_ARCMIN

MAP_CMAP = "RdBu_r"
DPI = 110
#: Widest row of map panels or histograms.
MAX_COLUMNS = 4
#: Colour of holes (fill and outline): mid grey, distinct from the white of 0 μK.
HOLE_GREY = "0.55"

#: Legend name of every method, in one place.
METHOD_LABELS = {
    "nn": "CoMBInE network",
    "wiener": "Wiener filter (exact)",
    "gcr": "constrained realisation",
    "lwiener": "local Wiener",
    "gmrf": "GMRF",
    "diffusive": "diffusive",
    "biharmonic": "biharmonic",
    "telea": "OpenCV Telea",
    "navier-stokes": "OpenCV Navier–Stokes",
    "mean": "mean fill",
    "zero": "zero fill",
    "oracle": "truth (oracle)",
    "zero_fsky": "zero-filled / f_sky",
    "wiener-sphere": "Wiener (sphere, local T, Q, U)",
    "wiener-local": "Wiener (local T, Q, U window)",
    "gcr-local": "constrained realisation (local window)",
    "gcr-sphere": "constrained realisation (sphere)",
    "filled": "filled map",
}

#: Stable colours per method, so that every figure of a report uses the same one.
METHOD_COLOURS = {
    "nn": "#d62728",
    "wiener": "#1f77b4",
    "gcr": "#2ca02c",
    "diffusive": "#ff7f0e",
    "biharmonic": "#9467bd",
    "gmrf": "#bcbd22",
    "lwiener": "#17becf",
    "telea": "#8c564b",
    "navier-stokes": "#e377c2",
    "mean": "#7f7f7f",
    "zero": "#000000",
    "oracle": "#393b79",
    "zero_fsky": "#7f7f7f",
    "wiener-sphere": "#1f77b4",
    "wiener-local": "#1f77b4",
    "gcr-local": "#2ca02c",
    "gcr-sphere": "#2ca02c",
}

#: Titles (in words) of the scalar metrics of :mod:`combine.evaluation`.
METRIC_TITLES = {
    "rmse_hole": "Error of the fill in the hole (RMSE)",
    "rmse_hole_ratio_wiener": "Hole RMSE relative to the exact Wiener filter",
    "hole_variance_ratio": "Variance of the filled hole relative to the truth",
    "power_ratio_band": "Power of the filled patch relative to the truth",
    "abs_diff_percent_hole": "Mean absolute error in the hole",
    "ks_statistic": "Distance between filled and true hole-pixel distributions",
    "rmse_valid": "Error on the observed pixels (RMSE)",
    "power_ratio": "Power spectrum of the filled patch relative to the truth",
}

#: Default axis labels (with units) of the metrics.
METRIC_AXIS_LABELS = {
    "rmse_hole": "hole RMSE [μK]",
    "rmse_hole_ratio_wiener": "hole RMSE / Wiener hole RMSE [ratio]",
    "hole_variance_ratio": "Var(fill) / Var(truth) in the hole [ratio]",
    "power_ratio_band": "P_fill / P_truth [ratio]",
    "abs_diff_percent_hole": "mean |fill − truth| / mean |truth| in the hole [%]",
    "ks_statistic": "Kolmogorov–Smirnov statistic [0–1]",
    "rmse_valid": "RMSE on observed pixels [μK]",
    "power_ratio": "P_fill(ℓ) / P_truth(ℓ) [ratio]",
}


def method_label(method: str) -> str:
    """Human name of ``method`` for legends and titles (the code name if unknown)."""
    return METHOD_LABELS.get(method, method)


def method_colour(method: str) -> str:
    """Colour of ``method`` (a fixed palette entry, or a deterministic fallback)."""
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    palette = ["#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5"]
    return palette[sum(map(ord, method)) % len(palette)]


def metric_title(metric: str) -> str:
    return METRIC_TITLES.get(metric, metric.replace("_", " "))


def metric_axis_label(metric: str) -> str:
    return METRIC_AXIS_LABELS.get(metric, metric.replace("_", " "))


def mask_label(spec: str, pixel_arcmin: float = PIXEL_ARCMIN) -> str:
    """A mask specification in words: ``circle-r8`` -> ``"centred hole of radius 13.7′ (8 px)"``."""
    spec = str(spec)
    if spec.startswith("circle-r"):
        try:
            r_px = float(spec[len("circle-r"):])
        except ValueError:
            return spec
        return f"centred hole of radius {r_px * pixel_arcmin:.3g}′ ({r_px:g} px)"
    return {"random": "random shapes (lines, circles, ellipses)", "points": "point-source holes"}.get(spec, spec)


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


def grid_shape(n_panels: int, max_columns: int = MAX_COLUMNS) -> tuple[int, int]:
    """(rows, columns) of a grid holding ``n_panels``: at most ``max_columns`` wide."""
    n = max(1, int(n_panels))
    ncol = min(n, max_columns)
    return math.ceil(n / ncol), ncol


def _nice_length_arcmin(target: float) -> float:
    """The largest of 1, 2, 5 × 10^k arcmin (or 1°, 2°, 5°) not above ``target``."""
    if target <= 0:
        return 1.0
    exp = math.floor(math.log10(target))
    for mant in (5, 2, 1):
        if mant * 10**exp <= target:
            return mant * 10**exp
    return 10**exp


def _format_arcmin(arcmin: float) -> str:
    if arcmin >= 60 and (arcmin / 60).is_integer():
        return f"{arcmin / 60:g}°"
    return f"{arcmin:g}′"


def add_scale_bar(ax, width_px: int, pixel_arcmin: float):
    """An angular scale bar (about a quarter of the panel) in the lower left of a map panel."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length_arcmin = _nice_length_arcmin(0.3 * width_px * pixel_arcmin)
    bar = AnchoredSizeBar(ax.transData, length_arcmin / pixel_arcmin, _format_arcmin(length_arcmin),
                          "lower left", pad=0.3, borderpad=0.3, sep=2, color="k", frameon=True,
                          size_vertical=max(0.5, width_px / 80), fontproperties={"size": 7})
    bar.patch.set_alpha(0.75)
    bar.set_gid("scale-bar")
    ax.add_artist(bar)
    return bar


def _draw_holes(ax, mask, *, filled: bool) -> None:
    """Holes (mask < 0.5): grey and hatched (``filled``) or outlined in grey."""
    mask = np.asarray(mask)
    hole = mask < 0.5
    if not hole.any():
        return
    if filled:
        grey = ListedColormap([HOLE_GREY])
        ax.imshow(np.where(hole, 1.0, np.nan), cmap=grey, vmin=0, vmax=1, interpolation="nearest")
        hatch = ax.contourf(hole.astype(float), levels=[0.5, 1.5], colors="none", hatches=["////"])
        hatch.set_edgecolor("0.25")
        hatch.set_linewidth(0)
    ax.contour(hole.astype(float), levels=[0.5], colors=HOLE_GREY if not filled else "0.25", linewidths=0.9)


def _hole_diameter_arcmin(mask, pixel_arcmin: float) -> float:
    """Diameter of the disc with the hole's area, arcmin: :math:`2\\sqrt{N_\\mathrm{hole}/\\pi}\\,\\Delta`."""
    n_hole = int(np.count_nonzero(np.asarray(mask) < 0.5))
    return 2.0 * math.sqrt(n_hole / math.pi) * pixel_arcmin


def plot_panels(path, target_uk, mask, filled_uk: dict, *, title: str = "",
                pixel_arcmin: float = PIXEL_ARCMIN) -> Path:
    r"""The true patch, the masked input and each method's fill, then each fill's error.

    Two blocks, each a grid at most :data:`MAX_COLUMNS` panels wide: maps (truth, input with
    holes hatched grey, one fill per method) on one symmetric colour scale
    :math:`\pm\max|T|` (99.9th percentile), and differences :math:`T_\mathrm{fill} -
    T_\mathrm{truth}` on their own shared symmetric scale with the hole RMS in each title.
    Every map panel carries an angular scale bar; the suptitle gives the patch side and the
    hole's size (one hole: the diameter of a disc of equal area, in arcmin; several: their
    number and area fraction).

    Parameters
    ----------
    path : path-like
        Output PNG.
    target_uk, mask : (H, W) arrays
        The true patch (μK) and its mask (1 = valid, 0 = hole).
    filled_uk : dict[str, (H, W) array]
        Filled patch of each method (code names, see :data:`METHOD_LABELS`), in display order.
    pixel_arcmin : float
        Pixel side, for the scale bars and sizes.
    """
    target = np.asarray(target_uk, dtype=np.float64)
    mask = np.asarray(mask, dtype=np.float64)
    methods = list(filled_uk)
    height, width = target.shape
    vmax = _symmetric_limit([target])
    diffs = {m: np.asarray(filled_uk[m], dtype=np.float64) - target for m in methods}
    dmax = _symmetric_limit(list(diffs.values())) if diffs else 1.0
    hole = mask < 0.5

    map_panels = [("truth", target, False), ("input (holes hatched)", np.where(hole, np.nan, target), True)]
    map_panels += [(method_label(m), np.asarray(filled_uk[m], dtype=np.float64), False) for m in methods]
    rows_m, ncol = grid_shape(len(map_panels))
    rows_d = grid_shape(len(methods), ncol)[0] if methods else 0
    panel_in = 2.35
    fig = Figure(figsize=(panel_in * ncol + 1.3, panel_in * (rows_m + rows_d) + 1.0), layout="constrained")
    subfigs = fig.subfigures(2, 1, height_ratios=[rows_m, max(rows_d, 1e-3)]) if methods else [fig]

    def block(sub, panels, lim, cbar_label, kind):
        nrow = grid_shape(len(panels), ncol)[0]
        axes = sub.subplots(nrow, ncol, squeeze=False)
        im = None
        for ax, (name, image, hatched) in zip(axes.ravel(), panels):
            im = ax.imshow(image, cmap=MAP_CMAP, vmin=-lim, vmax=lim, origin="upper", interpolation="nearest")
            _draw_holes(ax, mask, filled=hatched)
            add_scale_bar(ax, width, pixel_arcmin)
            ax.set_title(name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_gid(kind)
        for ax in axes.ravel()[len(panels):]:
            ax.set_axis_off()
        sub.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=cbar_label)
        return axes

    block(subfigs[0], map_panels, vmax, "T [μK]", "map")
    if methods:
        diff_panels = []
        for m in methods:
            rms = float(np.sqrt(np.mean(diffs[m][hole] ** 2))) if hole.any() else 0.0
            diff_panels.append((f"{method_label(m)} − truth\nhole RMS {rms:.2f} μK", diffs[m], False))
        block(subfigs[1], diff_panels, dmax, "fill − truth [μK]", "difference")
        subfigs[1].suptitle("error of each fill (same colour scale)", fontsize=9)
    side_arcmin = width * pixel_arcmin
    side = f"{side_arcmin / 60:.2f}°" if side_arcmin >= 60 else f"{side_arcmin:.0f}′"
    sizes = f"patch {side} across ({width}×{height} px of {pixel_arcmin:g}′)"
    if hole.any():
        from scipy.ndimage import label

        n_parts = int(label(hole)[1])
        if n_parts == 1:
            sizes += f"; hole ≈ {_hole_diameter_arcmin(mask, pixel_arcmin):.3g}′ across ({int(hole.sum())} px)"
        else:
            sizes += f"; {n_parts} holes, {100 * hole.mean():.0f}% of the patch ({int(hole.sum())} px)"
    fig.suptitle((title + "\n" if title else "") + sizes, fontsize=10)
    return _save(fig, path)


def _plain_log_ticks(axis) -> None:
    """Log-axis tick labels as plain numbers (30, 60) rather than 3×10¹, 6×10¹."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(fmt)
    axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.1e}"[0] in "25" else ""))


def _legend_outside(ax, n_entries: int) -> None:
    """A legend beside the plot when it has many entries (never over the data)."""
    if not ax.get_legend_handles_labels()[0]:
        return
    if n_entries > 4:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    else:
        ax.legend(fontsize=8)


def _records(records, **match):
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def plot_metric_vs_radius(path, records, metric: str, *, methods=None, ylabel: str | None = None,
                          logy: bool = False, reference: float | None = None,
                          pixel_arcmin: float = PIXEL_ARCMIN) -> Path:
    """One metric against the radius of centred circular holes, one line per method.

    Reads the records whose ``metric`` matches and which carry ``radius_px`` (circle masks),
    drawing ``value`` with ``err`` as error bars when present. The radius axis is in arcmin
    (``radius_px × pixel_arcmin``) with the pixel radius on a secondary axis on top.
    ``reference`` draws a dashed horizontal line (e.g. 1 for ratios).
    """
    rows = [r for r in records if r["metric"] == metric and r.get("radius_px") is not None
            and r.get("ell_bin") is None]
    if methods is None:
        methods = list(dict.fromkeys(r["method"] for r in rows))
    fig = Figure(figsize=(6.4 + (1.9 if len(methods) > 4 else 0), 4.4), layout="constrained")
    ax = fig.subplots()
    for m in methods:
        pts = sorted((r["radius_px"], r["value"], r.get("err") or 0.0) for r in rows if r["method"] == m)
        pts = [p for p in pts if p[1] is not None and math.isfinite(p[1]) and (p[1] > 0 or not logy)]
        if not pts:
            continue
        x, y, e = map(np.asarray, zip(*pts))
        ax.errorbar(x * pixel_arcmin, y, yerr=e if np.any(e > 0) else None, marker="o", ms=4, capsize=2,
                    label=method_label(m), color=method_colour(m))
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=0.8, label=f"reference ({reference:g})")
    if logy:
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
    ax.set_xlabel("hole radius [arcmin]")
    top = ax.secondary_xaxis("top", functions=(lambda a: a / pixel_arcmin, lambda p: p * pixel_arcmin))
    top.set_xlabel(f"hole radius [px of {pixel_arcmin:g}′]", fontsize=8)
    ax.set_ylabel(ylabel or metric_axis_label(metric))
    ax.set_title(f"{metric_title(metric)}, against the radius of a centred hole", fontsize=10)
    ax.grid(alpha=0.3)
    _legend_outside(ax, len(methods))
    return _save(fig, path)


def _draw_band(ax, x, err, label="cosmic variance (±1σ)") -> bool:
    """Draw 1 ± err as a visible band; return whether it was drawn (only then is it labelled)."""
    x = np.asarray(x, dtype=np.float64)
    err = np.asarray(err, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(err) & (err > 0)
    if ok.sum() < 2:
        return False
    ax.fill_between(x[ok], 1 - err[ok], 1 + err[ok], color="0.6", alpha=0.45, lw=0, zorder=0, label=label)
    return True


def plot_power_ratio(path, records, mask_spec: str, *, methods=None, pixel_arcmin: float = PIXEL_ARCMIN) -> Path:
    r"""Binned power-spectrum ratio :math:`P_\mathrm{fill}(\ell)/P_\mathrm{truth}(\ell)` per method.

    The grey band is the cosmic-variance error of each ℓ bin (``err`` of the records) around 1,
    drawn (and named in the legend) only where the records give one.
    """
    rows = _records(records, metric="power_ratio", mask=mask_spec)
    if methods is None:
        methods = list(dict.fromkeys(r["method"] for r in rows))
    fig = Figure(figsize=(6.4 + (1.9 if len(methods) > 4 else 0), 4.4), layout="constrained")
    ax = fig.subplots()
    band = {}
    for r in rows:
        if r.get("err") is not None:
            band.setdefault(r["ell_bin"], float(r["err"]))  # one error per bin: all methods share the bins
    if band:
        ell = np.array(sorted(band))
        _draw_band(ax, ell, [band[e] for e in ell])
    for m in methods:
        pts = sorted((r["ell_bin"], r["value"]) for r in rows if r["method"] == m and r["value"] is not None)
        if pts:
            x, y = map(np.asarray, zip(*pts))
            ax.plot(x, y, marker=".", label=method_label(m), color=method_colour(m))
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    values = np.array([r["value"] for r in rows if r["value"] is not None and r["value"] > 0])
    if values.size and (values.max() > 5 or values.min() < 0.2):
        ax.set_yscale("log")  # one wild method (e.g. an untrained model) must not flatten the others
        _plain_log_ticks(ax.yaxis)
    ax.set_xlabel("multipole ℓ")
    ax.set_ylabel("P_fill(ℓ) / P_truth(ℓ) [ratio]")
    ax.set_title(f"Power spectrum of the filled patches relative to the truth\n{mask_label(mask_spec, pixel_arcmin)}",
                 fontsize=10)
    ax.grid(alpha=0.3)
    _legend_outside(ax, len(methods))
    return _save(fig, path)


def _gauss(x, mu, sigma):
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


#: A method's histogram peak this many times the truth's switches its panel to a log density.
SPIKE_FACTOR = 3.0


def plot_hole_histograms(path, truth_uk, filled_uk: dict, *, fits: dict | None = None,
                         title: str = "", bins: int = 50) -> Path:
    r"""Histograms of hole-pixel values (μK) of the truth and each method, with Gaussian fits.

    One panel per method (grid at most :data:`MAX_COLUMNS` wide), each with the truth's
    histogram as a black outline. ``fits`` maps a name (``"truth"`` or a method) to ``(mu,
    sigma)``; when absent the sample mean and standard deviation are used. Curves are the
    normal density :math:`\mathcal N(\mu, \sigma^2)` on the density scale of the histograms.
    No peak is clipped: a panel whose fill is much narrower than the truth (peak above
    :data:`SPIKE_FACTOR` times the truth's) gets a logarithmic density axis.
    """
    truth = np.asarray(truth_uk, dtype=np.float64).ravel()
    fits = dict(fits or {})
    allv = [truth] + [np.asarray(v, dtype=np.float64).ravel() for v in filled_uk.values()]
    allv = [v[np.isfinite(v)] for v in allv]
    lo = min(float(np.min(v)) for v in allv if v.size)
    hi = max(float(np.max(v)) for v in allv if v.size)
    if not hi > lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    xs = np.linspace(lo, hi, 400)
    methods = list(filled_uk)
    nrow, ncol = grid_shape(len(methods))
    fig = Figure(figsize=(3.4 * ncol, 2.9 * nrow + 0.4), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    mu_t, sd_t = fits.get("truth", (float(truth.mean()), float(truth.std())))
    truth_density = np.histogram(truth, bins=edges, density=True)[0]
    truth_peak = float(truth_density.max()) if truth_density.size else 0.0
    for ax, m in zip(axes, methods):
        v = np.asarray(filled_uk[m], dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        density = np.histogram(v, bins=edges, density=True)[0]
        # np.histogram + stairs: one artist per histogram (ax.hist draws one patch per bin)
        ax.stairs(density, edges, fill=True, alpha=0.5, color=method_colour(m), label=method_label(m))
        ax.stairs(truth_density, edges, color="k", lw=1.0, label="truth")
        if sd_t > 0:
            ax.plot(xs, _gauss(xs, mu_t, sd_t), "k--", lw=0.8, label="Gaussian fit (truth)")
        mu, sd = fits.get(m, (float(v.mean()) if v.size else 0.0, float(v.std()) if v.size else 0.0))
        if sd > 0:
            ax.plot(xs, _gauss(xs, mu, sd), color=method_colour(m), lw=1.0)
        peak = max(float(density.max()) if density.size else 0.0, truth_peak)
        if truth_peak > 0 and peak > SPIKE_FACTOR * truth_peak:
            ax.set_yscale("log")
            ax.set_ylim(truth_peak * 1e-3, peak * 2.0)
            ax.set_ylabel("density [1/μK] (log)", fontsize=8)
        else:
            ax.set_ylim(0, 1.1 * peak if peak > 0 else 1.0)
            ax.set_ylabel("density [1/μK]", fontsize=8)
        ax.set_title(f"{method_label(m)}: μ = {mu:.1f}, σ = {sd:.1f} μK\n(truth σ = {sd_t:.1f} μK)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("hole-pixel temperature T [μK]", fontsize=8)
    for ax in axes[len(methods):]:
        ax.set_axis_off()
    if len(methods):
        axes[0].legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_metric_vs_epoch(path, epoch_records, metric: str = "rmse_hole", *, reference_records=None,
                         ylabel: str | None = None, logy: bool = True,
                         reference_value: float | None = None, pixel_arcmin: float = PIXEL_ARCMIN) -> Path:
    """A metric of each checkpoint of a training run against its epoch, one line per mask.

    ``epoch_records`` carry an ``epoch`` field; ``reference_records`` (e.g. the Wiener filter
    on the same patches, also with ``epoch`` absent) are drawn as dashed horizontal lines in the
    colour of their mask; ``reference_value`` (e.g. 1 for ratios) as a black dashed line.
    """
    rows = [r for r in epoch_records if r["metric"] == metric and r.get("ell_bin") is None]
    masks = list(dict.fromkeys(r["mask"] for r in rows))
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    cmap = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    ref_methods = set()
    for i, mk in enumerate(masks):
        colour = cmap[i % len(cmap)]
        pts = sorted((r["epoch"], r["value"]) for r in rows if r["mask"] == mk and r["value"] is not None)
        if not pts:
            continue
        x, y = map(np.asarray, zip(*pts))
        ax.plot(x, y, marker="o", ms=3, color=colour, label=mask_label(mk, pixel_arcmin))
        for ref in reference_records or []:
            if ref["metric"] == metric and ref["mask"] == mk and ref.get("ell_bin") is None:
                ax.axhline(ref["value"], color=colour, ls="--", lw=0.8)
                ref_methods.add(ref["method"])
    if reference_value is not None:
        ax.axhline(reference_value, color="k", ls="--", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel or metric_axis_label(metric))
    if logy:
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
    if ref_methods:
        dashed = " and ".join(method_label(m) for m in sorted(ref_methods)) + " per mask"
    else:
        dashed = f"reference {reference_value:g}" if reference_value is not None else ""
    ax.set_title(f"{metric_title(metric)}, per training checkpoint" + (f"\n(dashed: {dashed})" if dashed else ""),
                 fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, ncol=1)
    return _save(fig, path)


def plot_fullsky_ratio(path, ell, ratios: dict, *, errors=None, title: str = "", lmin: int = 2) -> Path:
    r"""Full-sky angular power-spectrum ratios against ℓ.

    ``ratios`` maps a label (e.g. ``"filled / truth"``, ``"zero-filled / f_sky / truth"``) to
    an array over ``ell``; ``errors`` (optional, same length) draws the cosmic-variance band
    :math:`\sqrt{2/(2\ell+1)}` (binned if ``ell`` is binned) around 1.
    """
    ell = np.asarray(ell, dtype=np.float64)
    sel = ell >= lmin
    fig = Figure(figsize=(6.8, 4.4), layout="constrained")
    ax = fig.subplots()
    if errors is not None:
        _draw_band(ax, ell[sel], np.asarray(errors, dtype=np.float64)[sel])
    styles = ["#d62728", "#7f7f7f", "#1f77b4", "#2ca02c"]
    for i, (label, ratio) in enumerate(ratios.items()):
        ax.plot(ell[sel], np.asarray(ratio)[sel], lw=1.0, color=styles[i % len(styles)], label=label)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("multipole ℓ")
    ax.set_ylabel("C_ℓ (map) / C_ℓ (truth) [ratio]")
    ax.set_title(title or "Full-sky angular power spectrum relative to the truth", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_loss_history(path, history: list[dict], loss_terms) -> Path:
    """Loss curves of a training run (``RUN_DIR/loss_curves.png``): left, the total training and
    validation losses and each training loss term per epoch (log scale, image units); right, the
    validation hole RMSE of the network and of a mean fill (μK). ``history`` is the run's
    per-epoch rows (``history.csv``)."""
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(10, 4))
    ax, ax2 = fig.subplots(1, 2)
    for key, style in (("train_total", "-"), ("val_total", "--")):
        ys = [r.get(key) for r in history]
        if any(isinstance(y, float) for y in ys):
            ax.plot(epochs, ys, style, marker="o", label=key)
    for term in loss_terms:
        ys = [r.get(f"train_{term}") for r in history]
        if any(isinstance(y, float) for y in ys):
            ax.plot(epochs, ys, ":", label=f"train_{term}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (image units)")
    if ax.get_lines():
        ax.legend(fontsize=7)
    for key, label in (("val_hole_rmse_uk", "network"), ("val_meanfill_rmse_uk", "mean fill")):
        ys = [r.get(key) for r in history]
        if any(isinstance(y, float) for y in ys):
            ax2.plot(epochs, ys, marker="o", label=label)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation hole RMSE [μK]")
    if ax2.get_lines():
        ax2.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
