"""``combine evaluate`` end to end on a small random model and 64² patches, and its bad inputs."""

import json

import numpy as np
import pytest
import torch

from combine.cli import main




@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("eval") / "report"
    status = main(["evaluate", "--model", str(tiny_model_dir), "--data", "simulate:4", "--size", "64",
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
    # the one-off precision matrix is timed apart from the per-patch cost
    assert by[("wiener", "all", "seconds_precision_matrix")]["value"] > 0
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
def test_bad_arguments_exit_2(tmp_path, tiny_model_dir, capsys, extra, message):
    out = tmp_path / "rep"
    status, err = _run(["--model", str(tiny_model_dir), "--data", "simulate:2", "--size", "64", "--out", str(out)] + extra,
                       capsys)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_data_and_model(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "rep"
    status, err = _run(["--model", str(tiny_model_dir), "--data", str(tmp_path / "nope.h5"), "--out", str(out)], capsys)
    assert status == 2 and "nope.h5" in err
    status, err = _run(["--model", str(tmp_path / "no-model"), "--data", "simulate:2", "--size", "64",
                        "--out", str(out)], capsys)
    assert status == 2 and "no-model" in err
    status, err = _run(["--model", "none", "--data", "simulate:2", "--size", "64", "--methods", "nn",
                        "--out", str(out)], capsys)
    assert status == 2 and "needs a model" in err
    assert not out.exists()


def test_model_data_size_mismatch(tmp_path, tiny_model_dir, capsys):
    """A 6-level UNet needs multiples of 64 px: 96² patches are refused before any work."""
    out = tmp_path / "rep"
    status, err = _run(["--model", str(tiny_model_dir), "--data", "simulate:2", "--size", "96", "--out", str(out)], capsys)
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


def test_radius_sweep_figures(tmp_path, capsys):
    """--radius-sweep: the original CoMBInE's centred holes of 5 … 65 px, a figure per metric against radius.
    The mean fill's hole RMSE grows with the radius (holes reach farther from the valid mean's support)."""
    from combine.evaluate import RADIUS_SWEEP_PX

    out = tmp_path / "rep"
    status = main(["evaluate", "--quiet", "--model", "none", "--data", "simulate:2", "--out", str(out),
                   "--methods", "mean,telea", "--radius-sweep"])
    assert status == 0, capsys.readouterr().err
    records = json.loads((out / "results.json").read_text())
    radii = sorted({r["radius_px"] for r in records if r["metric"] == "rmse_hole" and r["method"] == "mean"})
    assert radii == list(RADIUS_SWEEP_PX)
    links = [line[line.index("(") + 1:-1] for line in (out / "report.md").read_text().splitlines()
             if line.startswith("![")]
    assert {"radius_rmse_hole.png", "radius_power_ratio_band.png", "radius_ks_statistic.png"} <= set(links)
    rmse = {r["radius_px"]: r["value"] for r in records if r["metric"] == "rmse_hole" and r["method"] == "telea"}
    assert rmse[5] < rmse[65]


@pytest.fixture(scope="module")
def training_run(tmp_path_factory):
    """A fake training run: checkpoints/epoch-0001 and epoch-0002, random tiny models that differ."""
    from combine.models import save_model
    from combine.nn import PConvUNet

    run = tmp_path_factory.mktemp("runs") / "run"
    for epoch in (1, 2):
        torch.manual_seed(epoch)
        unet = PConvUNet("t128", levels=6, channels=[8, 16, 16, 16, 16, 16]).eval()
        save_model(unet, run / "checkpoints" / f"epoch-{epoch:04d}", extra={"training": {"epoch": epoch}})
    return run


def test_metrics_against_epoch(tmp_path, tiny_model_dir, training_run, capsys):
    """--run: every checkpoint evaluated on the same patches and masks, records with their
    epoch (and the Wiener filter's reference, epoch None), figures of metrics against epoch; the
    ratio to the Wiener filter is the checkpoint's RMSE over the reference's."""
    out = tmp_path / "rep"
    status = main(["evaluate", "--quiet", "--model", str(tiny_model_dir), "--data", "simulate:2", "--size", "64",
                   "--out", str(out), "--methods", "nn,mean", "--masks", "circle-r4,circle-r8",
                   "--run", str(training_run), "--epoch-patches", "2"])
    assert status == 0, capsys.readouterr().err
    records = json.loads((out / "results.json").read_text())
    per_epoch = [r for r in records if r.get("epoch") is not None]
    assert {r["epoch"] for r in per_epoch} == {1, 2}
    assert {r["checkpoint"] for r in per_epoch} == {"epoch-0001", "epoch-0002"}
    ref = {r["mask"]: r["value"] for r in records
           if "epoch" in r and r["epoch"] is None and r["method"] == "wiener" and r["metric"] == "rmse_hole"}
    assert set(ref) == {"circle-r4", "circle-r8"}
    for e in (1, 2):
        for mk in ("circle-r4", "circle-r8"):
            rm = [r for r in per_epoch if r["epoch"] == e and r["mask"] == mk and r["metric"] == "rmse_hole"]
            ra = [r for r in per_epoch if r["epoch"] == e and r["mask"] == mk and r["metric"] == "rmse_hole_ratio_wiener"]
            assert len(rm) == len(ra) == 1
            assert ra[0]["value"] == pytest.approx(rm[0]["value"] / ref[mk], rel=1e-9)
    text = (out / "report.md").read_text()
    assert "epochs 1–2" in text
    for name in ("epochs_rmse_hole.png", "epochs_rmse_hole_ratio_wiener.png", "epochs_power_ratio_band.png"):
        assert f"]({name})" in text and (out / name).stat().st_size > 1000


def test_run_without_checkpoints_exit_2(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "empty_run").mkdir()
    out = tmp_path / "rep"
    status, err = _run(["--model", str(tiny_model_dir), "--data", "simulate:2", "--size", "64", "--out", str(out),
                        "--run", str(tmp_path / "empty_run")], capsys)
    assert status == 2 and "checkpoints" in err and not out.exists()


def test_fullsky_map_and_mask(tmp_path, tiny_model_dir, capsys):
    """--fullsky-map/--fullsky-mask: the model fills the HEALPix holes; anafast ratio records
    (filled and zero-filled/f_sky, with the mask's f_sky) and their figure. A random model's
    fill has no meaningful amplitude, so this checks the bookkeeping (smoke test)."""
    import healpy as hp
    from combine.image_io import write_healpix_fits

    nside = 128
    rng = np.random.default_rng(0)
    truth = rng.normal(scale=50.0, size=hp.nside2npix(nside))
    mask = np.ones_like(truth)
    for v in rng.normal(size=(5, 3)):
        mask[hp.query_disc(nside, v / np.linalg.norm(v), np.radians(0.5))] = 0.0
    write_healpix_fits(tmp_path / "map.fits", truth.astype(np.float32))
    write_healpix_fits(tmp_path / "mask.fits", mask.astype(np.float32))
    out = tmp_path / "rep"
    status = main(["evaluate", "--quiet", "--model", str(tiny_model_dir), "--data", "simulate:1", "--size", "64",
                   "--out", str(out), "--methods", "mean", "--masks", "circle-r4",
                   "--fullsky-map", str(tmp_path / "map.fits"), "--fullsky-mask", str(tmp_path / "mask.fits")])
    assert status == 0, capsys.readouterr().err
    records = json.loads((out / "results.json").read_text())
    fs = [r for r in records if r["metric"] == "fullsky_power_ratio"]
    assert {r["method"] for r in fs} == {"nn", "zero_fsky"}
    assert all(r["f_sky"] == pytest.approx(mask.mean()) for r in fs)
    assert (out / "fullsky_spectrum_ratio.png").stat().st_size > 1000
    # without a model the full sky cannot be filled: exit 2 before any work
    status, err = _run(["--model", "none", "--data", "simulate:1", "--size", "64", "--out", str(tmp_path / "r2"),
                        "--methods", "mean", "--masks", "circle-r4", "--fullsky-map", str(tmp_path / "map.fits"),
                        "--fullsky-mask", str(tmp_path / "mask.fits")], capsys)
    assert status == 2 and "needs a model" in err


def test_regression_lwiener_gmrf_use_the_data_spectrum_whatever_else_runs(tmp_path, capsys):
    """Issue 12 bug: `--methods lwiener,gmrf --ns 0.5` filled with the planck18 spectrum, because the
    spectrum was loaded only when wiener/gcr were also requested. Now every method gets the one Sky
    of the data: the lwiener and gmrf fills (their hole RMSE, to float rounding) are the same with or
    without wiener in the list, and equal the fills computed directly with the ns = 0.5 spectrum
    (which differ from the planck18 ones by far more than that rounding)."""
    from combine.baselines import gmrf_fill, local_wiener_fill
    from combine.data import write_dataset
    from combine.evaluation import make_masks, parse_mask_spec, spec_seed
    from combine.sky import Sky
    from combine.sky.flat import simulate_flat_patches

    size, n, seed = 32, 4, 3
    sky = Sky.planck18(noise_uk_arcmin=1.0).with_ns(0.5)
    maps = simulate_flat_patches(n, size=64, sky=sky, seed=9)[:, :size, :size].copy()
    # a file of the first layout (loose attributes, per-patch ns labels): the sky comes from them
    attrs = dict(pixel_arcmin=1.7177, beam_fwhm_arcmin=5.0, noise_uk_arcmin=1.0, size=size, method="flat",
                 seed=9, cosmology=json.dumps({"ns": None}), combine_version="test")
    d = tmp_path / "data"
    d.mkdir()
    write_dataset(d / "test.h5", maps, ns=np.full(n, 0.5), attrs=attrs)

    def rmse_by_method(methods):
        out = tmp_path / methods.replace(",", "_")
        status = main(["evaluate", "--quiet", "--model", "none", "--data", str(d), "--out", str(out),
                       "--methods", methods, "--masks", "circle-r4", "--ns", "0.5", "--seed", str(seed)])
        assert status == 0, capsys.readouterr().err
        records = json.loads((out / "results.json").read_text())
        recorded = [r for r in records if r["metric"] == "sky"]
        assert len(recorded) == 1 and Sky.from_json(recorded[0]["sky"]) == sky
        return {r["method"]: r["value"] for r in records if r["metric"] == "rmse_hole"}

    alone = rmse_by_method("lwiener,gmrf")
    with_wiener = rmse_by_method("lwiener,gmrf,wiener")

    spec = parse_mask_spec("circle-r4")
    masks = make_masks(spec, n, size, spec_seed(seed, spec))
    hole = masks < 0.5
    masked = np.where(hole, np.float32(0.0), maps)

    def rmse(fill, cl):
        out = fill(masked, masks, cl_uk2=cl, pixel_arcmin=1.7177, beam_fwhm_arcmin=5.0, noise_uk_arcmin=1.0)
        return float(np.sqrt(np.mean((out[hole].astype(np.float64) - maps[hole]) ** 2)))

    for name, fill in (("lwiener", local_wiener_fill), ("gmrf", gmrf_fill)):
        expected = rmse(fill, sky.cl_tt)
        planck = rmse(fill, Sky.planck18().cl_tt)
        assert abs(planck - expected) > 1e-3 * expected  # the spectrum matters at this precision
        assert alone[name] == pytest.approx(with_wiener[name], rel=1e-6)
        assert alone[name] == pytest.approx(expected, rel=1e-5)


def test_existing_report_is_replaced_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = ["--model", "none", "--data", "simulate:2", "--size", "64", "--out", str(out), "--methods", "mean",
            "--masks", "circle-r4"]
    status, err = _run(argv, capsys)
    assert status == 2 and "exists; give --overwrite" in err and (out / "keep.txt").read_text() == "mine"
    status, err = _run(argv + ["--overwrite"], capsys)
    assert status == 0, err
    assert not (out / "keep.txt").exists() and (out / "results.json").is_file()


def test_old_navier_stokes_name_is_refused(tmp_path, capsys):
    """`ns` means the spectral index only: the OpenCV method is `navier-stokes`, the old name is an error."""
    out = tmp_path / "rep"
    status, err = _run(["--model", "none", "--data", "simulate:2", "--size", "64", "--out", str(out),
                        "--methods", "ns"], capsys)
    assert status == 2 and "renamed 'navier-stokes'" in err and len(err.strip().splitlines()) == 1
    status = main(["evaluate", "--quiet", "--model", "none", "--data", "simulate:2", "--size", "64",
                   "--out", str(out), "--methods", "navier-stokes,mean", "--masks", "circle-r4"])
    assert status == 0, capsys.readouterr().err
    records = json.loads((out / "results.json").read_text())
    by = {r["method"]: r["value"] for r in records if r["metric"] == "rmse_hole"}
    assert by["navier-stokes"] < by["mean"]


def test_summary_line_with_quiet_names_report_patches_and_seed(tmp_path, capsys):
    """Issue 15: the last stdout line is the summary (printed with --quiet too): the report path,
    the number of patches evaluated (as in results.json), the figures written and the seed."""
    out = tmp_path / "rep"
    status = main(["evaluate", "--quiet", "--model", "none", "--data", "simulate:3", "--size", "64", "--out", str(out),
                   "--methods", "mean", "--masks", "circle-r4", "--seed", "7"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    last = captured.out.splitlines()[-1]
    records = json.loads((out / "results.json").read_text())
    (n,) = {r["n_patches"] for r in records}
    n_png = len(list(out.glob("*.png")))
    assert last.startswith(f"combine evaluate: wrote {out / 'report.md'}, results.json and {n_png} figure(s); "
                           f"{n} patches (64²)"), last
    assert n == 3 and n_png > 0 and "; seed 7 (" in last
