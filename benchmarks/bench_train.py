"""Training throughput (samples/s) of the t128 UNet with the pixel, texture and paper losses.

The whole training step is timed through ``combine.train.train``: fresh simulated Planck18
patches (``simulate:planck18``, in the training process), a mask each, forward, loss, backward,
Adam. The "paper" preset uses a VGG16 weights file of random values written to a temporary
directory (throughput does not depend on the weight values). The first epoch warms up; the
rate of the second is reported.

    .venv/bin/python benchmarks/bench_train.py [--batch-size 8] [--steps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def _random_vgg_file(directory: Path) -> Path:
    from combine.nn import VGG16Features

    torch.manual_seed(0)
    path = directory / "vgg16-random.pth"
    torch.save(VGG16Features().state_dict(), path)  # torchvision key layout, random values
    return path


def _data_rate(size: int, n: int = 256) -> float:
    from combine.training_data import InpaintingSamples, open_sources

    src, _ = open_sources("simulate:planck18", size=size, seed=0, stage=1)
    ds = InpaintingSamples(src, mask_mix={"random": 0.5, "circle": 0.5}, seed_key=(0, 1, 0))
    ds[0]  # warm up (FFT plans, first grid)
    t0 = time.perf_counter()
    for i in range(64, 64 + n):
        ds[i]
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5, help="steps per epoch (2 epochs, the second is timed)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--presets", default="pixel,texture,paper")
    ap.add_argument("--model", default="t128")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from combine.config import config_from_dict
    from combine.train import train

    print(f"data pipeline alone (simulate:planck18 128², mask, symmetry): {_data_rate(128):.0f} samples/s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        vgg = _random_vgg_file(tmp)
        for preset in args.presets.split(","):
            cfg = config_from_dict({
                "stage": 1, "seed": 0,
                "data": {"source": "simulate:planck18", "size": 128},
                "model": {"preset": args.model},
                "train": {"epochs": 2, "steps_per_epoch": args.steps, "batch_size": args.batch_size,
                          "val_steps": 0, "tensorboard": False, "device": "cpu"},
                "loss": {"preset": preset, **({"vgg_weights": str(vgg)} if preset == "paper" else {})},
            }, "bench").resolve()
            summary = train(cfg, tmp / f"run-{preset}", log=lambda m: None)
            rate = summary["history"][-1]["samples_per_s"]
            rows.append((preset, rate))
            print(f"{args.model} batch {args.batch_size} 128²  loss {preset:8s} {rate:7.2f} samples/s "
                  f"({args.batch_size / rate:.2f} s/step, {args.threads} threads)", flush=True)
    base = dict(rows).get("pixel")
    if base:
        print("relative cost per step: " + ", ".join(f"{p} {base / r:.2f}x" for p, r in rows))


if __name__ == "__main__":
    main()
