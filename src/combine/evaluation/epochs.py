"""Per-checkpoint analysis of a training run (the original CoMBInE's metrics against epoch)."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InputError
from .loop import _as_nhw, evaluate
from .specs import DEFAULT_MASK_SPECS


def _epoch_of(directory: Path, index: int) -> int:
    import json

    cfg = directory / "config.json"
    if cfg.is_file():
        try:
            data = json.loads(cfg.read_text())
            for holder in (data, data.get("training", {}) if isinstance(data, dict) else {}):
                if isinstance(holder, dict) and isinstance(holder.get("epoch"), int):
                    return holder["epoch"]
        except (ValueError, OSError):
            pass
    digits = re.findall(r"\d+", directory.name)
    return int(digits[-1]) if digits else index


def list_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """(epoch, model directory) of every checkpoint of a training run, sorted by epoch."""
    run_dir = Path(run_dir)
    ck = run_dir / "checkpoints"
    if not ck.is_dir():
        raise InputError(f"{run_dir}: not a training run (no checkpoints/ directory)")
    dirs = sorted(p for p in ck.iterdir() if p.is_dir() and (p / "config.json").is_file()
                  and not p.name.startswith("."))
    if not dirs:
        raise InputError(f"{ck}: no checkpoint (model directory with config.json)")
    return sorted((_epoch_of(p, i), p) for i, p in enumerate(dirs))


def evaluate_run(run_dir, maps, *, mask_specs=DEFAULT_MASK_SPECS, n_patches: int = 8,
                 progress: bool = True, reference_methods=("wiener",), sky=None, seed: int = 0, **legacy_sky) -> list[dict]:
    """Evaluate every checkpoint of a training run on the first ``n_patches`` patches.

    Returns records of method ``"nn"`` with an ``epoch`` field (the original CoMBInE's
    per-epoch analysis), plus records of ``reference_methods`` on the same patches and masks
    (``epoch`` None) for comparison lines. Only scalar metrics (no ℓ bins) are kept. ``sky``
    (or the loose keywords) as :func:`combine.evaluation.loop.run_evaluation`.
    """
    from ..models import load_model
    from ..progress import progress as progress_bar

    maps = _as_nhw(maps)[:n_patches]
    checkpoints = list_checkpoints(run_dir)
    out = []
    wiener_rmse = {}
    if reference_methods:
        recs = evaluate(None, maps, methods=reference_methods, mask_specs=mask_specs, progress=False,
                        sky=sky, seed=seed, **legacy_sky)
        out += [{**r, "epoch": None} for r in recs if r.get("ell_bin") is None and r["metric"] != "sky"]
        wiener_rmse = {r["mask"]: r["value"] for r in recs
                       if r["method"] == "wiener" and r["metric"] == "rmse_hole" and r["value"]}
    for epoch, directory in (progress_bar(checkpoints, desc="checkpoints") if progress else checkpoints):
        model = load_model(directory)
        recs = evaluate(model, maps, methods=("nn",), mask_specs=mask_specs, progress=False, sky=sky, seed=seed,
                        **legacy_sky)
        for r in recs:
            if r.get("ell_bin") is None and r["metric"] != "sky":
                out.append({**r, "epoch": int(epoch), "checkpoint": directory.name})
                if r["metric"] == "rmse_hole" and r["mask"] in wiener_rmse:
                    out.append({**r, "metric": "rmse_hole_ratio_wiener", "value": r["value"] / wiener_rmse[r["mask"]],
                                "epoch": int(epoch), "checkpoint": directory.name})
                    out[-1].pop("err", None)
    return out


__all__ = ["list_checkpoints", "evaluate_run"]
