"""``combine demo``: a --small run end to end (report, JSON records, figures, full sky), the
model fallback, the HEALPix point-source mask, and bad arguments (exit 2, nothing written)."""

import contextlib
import io
import json
import math

import numpy as np
import pytest

from combine.cli import main
from combine.commands import demo as demo_cmd




@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, tiny_model_dir):
    """One --small demo (2 patches, Nside 128 full sky): (report dir, stdout)."""
    out = tmp_path_factory.mktemp("demo") / "report"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(["demo", "--quiet", "--small", "--model", str(tiny_model_dir), "--out", str(out),
                       "--n-patches", "2", "--nside", "128", "--n-sources", "8", "--seed", "5"])
    assert status == 0
    return out, stdout.getvalue()


@pytest.fixture(scope="module")
def small_report(demo_run):
    return demo_run[0]


def test_small_demo_writes_report_and_figures(small_report, capsys):
    """Smoke test of the whole demo: every figure linked from report.md exists and is a real PNG."""
    text = (small_report / "report.md").read_text()
    assert "combine demo --out" in text and "--small" in text
    for method in demo_cmd.SMALL["methods"]:
        assert f"| {method} |" in text
    links = [line[line.index("(") + 1:-1] for line in text.splitlines() if line.startswith("![")]
    assert {"panels_circle-r4.png", "radius_rmse_hole.png", "power_ratio_random.png", "hist_circle-r16.png"} <= set(links)
    for name in links:
        assert (small_report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (small_report / name).stat().st_size > 1000
    assert "fullsky_spectrum_ratio.png" in links and "fullsky_hole_zoom.png" in links
    # no temporary directory left beside the report
    assert sorted(p.name for p in small_report.parent.iterdir()) == ["report"]


def test_small_demo_results_json(small_report):
    """results.json: DESIGN.md record fields; hole RMSE per (method, mask); the per-patch numbers
    are consistent (pooled hole RMSE of the mean fill >= 0, percent metrics non-negative)."""
    records = json.loads((small_report / "results.json").read_text())
    assert records and all({"method", "mask", "metric", "value"} <= set(r) for r in records)
    assert all(r["value"] is None or isinstance(r["value"], (int, float)) for r in records)
    by = {(r["method"], r["mask"], r["metric"]): r for r in records if r.get("ell_bin") is None}
    for method in demo_cmd.SMALL["methods"]:
        for mask in demo_cmd.SMALL["masks"]:
            rmse = by[(method, mask, "rmse_hole")]
            assert rmse["value"] > 0 and rmse["n_patches"] == (2 if mask != "random" else 2)
            assert by[(method, mask, "seconds_per_patch")]["value"] > 0
    assert by[("nn", "circle-r4", "rmse_hole")]["radius_px"] == 4
    fs = by[("nn", "fullsky-points", "rmse_hole")]
    assert fs["nside"] == 128 and fs["n_sources"] == 8 and fs["n_hole_pixels"] >= 8
    assert math.isfinite(fs["value"])
    ratios = [r for r in records if r["metric"] == "fullsky_power_ratio" and r["method"] == "nn"]
    assert ratios and all(r["err"] > 0 for r in ratios)


def test_demo_prints_table_and_report_path(demo_run):
    out, stdout = demo_run
    assert "| method |" in stdout and "| diffusive |" in stdout
    assert f"Report: {out / 'report.md'}" in stdout
    assert not any(line.startswith("[") for line in stdout.splitlines())  # --quiet: no step log


def test_fallback_model_is_random_and_loud(monkeypatch):
    """Without the shipped model the demo uses a random t128 UNet and says so."""
    monkeypatch.setattr(demo_cmd, "SHIPPED_MODEL", "no-such-model-xyz")
    said = []
    model, warning, tmp = demo_cmd.load_demo_model(None, said.append)
    try:
        assert warning and "RANDOMLY INITIALISED" in warning and said == [warning]
        assert model.patch_size == 128
        x = np.zeros((1, 128, 128), np.float32)
        m = np.ones_like(x)
        m[:, 60:68, 60:68] = 0
        assert np.isfinite(model.inpaint(x, m)).all()
    finally:
        tmp.cleanup()


def test_explicit_model_must_load(tmp_path):
    from combine.errors import InputError

    with pytest.raises(InputError, match="no such model"):
        demo_cmd.load_demo_model(str(tmp_path / "missing"), print)


def test_point_source_mask_healpix():
    """Binary float32 RING mask; every source makes a hole; the masked area matches the discs'
    area Σ π r² within 15 % (pixelisation noise of ~3.4' pixels on 3–15' discs)."""
    import healpy as hp
    nside, n = 1024, 40
    rng = np.random.default_rng(3)
    mask = demo_cmd.point_source_mask_healpix(nside, n, rng)
    assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}
    rng = np.random.default_rng(3)
    lo, hi = np.log(demo_cmd.SOURCE_RADIUS_ARCMIN[0]), np.log(demo_cmd.SOURCE_RADIUS_ARCMIN[1])
    radii = np.radians(np.exp(rng.uniform(lo, hi, n)) / 60.0)
    expected = np.sum(2 * np.pi * (1 - np.cos(radii))) / hp.nside2pixarea(nside)
    assert (mask == 0).sum() == pytest.approx(expected, rel=0.15)
    # a tiny disc (well below a pixel) still masks one pixel
    tiny = demo_cmd.point_source_mask_healpix(64, 5, np.random.default_rng(0), radius_arcmin=(0.1, 0.2))
    assert (tiny == 0).sum() == 5


@pytest.mark.parametrize("extra, message", [
    (["--n-patches", "0"], "--n-patches"),
    (["--nside", "100"], "--nside"),
    (["--nside", "8192"], "--nside"),
    (["--n-sources", "-3"], "--n-sources"),
    (["--batch-size", "0"], "--batch-size"),
])
def test_bad_arguments_exit_2(tmp_path, capsys, extra, message):
    out = tmp_path / "rep"
    status = main(["demo", "--quiet", "--small", "--out", str(out)] + extra)
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--n-patches", "many"])
    assert exc.value.code == 2
    capsys.readouterr()
    target = tmp_path / "a_file"
    target.write_text("x")
    assert main(["demo", "--quiet", "--small", "--out", str(target)]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert target.read_text() == "x"
    assert main(["demo", "--quiet", "--small", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "nope" in capsys.readouterr().err and not (tmp_path / "r").exists()
