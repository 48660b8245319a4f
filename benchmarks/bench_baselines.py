"""Cost and accuracy of every baseline on 128² planck18 patches (not part of the test run).

Simulates ``--n`` flat-sky patches (combine.sky.flat, 1 μK·arcmin white noise, seed fixed),
masks them with centred circles of radius 4, 8, 16, 32 px and reports per method:

* the hole RMSE (μK, pooled over patches) and its ratio to the Wiener filter's;
* for the Wiener filter, the predicted RMSE sqrt(tr Σ_h / n_h) next to the realised one
  (a check that the covariance model matches the simulations);
* the cost per patch; for the Wiener filter/GCR separately the one-off precision matrix, the
  per-geometry factorisation, and the per-patch fill.

Usage::

    .venv/bin/python benchmarks/bench_baselines.py [--n 50] [--size 128] [--threads 1] [--json out.json]

Peak memory ≈ 2 × 2.1 GB (the covariance/Cholesky factor and its inverse) at 128².
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from combine.atomic import atomic_path
from combine.baselines import BASELINES, WienerFilter
from combine.sky import SKY_PRESETS

RADII_PX = (4, 8, 16, 32)
ORDER = ("wiener", "gcr", "diffusive", "biharmonic", "navier-stokes", "telea", "mean")


def centred_circle(size: int, radius_px: float) -> np.ndarray:
    try:
        from combine.masks import circle_mask

        return np.asarray(circle_mask(size, radius_px), dtype=np.float32)
    except ImportError:  # stand-in until combine.masks lands: centre ((size-1)/2, (size-1)/2)
        yy, xx = np.mgrid[:size, :size]
        c = (size - 1) / 2
        return ((yy - c) ** 2 + (xx - c) ** 2 > radius_px**2).astype(np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="number of patches")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--methods", default=",".join(ORDER))
    ap.add_argument("--json", default=None, help="write all numbers to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m]

    from combine.sky.flat import simulate_flat_patches

    sky = SKY_PRESETS["planck18-eval"]()  # 1 μK·arcmin, the evaluation sets' noise
    t0 = time.perf_counter()
    maps = simulate_flat_patches(args.n, args.size, sky=sky, seed=args.seed)
    print(f"simulated {args.n} patches {args.size}² in {time.perf_counter() - t0:.1f} s; "
          f"pixel rms {maps.std():.1f} μK; torch threads {args.threads}")

    results = {"n_patches": args.n, "size": args.size, "threads": args.threads, "sky": sky.to_json(), "cells": []}
    wf = WienerFilter(args.size, sky=sky)
    if "wiener" in methods or "gcr" in methods:
        t0 = time.perf_counter()
        _ = wf.precision
        results["wiener_precision_seconds"] = time.perf_counter() - t0
        print(f"Wiener: precision matrix {args.size**2}² in {results['wiener_precision_seconds']:.1f} s (once per sky)")

    table = {}
    for radius in RADII_PX:
        mask = centred_circle(args.size, radius)
        hole = mask == 0
        n_h = int(hole.sum())
        masked = np.where(hole, np.float32(0), maps)
        if "wiener" in methods or "gcr" in methods:
            t0 = time.perf_counter()
            wf.geometry(mask)
            t_geom = time.perf_counter() - t0
            predicted = math.sqrt(wf.expected_mse(mask))
        for name in methods:
            fill = BASELINES[name]
            t0 = time.perf_counter()
            if name == "wiener":
                out = wf.fill(masked, mask)
            elif name == "gcr":
                out = wf.constrained_realisation(masked, mask, seed=args.seed)
            else:
                out = fill(masked, mask, sky=sky)
            sec = (time.perf_counter() - t0) / args.n
            mse_i = ((out.astype(np.float64) - maps)[:, hole] ** 2).mean(axis=1)
            rmse = float(np.sqrt(mse_i.mean()))
            # 1σ of the pooled RMSE from the scatter of per-patch MSEs (patches are independent)
            err = float(mse_i.std(ddof=1) / math.sqrt(args.n) / (2 * rmse))
            cell = {"method": name, "radius_px": radius, "n_hole": n_h, "rmse_hole_uk": rmse,
                    "rmse_err_uk": err, "seconds_per_patch": sec}
            if name in ("wiener", "gcr"):
                cell["seconds_per_geometry"] = t_geom
                cell["predicted_rmse_hole_uk"] = predicted * (math.sqrt(2) if name == "gcr" else 1.0)
            results["cells"].append(cell)
            table[(name, radius)] = cell
            print(f"  r={radius:2d} px ({n_h:4d} px) {name:10s} rmse {rmse:8.3f} ± {err:.3f} μK  {sec * 1e3:9.2f} ms/patch"
                  + (f"  (predicted {cell['predicted_rmse_hole_uk']:.3f}, geometry {t_geom:.2f} s)"
                     if name in ("wiener", "gcr") else ""), flush=True)

    print()
    print("| method | " + " | ".join(f"r = {r} px" for r in RADII_PX) + " | cost per patch (r = 32) |")
    print("|---|" + "---|" * (len(RADII_PX) + 1))
    for name in methods:
        cells = []
        for r in RADII_PX:
            c = table[(name, r)]
            ratio = c["rmse_hole_uk"] / table[("wiener", r)]["rmse_hole_uk"] if "wiener" in methods else float("nan")
            cells.append(f"{c['rmse_hole_uk']:.2f} ({ratio:.2f}×)")
        print(f"| {name} | " + " | ".join(cells) + f" | {table[(name, 32)]['seconds_per_patch'] * 1e3:.1f} ms |")
    if "wiener" in methods:
        print("| Wiener predicted | " + " | ".join(f"{table[('wiener', r)]['predicted_rmse_hole_uk']:.2f}"
                                                for r in RADII_PX) + " | |")
    if args.json:
        with atomic_path(args.json) as tmp, open(tmp, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
