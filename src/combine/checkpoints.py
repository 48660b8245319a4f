"""Training checkpoints: RNG and optimiser state, checkpoint directories, resume, history.

A checkpoint directory is a model directory (:func:`combine.models.save_model`: weights, config,
first guess) plus the training state (no pickle): ``training_state.safetensors`` holds the Adam
moments and step counts (``optimizer.<param index>.<name>``) and the torch RNG state;
``training_state.json`` holds the epoch, global step, Adam hyper-parameters, the numpy and
Python RNG states, the history, the best validation loss and the configuration. Every write is
atomic (write, then rename), so a kill leaves either the old or the new checkpoint.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_dir, atomic_path
from .errors import InputError

STATE_JSON = "training_state.json"
STATE_TENSORS = "training_state.safetensors"
CHECKPOINT_FORMAT = 1


# ---------------------------------------------------------------------------- RNG / optimizer state
def _rng_state() -> tuple[dict, dict]:
    """(JSON part, tensor part) of the torch, numpy and Python global RNG states."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    js = {"numpy": {"name": name, "keys": [int(k) for k in keys], "pos": int(pos),
                    "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
          "python": {"version": py_version, "state": list(py_state), "gauss_next": py_gauss}}
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return js, tensors


def _set_rng_state(js: dict, tensors: dict) -> None:
    n = js["numpy"]
    np.random.set_state((n["name"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = js["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def _optimizer_state(optimizer) -> tuple[dict, dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{idx}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = []
    for g in sd["param_groups"]:
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()})
    return {"param_groups": groups, "scalars": scalars}, tensors


def _load_optimizer_state(optimizer, js: dict, tensors: dict) -> None:
    state: dict = defaultdict(dict)
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, idx, name = key.split(".", 2)
            state[int(idx)][name] = value
    for idx, st in js.get("scalars", {}).items():
        state[int(idx)].update(st)
    groups = []
    for g in js["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    optimizer.load_state_dict({"state": dict(state), "param_groups": groups})


# ---------------------------------------------------------------------------- checkpoint directories
def write_checkpoint(path, unet, optimizer, state: dict, extra: dict, first_guess=None) -> None:
    """Write a checkpoint directory atomically: model dir (with its first guess) + training state."""
    from safetensors.torch import save_file

    from .models import save_model

    opt_js, opt_tensors = _optimizer_state(optimizer)
    rng_js, rng_tensors = _rng_state()
    state = dict(state, format=CHECKPOINT_FORMAT, optimizer=opt_js, rng=rng_js)
    with atomic_dir(path) as tmp:
        tmp = Path(tmp)
        staging = tmp / "_model"
        save_model(unet, staging, extra, first_guess=first_guess)
        for item in staging.iterdir():
            os.replace(item, tmp / item.name)
        shutil.rmtree(staging, ignore_errors=True)
        save_file({**opt_tensors, **rng_tensors}, str(tmp / STATE_TENSORS))
        (tmp / STATE_JSON).write_text(json.dumps(state, indent=1), encoding="utf-8")


def copy_checkpoint(src, dst) -> None:
    with atomic_dir(dst) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


def _complete_checkpoint(path: Path) -> bool:
    return (path / STATE_JSON).is_file() and (path / STATE_TENSORS).is_file() and \
        (path / "weights.safetensors").is_file() and (path / "config.json").is_file()


def has_complete_checkpoint(run_dir) -> bool:
    """True when ``run_dir`` holds a checkpoint that ``--resume`` can continue from."""
    try:
        find_resume_checkpoint(run_dir)
    except InputError:
        return False
    return True


def find_resume_checkpoint(run_dir) -> Path:
    """The newest complete checkpoint of a run: ``last/`` or a later ``checkpoints/epoch-*``.

    A kill while ``last/`` is being replaced can leave it missing or one epoch behind the
    newest epoch checkpoint; both cases resume from the newest complete state.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    candidates = [run_dir / "last"]
    if (run_dir / "checkpoints").is_dir():
        candidates += sorted((run_dir / "checkpoints").glob("epoch-[0-9]*"))
    best, best_step = None, -1
    for ckpt in candidates:
        if not _complete_checkpoint(ckpt):
            continue
        try:
            step = int(json.loads((ckpt / STATE_JSON).read_text(encoding="utf-8"))["global_step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if step > best_step:
            best, best_step = ckpt, step
    if best is None:
        raise InputError(f"{run_dir}: no complete checkpoint to resume from (no last/ nor checkpoints/epoch-*)")
    return best


def read_training_state(ckpt) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    ckpt = Path(ckpt)
    try:
        js = json.loads((ckpt / STATE_JSON).read_text(encoding="utf-8"))
        tensors = load_file(str(ckpt / STATE_TENSORS))
    except (OSError, json.JSONDecodeError, Exception) as exc:  # safetensors raises its own types
        raise InputError(f"{ckpt}: unreadable training state ({type(exc).__name__}: {exc})") from None
    return js, tensors


def load_unet(ckpt, source: str):
    """The PConvUNet of a model directory (via :func:`combine.models.load_model`)."""
    return load_checkpoint_model(ckpt, source).unet


def load_checkpoint_model(ckpt, source: str):
    """The :class:`combine.models.InpaintingModel` of a model directory (network and first guess)."""
    from .models import load_model

    try:
        return load_model(str(ckpt), device="cpu")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{source}: cannot load model {ckpt} ({type(exc).__name__}: {exc})") from None


# ---------------------------------------------------------------------------- run history
def write_history(path, history: list[dict]) -> None:
    keys: list[str] = []
    for row in history:
        for k in row:
            if k not in keys:
                keys.append(k)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            for row in history:
                w.writerow({k: row.get(k, "") for k in keys})


__all__ = ["write_checkpoint", "copy_checkpoint", "find_resume_checkpoint", "has_complete_checkpoint",
           "read_training_state", "load_checkpoint_model", "load_unet", "write_history",
           "STATE_JSON", "STATE_TENSORS"]
