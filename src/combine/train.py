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

Since every sample is a pure function of ``(seed, stage, global sample number)``
(:mod:`combine.training_data`), restoring the weights, the optimizer and the step count
(:mod:`combine.checkpoints`) continues the sample stream exactly: a run killed and resumed
(``--resume``) ends with the weights of an uninterrupted run. A run killed before its first
checkpoint holds nothing to continue: a fresh start or ``--resume`` both start it from step 0.

Networks that correct a classical first guess get it from the data pipeline
(:class:`combine.first_guess.FirstGuess` in :class:`combine.training_data.InpaintingSamples`),
and every checkpoint stores it. Multi-process runs (``torchrun``) and batch norm over the
global batch: :mod:`combine.distributed`; only rank 0 writes files. The loss curves:
:func:`combine.plots.plot_loss_history`.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig, write_config
from .errors import InputError
from .progress import progress
from .checkpoints import (_load_optimizer_state, _set_rng_state, copy_checkpoint, find_resume_checkpoint,
                          has_complete_checkpoint, load_checkpoint_model, read_training_state, write_checkpoint,
                          write_history)
from .distributed import DistContext, check_batch_norm_batch, convert_batchnorm  # noqa: F401


# ---------------------------------------------------------------------------- logging helpers
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
        "patch_size": int(cfg.data.size),
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


def _sky_json(attrs: dict) -> dict:
    """``Sky.to_json()`` of a patch source (its ``sky`` attribute, or the loose attributes and ``ns``)."""
    from .sky import Sky

    sky = Sky.from_legacy_attrs(attrs, source="dataset")
    if attrs.get("ns") is not None and "sky" not in attrs:
        sky = sky.with_ns(float(attrs["ns"]))
    return sky.to_json()


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


def _default_log(msg: str) -> None:
    """Training status lines on stdout: rank 0 only (one header under torchrun), none with ``--quiet``
    (the command's summary line is printed regardless, by ``combine.progress.summary``)."""
    from .progress import is_quiet, is_rank_zero

    if is_rank_zero() and not is_quiet():
        print(msg, flush=True)


class _Trainer:
    def __init__(self, cfg: TrainConfig, out_dir: Path, *, resume, init, log, dist: DistContext,
                 sources=None):
        from .nn import PConvUNet, build_loss
        from .training_data import STREAM_VAL, InpaintingSamples, open_sources

        self.cfg, self.out, self.dist = cfg, out_dir, dist
        self.log = log or _default_log
        t, d = cfg.train, cfg.data
        world = dist.world
        if t.batch_size % world:
            raise InputError(f"--batch-size: global batch {t.batch_size} is not divisible by {world} processes")
        self.local_batch = t.batch_size // world

        if cfg.stage == 2 and init is None and not resume:
            raise InputError("--init: stage 2 fine-tunes a stage-1 model: give --init CKPT (a model directory)")
        from .atomic import check_writable_dir

        check_writable_dir(out_dir, f"{out_dir} (--out)")
        has_checkpoint = out_dir.is_dir() and has_complete_checkpoint(out_dir)
        if not resume and has_checkpoint:
            raise InputError(f"{out_dir}: already holds a training run (continue it with --resume {out_dir}, "
                             "or choose another --out)")
        if resume and not has_checkpoint:
            # killed before its first checkpoint: nothing to continue, so the run starts afresh
            self.log(f"{out_dir}: no complete checkpoint yet; starting the run from step 0")
            resume = False
        if cfg.loss.vgg_weights is not None and not Path(cfg.loss.vgg_weights).is_file():
            raise InputError(f"{cfg.loss.vgg_weights}: no such VGG16 weights file (--vgg-weights)")

        # ---- state to resume from / initialise from
        resume_ckpt = state_js = state_tensors = None
        init_unet = init_first_guess = None
        if resume:
            resume_ckpt = find_resume_checkpoint(out_dir)
            state_js, state_tensors = read_training_state(resume_ckpt)
        elif init is not None:
            init_model = load_checkpoint_model(init, "--init")
            init_unet, init_first_guess = init_model.unet, init_model.first_guess
            arch = init_unet.config()
            fields = set(type(cfg.model).__dataclass_fields__)
            if set(arch) - fields:
                raise InputError(f"{init}: model architecture keys {sorted(set(arch) - fields)} unknown to "
                                 "the training configuration")
            cfg.model = type(cfg.model)(**arch)
            if init_first_guess is not None:  # the next stage corrects the same first guess
                cfg.model.prefill_coeffs = list(init_first_guess.gmrf_coeffs or []) or None
                cfg.model.first_guess_margin_px = init_first_guess.margin_px
                cfg.model.first_guess_max_window_px = init_first_guess.max_window_px

        # ---- model
        torch.manual_seed(cfg.seed)
        unet = PConvUNet(**cfg.model.unet_kwargs())
        if init_unet is not None:
            unet.load_state_dict(init_unet.state_dict())
        if resume_ckpt is not None:
            ckpt_model = load_checkpoint_model(resume_ckpt, "--resume")
            check_architecture(unet.config(), ckpt_model.unet.config(), f"{out_dir} (--resume)")
            unet.load_state_dict(ckpt_model.unet.state_dict())
            init_first_guess = ckpt_model.first_guess
        if t.freeze_encoder_bn:
            unet.freeze_encoder_bn()

        # ---- data
        if sources is not None:
            train_src, val_src = sources
            cfg.data.source = f"python:{train_src.name}"
        else:
            train_src, val_src = open_sources(d.source, size=d.size, seed=cfg.seed, stage=cfg.stage,
                                              noise_uk_arcmin=d.noise_uk_arcmin, ns=d.ns,
                                              sim_chunk=d.sim_chunk, fields=d.fields)
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
        check_batch_norm_batch(unet, h, w, t.batch_size)
        cfg.data.size = int(h)
        self.sky = _sky_from_attrs(train_src.attrs, h)
        self.sky_json = train_src.sky.to_json() if getattr(train_src, "sky", None) is not None \
            else _sky_json(train_src.attrs)
        # the classical first guess the network corrects, computed in the data pipeline
        # (the T, Q, U one for the data's sky; the T kinds for the default sky, as they always were)
        fg_sky = getattr(train_src, "sky", None) if unet.prefill == "lwiener-tqu" else None
        self.first_guess = init_first_guess if init_first_guess is not None else \
            cfg.model.first_guess(h, unet.prefill, sky=fg_sky)
        common = dict(mask_mix=d.mask_mix, hole_fill_uk=d.hole_fill_uk, first_guess=self.first_guess)
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
        self.loss_fn = build_loss(cfg.loss.preset, vgg_weights=cfg.loss.vgg_weights, unit_uk=cfg.loss.unit_uk,
                                  **weights).to(dist.device)
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
                write_history(self.out / "history.csv", self.history)
            if not resume:  # a fresh start (or a run killed before its first checkpoint): no stale logs
                (self.out / "history.csv").unlink(missing_ok=True)
                shutil.rmtree(self.out / "tensorboard", ignore_errors=True)
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
        for x_in, mask, target, *first_guess in bar:
            x_in = x_in.to(dist.device, self.dtype, non_blocking=True)
            mask = mask.to(dist.device, self.dtype, non_blocking=True)
            target = target.to(dist.device, self.dtype, non_blocking=True)
            fg = first_guess[0].to(dist.device, self.dtype, non_blocking=True) if first_guess else None
            pred = self.model(x_in, mask, first_guess=fg)
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
        for x_in, mask, target, *first_guess in loader:
            x_in, mask, target = (a.to(self.dist.device, self.dtype) for a in (x_in, mask, target))
            fg = first_guess[0].to(self.dist.device, self.dtype) if first_guess else None
            pred = self.unet(x_in, mask, first_guess=fg)
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
            if target.shape[1] > 1:  # T, Q, U: per field, the network's and its first guess's
                for c in range(target.shape[1]):
                    sums[f"_sq_c{c}"] += float(err[:, c].double().square().sum())
                    sums[f"_n_c{c}"] += float(hole[:, c].sum())
                    if fg is not None:
                        sums[f"_sq_fg_c{c}"] += float(torch.where(hole[:, c], fg[:, c] - target[:, c], 0.0)
                                                      .double().square().sum())
        self.model.train()
        sums = dist.all_reduce_sum(dict(sums))
        n_batches = t.val_steps * dist.world
        out = {k: v / n_batches for k, v in sums.items() if not k.startswith("_")}
        if sums.get("_n", 0) > 0:
            out["hole_rmse_uk"] = math.sqrt(sums["_sq"] / sums["_n"])
            out["meanfill_rmse_uk"] = math.sqrt(sums["_sq_mean"] / sums["_n"])
        for c in range(8):
            if sums.get(f"_n_c{c}", 0) > 0:
                out[f"hole_rmse_uk_c{c}"] = math.sqrt(sums[f"_sq_c{c}"] / sums[f"_n_c{c}"])
                if f"_sq_fg_c{c}" in sums:
                    out[f"first_guess_rmse_uk_c{c}"] = math.sqrt(sums[f"_sq_fg_c{c}"] / sums[f"_n_c{c}"])
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
                    per_field = [c for c in range(8) if f"first_guess_rmse_uk_c{c}" in val]
                    if per_field:  # T, Q, U: the network over its first guess, per field
                        msg += " per field / first guess " + ", ".join(
                            f"{val[f'hole_rmse_uk_c{c}'] / val[f'first_guess_rmse_uk_c{c}']:.4f}" for c in per_field)
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
        extra = _model_extra(cfg, self.loss_fn, self.sky_json, state)
        ckpt_dir = self.out / "checkpoints"
        ckpt = ckpt_dir / f"epoch-{self.epoch:04d}"
        write_checkpoint(ckpt, self.unet, self.optimizer, state, extra, first_guess=self.first_guess)
        copy_checkpoint(ckpt, self.out / "last")
        if improved:
            copy_checkpoint(ckpt, self.out / "best")
        if cfg.train.keep_checkpoints > 0:
            old = sorted(ckpt_dir.glob("epoch-[0-9]*"))[:-cfg.train.keep_checkpoints]
            for path in old:
                shutil.rmtree(path, ignore_errors=True)
        write_history(self.out / "history.csv", self.history)
        terms = [k for k in self.loss_fn.weights]
        from .plots import plot_loss_history

        plot_loss_history(self.out / "loss_curves.png", self.history, terms)
