"""Polarisation benchmarks: TQU Wiener/GCR on patches against the dense optimum, and E→B leakage
of filled HEALPix maps.

Usage (each part writes JSON to --out; run in the background, e.g. ``nohup ... > log 2>&1 &``)::

    PYTHONPATH=src COMBINE_CACHE_DIR=/work/cache-shared python benchmarks/bench_polarisation.py dense --out bench_pol_dense.json
    PYTHONPATH=src ... python benchmarks/bench_polarisation.py gcr --out bench_pol_gcr.json
    PYTHONPATH=src ... python benchmarks/bench_polarisation.py leakage --nside 512 --out bench_pol_leakage.json --figure docs/polarisation_bb_leakage.png

``dense``: 64² planck18-eval patches (1 μK·arcmin), centred holes r = 4, 8, 16, 24 px: the dense
TQU Wiener fill (precision-matrix algebra) against an independent Cholesky solve of
:math:`C_{vv}` (max relative difference), and the local-window filter's hole MSE per field over
the dense one's for several margins.
``gcr``: E|gcr − truth|² / E|wiener − truth|² for T, Q, U (dense, --size 64 by default, r = 8 px).
``flat-eb``: pure-E 128² patches with 20 point-source holes each: apodised flat BB of per-field
classical fills and of the TQU local Wiener / GCR against the truth's estimator floor.
``leakage``: a pure-E (and a lensed) full sky with a point-source mask; BB of the zero-filled
(f_sky-corrected), Wiener-filled and GCR-filled maps against the truth's.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _openmp_single_thread():
    """healpy's OpenMP threads spin when the cores are shared; one thread is much faster here."""
    import ctypes

    import healpy as hp

    hp.alm2map(np.zeros((3, 10), complex), 1, pol=True)
    for path in {w for w in open("/proc/self/maps").read().split() if "libgomp" in w}:
        ctypes.CDLL(path).omp_set_num_threads(1)


def bench_dense(args):
    import torch

    from combine.baselines.covariance_pol import FlatTQUCovariance
    from combine.baselines.wiener_pol import DenseTQUWiener, tqu_wiener_fill
    from combine.masks import circle_mask
    from combine.sky import Sky
    from combine.sky.polarisation import simulate_flat_tqu

    sky = Sky.preset_named("planck18-eval")
    size = 64
    truth = simulate_flat_tqu(args.n, size, sky=sky, seed=1).astype(np.float64)
    t0 = time.time()
    wf = DenseTQUWiener((size, size), sky)
    _ = wf.precision
    t_prec = time.time() - t0
    cov_full = torch.from_numpy(FlatTQUCovariance(sky, size - 1).patch(size, noise=True))
    records = {"precision_s": t_prec, "radii": {}}
    for r in args.radii:
        mask = circle_mask(size, r)
        hole = np.tile((mask == 0).ravel(), 3)
        t0 = time.time()
        dense = tqu_wiener_fill(truth, mask, sky=sky, method="dense")
        t_dense = time.time() - t0
        # independent: Cholesky of C_vv and a solve (covariance form)
        hv = torch.from_numpy(np.flatnonzero(hole))
        vv = torch.from_numpy(np.flatnonzero(~hole))
        chol = torch.linalg.cholesky(cov_full[vv[:, None], vv[None, :]])
        d = torch.from_numpy(truth.reshape(len(truth), -1)[:, ~hole].T.copy())
        ref = (cov_full[hv[:, None], vv[None, :]] @ torch.cholesky_solve(d, chol)).T.numpy()
        got = dense.reshape(len(truth), -1)[:, hole]
        rel = float(np.abs(got - ref).max() / np.abs(ref).max())
        hole2 = mask == 0
        mse_dense = ((dense - truth)[:, :, hole2] ** 2).mean(axis=(0, 2))
        rec = {"n_hole_px": int(hole2.sum()), "dense_vs_independent_max_rel": rel, "dense_s": t_dense,
               "mse_dense_uk2": mse_dense.tolist(), "local": {}}
        for margin in args.margins:
            t0 = time.time()
            loc = tqu_wiener_fill(truth, mask, sky=sky, method="local", margin_px=margin)
            t_loc = time.time() - t0
            mse = ((loc - truth)[:, :, hole2] ** 2).mean(axis=(0, 2))
            rec["local"][str(margin)] = {"mse_ratio_to_dense": (mse / mse_dense).tolist(), "seconds": t_loc}
        records["radii"][str(r)] = rec
        print(r, json.dumps(rec), flush=True)
    return records


def bench_gcr(args):
    from combine.baselines.wiener_pol import tqu_gcr_fill, tqu_wiener_fill
    from combine.masks import circle_mask
    from combine.sky import Sky
    from combine.sky.polarisation import simulate_flat_tqu

    sky = Sky.preset_named("planck18-eval")
    size = args.size
    truth = simulate_flat_tqu(args.n, size, sky=sky, seed=2, min_size=2).astype(np.float64)
    mask = circle_mask(size, 8)
    hole = mask == 0
    wf = tqu_wiener_fill(truth, mask, sky=sky, method="dense")
    g = tqu_gcr_fill(truth, mask, sky=sky, seed=3, method="dense")
    ew = ((wf - truth)[:, :, hole] ** 2).mean(-1)
    eg = ((g - truth)[:, :, hole] ** 2).mean(-1)
    out = {}
    for f, name in enumerate("TQU"):
        ratio = eg[:, f].mean() / ew[:, f].mean()
        se = np.sqrt(np.var(eg[:, f] / eg[:, f].mean() - ew[:, f] / ew[:, f].mean(), ddof=1) / len(truth)) * ratio
        out[name] = {"ratio": float(ratio), "se": float(se), "mse_wiener_uk2": float(ew[:, f].mean())}
    print(json.dumps(out), flush=True)
    return out


def _ps_mask(nside, n_holes, rmin_arcmin, rmax_arcmin, rng):
    import healpy as hp

    mask = np.ones(hp.nside2npix(nside))
    for _ in range(n_holes):
        z, lon = rng.uniform(-1, 1), rng.uniform(0, 2 * np.pi)
        vec = [np.sqrt(1 - z * z) * np.cos(lon), np.sqrt(1 - z * z) * np.sin(lon), z]
        r = np.radians(rng.uniform(rmin_arcmin, rmax_arcmin) / 60)
        mask[hp.query_disc(nside, vec, r)] = 0
    return mask


def bench_leakage(args):
    import healpy as hp

    from combine.baselines.sphere_wiener_pol import sphere_tqu_fill
    from combine.metrics_pol import bias_over_cosmic_variance, fullsky_spectra_tqu
    from combine.sky import Sky
    from combine.sky.polarisation import pure_e_sky, simulate_healpix_tqu

    _openmp_single_thread()
    nside = args.nside
    pix = hp.nside2resol(nside, arcmin=True)
    beam = args.beam_arcmin
    lensed = Sky.planck18(beam_fwhm_arcmin=beam, noise_uk_arcmin=0.0, lmax=3 * nside)
    rng = np.random.default_rng(args.seed)
    mask = _ps_mask(nside, args.holes, args.hole_rmin_arcmin, args.hole_rmax_arcmin, rng)
    out = {"nside": nside, "beam_fwhm_arcmin": beam, "pixel_arcmin": pix, "holes": args.holes,
           "fsky": float(mask.mean()), "band": [args.lmin, args.lmax], "skies": {}}
    spectra_for_plot = {}
    for label, sky in (("pure-E", pure_e_sky(lensed)), ("lensed", lensed)):
        truth = simulate_healpix_tqu(nside, sky=sky, pixwin=True, rng=rng).astype(np.float64)
        t0 = time.time()
        wf = sphere_tqu_fill(truth, mask, sky=sky)
        t_w = time.time() - t0
        t0 = time.time()
        g = sphere_tqu_fill(truth, mask, sky=sky, gcr=True, rng=rng)
        t_g = time.time() - t0
        s = {"truth": fullsky_spectra_tqu(truth), "zero": fullsky_spectra_tqu(truth, mask),
             "wiener": fullsky_spectra_tqu(wf), "gcr": fullsky_spectra_tqu(g)}
        lo, hi = args.lmin, args.lmax
        band = {k: {x: float(v[x][lo:hi + 1].mean()) for x in ("ee", "bb")} for k, v in s.items()}
        rec = {"band_means_uk2": band, "wiener_s": t_w, "gcr_s": t_g,
               "bb_zero_over_wiener": band["zero"]["bb"] / band["wiener"]["bb"],
               "bb_zero_over_truth": band["zero"]["bb"] / band["truth"]["bb"]}
        # GCR bias in bands of 50: (gcr - truth) relative to the cosmic variance of the truth
        bias = {x: bias_over_cosmic_variance(s["gcr"][x], s["truth"][x], lo, hi, 50) for x in ("ee", "bb")}
        rec["gcr_minus_truth_over_cosmic_variance"] = bias
        out["skies"][label] = rec
        spectra_for_plot[label] = {k: v["bb"] for k, v in s.items()}
        print(label, json.dumps({k: v for k, v in rec.items() if k != "gcr_minus_truth_over_cosmic_variance"}),
              flush=True)
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
        for ax, (label, sp) in zip(axes, spectra_for_plot.items()):
            ell = np.arange(sp["truth"].size)
            d = ell * (ell + 1) / (2 * np.pi)
            for key, style in (("zero", "C3-"), ("wiener", "C0-"), ("gcr", "C2-"), ("truth", "k--")):
                name = {"zero": "zero-filled / f_sky", "wiener": "Wiener (sphere, TQU)", "gcr": "GCR",
                        "truth": "truth (no mask)"}[key]
                ax.semilogy(ell[2:], (d * sp[key])[2:], style, lw=1, label=name)
            ax.axvspan(args.lmin, args.lmax, color="0.9", zorder=0)
            ax.set_title(f"{label} sky, Nside {nside}, {args.holes} holes, f_sky {mask.mean():.3f}")
            ax.set_xlabel("ℓ")
        axes[0].set_ylabel("ℓ(ℓ+1)C_ℓ^BB / 2π  [μK²]")
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.figure, dpi=110)
    return out


def bench_flat_eb(args):
    """Pure-E 128² patches with point-source masks: apodised flat BB of filled patches (per-field
    diffusive and biharmonic, TQU local Wiener, TQU GCR) against the truth's estimator floor."""
    from combine.baselines import get_baseline
    from combine.baselines.wiener_pol import tqu_gcr_fill, tqu_local_wiener_fill
    from combine.masks import point_source_mask
    from combine.metrics_pol import flat_spectra_tqu
    from combine.sky import Sky
    from combine.sky.polarisation import pure_e_sky, simulate_flat_tqu

    sky = pure_e_sky(Sky.preset_named("planck18-eval")).replace(noise_uk_arcmin=0.0)
    size = 128
    truth = simulate_flat_tqu(args.n, size, sky=sky, seed=5).astype(np.float64)
    rng = np.random.default_rng(6)
    masks = np.stack([point_source_mask(size, rng, n_sources=20) for _ in range(args.n)])
    fills = {}
    t0 = time.time()
    fills["zero"] = truth * masks[:, None]
    for name in ("diffusive", "biharmonic"):
        t0 = time.time()
        fills[name] = get_baseline(name)(truth, masks, sky=sky)
        print(name, time.time() - t0, flush=True)
    t0 = time.time()
    fills["lwiener-tqu"] = tqu_local_wiener_fill(truth, masks, sky=sky)
    print("lwiener-tqu", time.time() - t0, flush=True)
    fills["gcr-tqu"] = tqu_gcr_fill(truth, masks, sky=sky, seed=1, method="local")
    spectra = {k: flat_spectra_tqu(v, sky.pixel_arcmin) for k, v in {"truth": truth, **fills}.items()}
    ell = spectra["truth"]["ell"]
    band = (ell >= args.lmin) & (ell <= args.lmax)
    out = {"hole_fraction": float(1 - masks.mean()), "band": [args.lmin, args.lmax], "ell": ell.tolist(),
           "bb": {k: v["bb"].mean(0).tolist() for k, v in spectra.items()},
           "ee": {k: v["ee"].mean(0).tolist() for k, v in spectra.items()}}
    floor = spectra["truth"]["bb"].mean(0)[band].mean()
    out["bb_band_over_truth_floor"] = {k: float(v["bb"].mean(0)[band].mean() / floor) for k, v in spectra.items()}
    hole = masks == 0
    out["rmse_hole_uk"] = {k: [float(np.sqrt(((v - truth)[:, f][hole] ** 2).mean())) for f in range(3)]
                           for k, v in fills.items()}
    print(json.dumps({k: out[k] for k in ("hole_fraction", "bb_band_over_truth_floor", "rmse_hole_uk")}), flush=True)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("dense", "gcr", "leakage", "flat-eb"))
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=16, help="patches (dense: 16, gcr: use ~200)")
    p.add_argument("--radii", type=int, nargs="+", default=[4, 8, 16, 24])
    p.add_argument("--margins", type=int, nargs="+", default=[4, 8, 12, 16])
    p.add_argument("--size", type=int, default=64, help="gcr: patch side")
    p.add_argument("--nside", type=int, default=512)
    p.add_argument("--beam-arcmin", type=float, default=10.0)
    p.add_argument("--holes", type=int, default=1500)
    p.add_argument("--hole-rmin-arcmin", type=float, default=15.0)
    p.add_argument("--hole-rmax-arcmin", type=float, default=30.0)
    p.add_argument("--lmin", type=int, default=50)
    p.add_argument("--lmax", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", default=None)
    args = p.parse_args()
    result = {"dense": bench_dense, "gcr": bench_gcr, "leakage": bench_leakage, "flat-eb": bench_flat_eb}[args.what](args)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
