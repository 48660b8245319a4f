"""Figures read on their own: labels in words with units, legible grids, holes drawn distinctly,
scale bars, visible (or unclaimed) bands, unclipped histograms."""

import math

import numpy as np
import pytest
from matplotlib.contour import ContourSet

from combine import plots
from combine.baselines import BASELINES
from combine.evaluate import ALL_METHODS

PIX = 1.7177


@pytest.fixture
def figures(monkeypatch):
    """Capture the Figure each plot function builds instead of writing it."""
    captured = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: captured.append(fig) or path)
    return captured


def _patch(rng, size=64, r=8):
    yy, xx = np.mgrid[:size, :size]
    mask = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) > r * r).astype(np.float32)
    return rng.standard_normal((size, size)) * 100, mask


def _labels_have_units(ax):
    for text in (ax.get_xlabel(), ax.get_ylabel()):
        assert text.strip(), "unlabelled axis"
        assert "[" in text and "]" in text or text.strip() in ("epoch", "multipole ℓ"), text


def test_every_method_has_one_human_label():
    for m in set(ALL_METHODS) | set(BASELINES):
        assert m in plots.METHOD_LABELS, m
        assert m in plots.METHOD_COLOURS, m
    labels = [plots.METHOD_LABELS[m] for m in ALL_METHODS]
    assert len(set(labels)) == len(labels)
    assert plots.method_label("nn") == "CoMBInE network"
    assert plots.method_label("navier-stokes") == "OpenCV Navier–Stokes"
    assert "ns" not in plots.METHOD_LABELS  # ns is the spectral index, not a method


@pytest.mark.parametrize("n, shape", [(1, (1, 1)), (2, (1, 2)), (4, (1, 4)), (5, (2, 4)), (12, (3, 4))])
def test_grid_shape_never_wider_than_max_columns(n, shape):
    assert plots.grid_shape(n) == shape


def test_mask_label_in_arcmin():
    assert plots.mask_label("circle-r8", PIX) == "centred hole of radius 13.7′ (8 px)"
    assert "random" in plots.mask_label("random")


@pytest.mark.parametrize("target, nice", [(66.0, 50), (19.9, 10), (20.0, 20), (3.1, 2), (0.8, 0.5)])
def test_scale_bar_length_is_a_round_number(target, nice):
    assert plots._nice_length_arcmin(target) == pytest.approx(nice)


def test_panels_grid_holes_and_scale_bars(figures, rng):
    target, mask = _patch(rng)
    methods = list(ALL_METHODS)
    filled = {m: np.where(mask > 0, target, 0.0) + 0 * i for i, m in enumerate(methods)}
    plots.plot_panels("x.png", target, mask, filled, title="t", pixel_arcmin=PIX)
    (fig,) = figures
    axes = [ax for sub in fig.subfigs for ax in sub.axes if ax.get_gid() in ("map", "difference")]
    maps = [ax for ax in axes if ax.get_gid() == "map"]
    diffs = [ax for ax in axes if ax.get_gid() == "difference"]
    assert len(maps) == 2 + len(methods) and len(diffs) == len(methods)
    for group in (maps, diffs):
        columns = {round(ax.get_position().x0, 3) for ax in group}
        assert len(columns) <= plots.MAX_COLUMNS
    titles = [ax.get_title() for ax in maps]
    assert titles[:2] == ["truth", "input (holes hatched)"]
    assert titles[2:] == [plots.METHOD_LABELS[m] for m in methods]
    for ax in axes:  # a scale bar of a round length on every map panel
        bars = [a for a in ax.artists if a.get_gid() == "scale-bar"]
        assert len(bars) == 1
    # the input panel's holes: a grey overlay and a hatched region, not blank (white = 0 μK)
    hatched = [c for c in maps[1].collections if isinstance(c, ContourSet) and any(c.hatches)]
    assert hatched
    overlay = maps[1].images[-1]
    rgba = overlay.cmap(1.0)
    assert rgba[:3] == pytest.approx((0.55, 0.55, 0.55), abs=0.01)
    # the suptitle gives the hole's size in arcmin: a disc of r = 8 px is ~ 2·8·1.7177 = 27.5′
    n_hole = int((mask < 0.5).sum())
    assert f"{2 * math.sqrt(n_hole / math.pi) * PIX:.3g}′ across" in fig._suptitle.get_text()


def test_metric_vs_radius_in_arcmin_with_words(figures):
    recs = [dict(method=m, mask=f"circle-r{r}", metric="rmse_hole_ratio_wiener", value=1 + r / 100, radius_px=r)
            for m in ("nn", "wiener", "gcr") for r in (4, 8, 16)]
    plots.plot_metric_vs_radius("x.png", recs, "rmse_hole_ratio_wiener", reference=1.0, logy=True, pixel_arcmin=PIX)
    ax = figures[0].axes[0]
    _labels_have_units(ax)
    assert "arcmin" in ax.get_xlabel()
    assert "_" not in ax.get_title() and "Wiener" in ax.get_title()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"CoMBInE network", "Wiener filter (exact)", "constrained realisation"} <= set(legend)
    (nn,) = [c for c in ax.containers if c.get_label() == "CoMBInE network"]
    assert np.asarray(nn.lines[0].get_xdata()) == pytest.approx([4 * PIX, 8 * PIX, 16 * PIX])


def _power_records(with_err):
    return [dict(method=m, mask="circle-r8", metric="power_ratio", value=1.0 + 0.01 * i, ell_bin=float(ell),
                 err=0.1 if with_err else None)
            for i, m in enumerate(("nn", "mean")) for ell in (100, 300, 500, 700)]


@pytest.mark.parametrize("with_err", [True, False])
def test_cosmic_variance_band_visible_or_not_claimed(figures, with_err):
    plots.plot_power_ratio("x.png", _power_records(with_err), "circle-r8", pixel_arcmin=PIX)
    ax = figures[0].axes[0]
    _labels_have_units(ax)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    claimed = any("cosmic variance" in t for t in legend)
    assert claimed == with_err
    if with_err:
        (band,) = [c for c in ax.collections if "cosmic" in c.get_label()]
        ys = band.get_paths()[0].vertices[:, 1]
        assert ys.max() == pytest.approx(1.1) and ys.min() == pytest.approx(0.9)
        assert band.get_facecolor()[0][3] >= 0.3  # not near-transparent
    assert "13.7′" in ax.get_title()


def test_histograms_labelled_and_never_clipped(figures, rng):
    truth = rng.standard_normal(500) * 100
    filled = {"wiener": truth * 0.8, "mean": np.full(500, 3.0), "nn": truth * 0.95}
    plots.plot_hole_histograms("x.png", truth, filled, title="hole values")
    axes = [ax for ax in figures[0].axes if ax.axison]
    assert len(axes) == 3
    for ax in axes:
        _labels_have_units(ax)
        top = ax.get_ylim()[1]
        for patch in ax.patches:  # stairs
            heights = patch.get_path().vertices[:, 1]
            assert heights.max() <= top * (1 + 1e-9), f"{ax.get_title()}: peak clipped"
    mean_ax = [ax for ax in axes if ax.get_title().startswith("mean fill")][0]
    assert mean_ax.get_yscale() == "log"  # the mean-fill spike stays on scale, truth still readable


def test_epoch_plot_labels_masks_in_words(figures):
    ep = [dict(method="nn", mask=mk, metric="rmse_hole", value=10.0 / e, epoch=e) for e in (1, 2, 3)
          for mk in ("circle-r4", "random")]
    refs = [dict(method="wiener", mask="circle-r4", metric="rmse_hole", value=2.0)]
    plots.plot_metric_vs_epoch("x.png", ep, "rmse_hole", reference_records=refs, pixel_arcmin=PIX)
    ax = figures[0].axes[0]
    _labels_have_units(ax)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == "centred hole of radius 6.87′ (4 px)"
    assert "Wiener filter (exact)" in ax.get_title()


def test_png_is_written_atomically(tmp_path, rng):
    target, mask = _patch(rng)
    out = plots.plot_panels(tmp_path / "p.png", target, mask, {"nn": target})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]


def test_panels_title_counts_scattered_holes(figures, rng):
    target, mask = _patch(rng)
    mask[:4, :4] = 0  # a second hole in the corner
    plots.plot_panels("x.png", target, mask, {"nn": target}, pixel_arcmin=PIX)
    text = figures[0]._suptitle.get_text()
    assert "2 holes" in text and "across (" not in text.split(";")[-1]
