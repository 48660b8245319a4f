"""``combine evaluate`` on T, Q, U data end to end (simulate:N and a dataset file, a simulated full
sky, a T, Q, U FITS map) and its bad inputs (exit 2, one line)."""

import json

import healpy as hp
import numpy as np
import pytest

from combine.cli import main


# dense TQU solves on one torch thread (conftest): two were 3-60 x slower on the shared cores
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_tqu") / "report"
    status = main(["evaluate", "--model", "none", "--data", "simulate:4", "--fields", "TQU", "--pure-e",
                   "--size", "24", "--methods", "wiener,gcr,zero,diffusive", "--masks", "points", "--n-random", "3", "--fullsky-simulate", "32", "--fullsky-holes", "25", "--fullsky-beam", "220",
                   "--out", str(out), "--quiet", "--seed", "1"])
    assert status == 0
    return out


def _by(records, **match):
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def test_tqu_report_and_records(report):
    text = (report / "report.md").read_text()
    records = json.loads((report / "results.json").read_text())
    assert "dense exact joint TQU solve" in text  # says which Wiener filter ran
    # the table shows the records' numbers: T / Q / U with the ratios to Wiener
    for mk in ("points",):
        vals = [_by(records, method="diffusive", mask=mk, metric="rmse_hole", field=f)[0]["value"] for f in "TQU"]
        rats = [_by(records, method="diffusive", mask=mk, metric="rmse_hole_ratio_wiener", field=f)[0]["value"]
                for f in "TQU"]
        cell = " / ".join(f"{v:.3g}" for v in vals) + " (" + " / ".join(f"{r:.2f}" for r in rats) + "×)"
        assert cell in text
        # the Wiener fill is the best on Q and U, and GCR costs about √2 in RMSE (4 patches: loose)
        for f in "QU":
            w = _by(records, method="wiener", mask=mk, metric="rmse_hole", field=f)[0]["value"]
            for m in ("zero", "diffusive", "gcr"):
                assert _by(records, method=m, mask=mk, metric="rmse_hole", field=f)[0]["value"] > w
    # E/B band metrics and per-bin BB for every method; truth spectra recorded once per bin
    for m in ("wiener", "gcr", "zero", "diffusive"):
        assert len(_by(records, method=m, mask="points", metric="bb_excess_band")) == 1
        assert len(_by(records, method=m, mask="points", metric="bb_ratio")) >= 3
    assert _by(records, method="truth", mask="points", metric="bb_truth")
    # full sky: two skies, the sphere Wiener fill removes the cut's E->B leakage on the pure-E one
    fs = _by(records, mask="fullsky", metric="fullsky_bb_zero_over_method", method="wiener")
    assert {r["sky_label"] for r in fs} == {"pure-e Nside 32", "lensed Nside 32"}
    pure = next(r for r in fs if r["sky_label"].startswith("pure-e"))
    assert pure["value"] > 100
    lensed = next(r for r in fs if r["sky_label"].startswith("lensed"))
    assert lensed["value"] < pure["value"] / 10  # lensing B is real power, not leakage
    figs = [line[line.index("(") + 1:-1] for line in text.splitlines() if line.startswith("![")]
    assert {"bb_leakage_points.png", "panels_points_Q.png", "fullsky_bb_leakage_pure-e_Nside_32.png"} <= set(figs)
    assert all((report / f).stat().st_size > 1000 for f in figs)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("tqu_data")
    for fields in ("T", "TQU"):
        status = main(["simulate", "--out", str(root / fields), "--n-patches", "2", "--size", "64",
                       "--fields", fields, "--split", "0,0,1", "--seed", "3", "--quiet"])
        assert status == 0
    return root


def test_tqu_dataset_file_and_fits_map(tmp_path, datasets, capsys):
    """A T, Q, U dataset is evaluated as T, Q, U without --fields; a 3-column FITS map with a mask
    is the full-sky truth (its TUNIT read: a map in K is converted to μK)."""
    nside = 16
    from combine.sky import Sky
    from combine.sky.polarisation import simulate_healpix_tqu

    tqu_uk = simulate_healpix_tqu(nside, sky=Sky.planck18(beam_fwhm_arcmin=600.0), seed=2)
    mask = np.ones(hp.nside2npix(nside))
    mask[hp.query_disc(nside, hp.ang2vec(40.0, 10.0, lonlat=True), np.radians(8))] = 0
    hp.write_map(tmp_path / "tqu.fits", tqu_uk * 1e-6, column_units="K", dtype=np.float64)
    hp.write_map(tmp_path / "mask.fits", mask, dtype=np.float64)
    out = tmp_path / "r"
    status = main(["evaluate", "--model", "none", "--data", str(datasets / "TQU"), "--methods",
                   "lwiener,zero,diffusive", "--masks", "circle-r3", "--fullsky-map", str(tmp_path / "tqu.fits"),
                   "--fullsky-mask", str(tmp_path / "mask.fits"), "--out", str(out), "--quiet"])
    assert status == 0, capsys.readouterr().err
    records = json.loads((out / "results.json").read_text())
    assert _by(records, method="lwiener", mask="circle-r3", metric="rmse_hole", field="U")
    truth_ee = _by(records, method="truth", mask="fullsky", metric="fullsky_cl_ee_band")[0]["value"]
    band = (30, 32)  # 2 Nside
    cl = hp.anafast(tqu_uk.astype(np.float64), pol=True, iter=0)[1]
    assert truth_ee == pytest.approx(cl[band[0]:band[1] + 1].mean(), rel=1e-6)  # μK², not K²


def _err(args, capsys):
    status = main(["evaluate", "--quiet"] + args)
    err = capsys.readouterr().err.strip().splitlines()
    return status, err


def test_bad_tqu_input_exit_2(tmp_path, datasets, tiny_model_dir, untrained_models, capsys):
    out = str(tmp_path / "r")
    tqu, t = str(datasets / "TQU"), str(datasets / "T")
    one_column = tmp_path / "t.fits"
    hp.write_map(one_column, np.zeros(hp.nside2npix(8)), dtype=np.float64)
    mask = tmp_path / "m.fits"
    hp.write_map(mask, np.r_[np.zeros(10), np.ones(hp.nside2npix(8) - 10)], dtype=np.float64)
    cases = [
        (["--model", "none", "--data", t, "--fields", "TQU"], "--fields TQU but the dataset holds temperature"),
        (["--model", str(untrained_models / "t128-3ch"), "--data", t, "--methods", "nn,mean", "--masks", "circle-r4"],
         "model takes 3 channels"),
        (["--model", str(tiny_model_dir), "--data", tqu, "--methods", "nn,zero", "--masks", "circle-r4"],
         "model takes 1 channel(s); T, Q, U data need a 3-channel model"),
        (["--model", "none", "--data", tqu, "--methods", "gmrf"], "'gmrf' has no T, Q, U version"),
        (["--model", "none", "--data", t, "--pure-e"], "--pure-e: only for T, Q, U"),
        (["--model", "none", "--data", t, "--fullsky-simulate", "32"], "--fullsky-simulate: only for T, Q, U"),
        (["--model", "none", "--data", tqu, "--pure-e"], "--pure-e: only for simulated data"),
        (["--model", "none", "--data", tqu, "--methods", "zero,diffusive", "--fullsky-simulate", "32",
          "--fullsky-skies", "pure-b"], "--fullsky-skies"),
        (["--model", "none", "--data", tqu, "--methods", "lwiener", "--fullsky-simulate", "32"],
         "none of --methods has a full-sky"),
        (["--model", "none", "--data", tqu, "--methods", "zero,diffusive", "--fullsky-simulate", "30"],
         "power of 2"),
        (["--model", "none", "--data", tqu, "--methods", "diffusive", "--fullsky-map", str(one_column),
          "--fullsky-mask", str(mask)], "needs T, Q and U columns"),
    ]
    for args, message in cases:
        status, err = _err(args + ["--out", out], capsys)
        assert status == 2, (args, err)
        assert len(err) == 1 and message in err[0], (args, err)
        assert not (tmp_path / "r").exists()


def test_bad_tqu_dataset_exit_2(tmp_path, datasets, capsys):
    """A dataset with two fields, or NaN in a Q pixel of a T, Q, U dataset: exit 2, one line."""
    import shutil

    import h5py

    two = tmp_path / "two"
    nan = tmp_path / "nan"
    for d in (two, nan):
        shutil.copytree(datasets / "TQU", d)
    with h5py.File(two / "test.h5", "r+") as h:
        maps = h["maps"][:, :2]
        attrs = dict(h["maps"].attrs)
        del h["maps"]
        h.create_dataset("maps", data=maps)
        h["maps"].attrs.update(attrs)
    with h5py.File(nan / "test.h5", "r+") as h:
        h["maps"][0, 1, 3, 5] = np.nan
    for data, message in ((two, "2 channels"), (nan, "NaN")):
        status, err = _err(["--model", "none", "--data", str(data), "--methods", "zero", "--masks", "circle-r4",
                            "--out", str(tmp_path / "r")], capsys)
        assert status == 2 and len(err) == 1 and message in err[0], err



def test_default_tqu_masks_leave_out_random_shapes():
    """Regression: the T default masks include 'random', whose large holes made the joint local TQU
    window solve of 128² patches take > 8 GB; T, Q, U evaluation defaults to circles and points."""
    from types import SimpleNamespace

    from combine.commands.evaluate import resolve_tqu_methods_and_masks
    from combine.evaluation.tqu import TQU_DEFAULT_MASK_SPECS

    args = SimpleNamespace(methods=None, masks=None, radius_sweep=False)
    methods, masks = resolve_tqu_methods_and_masks(args, has_model=False)
    assert masks == TQU_DEFAULT_MASK_SPECS and "random" not in masks
    assert "nn" not in methods and "gmrf" not in methods and {"wiener", "zero", "diffusive"} <= set(methods)
    args.masks = "random"
    assert resolve_tqu_methods_and_masks(args, has_model=True)[1] == ("random",)
