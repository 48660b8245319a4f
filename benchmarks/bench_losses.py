"""Cost of each loss preset relative to a PConv UNet training step (batch 8, 128²).

For every preset, times the loss forward+backward on a prediction that requires grad (the
loss's own cost) and divides by the median time of a UNet forward+backward (with a trivial
loss). The ``paper`` preset uses a VGG16 weights file with random values written to a
temporary directory (the cost does not depend on the values). Medians of interleaved runs.

Usage: ``python benchmarks/bench_losses.py [--preset t128] [--batch 8] [--size 128] [--repeats 7] [--threads 2]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from combine.nn import LOSS_PRESETS, PConvUNet, VGG16Features, build_loss

try:  # run as a script from the repository root or from benchmarks/
    from bench_pconv import training_masks
except ImportError:  # pragma: no cover
    from benchmarks.bench_pconv import training_masks


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="t128")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    net = PConvUNet(args.preset).train()
    target = torch.randn(args.batch, 1, args.size, args.size) * 100
    mask = training_masks(args.batch, args.size)

    with tempfile.TemporaryDirectory() as tmp:
        vgg_path = Path(tmp) / "vgg16-random.pth"
        torch.save(VGG16Features().state_dict(), vgg_path)
        losses = {name: build_loss(name, vgg_weights=vgg_path if name == "paper" else None)
                  for name in LOSS_PRESETS}

    def unet_step():
        net.zero_grad(set_to_none=True)
        net(target, mask).square().mean().backward()

    def loss_step(loss):
        pred = (target + torch.randn_like(target) * 10).requires_grad_(True)

        def run():
            total, _ = loss(pred, target, mask)
            total.backward()
        return run

    runs = {name: loss_step(loss) for name, loss in losses.items()}
    unet_step()
    for run in runs.values():
        run()  # warm-up
    t_unet, t_loss = [], {name: [] for name in runs}
    for _ in range(args.repeats):
        t_unet.append(timed(unet_step))
        for name, run in runs.items():
            t_loss[name].append(timed(run))
    m_unet = statistics.median(t_unet)
    print(f"UNet {args.preset} forward+backward, batch {args.batch}, {args.size}², {args.threads} threads: "
          f"{m_unet * 1e3:.1f} ms (median of {args.repeats})")
    print(f"{'loss preset':12s} {'loss fwd+bwd':>14s} {'/ UNet step':>12s}")
    for name, times in t_loss.items():
        m = statistics.median(times)
        print(f"{name:12s} {m * 1e3:11.1f} ms {m / m_unet:12.3f}")


if __name__ == "__main__":
    main()
