"""``combine evaluate`` end to end on a small random model and 64² patches, and its bad inputs."""

import json

import numpy as np
import pytest
import torch

from combine.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A randomly initialised small PConv UNet (6 levels: takes 64² patches) saved as a model dir."""
    from combine.models import save_model
    from combine.nn import PConvUNet

    torch.manual_seed(0)
    unet = PConvUNet("t128", levels=6, channels=[8, 16, 16, 16, 16, 16]).eval()
    d = tmp_path_factory.mktemp("models") / "tiny"
    save_model(unet, d, extra={"note": "random init for tests"})
    return d


@pytest.fixture(scope="module")
def report(tmp_path_factory, model_dir):
    out = tmp_path_factory.mktemp("eval") / "report"
    status = main(["evaluate", "--model", str(model_dir), "--data", "simulate:4", "--size", "64",
                   "--out", str(out), "--methods", "nn,wiener,mean", "--masks", "circle-r4,circle-r8,random",
                   "--n-random", "2", "--quiet", "--seed", "1"])
    assert status == 0
    return out


def test_report_files(report):
    """Smoke test of the whole command: report.md, its figures and results.json."""
    text = (report / "report.md").read_text()
    for m in ("nn", "wiener", "mean"):
        assert f"| {m} |" in text
    links = [line[line.index("(") + 1:-1] for line in text.splitlines() if line.startswith("![")]
    assert {"panels_circle-r4.png", "radius_rmse_hole.png", "power_ratio_random.png", "hist_circle-r8.png"} <= set(links)
    assert all((report / name).stat().st_size > 1000 for name in links)
    assert "combine evaluate --model" in text


def test_results_json(report):
    records = json.loads((report / "results.json").read_text())
    assert {(r["method"], r["mask"]) for r in records} >= {(m, k) for m in ("nn", "wiener", "mean")
                                                           for k in ("circle-r4", "circle-r8", "random")}
    for r in records:
        assert {"method", "mask", "metric", "value", "n_patches"} <= set(r)
    by = {(r["method"], r["mask"], r["metric"]): r for r in records if r.get("ell_bin") is None}
    assert by[("wiener", "circle-r4", "rmse_hole_ratio_wiener")]["value"] == pytest.approx(1.0)
    assert by[("nn", "random", "rmse_hole")]["n_patches"] == 2
    # the exact Wiener filter beats filling with the mean on every mask
    for k in ("circle-r4", "circle-r8", "random"):
        assert by[("wiener", k, "rmse_hole")]["value"] < by[("mean", k, "rmse_hole")]["value"]


def _run(args, capsys):
    status = main(["evaluate", "--quiet"] + args)
    return status, capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--methods", "nn,foo"], "unknown method 'foo'"),
    (["--masks", "circle-r4,square"], "unknown mask spec 'square'"),
    (["--masks", "circle-r200"], "no valid pixel"),
    (["--n-patches", "0"], "--n-patches"),
])
def test_bad_arguments_exit_2(tmp_path, model_dir, capsys, extra, message):
    out = tmp_path / "rep"
    status, err = _run(["--model", str(model_dir), "--data", "simulate:2", "--size", "64", "--out", str(out)] + extra,
                       capsys)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_data_and_model(tmp_path, model_dir, capsys):
    out = tmp_path / "rep"
    status, err = _run(["--model", str(model_dir), "--data", str(tmp_path / "nope.h5"), "--out", str(out)], capsys)
    assert status == 2 and "nope.h5" in err
    status, err = _run(["--model", str(tmp_path / "no-model"), "--data", "simulate:2", "--size", "64",
                        "--out", str(out)], capsys)
    assert status == 2 and "no-model" in err
    status, err = _run(["--model", "none", "--data", "simulate:2", "--size", "64", "--methods", "nn",
                        "--out", str(out)], capsys)
    assert status == 2 and "needs a model" in err
    assert not out.exists()


def test_model_data_size_mismatch(tmp_path, model_dir, capsys):
    """A 6-level UNet needs multiples of 64 px: 96² patches are refused before any work."""
    out = tmp_path / "rep"
    status, err = _run(["--model", str(model_dir), "--data", "simulate:2", "--size", "96", "--out", str(out)], capsys)
    assert status == 2 and "64" in err
    assert not out.exists()


def test_dataset_file_input(tmp_path, capsys):
    """Data from an .h5 (sky parameters from its attributes), baselines only."""
    from combine.data import write_dataset
    from combine.sky.flat import simulate_flat_patches

    maps = simulate_flat_patches(3, size=64, noise_uk_arcmin=1.0, seed=5)
    attrs = dict(pixel_arcmin=1.7177, beam_fwhm_arcmin=5.0, noise_uk_arcmin=1.0, size=64, method="flat",
                 seed=5, cosmology=json.dumps({}), combine_version="test")
    d = tmp_path / "data"
    d.mkdir()
    try:
        write_dataset(d / "test.h5", maps, attrs=attrs)
    except Exception:  # the writer may fill or validate attributes itself
        write_dataset(d / "test.h5", maps, attrs={k: v for k, v in attrs.items() if k != "cosmology"})
    out = tmp_path / "rep"
    status = main(["evaluate", "--quiet", "--model", "none", "--data", str(d), "--out", str(out),
                   "--methods", "mean,diffusive", "--masks", "circle-r4"])
    assert status == 0, capsys.readouterr().err
    records = json.loads((out / "results.json").read_text())
    assert {r["n_patches"] for r in records} == {3}
