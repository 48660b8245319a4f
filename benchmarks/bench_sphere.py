"""Evidence for the sphere-native fills (issue 13, item 8), written to a JSON file.

Steps (each optional, all on independent planck18 skies: CAMB lensed TT, 5' beam, HEALPix pixel
window, 1 μK·arcmin white noise, Nside 2048, seeds 101, 102, ...; the default point-source mask of
``combine masks --kind sphere-points`` with seed 0: 2000 sources, 1.09 % of the sky):

``--margins 2,3,4,6,8,18``
    Hole RMSE of the sphere-native Wiener fill against the truth (the unmasked map, noise
    included: the fill estimates the map) on the first ``--subset`` sources of the mask, for each
    margin (map pixels); the ratio to the largest margin. With ``--model NAME`` also the network
    through the gnomonic-patch pipeline on the same holes (``combine.healpix_inpaint``).
``--speed``
    ``/usr/bin/time -v combine inpaint --method wiener`` and ``--method gcr`` on the full mask
    (FITS in and out, as a user runs it): wall time, CPU time and peak resident memory.
``--profile`` (after ``--speed`` has written its inputs)
    Wall and CPU seconds of each stage of the Wiener command (FITS read and write, input checks,
    hole grouping, group reach, ξ table, the fill, imports and the rest), for each
    ``--profile-src`` tree (e.g. main's ``src`` and a branch's, alternating ``--profile-runs``
    times on the same load).
``--skies K``
    For each of K skies: Wiener and one GCR fill of the full mask; GCR calibration
    E|gcr - truth|² / E|wiener - truth|² pooled and per hole size (terciles of the hole pixel count)
    with its standard error (delta method over hole groups, which are independent to a good
    approximation); anafast (``iter=0``, lmax 3099) of truth, Wiener- and GCR-filled maps, and their
    ratios in bins of Δℓ = 100 from ℓ = 30 (mean over skies, standard error across skies);
    ``--figure`` draws the ratios.

Usage (background, one step at a time; each sky costs a simulation, two fills and three anafasts)::

    PYTHONPATH=src COMBINE_CACHE_DIR=... nohup .venv/bin/python benchmarks/bench_sphere.py \\
        --margins 2,3,4,6,8,18 --skies 3 --speed --json docs/fullsky/bench_sphere.json \\
        --figure docs/fullsky/cl_ratio.png > bench.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NSIDE = 2048


def sky_model():
    from combine.sky import Sky

    import healpy as hp

    return Sky.planck18(noise_uk_arcmin=1.0, pixel_arcmin=hp.nside2resol(NSIDE, arcmin=True))


def truth_map(workdir: Path, seed: int) -> np.ndarray:
    from combine.sky.healpix import simulate_healpix_map

    path = workdir / f"sky-{NSIDE}-{seed}.npy"
    if path.exists():
        return np.load(path)
    sky = sky_model()
    m = simulate_healpix_map(NSIDE, cl_uk2=sky.cl_tt, beam_fwhm_arcmin=sky.beam_fwhm_arcmin, noise_uk_arcmin=1.0,
                             seed=seed)
    np.save(path, m)
    return m


def mask_of(catalogue) -> np.ndarray:
    from combine.sphere.point_sources import catalogue_mask

    return catalogue_mask(catalogue, NSIDE).astype(bool)


def step_margins(args, workdir, record):
    from combine.sphere import fill_holes
    from combine.sphere.point_sources import draw_catalogue

    truth = truth_map(workdir, 101)
    cat = draw_catalogue(seed=0)[: args.subset]
    valid = mask_of(cat)
    sky = sky_model()
    rows = []
    for m in [float(x) for x in args.margins.split(",")]:
        t0 = time.perf_counter()
        res = fill_holes(truth, valid, sky=sky, margin_px=m)
        dt = time.perf_counter() - t0
        err = res.mean_uk - truth[res.groups.hole_pixels]
        rows.append({"margin_px": m, "rmse_uk": float(np.sqrt(np.mean(err ** 2))), "seconds": dt,
                     "mean_context_pixels": float(res.groups.context_sizes.mean())})
        print(f"margin {m:g} px: hole RMSE {rows[-1]['rmse_uk']:.4f} uK, {dt:.1f} s", flush=True)
    ref = rows[-1]["rmse_uk"]
    for r in rows:
        r["ratio_to_largest"] = r["rmse_uk"] / ref
    out = {"n_sources": len(cat), "n_hole_pixels": int((~valid).sum()), "rows": rows}
    if args.model:
        from combine.healpix_inpaint import inpaint_healpix
        from combine.models import load_model

        model = load_model(args.model)
        t0 = time.perf_counter()
        filled = inpaint_healpix(model, truth, valid, progress=False)
        holes = np.flatnonzero(~valid)
        out["model"] = {"name": args.model, "rmse_uk": float(np.sqrt(np.mean((filled[holes] - truth[holes]) ** 2))),
                        "seconds": time.perf_counter() - t0}
        print(f"model {args.model}: hole RMSE {out['model']['rmse_uk']:.4f} uK", flush=True)
    record["margins"] = out


def _time_v(cmd, env):
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    text = proc.stderr

    def field(name):
        return re.search(rf"{re.escape(name)}: (.*)", text).group(1).strip()

    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
    wall_s = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
    return {"wall_s": wall_s, "user_s": float(field("User time (seconds)")),
            "system_s": float(field("System time (seconds)")),
            "peak_rss_gb": int(field("Maximum resident set size (kbytes)")) * 1024 / 1e9,
            "stdout": proc.stdout.strip()}


def step_speed(args, workdir, record):
    import healpy as hp

    from combine.image_io import write_healpix_fits
    from combine.sphere.point_sources import draw_catalogue

    truth = truth_map(workdir, 101)
    valid = mask_of(draw_catalogue(seed=0))
    map_path, mask_path = workdir / "speed-map.fits", workdir / "speed-mask.fits"
    if not map_path.exists():
        write_healpix_fits(map_path, np.where(valid, truth, hp.UNSEEN).astype(np.float32), unit="uK")
        write_healpix_fits(mask_path, valid.astype(np.float32), column="MASK")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS=str(args.threads))
    out = {"threads": args.threads, "load_average_before": os.getloadavg()}
    for method in ("wiener", "gcr"):
        target = workdir / f"speed-{method}.fits"
        cmd = [sys.executable, "-m", "combine", "inpaint", "--quiet", "--method", method, "--input", str(map_path),
               "--mask", str(mask_path), "--output", str(target), "--seed", "1", "--overwrite"]
        out[method] = _time_v(cmd, env)
        out[method]["command"] = "combine inpaint --method {} --input map.fits --mask mask.fits --output out.fits --seed 1".format(method)
        print(method, out[method], flush=True)
    out["load_average_after"] = os.getloadavg()
    record[args.speed_key] = out


#: Run inside the profiled process: times (wall, CPU) the stages of ``combine inpaint`` by
#: wrapping the functions that carry them; what is left of the whole is imports and checks.
_PROFILE_SCRIPT = r"""
import json, sys, time
T0, C0 = time.perf_counter(), time.process_time()
import combine.commands.inpaint as inp
getattr(inp, "_import_healpy_without_plotting", lambda: None)()
import combine.healpix_inpaint, combine.image_io, combine.sphere.wiener as w
from combine.cli import main
stages = {}
def timed(mod, name, label):
    f = getattr(mod, name)
    def wrapper(*a, **k):
        t, c = time.perf_counter(), time.process_time()
        try:
            return f(*a, **k)
        finally:
            s = stages.setdefault(label, [0.0, 0.0])
            s[0] += time.perf_counter() - t; s[1] += time.process_time() - c
    setattr(mod, name, wrapper)
timed(combine.image_io, "read_healpix_table", "read map")
timed(combine.image_io, "read_healpix_fits", "read mask")
timed(combine.image_io, "write_healpix_table", "write")
timed(combine.healpix_inpaint, "check_healpix_inputs", "check inputs")
timed(w, "hole_groups", "hole groups")
timed(w, "CorrelationTable", "xi table")
if hasattr(w, "_group_reach"):
    timed(w, "_group_reach", "reach")
timed(w, "fill_holes", "fill_holes (all)")
status = main(sys.argv[1:])
stages["total"] = [time.perf_counter() - T0, time.process_time() - C0]
print("PROFILE", json.dumps({"status": status, "stages": stages}))
"""


def step_profile(args, workdir, record):
    """Stages of ``combine inpaint --method wiener`` on the --speed inputs (wall and CPU seconds of
    each: FITS read and write, input checks, hole grouping, group reach, ξ table, the fill), for
    each source tree in --profile-src (default this one), --profile-runs times, alternating."""
    srcs = [Path(s) for s in (args.profile_src or [str(ROOT / "src")])]
    map_path, mask_path = workdir / "speed-map.fits", workdir / "speed-mask.fits"
    if not map_path.exists():
        raise SystemExit("--profile: run --speed once first (it writes the speed inputs)")
    out = {"load_average_before": os.getloadavg(), "runs": []}
    for run in range(args.profile_runs):
        for src in srcs:
            target = Path(args.profile_out) / f"profile-{run}-{len(out['runs'])}.fits"
            env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS=str(args.threads))
            cmd = [sys.executable, "-c", _PROFILE_SCRIPT, "inpaint", "--quiet", "--method", "wiener", "--input",
                   str(map_path), "--mask", str(mask_path), "--output", str(target), "--overwrite"]
            load = os.getloadavg()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("PROFILE ")), None)
            if proc.returncode != 0 or line is None:
                raise RuntimeError(proc.stderr[-2000:])
            res = json.loads(line[len("PROFILE "):])
            st = res["stages"]
            fill = st.get("fill_holes (all)", [0.0, 0.0])
            inner = [sum(st.get(k, [0.0, 0.0])[i] for k in ("hole groups", "xi table", "reach")) for i in (0, 1)]
            st["fill: solve and rest"] = [fill[i] - inner[i] for i in (0, 1)]
            outside = [sum(v[i] for k, v in st.items() if k in ("read map", "read mask", "write", "check inputs"))
                       for i in (0, 1)]
            st["imports and rest"] = [st["total"][i] - fill[i] - outside[i] for i in (0, 1)]
            out["runs"].append({"src": str(src), "load_average": load, "stages": st})
            print(src, json.dumps({k: [round(x, 3) for x in v] for k, v in st.items()}), flush=True)
            target.unlink(missing_ok=True)
    out["load_average_after"] = os.getloadavg()
    record[args.profile_key] = out


def _binned(cl, lo=30, hi=3030, width=100):
    edges = np.arange(lo, hi + 1, width)
    return np.array([cl[a:b].mean() for a, b in zip(edges[:-1], edges[1:])]), edges


def _ratio_and_se(a, b):
    """sum(a)/sum(b) and its delta-method standard error over independent units."""
    a, b = np.asarray(a), np.asarray(b)
    r = a.sum() / b.sum()
    n = a.size
    se = np.sqrt(np.var(a - r * b, ddof=1) * n) / b.sum() if n > 1 else float("nan")
    return float(r), float(se)


def step_skies(args, workdir, record):
    import healpy as hp

    from combine.sphere import fill_holes
    from combine.sphere.point_sources import draw_catalogue

    sky = sky_model()
    valid = mask_of(draw_catalogue(seed=0))
    skies = []
    per_group_a, per_group_b, sizes = [], [], []
    for k in range(args.skies):
        seed = 101 + k
        t0 = time.perf_counter()
        truth = truth_map(workdir, seed)
        t_sim = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = fill_holes(truth, valid, sky=sky, realisations=1, seed=1000 + k)
        t_fill = time.perf_counter() - t0
        g = res.groups
        holes = g.hole_pixels
        ew = (res.mean_uk - truth[holes]) ** 2
        eg = (res.draws_uk[0] - truth[holes]) ** 2
        idx = np.repeat(np.arange(len(g)), g.hole_sizes)
        a = np.bincount(idx, weights=eg, minlength=len(g))
        b = np.bincount(idx, weights=ew, minlength=len(g))
        per_group_a.append(a)
        per_group_b.append(b)
        sizes.append(g.hole_sizes)
        spectra = {}
        for name, values in (("truth", None), ("wiener", res.mean_uk), ("gcr", res.draws_uk[0])):
            m = truth.astype(np.float64)
            if values is not None:
                m[holes] = values
            spectra[name] = hp.anafast(m, lmax=3099, iter=0)
        del m
        bt, edges = _binned(spectra["truth"])
        entry = {"seed": seed, "gcr_seed": 1000 + k, "simulate_s": t_sim, "fill_s": t_fill,
                 "calibration": _ratio_and_se(a, b), "n_groups": len(g), "n_holes": g.n_holes,
                 "ratio_wiener": (_binned(spectra["wiener"])[0] / bt).tolist(),
                 "ratio_gcr": (_binned(spectra["gcr"])[0] / bt).tolist()}
        skies.append(entry)
        print(f"sky {seed}: calibration {entry['calibration']}, fill {t_fill:.1f} s, "
              f"max|gcr-1| {np.max(np.abs(np.array(entry['ratio_gcr']) - 1)):.4f}, "
              f"min wiener {np.min(entry['ratio_wiener']):.4f}", flush=True)
    a, b, s = np.concatenate(per_group_a), np.concatenate(per_group_b), np.concatenate(sizes)
    edges_size = np.quantile(s, [0, 1 / 3, 2 / 3, 1])
    by_size = []
    for lo, hi in zip(edges_size[:-1], edges_size[1:]):
        sel = (s >= lo) & (s <= hi)
        r, se = _ratio_and_se(a[sel], b[sel])
        by_size.append({"hole_pixels": [int(lo), int(hi)], "n_groups": int(sel.sum()), "ratio": r, "se": se})
    rw = np.array([e["ratio_wiener"] for e in skies])
    rg = np.array([e["ratio_gcr"] for e in skies])
    se_across = (lambda r: (r.std(axis=0, ddof=1) / np.sqrt(len(r))).tolist() if len(r) > 1 else None)
    record["skies"] = {
        "n_skies": args.skies, "per_sky": skies,
        "calibration_pooled": _ratio_and_se(a, b), "calibration_by_hole_size": by_size,
        "ell_edges": _binned(np.zeros(4000))[1].tolist(),
        "ratio_wiener_mean": rw.mean(axis=0).tolist(), "ratio_gcr_mean": rg.mean(axis=0).tolist(),
        "ratio_wiener_se": se_across(rw), "ratio_gcr_se": se_across(rg),
        "max_abs_gcr_minus_1": float(np.max(np.abs(rg.mean(axis=0) - 1))),
        "max_abs_wiener_minus_1": float(np.max(np.abs(rw.mean(axis=0) - 1))),
    }
    print("pooled calibration", record["skies"]["calibration_pooled"], "by size", by_size, flush=True)


def figure(record, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = record["skies"]
    edges = np.array(s["ell_edges"])
    ell = 0.5 * (edges[:-1] + edges[1:])
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    for key, label, colour in (("wiener", "Wiener fill (conditional mean)", "tab:blue"),
                               ("gcr", "constrained realisation (GCR)", "tab:red")):
        mean = np.array(s[f"ratio_{key}_mean"])
        se = s[f"ratio_{key}_se"]
        ax.plot(ell, mean, color=colour, label=label, marker="o", ms=3)
        if se is not None:
            se = np.array(se)
            ax.fill_between(ell, mean - se, mean + se, color=colour, alpha=0.2, lw=0)
    ax.axhspan(0.997, 1.003, color="0.85", zorder=0, label="±0.3 %")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xlabel("multipole ℓ (bins of Δℓ = 100)")
    ax.set_ylabel("C_ℓ(filled) / C_ℓ(truth)")
    ax.set_title(f"Full-sky spectrum after filling {record['mask']['percent_masked']:.2f} % of the sky "
                 f"({record['mask']['n_holes']} point-source holes), mean of {s['n_skies']} skies, Nside {NSIDE}",
                 fontsize=9)
    ax.legend(fontsize=8, loc="lower left")
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="/tmp/bench_sphere")
    p.add_argument("--json", required=True)
    p.add_argument("--margins", default=None)
    p.add_argument("--subset", type=int, default=300)
    p.add_argument("--model", default=None)
    p.add_argument("--speed", action="store_true")
    p.add_argument("--speed-key", default="speed", help="JSON key of the --speed record (keeps earlier runs)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skies", type=int, default=0)
    p.add_argument("--figure", default=None)
    p.add_argument("--profile", action="store_true", help="stage times of the --speed Wiener command")
    p.add_argument("--profile-src", action="append", default=None, metavar="DIR",
                   help="source tree(s) to profile (PYTHONPATH; repeat to compare, e.g. main's src)")
    p.add_argument("--profile-runs", type=int, default=1)
    p.add_argument("--profile-key", default="profile")
    p.add_argument("--profile-out", default="/tmp", help="directory for the profiled runs' outputs (deleted)")
    args = p.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = Path(args.json)
    record = json.loads(path.read_text()) if path.exists() else {}
    from combine.sphere.holes import find_holes
    from combine.sphere.point_sources import draw_catalogue

    valid = mask_of(draw_catalogue(seed=0))
    record["mask"] = {"n_sources": 2000, "seed": 0, "n_holes": find_holes(np.flatnonzero(~valid), NSIDE)[0],
                      "percent_masked": 100 * float((~valid).mean())}
    record["machine"] = {"cpus": os.cpu_count(), "load_average_start": os.getloadavg(),
                         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for step, run in (("margins", step_margins), ("speed", step_speed), ("skies", step_skies),
                      ("profile", step_profile)):
        wanted = {"margins": args.margins, "speed": args.speed, "skies": args.skies, "profile": args.profile}[step]
        if wanted:
            run(args, workdir, record)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=1))
    if args.figure and "skies" in record:
        figure(record, args.figure)


if __name__ == "__main__":
    main()
