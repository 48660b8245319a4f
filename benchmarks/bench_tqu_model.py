"""The T, Q, U network against the T, Q, U local Wiener fill, on independent planck18 patches.

Usage (in the background; about 10 min of CPU at the defaults)::

    PYTHONPATH=src COMBINE_CACHE_DIR=/work/cache-shared python benchmarks/bench_tqu_model.py \
        --model runs/planck18-tqu128-s2/last --out docs/evaluation/tqu128.json

Patches: ``--n`` fresh planck18 T, Q, U patches (128², 1 μK·arcmin on T, √2 on Q/U; seed
``--seed``, independent of the training streams), the sky the model was trained for.
Masks: a centred disc of radius 4, 8, 16 px (``combine.masks.circle_mask``) and point sources
(``combine.masks.point_source_mask``, 3–30' diameters, one mask per patch, seeded).

Methods: ``nn`` (the model, ``InpaintingModel.inpaint``); ``lwiener`` (the joint T, Q, U local
Wiener fill, ``tqu_local_wiener_fill``, 12 px window: also what ``tqu_wiener_fill`` does at
128², where the dense solve does not fit); ``lwiener-m20`` (the same with a 20 px window, a
closer approximation of the dense optimum: on 64² patches the 12 px window is within 9 % of the
dense fill on Q/U, ``docs/polarisation.md``); ``zero`` (holes set to 0, for the leakage scale).

Metrics per field (T, Q, U): hole RMSE pooled over the patches (μK) and its ratio to
``lwiener``'s, with the standard error of the ratio from the per-patch squared errors (delta
method). BB leakage: the apodised flat-sky BB (``combine.metrics_pol.flat_spectra_tqu``, Hann
window) of the error map (filled − truth), band mean over ``--lmin`` ≤ ℓ ≤ ``--lmax``, over the
BB of the truth in the same band (the lensing B of the sky), on the point-source masks.

Output: ``--out`` JSON with ``records`` in the ``results.json`` layout
(``{"method", "mask", "metric", "field", "value"}``) and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

FIELDS = ("T", "Q", "U")


def _ratio_se(a_sq: np.ndarray, b_sq: np.ndarray) -> tuple[float, float]:
    """RMSE ratio sqrt(Σa/Σb) and its standard error from per-patch sums (delta method)."""
    n = a_sq.size
    ma, mb = a_sq.mean(), b_sq.mean()
    r2 = ma / mb
    cov = np.cov(np.stack([a_sq, b_sq]))
    var_r2 = (cov[0, 0] / mb**2 - 2 * ma * cov[0, 1] / mb**3 + ma**2 * cov[1, 1] / mb**4) / n
    return float(np.sqrt(r2)), float(np.sqrt(max(var_r2, 0.0)) / (2 * np.sqrt(r2)))


def main(argv=None) -> int:
    import combine
    from combine.baselines.wiener_pol import tqu_local_wiener_fill
    from combine.masks import circle_mask, point_source_mask
    from combine.metrics_pol import flat_spectra_tqu
    from combine.sky import Sky
    from combine.sky.polarisation import simulate_flat_tqu

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="planck18-tqu128")
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--seed", type=int, default=2027)
    p.add_argument("--radii", type=float, nargs="+", default=[4, 8, 16])
    p.add_argument("--wide-margin", type=int, default=20)
    p.add_argument("--lmin", type=float, default=300)
    p.add_argument("--lmax", type=float, default=3000)
    p.add_argument("--out", type=Path)
    p.add_argument("--baseline-cache", type=Path,
                   help=".npz of the baseline fills (written when missing, reused when it matches --n/--seed/--radii)")
    args = p.parse_args(argv)

    model = combine.load_model(args.model)
    sky = Sky.planck18(noise_uk_arcmin=1.0)
    size = model.patch_size
    truth = simulate_flat_tqu(args.n, size, sky=sky, seed=args.seed)
    rng = np.random.default_rng(args.seed + 1)
    mask_sets = {f"circle-r{r:g}": np.broadcast_to(circle_mask(size, r), (args.n, size, size)).astype(np.float32)
                 for r in args.radii}
    mask_sets["points"] = np.stack([point_source_mask(size, rng) for _ in range(args.n)]).astype(np.float32)
    methods = {
        "nn": lambda x, m: model.inpaint(x, m),
        "lwiener": lambda x, m: tqu_local_wiener_fill(x, m, sky=sky),
        f"lwiener-m{args.wide_margin}": lambda x, m: tqu_local_wiener_fill(x, m, sky=sky, margin_px=args.wide_margin),
        "zero": lambda x, m: x * m[:, None],
    }
    records, seconds, sq = [], {}, {}
    bb_truth = None
    cache, cache_key = {}, f"n{args.n}-seed{args.seed}-r{'-'.join(f'{r:g}' for r in args.radii)}-m{args.wide_margin}"
    if args.baseline_cache is not None and args.baseline_cache.is_file():
        with np.load(args.baseline_cache) as z:
            if str(z["key"]) == cache_key:
                cache = {k: z[k] for k in z.files if k != "key"}
    for mask_name, masks in mask_sets.items():
        hole = masks == 0
        x = np.where(hole[:, None], 0.0, truth).astype(np.float32)
        for name, fill in methods.items():
            t0, c0 = time.perf_counter(), time.process_time()
            hit = f"{name}|{mask_name}" in cache and name != "nn"
            out = cache[f"{name}|{mask_name}"] if hit else np.asarray(fill(x, masks), dtype=np.float64)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if hit:
                wall, cpu = (float(v) for v in cache[f"{name}|{mask_name}|s"])
            elif name != "nn":
                cache[f"{name}|{mask_name}"], cache[f"{name}|{mask_name}|s"] = out, np.array([wall, cpu])
            seconds[(name, mask_name)] = (wall, cpu)
            err = out - truth
            per_patch = np.stack([(err[:, f] ** 2 * hole).sum(axis=(-2, -1)) for f in range(3)], axis=1)  # (n, 3)
            sq[(name, mask_name)] = per_patch
            n_hole = hole.sum()
            for f, field in enumerate(FIELDS):
                records.append({"method": name, "mask": mask_name, "metric": "rmse_hole", "field": field,
                                "value": float(np.sqrt(per_patch[:, f].sum() / n_hole))})
            records.append({"method": name, "mask": mask_name, "metric": "seconds_per_patch",
                            "value": wall / args.n, "cpu_seconds_per_patch": cpu / args.n})
            if mask_name == "points":
                spec = flat_spectra_tqu(err, sky.pixel_arcmin)
                if bb_truth is None:
                    t_spec = flat_spectra_tqu(truth.astype(np.float64), sky.pixel_arcmin)
                    band = (t_spec["ell"] >= args.lmin) & (t_spec["ell"] <= args.lmax)
                    bb_truth = float(t_spec["bb"].mean(0)[band].mean())
                records.append({"method": name, "mask": mask_name, "metric": "bb_error_over_bb_truth",
                                "value": float(spec["bb"].mean(0)[band].mean() / bb_truth),
                                "ell_band": [args.lmin, args.lmax]})
            print(f"{mask_name} {name}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    for mask_name in mask_sets:
        for name in methods:
            for f, field in enumerate(FIELDS):
                ratio, se = _ratio_se(sq[(name, mask_name)][:, f], sq[("lwiener", mask_name)][:, f])
                records.append({"method": name, "mask": mask_name, "metric": "rmse_ratio_to_lwiener",
                                "field": field, "value": ratio, "stderr": se})
    if args.baseline_cache is not None:
        np.savez(args.baseline_cache, key=cache_key, **cache)
    # markdown table
    def val(method, mask, metric, field=None):
        for r in records:
            if (r["method"], r["mask"], r["metric"], r.get("field")) == (method, mask, metric, field):
                return r
        return None

    lines = ["| method | mask | T RMSE μK (÷ lwiener) | Q RMSE μK (÷ lwiener) | U RMSE μK (÷ lwiener) | BB err / BB truth |",
             "|---|---|---:|---:|---:|---:|"]
    for mask_name in mask_sets:
        for name in methods:
            cells = []
            for field in FIELDS:
                rm = val(name, mask_name, "rmse_hole", field)["value"]
                rr = val(name, mask_name, "rmse_ratio_to_lwiener", field)
                cells.append(f"{rm:.3g} ({rr['value']:.4f} ± {rr['stderr']:.4f})")
            bb = val(name, mask_name, "bb_error_over_bb_truth")
            lines.append(f"| {name} | {mask_name} | " + " | ".join(cells) + f" | {bb['value']:.3g} |" if bb
                         else f"| {name} | {mask_name} | " + " | ".join(cells) + " | |")
    table = "\n".join(lines)
    print(table, flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": "python benchmarks/bench_tqu_model.py " + " ".join(argv or []),
                                        "model": str(args.model), "n": args.n, "seed": args.seed,
                                        "records": records, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
