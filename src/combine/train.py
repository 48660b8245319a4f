"""Training: the original CoMBInE's stages, checkpoints and exact resume, logs, and DDP.

One optimisation step on a global batch of ``B`` samples ``(x_in, M, T)`` is

.. math::  \\theta \\leftarrow \\mathrm{Adam}\\big(\\theta, \\nabla_\\theta \\tfrac{1}{R}\\sum_{r=1}^{R}
           L(f_\\theta(x_{\\rm in}^{(r)}, M^{(r)}), T^{(r)}, M^{(r)})\\big)

where ``L`` is a :func:`combine.nn.losses.build_loss` preset averaged over the ``B/R`` samples of
rank ``r`` (``R = 1`` without DDP): the same gradient as one process on the whole batch.

Stages (:data:`combine.config.STAGE_DEFAULTS`): 0, the warm start on one image; 1, Adam 1e-4
with batch norm everywhere; 2, Adam 5e-5 with the encoder batch norm frozen, from ``--init``.

Run directory::

    RUN_DIR/config.toml                 resolved configuration
    RUN_DIR/checkpoints/epoch-XXXX/     model dir (weights.safetensors + config.json) + training state
    RUN_DIR/last/, RUN_DIR/best/        copies of the latest / best-validation checkpoint
    RUN_DIR/history.csv                 one row per epoch;  RUN_DIR/loss_curves.png
    RUN_DIR/tensorboard/                TensorBoard events

Training state (no pickle): ``training_state.safetensors`` holds the Adam moments and step
counts (``optimizer.<param index>.<name>``) and the torch RNG state; ``training_state.json``
holds the epoch, global step, Adam hyper-parameters, the numpy and Python RNG states, the
history, the best validation loss and the configuration. Since every sample is a pure function
of ``(seed, stage, global sample number)`` (:mod:`combine.training_data`), restoring the weights,
the optimizer and the step count continues the sample stream exactly: a run killed and resumed
(``--resume``) ends with the weights of an uninterrupted run.

DDP. Launched by ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in the environment) the
model is wrapped in ``DistributedDataParallel`` (gloo on CPU, nccl on CUDA), each rank takes
its ``B/R`` slice of every global batch, and batch norm statistics are computed over the global
batch (``torch.nn.SyncBatchNorm`` on CUDA; :class:`DistributedBatchNorm2d` on CPU, where
``SyncBatchNorm`` is not supported), so ``R`` processes give the result of one process on the
same global batch. Only rank 0 writes files.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .atomic import atomic_dir, atomic_path
from .config import TrainConfig, config_to_toml, write_config
from .errors import InputError
from .progress import progress

STATE_JSON = "training_state.json"
STATE_TENSORS = "training_state.safetensors"
CHECKPOINT_FORMAT = 1


# ---------------------------------------------------------------------------- distributed
class DistContext:
    """Rank, world size and device of this process (``torchrun`` environment or single process)."""

    def __init__(self, device: str = "auto"):
        env = os.environ
        self.world = int(env.get("WORLD_SIZE", "1"))
        self.rank = int(env.get("RANK", "0"))
        self.local_rank = int(env.get("LOCAL_RANK", "0"))
        want_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if want_cuda and not torch.cuda.is_available():
            raise InputError(f"--device: {device} requested but CUDA is not available")
        if want_cuda:
            index = self.local_rank if (self.world > 1 or ":" not in device) else int(device.split(":")[1])
            self.device = torch.device("cuda", index)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        self.initialised_here = False
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend)
            self.initialised_here = True

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.distributed:
            torch.distributed.barrier()

    def all_reduce_sum(self, values: dict[str, float]) -> dict[str, float]:
        """Sum a dict of floats over ranks (same keys on every rank)."""
        if not self.distributed or not values:
            return dict(values)
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        torch.distributed.all_reduce(t)
        return dict(zip(keys, t.tolist()))

    def close(self):
        if self.initialised_here and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: forward ``y = Σ_r x_r``, backward ``∂L/∂x_r = Σ_r' ∂L_r'/∂y``."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        torch.distributed.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad


class DistributedBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose training statistics run over the global batch of all DDP ranks.

    For the ``R`` local batches ``x^{(r)}`` (``n_r`` elements per channel):
    ``μ = Σ_r Σ x^{(r)} / Σ_r n_r``, ``σ² = Σ_r Σ (x^{(r)} − μ)² / Σ_r n_r`` (two passes, float64
    sums, differentiable all-reduce), ``y = (x − μ)/√(σ² + ε)·γ + β``; the running variance gets
    the unbiased ``σ²·n/(n − 1)``, as ``nn.BatchNorm2d``. Used on CPU (gloo), where
    ``nn.SyncBatchNorm`` is not available; single process or eval mode: plain batch norm.
    """

    def forward(self, x):
        dist = torch.distributed
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        c = x.shape[1]
        xd = x.double()
        n_local = xd.new_tensor([x.numel() // c])
        total = all_reduce(torch.cat([xd.sum(dim=(0, 2, 3)), n_local]))
        n = total[c]
        mean = total[:c] / n
        sq = all_reduce((xd - mean.view(1, c, 1, 1)).square().sum(dim=(0, 2, 3)))
        var = sq / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                            else self.momentum)
                unbiased = var * (n / max(float(n) - 1.0, 1.0))
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.to(self.running_mean.dtype))
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.to(self.running_var.dtype))
        scale = torch.rsqrt(var + self.eps).to(x.dtype)
        y = (x - mean.to(x.dtype).view(1, c, 1, 1)) * scale.view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` by its global-batch version for DDP (in place)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in list(module.named_children()):
        if type(child) is nn.BatchNorm2d:
            new = DistributedBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                         child.track_running_stats)
            ref = next(iter(child.state_dict().values()))
            new.to(device=ref.device, dtype=torch.float64 if ref.dtype == torch.float64 else torch.float32)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_batchnorm(child, device)
    return module


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


# ---------------------------------------------------------------------------- checkpoints
def write_checkpoint(path, unet, optimizer, state: dict, extra: dict) -> None:
    """Write a checkpoint directory atomically: model dir + training state."""
    from safetensors.torch import save_file

    from .models import save_model

    opt_js, opt_tensors = _optimizer_state(optimizer)
    rng_js, rng_tensors = _rng_state()
    state = dict(state, format=CHECKPOINT_FORMAT, optimizer=opt_js, rng=rng_js)
    with atomic_dir(path) as tmp:
        tmp = Path(tmp)
        staging = tmp / "_model"
        save_model(unet, staging, extra)
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
    from .models import load_model

    try:
        model = load_model(str(ckpt), device="cpu")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{source}: cannot load model {ckpt} ({type(exc).__name__}: {exc})") from None
    return model.unet


# ---------------------------------------------------------------------------- logging helpers
def _write_history(path, history: list[dict]) -> None:
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


def _plot_history(path, history: list[dict], loss_terms: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    for key, style in (("train_total", "-"), ("val_total", "--")):
        ys = [r.get(key) for r in history]
        if any(isinstance(y, float) for y in ys):
            ax.plot(epochs, ys, style, marker="o", label=key)
    for term in loss_terms:
        ys = [r.get(f"train_{term}") for r in history]
        if any(isinstance(y, float) for y in ys):
            ax.plot(epochs, ys, ":", label=f"train_{term}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (image units)")
    if ax.get_lines():
        ax.legend(fontsize=7)
    ax = axes[1]
    for key, label in (("val_hole_rmse_uk", "network"), ("val_meanfill_rmse_uk", "mean fill")):
        ys = [r.get(key) for r in history]
        if any(isinstance(y, float) for y in ys):
            ax.plot(epochs, ys, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation hole RMSE [μK]")
    if ax.get_lines():
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _image_panel(x_in, mask, pred, target) -> np.ndarray:
    """(1, H, 4W) grey panel in [0, 1]: masked input | prediction | target | difference."""
    t = target[0].float().cpu().numpy()
    m = mask[0].float().cpu().numpy() > 0
    p = pred[0].detach().float().cpu().numpy()
    span = 3.0 * float(t.std()) + 1e-6
    show = lambda a, s=span: np.clip(0.5 + a / (2 * s), 0, 1)  # noqa: E731
    masked = np.where(m, show(x_in[0].float().cpu().numpy()), 0.0)
    d_span = max(float(np.abs(p - t)[~m].max()) if (~m).any() else 0.0, 1e-6)
    return np.concatenate([masked, show(p), show(t), show(p - t, d_span)], axis=-1)


# ---------------------------------------------------------------------------- training
def _model_extra(cfg: TrainConfig, loss_fn, sky: dict, state: dict) -> dict:
    return {
        "sky": sky,
        "loss": loss_fn.config(),
        "training": {
            "stage": cfg.stage, "epoch": state["epoch"], "global_step": state["global_step"],
            "samples_seen": state["global_step"] * cfg.train.batch_size,
            "batch_size": cfg.train.batch_size, "lr": cfg.lr(), "data": cfg.data.source,
            "mask_mix": dict(cfg.data.mask_mix), "seed": cfg.seed,
            "encoder_bn_frozen": bool(cfg.train.freeze_encoder_bn),
            "best_val_total": state.get("best_val_total"),
            "history": state.get("history", []),
        },
    }


def _sky_from_attrs(attrs: dict, size: int) -> dict:
    from .sky import defaults

    keys = ("pixel_arcmin", "beam_fwhm_arcmin", "noise_uk_arcmin", "method", "cosmology", "ns")
    sky = {k: attrs[k] for k in keys if k in attrs and attrs[k] is not None}
    sky.setdefault("pixel_arcmin", defaults.PIXEL_ARCMIN)
    sky.setdefault("beam_fwhm_arcmin", defaults.BEAM_FWHM_ARCMIN)
    sky.setdefault("cosmology", dict(defaults.PLANCK18_COSMOLOGY))
    sky["size"] = int(size)
    return json.loads(json.dumps(sky, default=float))


def check_architecture(expected: dict, found: dict, source: str) -> None:
    if expected != found:
        diff = sorted(k for k in set(expected) | set(found) if expected.get(k) != found.get(k))
        detail = ", ".join(f"{k}: {found.get(k)!r} vs {expected.get(k)!r}" for k in diff)
        raise InputError(f"{source}: checkpoint architecture differs from the configuration ({detail})")


def train(cfg: TrainConfig, out_dir, *, resume: bool = False, init=None, log=None,
          dist: DistContext | None = None, sources=None) -> dict:
    """Train a PConvUNet as configured; returns a summary (epochs, final and best losses, samples/s).

    Parameters
    ----------
    cfg : TrainConfig
        Resolved configuration (:meth:`TrainConfig.resolve`).
    out_dir : path
        Run directory (created; must not hold another run unless ``resume``).
    resume : bool
        Continue the run in ``out_dir`` from its ``last/`` checkpoint.
    init : path, optional
        Model directory whose weights (and architecture) start this run (a new stage).
    sources : (train, val | None), optional
        Patch sources (:mod:`combine.training_data`, e.g. ``ArrayPatches``) used instead of
        ``cfg.data.source`` (programmatic use: in-memory patches, tests).
    """
    own_dist = dist is None
    dist = dist or DistContext(cfg.train.device)
    try:
        return _Trainer(cfg, Path(out_dir), resume=resume, init=init, log=log, dist=dist,
                        sources=sources).run()
    finally:
        if own_dist:
            dist.close()


class _Trainer:
    def __init__(self, cfg: TrainConfig, out_dir: Path, *, resume, init, log, dist: DistContext,
                 sources=None):
        from .nn import PConvUNet, build_loss
        from .training_data import STREAM_VAL, InpaintingSamples, open_sources

        self.cfg, self.out, self.dist = cfg, out_dir, dist
        self.log = log or (lambda msg: print(msg, flush=True))
        t, d = cfg.train, cfg.data
        world = dist.world
        if t.batch_size % world:
            raise InputError(f"--batch-size: global batch {t.batch_size} is not divisible by {world} processes")
        self.local_batch = t.batch_size // world

        if cfg.stage == 2 and init is None and not resume:
            raise InputError("--init: stage 2 fine-tunes a stage-1 model: give --init CKPT (a model directory)")
        if not resume and out_dir.exists() and ((out_dir / "config.toml").exists() or (out_dir / "last").exists()):
            raise InputError(f"{out_dir}: already holds a training run (continue it with --resume {out_dir}, "
                             "or choose another --out)")
        if cfg.loss.vgg_weights is not None and not Path(cfg.loss.vgg_weights).is_file():
            raise InputError(f"{cfg.loss.vgg_weights}: no such VGG16 weights file (--vgg-weights)")

        # ---- state to resume from / initialise from
        resume_ckpt = state_js = state_tensors = None
        init_unet = None
        if resume:
            resume_ckpt = find_resume_checkpoint(out_dir)
            state_js, state_tensors = read_training_state(resume_ckpt)
        elif init is not None:
            init_unet = load_unet(init, "--init")
            arch = init_unet.config()
            fields = set(type(cfg.model).__dataclass_fields__)
            if set(arch) - fields:
                raise InputError(f"{init}: model architecture keys {sorted(set(arch) - fields)} unknown to "
                                 "the training configuration")
            cfg.model = type(cfg.model)(**arch)

        # ---- model
        torch.manual_seed(cfg.seed)
        unet = PConvUNet(**cfg.model.unet_kwargs())
        if init_unet is not None:
            unet.load_state_dict(init_unet.state_dict())
        if resume_ckpt is not None:
            ckpt_unet = load_unet(resume_ckpt, "--resume")
            check_architecture(unet.config(), ckpt_unet.config(), f"{out_dir} (--resume)")
            unet.load_state_dict(ckpt_unet.state_dict())
        if t.freeze_encoder_bn:
            unet.freeze_encoder_bn()

        # ---- data
        if sources is not None:
            train_src, val_src = sources
            cfg.data.source = f"python:{train_src.name}"
        else:
            train_src, val_src = open_sources(d.source, size=d.size, seed=cfg.seed, stage=cfg.stage,
                                              noise_uk_arcmin=d.noise_uk_arcmin, ns=d.ns,
                                              sim_chunk=d.sim_chunk)
        c, h, w = train_src.shape
        mult = unet.input_size_multiple
        if h % mult or w % mult:
            raise InputError(f"{train_src.name}: patch size {h}x{w} does not fit the model "
                             f"(preset {unet.preset}, {unet.levels} levels: sides must be multiples of {mult})")
        if c != unet.in_channels:
            raise InputError(f"{train_src.name}: patches have {c} channel(s), the model expects {unet.in_channels}")
        if val_src is not None and tuple(val_src.shape) != tuple(train_src.shape):
            raise InputError(f"{val_src.name}: patch shape {val_src.shape} differs from {train_src.name} "
                             f"{train_src.shape}")
        cfg.data.size = int(h)
        self.sky = _sky_from_attrs(train_src.attrs, h)
        common = dict(mask_mix=d.mask_mix, hole_fill_uk=d.hole_fill_uk)
        target_fn = None
        if d.target == "wiener":  # validation keeps the truth: its loss is the real hole error
            from .sky import defaults
            from .training_data import WienerTargets

            if self.sky.get("cosmology") not in (None, dict(defaults.PLANCK18_COSMOLOGY)):
                raise InputError(f"{train_src.name}: [data] target = \"wiener\" needs the planck18 cosmology "
                                 f"(the dataset has {self.sky['cosmology']})")

            target_fn = WienerTargets(size=h, pixel_arcmin=self.sky["pixel_arcmin"],
                                      beam_fwhm_arcmin=self.sky["beam_fwhm_arcmin"],
                                      noise_uk_arcmin=float(self.sky.get("noise_uk_arcmin", 0.0)),
                                      cl_uk2=getattr(train_src, "cl_uk2", None), ns=self.sky.get("ns"),
                                      max_hole_px=d.wiener_max_hole_px)
        self.train_ds = InpaintingSamples(train_src, seed_key=(cfg.seed, cfg.stage, 0), augment=d.augment,
                                          single_image=bool(t.single_image), target_fn=target_fn, **common)
        self.val_ds = None
        if val_src is not None and t.val_steps > 0:
            self.val_ds = InpaintingSamples(val_src, seed_key=(cfg.seed, cfg.stage, STREAM_VAL),
                                            augment=False, **common)

        # ---- loss, DDP, optimizer
        weights = dict(cfg.loss.weights)
        self.loss_fn = build_loss(cfg.loss.preset, vgg_weights=cfg.loss.vgg_weights, **weights).to(dist.device)
        self.dtype = torch.float64 if t.precision == "float64" else torch.float32
        self.loss_fn = self.loss_fn.to(self.dtype)
        self.unet = unet.to(device=dist.device, dtype=self.dtype)
        if dist.distributed:
            convert_batchnorm(self.unet, dist.device)
            from torch.nn.parallel import DistributedDataParallel

            ids = [dist.device.index] if dist.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.unet, device_ids=ids)
        else:
            self.model = self.unet
        self.optimizer = torch.optim.Adam(self.unet.parameters(), lr=cfg.lr(), betas=tuple(t.betas),
                                          weight_decay=t.weight_decay)

        self.epoch, self.global_step = 0, 0
        self.history: list[dict] = []
        self.best_val = math.inf
        if state_js is not None:
            _load_optimizer_state(self.optimizer, state_js["optimizer"], state_tensors)
            for g in self.optimizer.param_groups:  # a changed lr in the config applies on resume
                g["lr"] = cfg.lr()
            _set_rng_state(state_js["rng"], state_tensors)
            self.epoch, self.global_step = int(state_js["epoch"]), int(state_js["global_step"])
            self.history = list(state_js.get("history", []))
            bv = state_js.get("best_val_total")
            self.best_val = math.inf if bv is None else float(bv)
            self.log(f"resuming {out_dir} from {resume_ckpt.name}/ (epoch {self.epoch}, step {self.global_step})")

        self.writer = None
        dist.barrier()  # every rank has checked the run directory before rank 0 writes into it
        if dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_config(cfg, self.out / "config.toml",
                         header="combine train: resolved configuration of this run (reusable with --config)")
            if resume and self.history:  # drop rows of epochs after the checkpoint
                _write_history(self.out / "history.csv", self.history)
            if t.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(self.out / "tensorboard"),
                                            purge_step=self.global_step if resume else None)
        n_params = sum(p.numel() for p in self.unet.parameters())
        self.log(f"combine train: stage {cfg.stage}, {unet.preset} ({unet.levels} levels, {n_params:,} parameters), "
                 f"loss {cfg.loss.preset}, data {d.source} ({h}x{w}), global batch {t.batch_size} "
                 f"on {world} process(es), device {dist.device}")

    # ------------------------------------------------------------------ one epoch
    def _train_epoch(self, epoch: int) -> tuple[dict, float]:
        from .training_data import StepBatches, make_loader

        cfg, t, dist = self.cfg, self.cfg.train, self.dist
        spe = t.steps_per_epoch
        sampler = StepBatches(self.global_step, self.global_step + spe, t.batch_size, dist.rank, dist.world)
        loader = make_loader(self.train_ds, sampler, num_workers=cfg.data.num_workers, seed=cfg.seed,
                             epoch=epoch, rank=dist.rank, pin_memory=dist.device.type == "cuda")
        self.model.train()
        sums: dict[str, float] = defaultdict(float)
        steps = 0
        t0 = time.perf_counter()
        bar = progress(loader, desc=f"epoch {epoch + 1}/{t.epochs}", total=spe) if dist.is_main else loader
        for x_in, mask, target in bar:
            x_in = x_in.to(dist.device, self.dtype, non_blocking=True)
            mask = mask.to(dist.device, self.dtype, non_blocking=True)
            target = target.to(dist.device, self.dtype, non_blocking=True)
            pred = self.model(x_in, mask)
            total, terms = self.loss_fn(pred, target, mask)
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            if t.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.unet.parameters(), t.grad_clip)
            self.optimizer.step()
            self.global_step += 1
            steps += 1
            values = {"total": float(total.detach())} | {k: float(v) for k, v in terms.items()}
            for k, v in values.items():
                sums[k] += v
            if dist.is_main:
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{sums['total'] / steps:.4g}")
                if self.writer is not None and self.global_step % t.log_every_steps == 0:
                    for k, v in values.items():
                        self.writer.add_scalar(f"train/{k}", v, self.global_step)
                    self.writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], self.global_step)
                    elapsed = time.perf_counter() - t0
                    self.writer.add_scalar("train/samples_per_s", steps * t.batch_size / elapsed, self.global_step)
                if self.writer is not None and self.global_step % t.image_every_steps == 0:
                    panel = _image_panel(x_in, mask, pred, target)
                    self.writer.add_image("train/input|prediction|target|difference", panel, self.global_step)
        elapsed = time.perf_counter() - t0
        means = {k: v / max(steps, 1) for k, v in sums.items()}
        means = {k: v / dist.world for k, v in dist.all_reduce_sum(means).items()}
        return means, steps * t.batch_size / max(elapsed, 1e-9)

    @torch.no_grad()
    def _validate(self) -> dict:
        """Mean loss terms, hole RMSE of the network and of a mean fill (μK) on the validation batches."""
        from .training_data import StepBatches, make_loader

        if self.val_ds is None:
            return {}
        t, dist = self.cfg.train, self.dist
        sampler = StepBatches(0, t.val_steps, t.batch_size, dist.rank, dist.world)
        loader = make_loader(self.val_ds, sampler, num_workers=0, seed=self.cfg.seed, epoch=0, rank=dist.rank)
        self.model.eval()
        sums: dict[str, float] = defaultdict(float)
        for x_in, mask, target in loader:
            x_in, mask, target = (a.to(self.dist.device, self.dtype) for a in (x_in, mask, target))
            pred = self.unet(x_in, mask)
            total, terms = self.loss_fn(pred, target, mask)
            sums["total"] += float(total)
            for k, v in terms.items():
                sums[k] += float(v)
            hole = (mask < 0.5).expand_as(target)
            valid = ~hole
            err = torch.where(hole, pred - target, 0.0)
            sums["_sq"] += float(err.double().square().sum())
            sums["_n"] += float(hole.sum())
            mean_valid = (torch.where(valid, target, 0.0).sum(dim=(-2, -1), keepdim=True)
                          / valid.sum(dim=(-2, -1), keepdim=True).clamp(min=1))
            sums["_sq_mean"] += float(torch.where(hole, mean_valid - target, 0.0).double().square().sum())
        self.model.train()
        sums = dist.all_reduce_sum(dict(sums))
        n_batches = t.val_steps * dist.world
        out = {k: v / n_batches for k, v in sums.items() if not k.startswith("_")}
        if sums.get("_n", 0) > 0:
            out["hole_rmse_uk"] = math.sqrt(sums["_sq"] / sums["_n"])
            out["meanfill_rmse_uk"] = math.sqrt(sums["_sq_mean"] / sums["_n"])
        return out

    # ------------------------------------------------------------------ the run
    def run(self) -> dict:
        cfg, t, dist = self.cfg, self.cfg.train, self.dist
        last_rate = float("nan")
        t_run = time.perf_counter()
        for epoch in range(self.epoch, t.epochs):
            t_epoch = time.perf_counter()
            train_means, rate = self._train_epoch(epoch)
            val = self._validate()
            self.epoch = epoch + 1
            last_rate = rate
            row = {"epoch": self.epoch, "global_step": self.global_step, "lr": self.optimizer.param_groups[0]["lr"]}
            row |= {f"train_{k}": v for k, v in train_means.items()}
            row |= {f"val_{k}": v for k, v in val.items()}
            row |= {"samples_per_s": rate, "epoch_time_s": time.perf_counter() - t_epoch}
            self.history.append(row)
            score = val.get("total", train_means.get("total", math.inf))
            improved = score < self.best_val
            if improved:
                self.best_val = score
            if dist.is_main:
                self._save_epoch(improved)
                msg = (f"epoch {self.epoch}/{t.epochs}: train {train_means.get('total', float('nan')):.5g}")
                if val:
                    msg += f", val {val['total']:.5g}"
                    if "hole_rmse_uk" in val:
                        msg += (f" (hole RMSE {val['hole_rmse_uk']:.3g} μK, mean fill "
                                f"{val['meanfill_rmse_uk']:.3g} μK)")
                msg += f", {rate:.1f} samples/s" + (" *best*" if improved else "")
                self.log(msg)
                if self.writer is not None:
                    for k, v in val.items():
                        self.writer.add_scalar(f"val/{k}", v, self.global_step)
                    self.writer.add_scalar("epoch/samples_per_s", rate, self.global_step)
                    self.writer.flush()
            dist.barrier()
        if self.writer is not None:
            self.writer.close()
        return {"epochs": self.epoch, "global_step": self.global_step, "history": self.history,
                "best_val_total": None if math.isinf(self.best_val) else self.best_val,
                "samples_per_s": last_rate, "wall_time_s": time.perf_counter() - t_run,
                "run_dir": str(self.out)}

    def _save_epoch(self, improved: bool) -> None:
        cfg = self.cfg
        state = {"epoch": self.epoch, "global_step": self.global_step, "history": self.history,
                 "best_val_total": None if math.isinf(self.best_val) else self.best_val,
                 "world_size": self.dist.world, "config": json.loads(json.dumps(cfg.to_dict()))}
        extra = _model_extra(cfg, self.loss_fn, self.sky, state)
        ckpt_dir = self.out / "checkpoints"
        ckpt = ckpt_dir / f"epoch-{self.epoch:04d}"
        write_checkpoint(ckpt, self.unet, self.optimizer, state, extra)
        copy_checkpoint(ckpt, self.out / "last")
        if improved:
            copy_checkpoint(ckpt, self.out / "best")
        if cfg.train.keep_checkpoints > 0:
            old = sorted(ckpt_dir.glob("epoch-[0-9]*"))[:-cfg.train.keep_checkpoints]
            for path in old:
                shutil.rmtree(path, ignore_errors=True)
        _write_history(self.out / "history.csv", self.history)
        terms = [k for k in self.loss_fn.weights]
        _plot_history(self.out / "loss_curves.png", self.history, terms)
