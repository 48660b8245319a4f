"""``combine train``: train a partial-convolution UNet (stages 0/1/2, resume, DDP via torchrun).

Configuration precedence: defaults < stage defaults < ``--config FILE.toml`` < options. With
``--resume RUN_DIR`` the run's own ``config.toml`` is the base (``--config`` and options may
still change e.g. ``--epochs``; a different architecture is refused).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def register(subparsers, common):
    p = subparsers.add_parser(
        "train", parents=[common],
        help="train a PConv UNet on a dataset or on simulated patches",
        description="Train a partial-convolution UNet (the original CoMBInE's stages, with exact "
                    "resume). Multi-process: torchrun --nproc_per_node N -m combine train ...")
    p.add_argument("--data", help="dataset directory (train.h5 [+ val.h5]), an .h5 file, or simulate:planck18")
    p.add_argument("--out", help="run directory (config.toml, checkpoints/, last/, best/, history.csv, tensorboard/)")
    p.add_argument("--config", help="TOML configuration (see configs/stage1.toml)")
    p.add_argument("--stage", type=int, choices=(0, 1, 2),
                   help="0: warm start on one image; 1: Adam 1e-4, BN on; 2: Adam 5e-5, encoder BN frozen (needs --init)")
    p.add_argument("--init", metavar="CKPT", help="model directory whose weights start this run")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly")
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--batch-size", type=int, help="global batch (split across torchrun processes)")
    p.add_argument("--lr", type=float)
    p.add_argument("--loss", help="loss preset: paper, pixel, mse, mmse, texture")
    p.add_argument("--vgg-weights", metavar="FILE", help="VGG16 weights (.pth or .h5) for the paper loss")
    p.add_argument("--seed", type=int)
    p.add_argument("--num-workers", type=int, help="DataLoader worker processes")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.set_defaults(run=run)


def build_config(args):
    """The resolved :class:`~combine.config.TrainConfig` and run directory of ``args``."""
    from ..config import TrainConfig, apply_overrides, load_config

    if args.resume:
        run_dir = Path(args.resume)
        if args.init:
            raise InputError("--init: cannot be combined with --resume (the run continues from its last/)")
        if args.out and Path(args.out).resolve() != run_dir.resolve():
            raise InputError(f"--out: {args.out} differs from --resume {args.resume} (a resumed run stays in its directory)")
        base = run_dir / "config.toml"
        if not base.is_file():
            raise InputError(f"{run_dir}: no config.toml (not a `combine train` run directory)")
        cfg = load_config(base)
        if args.config:
            cfg = load_config(args.config, base=cfg)
    else:
        if not args.out:
            raise InputError("--out: the run directory is required")
        run_dir = Path(args.out)
        cfg = load_config(args.config) if args.config else TrainConfig()
    overrides = {
        "stage": args.stage, "seed": args.seed,
        "data.source": args.data, "data.num_workers": args.num_workers,
        "train.epochs": args.epochs, "train.steps_per_epoch": args.steps_per_epoch,
        "train.batch_size": args.batch_size, "train.lr": args.lr, "train.device": args.device,
        "loss.preset": args.loss, "loss.vgg_weights": args.vgg_weights,
    }
    apply_overrides(cfg, overrides, "command line")
    cfg.resolve(args.config or (str(run_dir / "config.toml") if args.resume else "command line"))
    return cfg, run_dir


def run(args):
    from ..train import train

    cfg, run_dir = build_config(args)
    summary = train(cfg, run_dir, resume=bool(args.resume), init=args.init)
    from ..progress import summary as print_summary

    best = summary.get("best_val_total")
    best_txt = f", best validation loss {best:.5g}" if best is not None else ""
    # rank 0 only, printed with --quiet too (it is the result)
    print_summary(f"{summary['epochs']} epoch(s), {summary['global_step']} steps, "
                  f"{summary['samples_per_s']:.1f} samples/s{best_txt}; seed {cfg.seed}; model: {run_dir / 'best'}")
    return 0
