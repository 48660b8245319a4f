"""Copy a trained model into the package as a named shipped model, with its provenance.

    python scripts/ship_model.py --stage RUN_S1 --stage RUN_S2 --name planck18-t128 \
        [--evaluation results.json] [--margin-px M]
    python scripts/ship_model.py --reship planck18-t128 [--margin-px M]
    python scripts/ship_model.py --stage RUN_S1 --stage RUN_S2 --name planck18-tqu128 \
        --reproduce "bash scripts/train_planck18_tqu128.sh" --evaluation docs/evaluation/tqu128.json \
        --max-ratio Q=1.10 --max-ratio U=1.10

Takes the weights of the last stage's ``last/`` checkpoint, and writes
``src/combine/pretrained/NAME/{weights.safetensors,config.json[,first_guess.safetensors]}`` where
``config.json`` is the checkpoint's model config plus a ``shipped`` table: the stages (config
file, steps, samples, learning rate, wall time from ``history.csv``) and, with ``--evaluation``,
the hole RMSE per method and mask from a ``combine evaluate`` ``results.json`` (or the
``records`` of ``benchmarks/bench_tqu_model.py``, per field). ``--max-ratio FIELD=R`` refuses to
ship unless the network's hole RMSE over the local Wiener fill's (``rmse_ratio_to_lwiener``
records) is at most R on every mask for that field. Training state (optimiser, RNG) is not shipped.

The model directory is self-contained (:mod:`combine.first_guess`): the first guess's tensors
and parameters are stored, and the ``sky`` table is ``Sky.to_json()``. ``--margin-px`` sets the
local Wiener first guess's window (its cap then follows
:func:`combine.baselines.local_wiener.default_max_window_px`). ``--reship NAME`` rewrites an
already shipped model in the current form with the *same weights* (first guess rebuilt for the
default sky, planck18 at 1 μK·arcmin, as the model was trained with; legacy ``prefill_coeffs``
moved into it).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / "src" / "combine" / "pretrained"


def stage_record(run_dir: Path) -> dict:
    cfg = json.loads((run_dir / "last" / "config.json").read_text())
    tr = cfg["training"]
    with open(run_dir / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        "stage": int(tr["stage"]), "run": run_dir.name, "steps": int(tr["global_step"]),
        "samples": int(tr["samples_seen"]), "batch_size": int(tr["batch_size"]), "lr": float(tr["lr"]),
        "epochs": len(rows), "encoder_bn_frozen": bool(tr["encoder_bn_frozen"]),
        "wall_time_s": round(sum(float(r["epoch_time_s"]) for r in rows), 1),
        "final_val_hole_rmse_uk": float(rows[-1]["val_hole_rmse_uk"]),
        "mean_samples_per_s": round(sum(float(r["samples_per_s"]) for r in rows) / len(rows), 2),
    }


def _records(results_json: Path) -> list:
    recs = json.loads(results_json.read_text())
    return recs["records"] if isinstance(recs, dict) else recs


def evaluation_table(results_json: Path) -> dict:
    table: dict = {}
    for r in _records(results_json):
        if r.get("metric") in ("rmse_hole", "power_ratio_hole", "hole_variance_ratio", "seconds_per_patch",
                               "rmse_ratio_to_lwiener", "bb_error_over_bb_truth") \
                and r.get("ell_bin") is None and r.get("epoch") is None:
            key = r["metric"] + ("_uk" if r["metric"] == "rmse_hole" else "")
            key += f"_{r['field']}" if r.get("field") else ""
            table.setdefault(key, {}).setdefault(r["method"], {})[r["mask"]] = round(float(r["value"]), 4)
    return table


def check_ratios(results_json: Path, limits: list[str]) -> None:
    """SystemExit unless every ``rmse_ratio_to_lwiener`` of method ``nn`` for FIELD is <= R."""
    for item in limits:
        field, _, limit = item.partition("=")
        worst = [(r["mask"], r["value"]) for r in _records(results_json)
                 if r.get("metric") == "rmse_ratio_to_lwiener" and r.get("method") == "nn" and r.get("field") == field]
        if not worst:
            raise SystemExit(f"{results_json}: no rmse_ratio_to_lwiener records for field {field}")
        bad = [(m, v) for m, v in worst if v > float(limit)]
        if bad:
            raise SystemExit(f"not shipped: {field} hole RMSE over the local Wiener fill's above {limit}: {bad}")


def self_contained(config: dict, source_dir: Path, margin_px=None):
    """``config`` in the self-contained form: ``sky`` as ``Sky.to_json()``, the first guess
    (from ``source_dir``, or rebuilt for the default sky for older directories, or with a new
    ``margin_px``) in ``config["first_guess"]``. Returns (config, FirstGuess or None)."""
    from combine.first_guess import FirstGuess, KINDS
    from combine.sky import Sky

    arch = config["architecture"]
    legacy_coeffs = arch.pop("prefill_coeffs", None)
    sky = config.get("sky") or {}
    config["sky"] = Sky.from_json({k: v for k, v in sky.items() if k not in ("size", "method")},
                                  source="sky").to_json() if sky else Sky.planck18().to_json()
    if arch.get("prefill") not in KINDS:
        return config, None
    if "first_guess" in config and margin_px is None:
        return config, FirstGuess.load(config["first_guess"], source_dir)
    old = config.get("first_guess") or {}
    fg = FirstGuess.for_sky(arch["prefill"], None, size=int(config.get("patch_size", 128)),
                            gmrf_coeffs=old.get("gmrf_coeffs", legacy_coeffs),
                            margin_px=margin_px if margin_px is not None else old.get("margin_px", 8),
                            max_window_px=None if margin_px is not None else old.get("max_window_px", 3000))
    config["first_guess"] = fg.config()
    return config, fg


def write_shipped(name: str, config: dict, weights: Path, first_guess) -> Path:
    out = PRETRAINED / name
    tmp = PRETRAINED / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(weights, tmp / "weights.safetensors")
    if first_guess is not None:
        first_guess.save(tmp)
        (tmp / "first_guess.safetensors").chmod(0o644)
    (tmp / "config.json").write_text(json.dumps(config, indent=1))
    old = PRETRAINED / f".{name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    print(f"shipped {out} ({sum(p.stat().st_size for p in out.iterdir()) / 2**20:.1f} MB)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", action="append", type=Path, help="run directory, in stage order")
    ap.add_argument("--reship", metavar="NAME", help="rewrite shipped model NAME in the current form, same weights")
    ap.add_argument("--name", default="planck18-t128")
    ap.add_argument("--evaluation", type=Path, help="results.json of combine evaluate on the final model")
    ap.add_argument("--margin-px", type=int, default=None, help="local Wiener first guess window (px)")
    ap.add_argument("--note", default="")
    ap.add_argument("--reproduce", default="bash scripts/train_planck18_t128.sh", help="command recorded in shipped.reproduce")
    ap.add_argument("--max-ratio", action="append", default=[], metavar="FIELD=R",
                    help="ship only if nn / lwiener hole RMSE <= R for FIELD on every mask")
    args = ap.parse_args(argv)
    if args.reship:
        src = PRETRAINED / args.reship
        config = json.loads((src / "config.json").read_text())
        config, fg = self_contained(config, src, args.margin_px)
        if args.note:
            config.setdefault("shipped", {})["note"] = args.note
        keep = PRETRAINED / f".{args.reship}.weights"
        shutil.copy2(src / "weights.safetensors", keep)
        try:
            write_shipped(args.reship, config, keep, fg)
        finally:
            keep.unlink(missing_ok=True)
        return 0
    if not args.stage:
        ap.error("give --stage RUN_DIR (one per stage) or --reship NAME")
    last = args.stage[-1] / "last"
    config = json.loads((last / "config.json").read_text())
    config.pop("training", None)  # per-run history lives in `shipped.stages`
    config["shipped"] = {
        "name": args.name,
        "stages": [stage_record(d) for d in args.stage],
        "reproduce": args.reproduce,
        "note": args.note,
    }
    s1 = json.loads((args.stage[0] / "last" / "config.json").read_text())["training"]
    config["training"] = {k: s1[k] for k in ("data", "mask_mix", "seed", "batch_size")}
    if args.evaluation:
        config["shipped"]["evaluation"] = evaluation_table(args.evaluation)
        if args.max_ratio:
            check_ratios(args.evaluation, args.max_ratio)
    config, fg = self_contained(config, last, args.margin_px)
    write_shipped(args.name, config, last / "weights.safetensors", fg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
