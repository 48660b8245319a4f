"""Choice of the local Wiener window: hole RMSE over the exact Wiener filter's, per margin.

Simulates ``--n`` independent planck18 flat patches (128², 1 μK·arcmin white noise, seed
``--seed``, not the training seed 18) and fills centred discs of radius 4 / 8 / 16 / 32 px and
point-source masks with the exact Wiener filter and with ``local_wiener_fill`` at each margin
(``max_window_px`` at its default, which grows with the margin), plus ``--n-random`` patches with
random-shape masks. Reports per margin and mask: the ratio of pooled hole RMSEs
(local / exact), the RMS distance of the local fill from the exact one over the exact filter's
RMSE (not limited by the patches' sampling noise), the fraction of hole pixels filled by the
GMRF fallback, and the seconds per
patch (one thread). With ``--model`` also the shipped network with each margin's first guess
(``InpaintingModel.predict(..., first_guess=...)``).

Usage (background; 2.1 GB and ≈ 110 s for the exact filter's precision matrix unless cached,
then ≈ 5 min of CPU at the defaults on two free cores; the figures in
:mod:`combine.baselines.local_wiener` came from ``--margins 8,12,16,24 --model planck18-t128``,
stopped after random shapes at margin 12, on a machine shared by ~15 processes)::

    nohup env PYTHONPATH=src .venv/bin/python benchmarks/bench_lwiener_margin.py \
        --json benchmarks/results/lwiener_margin.json > lwiener_margin.log 2>&1 &
"""

from __future__ import annotations

import argparse
import inspect
import json
import time

import numpy as np
import torch

from combine.baselines import wiener_fill
from combine.baselines.gmrf import PLANCK18_GMRF_COEFFS
from combine.baselines.local_wiener import (correlation_table_for_sky, default_max_window_px, hole_windows,
                                            local_wiener_fill_table)
from combine.masks import circle_mask, generate_masks
from combine.sky import Sky
from combine.sky.flat import simulate_flat_patches

SKY = Sky.planck18(noise_uk_arcmin=1.0)


def exact_fill(maps, masks):
    """The exact Wiener filter of SKY, whichever calling convention wiener_fill has."""
    if "sky" in inspect.signature(wiener_fill).parameters:
        return wiener_fill(maps, masks, sky=SKY)
    return wiener_fill(maps, masks, pixel_arcmin=SKY.pixel_arcmin, beam_fwhm_arcmin=SKY.beam_fwhm_arcmin,
                       noise_uk_arcmin=SKY.noise_uk_arcmin)


def rmse(fill, truth, masks):
    hole = np.broadcast_to(masks < 0.5, truth.shape)
    return float(np.sqrt(np.mean((fill[hole] - truth[hole]) ** 2)))


def gmrf_fraction(masks, margin):
    cap = default_max_window_px(margin)
    n_hole = n_gmrf = 0
    for m in masks:
        wins = hole_windows(m < 0.5, margin)
        n_hole += sum(len(h) for h, _ in wins)
        if any(len(w) > cap for _, w in wins):  # the whole map goes to the GMRF, local holes overwritten
            n_gmrf += sum(len(h) for h, w in wins if len(w) > cap)
    return n_gmrf / max(n_hole, 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--n-random", type=int, default=8)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--margins", default="8,12,16", help="margin 24 costs ~10 s per point-source patch")
    ap.add_argument("--model", default=None, help="also run this model with each margin's first guess")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    margins = [int(m) for m in args.margins.split(",")]
    size = 128
    maps = simulate_flat_patches(args.n, size, noise_uk_arcmin=SKY.noise_uk_arcmin, seed=args.seed)
    maps = np.asarray(maps, dtype=np.float64).reshape(args.n, size, size)
    cases = {f"circle-r{r}": np.repeat(circle_mask(size, float(r))[None], args.n, 0) for r in (4, 8, 16, 32)}
    cases["points"] = generate_masks("points", args.n, size, seed=args.seed + 1)
    cases["random"] = generate_masks("random", args.n_random, size, seed=args.seed + 2)
    table = correlation_table_for_sky(SKY, (size, size))
    model = None
    if args.model:
        from combine.models import load_model

        model = load_model(args.model)
    records = []
    t0 = time.perf_counter()
    for name, masks in cases.items():
        truth = maps[: len(masks)]
        exact = exact_fill(truth, masks)
        e_exact = rmse(exact, truth, masks)
        records.append(dict(method="wiener", mask=name, rmse_hole_uk=e_exact))
        print(f"{name:11s} wiener {e_exact:8.3f} uK   ({time.perf_counter() - t0:.0f} s)", flush=True)
        for margin in margins:
            t = time.perf_counter()
            lw = local_wiener_fill_table(truth, masks, xi_table_uk2=table, noise_var_uk2=SKY.noise_var_pix_uk2,
                                         gmrf_coeffs=PLANCK18_GMRF_COEFFS, margin_px=margin)
            sec = (time.perf_counter() - t) / len(masks)
            rec = dict(method="lwiener", margin_px=margin, mask=name, rmse_hole_uk=rmse(lw, truth, masks),
                       ratio_to_wiener=rmse(lw, truth, masks) / e_exact, seconds_per_patch=sec,
                       distance_to_wiener=rmse(lw, exact, masks) / e_exact,
                       gmrf_pixel_fraction=gmrf_fraction(masks, margin))
            records.append(rec)
            line = (f"{name:11s} m={margin:2d}  lwiener {rec['ratio_to_wiener']:.4f}x"
                    f" (|lw - W| / err_W {rec['distance_to_wiener']:.3f})  gmrf {rec['gmrf_pixel_fraction']:.2f}"
                    f"  {sec * 1e3:8.1f} ms/patch")
            if model is not None:
                x = truth[:, None].astype(np.float32)
                m4 = masks[:, None].astype(np.float32)
                pred = model.predict(x, m4, first_guess=lw[:, None].astype(np.float32))
                out = np.where(m4 > 0, x, pred)[:, 0]
                nn = rmse(out, truth, masks)
                records.append(dict(method="nn", margin_px=margin, mask=name, rmse_hole_uk=nn, ratio_to_wiener=nn / e_exact))
                line += f"   nn {nn / e_exact:.4f}x"
            print(line, flush=True)
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        from pathlib import Path

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"n": args.n, "n_random": args.n_random, "seed": args.seed,
                                               "sky": SKY.to_json(), "records": records}, indent=1))


if __name__ == "__main__":
    main()
