"""Evidence for the T, Q, U sphere fill (issue 14, sphere part), written to a JSON file.

All on the Planck-like point-source mask of ``combine masks --kind sphere-points`` (catalogue seed 0,
2000 sources, radii from the catalogue) and planck18 skies (CAMB lensed spectra, 5' beam, HEALPix
pixel window, 1 μK·arcmin T noise, √2 for Q/U unless said otherwise).

``--cost``
    Nside 2048, the first ``--subset`` sources of the mask: :func:`combine.sphere.fill_holes` on the
    T map alone and on T, Q, U (joint, the same margin of 6 px, the same groups), Wiener and one
    GCR realisation: wall and CPU seconds (``time.process_time``, all threads) with the load
    average; the TQU / T ratios. The per-group cost does not depend on how many groups there are,
    so the ratio on a subset is the ratio on the whole mask.
``--te``
    The same subset: Q and U hole RMSE (against the truth, noise included) of the joint fill and of
    the fill with TE set to zero (T and Q/U then decouple: the cheaper "T alone + Q, U jointly"
    formulation, 1 + 8 = 9 times the T Cholesky flops instead of 27), and their ratio.
``--split-margins 2,3,4,5,6,9``
    Nside 2048, the same subset: the split fill (``fill_holes(..., tqu_solve="split")``: T alone at
    6 px, Q, U jointly from Q, U alone at each Q/U margin) against the joint fill at
    ``--reference-margin`` px (default 12: the reference) and the Q/U-only fill at 18 px (how far
    the Q/U margin has converged without TE): T, Q, U hole RMSE (truth with noise) and their
    ratios to the reference (``--split-reuse``: those references taken from the JSON's earlier run,
    the new margins' rows added to its rows); CPU and wall seconds (each fill cold: the correlation-table caches
    cleared, as in a fresh ``combine inpaint``) of the split Wiener and one-realisation GCR over
    the T-only fill at 6 px, with the load average.
``--split-full 2,3``
    The cost on the whole mask (2000 sources): T-only fill at 6 px and the split fill at each Q/U
    margin given, Wiener and one GCR realisation, CPU and wall from cold, with the hole RMSE. The
    tables are a fixed cost (the T, Q, U table's CAMB sums take seconds), so the ratio on the whole
    mask is below the subset's.
``--leakage``
    Nside ``--nside`` (default 1024), pure-E sky (BB = 0, no noise), the whole mask, filled by
    :func:`combine.baselines.sphere_wiener_pol.sphere_tqu_fill` (its default margin): anafast BB of
    the zero-filled map (f_sky-corrected), of the Wiener-filled and of the GCR-filled map, mean over
    50 ≤ ℓ ≤ 1000, and the GCR map's EE and BB against the truth's in bands of Δℓ = 50, in units
    of the truth's cosmic variance.

Usage (background)::

    PYTHONPATH=src COMBINE_CACHE_DIR=... nohup .venv/bin/python benchmarks/bench_sphere_pol.py \\
        --cost --te --leakage --json docs/fullsky/bench_sphere_pol.json > bench_pol.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def _sky(nside, **kw):
    import healpy as hp

    from combine.sky import Sky

    return Sky.planck18(pixel_arcmin=hp.nside2resol(nside, arcmin=True), **kw)


def _timed(fn):
    load = os.getloadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "load_average": load}


def _case(workdir: Path, nside: int, subset: int | None, seed: int, sky):
    from combine.sky.polarisation import simulate_healpix_tqu
    from combine.sphere.point_sources import catalogue_mask, draw_catalogue

    path = workdir / f"tqu-{nside}-{seed}-{'pureE' if not sky.spectra_uk2()['bb'].any() else 'lensed'}.npy"
    if path.exists():
        tqu = np.load(path)
    else:
        tqu = simulate_healpix_tqu(nside, sky=sky, pixwin=True, seed=seed).astype(np.float32)
        np.save(path, tqu)
    cat = draw_catalogue(seed=0)
    if subset:
        cat = cat[:subset]
    return tqu.astype(np.float64), catalogue_mask(cat, nside).astype(bool)


def step_cost(args, workdir, record):
    from combine.sphere import fill_holes

    sky = _sky(2048, noise_uk_arcmin=1.0)
    tqu, valid = _case(workdir, 2048, args.subset, 201, sky)
    out = {"nside": 2048, "subset_sources": args.subset, "hole_pixels": int((~valid).sum()), "threads": args.threads}
    for label, m in (("T", tqu[0]), ("TQU", tqu)):
        for kind, real in (("wiener", 0), ("gcr", 1)):
            res, t = _timed(lambda: fill_holes(m, valid, sky=sky, margin_px=6.0, realisations=real, seed=1,
                                               threads=args.threads))
            t["groups"] = len(res.groups)
            out[f"{label}_{kind}"] = t
            print(label, kind, json.dumps(t), flush=True)
    for kind in ("wiener", "gcr"):
        for key in ("wall_s", "cpu_s"):
            out[f"ratio_{kind}_{key}"] = out[f"TQU_{kind}"][key] / out[f"T_{kind}"][key]
    record["cost"] = out


def step_te(args, workdir, record):
    from combine.sphere import fill_holes

    sky = _sky(2048, noise_uk_arcmin=1.0)
    tqu, valid = _case(workdir, 2048, args.subset, 201, sky)
    spectra = sky.spectra_uk2()
    no_te = sky.replace(cl_tt_uk2=spectra["tt"], cl_ee_uk2=spectra["ee"], cl_bb_uk2=spectra["bb"],
                        cl_te_uk2=np.zeros_like(spectra["te"]), preset=None)
    out = {"nside": 2048, "subset_sources": args.subset}
    for label, s in (("joint", sky), ("te_zero", no_te)):
        res = fill_holes(tqu, valid, sky=s, margin_px=6.0, threads=args.threads)
        err = res.mean_uk - tqu[:, res.groups.hole_pixels]
        out[label] = {f: float(np.sqrt(np.mean(err[i] ** 2))) for i, f in enumerate("TQU")}
        print(label, out[label], flush=True)
    out["ratio_te_zero_over_joint"] = {f: out["te_zero"][f] / out["joint"][f] for f in "TQU"}
    record["te"] = out


def _cold(fn):
    """``_timed(fn)`` with the in-process T, Q, U table cache emptied first (a fresh process builds its tables)."""
    from combine.sphere import covariance_tqu

    covariance_tqu._CACHE.clear()
    return _timed(fn)


def step_split(args, workdir, record):
    from combine.sphere import fill_holes

    sky = _sky(2048, noise_uk_arcmin=1.0)
    tqu, valid = _case(workdir, 2048, args.subset, 201, sky)
    margins = [float(x) for x in args.split_margins.split(",")]
    out = {"nside": 2048, "subset_sources": args.subset, "hole_pixels": int((~valid).sum()), "threads": args.threads,
           "margin_t_px": 6.0, "reference_margin_px": args.reference_margin, "qu_margins_px": margins}

    def rmse(res):
        err = res.mean_uk - tqu[:, res.groups.hole_pixels] if res.mean_uk.ndim == 2 else \
            res.mean_uk - tqu[0, res.groups.hole_pixels]
        return {f: float(np.sqrt(np.mean(e ** 2))) for f, e in zip("TQU" if err.ndim == 2 else "T", np.atleast_2d(err))}

    # cost baseline: the T-only fill (twice, before and after the split runs; the smaller CPU is kept)
    t_only = {}
    for kind, real in (("wiener", 0), ("gcr", 1)):
        res, t = _cold(lambda: fill_holes(tqu[0], valid, sky=sky, margin_px=6.0, realisations=real, seed=1,
                                          threads=args.threads))
        t_only[kind] = [t]
        print("T", kind, json.dumps(t), flush=True)
    out["T_rmse"] = rmse(res)["T"]
    old = record.get("split", {})
    if args.split_reuse and all(old.get(k) == out[k] for k in ("subset_sources", "reference_margin_px")):
        # the references of an earlier run on the same case (they cost most of the step): add margins to it
        out["reference"], out["qu_only_18px"] = old["reference"], old["qu_only_18px"]
        print("reusing the references of", args.json, flush=True)
    else:
        old = {}
        ref, t = _cold(lambda: fill_holes(tqu, valid, sky=sky, margin_px=args.reference_margin, threads=args.threads,
                                          max_group_pixels=6000))
        out["reference"] = {"rmse": rmse(ref), "groups": len(ref.groups), **t}
        print("reference", json.dumps(out["reference"]), flush=True)
        del ref
        qu18, t = _cold(lambda: fill_holes(tqu[1:], valid, sky=sky, margin_px=18.0, threads=args.threads,
                                           max_group_pixels=6000))
        e = qu18.mean_uk - tqu[1:, qu18.groups.hole_pixels]
        out["qu_only_18px"] = {"rmse": {f: float(np.sqrt(np.mean(x ** 2))) for f, x in zip("QU", e)}, **t}
        print("qu_only_18px", json.dumps(out["qu_only_18px"]), flush=True)
        del qu18
    rows = []
    for m in margins:
        row = {"margin_qu_px": m}
        for kind, real in (("wiener", 0), ("gcr", 1)):
            res, t = _cold(lambda: fill_holes(tqu, valid, sky=sky, margin_px=6.0, tqu_solve="split", margin_qu_px=m,
                                              realisations=real, seed=1, threads=args.threads))
            row[kind] = t
            if real == 0:
                row["rmse"] = rmse(res)
                row["rmse_over_reference"] = {f: row["rmse"][f] / out["reference"]["rmse"][f] for f in "TQU"}
                row["rmse_over_qu_only_18px"] = {f: row["rmse"][f] / out["qu_only_18px"]["rmse"][f] for f in "QU"}
        rows.append(row)
        print("split", json.dumps(row), flush=True)
    for kind, real in (("wiener", 0), ("gcr", 1)):
        _, t = _cold(lambda: fill_holes(tqu[0], valid, sky=sky, margin_px=6.0, realisations=real, seed=1,
                                        threads=args.threads))
        t_only[kind].append(t)
        print("T", kind, json.dumps(t), flush=True)
    out["T_only"] = t_only
    for row in rows:
        for kind in ("wiener", "gcr"):
            base = min(t_only[kind], key=lambda t: t["cpu_s"])
            row[f"ratio_{kind}_cpu"] = row[kind]["cpu_s"] / base["cpu_s"]
            row[f"ratio_{kind}_wall"] = row[kind]["wall_s"] / min(t["wall_s"] for t in t_only[kind])
    if old:  # earlier rows keep their own T-only timings (the same load as theirs)
        out["T_only_earlier"] = old.get("T_only")
        rows = sorted([r for r in old["split"] if r["margin_qu_px"] not in margins] + rows,
                      key=lambda r: r["margin_qu_px"])
        out["qu_margins_px"] = [r["margin_qu_px"] for r in rows]
    out["split"] = rows
    record["split"] = out


def step_split_full(args, workdir, record):
    from combine.sphere import fill_holes

    sky = _sky(2048, noise_uk_arcmin=1.0)
    tqu, valid = _case(workdir, 2048, None, 201, sky)
    out = {"nside": 2048, "sources": "all", "hole_pixels": int((~valid).sum()), "threads": args.threads,
           "margin_t_px": 6.0}
    runs = [("T", None)] + [("split", float(m)) for m in args.split_full.split(",")] + [("T_again", None)]
    for label, m in runs:
        for kind, real in (("wiener", 0), ("gcr", 1)):
            if m is None:  # T, before and after the split runs
                fn = lambda: fill_holes(tqu[0], valid, sky=sky, margin_px=6.0, realisations=real, seed=1, threads=args.threads)
            else:
                fn = lambda: fill_holes(tqu, valid, sky=sky, margin_px=6.0, tqu_solve="split", margin_qu_px=m,
                                        realisations=real, seed=1, threads=args.threads)
            res, t = _cold(fn)
            t["groups"] = len(res.groups)
            if real == 0:
                x = tqu[:, res.groups.hole_pixels] if res.mean_uk.ndim == 2 else tqu[0, res.groups.hole_pixels]
                t["rmse"] = np.sqrt(np.mean((res.mean_uk - x) ** 2, axis=-1)).tolist()
            del res
            key = label if m is None else f"split_{m:g}px"
            out[f"{key}_{kind}"] = t
            print(key, kind, json.dumps(t), flush=True)
    for m in args.split_full.split(","):
        for kind in ("wiener", "gcr"):
            base = np.mean([out[f"T_{kind}"]["cpu_s"], out[f"T_again_{kind}"]["cpu_s"]])
            out[f"ratio_split_{float(m):g}px_{kind}_cpu"] = out[f"split_{float(m):g}px_{kind}"]["cpu_s"] / base
    record["split_full"] = out


def step_leakage(args, workdir, record):
    import healpy as hp

    from combine.baselines.sphere_wiener_pol import sphere_tqu_fill
    from combine.metrics_pol import bias_over_cosmic_variance, fullsky_spectra_tqu
    from combine.sky.polarisation import pure_e_sky
    from combine.sphere import hole_groups

    nside = args.nside
    sky = pure_e_sky(_sky(nside, noise_uk_arcmin=0.0, lmax=3 * nside))
    truth, valid = _case(workdir, nside, None, 301, sky)
    mask = valid.astype(np.float64)
    wf, t_w = _timed(lambda: sphere_tqu_fill(truth, mask, sky=sky, threads=args.threads))
    gcr, t_g = _timed(lambda: sphere_tqu_fill(truth, mask, sky=sky, gcr=True, seed=5, threads=args.threads))
    margin_px = max(2.0 * sky.beam_fwhm_arcmin / hp.nside2resol(nside, arcmin=True), 4.0)  # sphere_tqu_fill's default
    n_holes = hole_groups(valid, nside, margin_rad=margin_px * hp.nside2resol(nside)).n_holes
    s = {"truth": fullsky_spectra_tqu(truth), "zero": fullsky_spectra_tqu(truth, mask),
         "wiener": fullsky_spectra_tqu(wf), "gcr": fullsky_spectra_tqu(gcr)}
    lo, hi = 50, 1000
    band = {k: {x: float(v[x][lo:hi + 1].mean()) for x in ("ee", "bb")} for k, v in s.items()}
    bias = {x: bias_over_cosmic_variance(s["gcr"][x], s["truth"][x], lo, hi, 50,
                                         reference=s["truth"]["ee"])  # BB: no B in the truth
            for x in ("ee", "bb")}
    out = {"nside": nside, "n_holes": n_holes, "margin_px": margin_px, "fsky": float(mask.mean()),
           "pixel_arcmin": hp.nside2resol(nside, arcmin=True), "band": [lo, hi], "band_means_uk2": band,
           "bb_zero_over_wiener": band["zero"]["bb"] / band["wiener"]["bb"],
           "bb_zero_over_gcr": band["zero"]["bb"] / band["gcr"]["bb"],
           "gcr_ee_over_truth": band["gcr"]["ee"] / band["truth"]["ee"],
           "gcr_minus_truth_over_cosmic_variance": bias,
           "wiener_time": t_w, "gcr_time": t_g}
    print(json.dumps({k: v for k, v in out.items() if k != "gcr_minus_truth_over_cosmic_variance"}), flush=True)
    record["leakage"] = out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="/tmp/bench_sphere")
    p.add_argument("--json", required=True)
    p.add_argument("--subset", type=int, default=200)
    p.add_argument("--nside", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cost", action="store_true")
    p.add_argument("--te", action="store_true")
    p.add_argument("--leakage", action="store_true")
    p.add_argument("--split-margins", default=None, help="Q/U margins (px) of the split fill, e.g. 2,3,4,5,6,9")
    p.add_argument("--reference-margin", type=float, default=12.0, help="margin (px) of the joint reference fill")
    p.add_argument("--split-full", default=None, help="Q/U margins (px) of the split fill on the whole mask, e.g. 2,3")
    p.add_argument("--split-reuse", action="store_true",
                   help="--split-margins: reuse the references of the JSON's earlier split step (same subset) and add rows")
    args = p.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = Path(args.json)
    record = json.loads(path.read_text()) if path.exists() else {}
    record["machine"] = {"cpus": os.cpu_count(), "load_average_start": os.getloadavg(),
                         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for flag, run in (("cost", step_cost), ("te", step_te), ("split_margins", step_split),
                      ("split_full", step_split_full), ("leakage", step_leakage)):
        if getattr(args, flag):
            run(args, workdir, record)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
