"""Copy a trained model into the package as a named shipped model, with its provenance.

    python scripts/ship_model.py --stage RUN_S1 --stage RUN_S2 --name planck18-t128 \
        [--evaluation results.json]

Takes the weights of the last stage's ``last/`` checkpoint, and writes
``src/combine/pretrained/NAME/{weights.safetensors,config.json}`` where ``config.json`` is the
checkpoint's model config plus a ``shipped`` table: the stages (config file, steps, samples,
learning rate, wall time from ``history.csv``) and, with ``--evaluation``, the hole RMSE per
method and mask from a ``combine evaluate`` ``results.json``. Training state (optimiser, RNG)
is not shipped.
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


def evaluation_table(results_json: Path) -> dict:
    recs = json.loads(results_json.read_text())
    table: dict = {}
    for r in recs:
        if r.get("metric") in ("rmse_hole", "power_ratio_hole", "hole_variance_ratio", "seconds_per_patch") \
                and r.get("ell_bin") is None and r.get("epoch") is None:
            table.setdefault(r["metric"] + ("_uk" if r["metric"] == "rmse_hole" else ""), {}) \
                .setdefault(r["method"], {})[r["mask"]] = round(float(r["value"]), 4)
    return table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", action="append", required=True, type=Path, help="run directory, in stage order")
    ap.add_argument("--name", default="planck18-t128")
    ap.add_argument("--evaluation", type=Path, help="results.json of combine evaluate on the final model")
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    last = args.stage[-1] / "last"
    config = json.loads((last / "config.json").read_text())
    config.pop("training", None)  # per-run history lives in `shipped.stages`
    config["shipped"] = {
        "name": args.name,
        "stages": [stage_record(d) for d in args.stage],
        "reproduce": "bash scripts/train_planck18_t128.sh",
        "note": args.note,
    }
    s1 = json.loads((args.stage[0] / "last" / "config.json").read_text())["training"]
    config["training"] = {k: s1[k] for k in ("data", "mask_mix", "seed", "batch_size")}
    if args.evaluation:
        config["shipped"]["evaluation"] = evaluation_table(args.evaluation)
    out = PRETRAINED / args.name
    tmp = PRETRAINED / f".{args.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(last / "weights.safetensors", tmp / "weights.safetensors")
    (tmp / "config.json").write_text(json.dumps(config, indent=1))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    print(f"shipped {out} ({sum(p.stat().st_size for p in out.iterdir()) / 2**20:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
