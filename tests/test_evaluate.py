"""Tests of combine.evaluate (records, metrics on hand-made fills, full-sky ratios, report)."""

import json
import math

import numpy as np
import pytest

from combine import evaluate as E
from combine.errors import InputError

PIX = 1.7177
SKY = dict(pixel_arcmin=PIX, beam_fwhm_arcmin=5.0, noise_uk_arcmin=1.0, cl_uk2=None, seed=3)


@pytest.fixture(scope="module")
def maps():
    """12 patches of 64² smooth-ish random fields with a distinct offset each (μK)."""
    rng = np.random.default_rng(7)
    white = rng.normal(size=(12, 64, 64))
    k = np.fft.fftfreq(64)
    kk = np.hypot(*np.meshgrid(k, k))
    field = np.fft.ifft2(np.fft.fft2(white) * np.exp(-(kk / 0.08) ** 2)).real
    field *= 80.0 / field.std()
    return (field + rng.normal(scale=20.0, size=(12, 1, 1))).astype(np.float32)


def _oracle_factory(maps):
    return lambda m, k, **kw: maps[: len(m)]


def _zero_fill(m, k, **kw):
    return np.where(k < 0.5, 0.0, m)


def _by(records, **match):
    return [r for r in records if all(r.get(key) == v for key, v in match.items())]


def _one(records, **match):
    rows = [r for r in _by(records, **match) if r.get("ell_bin") is None]
    assert len(rows) == 1, (match, rows)
    return rows[0]


def test_parse_mask_spec():
    s = E.parse_mask_spec("circle-r8", size=64)
    assert (s.kind, s.radius_px, s.same_geometry) == ("circle", 8, True)
    assert E.parse_mask_spec("random").kind == "random"
    assert E.parse_mask_spec("points").same_geometry is False
    for bad in ("circle", "circle-r", "square-r4", "circle-r0", "circle-rx", ""):
        with pytest.raises(InputError):
            E.parse_mask_spec(bad, size=64)
    with pytest.raises(InputError, match="no valid pixel"):  # 90 px covers a 64² patch entirely
        E.parse_mask_spec("circle-r90", size=64)
    E.parse_mask_spec("circle-r40", size=64)  # larger than the half side: corners stay valid


def test_parse_methods():
    assert E.parse_methods(["mean", "wiener", "mean"]) == ("mean", "wiener")
    with pytest.raises(InputError, match="unknown method 'foo'"):
        E.parse_methods(["mean", "foo"])
    with pytest.raises(InputError):
        E.parse_methods([])


def test_oracle_and_hand_made_fills(maps):
    """Oracle: rmse 0, power ratio 1 in every bin, variance ratio 1, KS 0. Zero fill (the
    method only sees zeros in the hole): rmse = sqrt(mean T_hole²). Offset fill truth+2:
    |Δ| = 2 everywhere in the hole, ratio 2 to a truth+1 'wiener'."""
    fills = {"oracle": _oracle_factory(maps), "zero": _zero_fill,
             "wiener": lambda m, k, **kw: maps[: len(m)] + 1.0,
             "plus2": lambda m, k, **kw: maps[: len(m)] + 2.0}
    ev = E.run_evaluation(None, maps, methods=("wiener", "oracle", "zero", "plus2"),
                          mask_specs=("circle-r6", "random"), fills=fills, progress=False, **SKY)
    recs = ev.records
    for mk in ("circle-r6", "random"):
        assert _one(recs, method="oracle", mask=mk, metric="rmse_hole")["value"] == 0.0
        pr = _by(recs, method="oracle", mask=mk, metric="power_ratio")
        assert len(pr) >= 5
        np.testing.assert_allclose([r["value"] for r in pr], 1.0, rtol=1e-6)
        assert _one(recs, method="oracle", mask=mk, metric="hole_variance_ratio")["value"] == pytest.approx(1.0)
        assert _one(recs, method="oracle", mask=mk, metric="ks_statistic")["value"] == pytest.approx(0.0)
        assert _one(recs, method="oracle", mask=mk, metric="abs_diff_percent_patch")["value"] == 0.0

    circle = E.make_masks(E.parse_mask_spec("circle-r6"), 1, 64, 0)[0]
    hole = circle < 0.5
    assert 100 < hole.sum() < 130  # π·6² ≈ 113
    expected = math.sqrt(np.mean(maps[:, hole].astype(np.float64) ** 2))
    assert _one(recs, method="zero", mask="circle-r6", metric="rmse_hole")["value"] == pytest.approx(expected, rel=1e-5)

    assert _one(recs, method="plus2", mask="circle-r6", metric="rmse_hole")["value"] == pytest.approx(2.0, rel=1e-5)
    assert _one(recs, method="plus2", mask="circle-r6", metric="abs_diff_mean_hole")["value"] == pytest.approx(2.0, rel=1e-5)
    assert _one(recs, method="plus2", mask="circle-r6", metric="abs_diff_std_hole")["value"] == pytest.approx(0.0, abs=1e-4)
    pct = 100 * 2.0 / np.mean(np.abs(maps[:, hole].astype(np.float64)))
    assert _one(recs, method="plus2", mask="circle-r6", metric="abs_diff_percent_hole")["value"] == pytest.approx(pct, rel=1e-4)
    # whole patch: valid pixels are composited from the data, so mean |Δ| = 2 · hole fraction
    frac = hole.mean()
    assert _one(recs, method="plus2", mask="circle-r6", metric="abs_diff_mean_patch")["value"] == pytest.approx(2 * frac, rel=1e-4)
    assert _one(recs, method="plus2", mask="circle-r6", metric="rmse_hole_ratio_wiener")["value"] == pytest.approx(2.0, rel=1e-5)
    assert _one(recs, method="wiener", mask="random", metric="rmse_hole_ratio_wiener")["value"] == pytest.approx(1.0)
    # Gaussian fit of an offset fill: same width as the truth, mean shifted by 2
    g = _one(recs, method="plus2", mask="circle-r6", metric="gauss_mu_hole")
    assert g["value"] - g["truth"] == pytest.approx(2.0, abs=0.05)
    s = _one(recs, method="plus2", mask="circle-r6", metric="gauss_sigma_hole")
    assert s["value"] == pytest.approx(s["truth"], rel=0.02)


def test_mean_fill_rmse_is_hole_scatter_about_valid_mean(maps):
    """The mean baseline fills with the mean of the valid pixels, so its hole RMSE is
    sqrt(<(T_hole - mean(T_valid))²>) pooled over patches."""
    ev = E.run_evaluation(None, maps, methods=("mean",), mask_specs=("circle-r10",), progress=False, **SKY)
    mask = E.make_masks(E.parse_mask_spec("circle-r10"), 1, 64, 0)[0]
    t = maps.astype(np.float64)
    mu = t[:, mask > 0.5].mean(axis=1)
    expected = math.sqrt(np.mean((t[:, mask < 0.5] - mu[:, None]) ** 2))
    got = _one(ev.records, method="mean", mask="circle-r10", metric="rmse_hole")["value"]
    assert got == pytest.approx(expected, rel=1e-4)


def test_record_schema_and_cost(maps):
    ev = E.run_evaluation(None, maps, methods=("mean", "oracle"), mask_specs=("circle-r4", "random"),
                          fills={"oracle": _oracle_factory(maps)}, n_random=5, progress=False, **SKY)
    metrics = {r["metric"] for r in ev.records}
    expected = {"rmse_hole", "abs_diff_mean_hole", "abs_diff_std_hole", "abs_diff_percent_hole",
                "abs_diff_mean_patch", "abs_diff_std_patch", "abs_diff_percent_patch", "hole_variance_ratio",
                "power_ratio", "power_ratio_band", "ks_statistic", "ks_pvalue", "gauss_mu_hole",
                "gauss_sigma_hole", "seconds_per_patch"}
    assert expected <= metrics
    for r in ev.records:
        assert {"method", "mask", "metric", "value", "n_patches"} <= set(r)
        assert r["value"] is None or isinstance(r["value"], float)
        assert r["n_patches"] == (5 if r["mask"] == "random" else 12)
        if r["metric"] == "power_ratio":
            assert r["ell_min"] < r["ell_bin"] < r["ell_max"] and r["err"] > 0
        if r["mask"] == "circle-r4":
            assert r["radius_px"] == 4
    cost = _by(ev.records, metric="seconds_per_patch")
    assert len(cost) == 4 and all(r["value"] > 0 for r in cost)
    assert any("5 of 12" in n for n in ev.notes)
    # the list returned by evaluate() is the same schema, JSON-serialisable once cleaned
    json.dumps(E._clean(ev.records), allow_nan=False)


def test_nn_without_model_is_input_error(maps):
    with pytest.raises(InputError, match="needs a model"):
        E.run_evaluation(None, maps, methods=("nn",), mask_specs=("circle-r4",), progress=False, **SKY)


def test_fullsky_ratios():
    """Filled = truth gives ratio 1; for white noise the zero-filled spectrum divided by f_sky
    is unbiased (pseudo-C_ℓ of white noise is f_sky·C), so that ratio is 1 within its scatter."""
    import healpy as hp
    nside = 32
    rng = np.random.default_rng(1)
    truth = rng.normal(scale=30.0, size=hp.nside2npix(nside))
    mask = (rng.random(truth.size) > 0.3).astype(float)
    spec = E.fullsky_spectra(truth, mask, truth, delta_ell=10)
    np.testing.assert_allclose(spec["ratio_filled"], 1.0, rtol=1e-10)
    assert spec["f_sky"] == pytest.approx(mask.mean())
    # white noise: scatter of a bin ~ sqrt(2/n_modes)/f_sky-ish; the mean over bins is tight
    assert np.mean(spec["ratio_zero_fsky"]) == pytest.approx(1.0, abs=0.03)
    recs = E.fullsky_records(spec, method="nn")
    assert {r["method"] for r in recs} == {"nn", "zero_fsky"}
    assert all(r["metric"] == "fullsky_power_ratio" and r["err"] > 0 for r in recs)


def test_write_report(tmp_path, maps):
    fills = {"oracle": _oracle_factory(maps), "zero": _zero_fill}
    ev = E.run_evaluation(None, maps[:4], methods=("oracle", "zero"), mask_specs=("circle-r4", "circle-r8"),
                          fills=fills, progress=False, **SKY)
    out = tmp_path / "rep"
    E.write_report(out, ev, command="combine evaluate --test")
    text = (out / "report.md").read_text()
    assert "combine evaluate --test" in text and "| oracle |" in text
    links = [line[line.index("(") + 1:-1] for line in text.splitlines() if line.startswith("![")]
    assert links and all((out / name).is_file() for name in links)
    assert any(name.startswith("radius_") for name in links)
    assert any(name.startswith("panels_") for name in links)
    data = json.loads((out / "results.json").read_text())
    assert len(data) == len(ev.records)
    assert {"method", "mask", "metric", "value"} <= set(data[0])


def test_write_report_is_atomic(tmp_path, maps, monkeypatch):
    """A failure while writing leaves no report directory (and keeps an old one intact)."""
    from combine import plots

    ev = E.run_evaluation(None, maps[:2], methods=("zero",), mask_specs=("circle-r4",),
                          fills={"zero": _zero_fill}, progress=False, **SKY)
    out = tmp_path / "rep"

    def boom(*a, **k):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(plots, "plot_power_ratio", boom)
    with pytest.raises(RuntimeError):
        E.write_report(out, ev, command="x")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_summary_table_hand_made():
    """README table: radii ascending whatever the record order, ratio to Wiener, power ratio on the
    chosen masks, cost = mean over the mask sets; absent methods are skipped."""
    recs = []
    for mk, radius in (("circle-r16", 16), ("circle-r4", 4), ("random", None)):
        for m, rmse, cost in (("wiener", 10.0, 1.0), ("mean", 40.0, 0.001)):
            extra = {"radius_px": radius} if radius else {}
            recs += [{"method": m, "mask": mk, "metric": "rmse_hole", "value": rmse * (2 if mk == "random" else 1), **extra},
                     {"method": m, "mask": mk, "metric": "rmse_hole_ratio_wiener", "value": rmse / 10.0, **extra},
                     {"method": m, "mask": mk, "metric": "seconds_per_patch", "value": cost * (3 if mk == "random" else 1)},
                     {"method": m, "mask": mk, "metric": "power_ratio_band", "value": 0.5 if m == "mean" else 0.9}]
    recs.append({"method": "mean", "mask": "random", "metric": "power_ratio", "value": 99.0, "ell_bin": 500.0})
    text = E.summary_table(recs, power_masks=("random",))
    lines = text.splitlines()
    assert lines[0] == "| method | RMSE r = 4 px | RMSE r = 16 px | RMSE random | P ratio random | s / patch |"
    assert lines[2] == "| Wiener filter (exact) | 10 (1.00×) | 10 (1.00×) | 20 (1.00×) | 0.900 | 1.7 |"
    assert lines[3] == "| mean fill | 40 (4.00×) | 40 (4.00×) | 80 (4.00×) | 0.500 | 0.0017 |"
    assert len(lines) == 4  # nn, gcr, ... absent


def test_report_figures_use_the_evaluated_pixel_size(tmp_path, maps, monkeypatch):
    """Regression (issue 15): figures label sizes in arcmin from the sky that was evaluated, not
    from the default 1.7177′ pixel."""
    from combine import plots

    seen = []
    for name in ("plot_panels", "plot_metric_vs_radius", "plot_power_ratio"):
        original = getattr(plots, name)

        def recorder(*args, _original=original, _name=name, **kwargs):
            seen.append((_name, kwargs.get("pixel_arcmin")))
            return _original(*args, **kwargs)

        monkeypatch.setattr(plots, name, recorder)
    fills = {"oracle": _oracle_factory(maps), "zero": _zero_fill}
    sky = dict(SKY, pixel_arcmin=3.0)
    ev = E.run_evaluation(None, maps[:2], methods=("oracle", "zero"), mask_specs=("circle-r4", "circle-r8"),
                          fills=fills, progress=False, **sky)
    E.write_report(tmp_path / "rep", ev, command="combine evaluate --test")
    assert {n for n, _ in seen} == {"plot_panels", "plot_metric_vs_radius", "plot_power_ratio"}
    assert all(p == 3.0 for _, p in seen), seen
