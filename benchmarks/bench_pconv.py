"""PConv UNet versus a plain nn.Conv2d UNet of the same shapes: time ratio.

Prints the median time of forward (training mode, autograd on), forward+backward and
inference (eval, no_grad) at batch 8, 128² for the PConv UNet and for a plain UNet with the
same convolutions, batch norms, activations, upsampling and concatenations but no masks.
Runs are interleaved (plain, pconv, plain, ...) so that a machine loaded by others hurts both
alike; the ratio of medians is the figure to quote.

Usage: ``python benchmarks/bench_pconv.py [--preset t128] [--batch 8] [--size 128] [--repeats 15] [--threads 2]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from combine.nn import PConvUNet


class PlainUNet(nn.Module):
    """The PConvUNet's shapes with nn.Conv2d and no masks (the speed reference)."""

    def __init__(self, ref: PConvUNet):
        super().__init__()
        c_in = ref.in_channels
        # the PConv stem adds its mask as one more channel to the last decoder level
        self.stem = (nn.Conv2d(c_in, ref.stem_channels + 1, ref.stem_kernel, padding=ref.stem_kernel // 2)
                     if ref.stem_channels else None)
        self.enc = nn.ModuleList()
        self.enc_bn = nn.ModuleList()
        prev = c_in
        for i, (k, c) in enumerate(zip(ref.kernels, ref.channels)):
            self.enc.append(nn.Conv2d(prev, c, k, stride=2, padding=k // 2))
            self.enc_bn.append(nn.BatchNorm2d(c) if i > 0 else nn.Identity())
            prev = c
        self.dec = nn.ModuleList()
        self.dec_bn = nn.ModuleList()
        ch = ref.channels
        for i in range(ref.levels):
            if i > 0:
                self.dec.append(nn.Conv2d(ch[i] + ch[i - 1], ch[i - 1], 3, padding=1))
                self.dec_bn.append(nn.BatchNorm2d(ch[i - 1]))
            else:
                stem_in = ref.stem_channels + 1 if ref.stem_channels else 0
                self.dec.append(nn.Conv2d(ch[0] + c_in + stem_in, c_in, 3, padding=1))
                self.dec_bn.append(nn.Identity())
        self.levels = ref.levels

    def forward(self, x):
        stem = F.relu(self.stem(x), inplace=True) if self.stem is not None else None
        feats, h = [], x
        for conv, bn in zip(self.enc, self.enc_bn):
            h = F.relu(bn(conv(h)), inplace=True)
            feats.append(h)
        h = feats[-1]
        for i in range(self.levels - 1, -1, -1):
            up = F.interpolate(h, scale_factor=2, mode="nearest")
            skip = [feats[i - 1]] if i > 0 else ([x] + ([stem] if stem is not None else []))
            h = self.dec[i](torch.cat([up] + skip, dim=1))
            if i > 0:
                h = F.leaky_relu(self.dec_bn[i](h), 0.2, inplace=True)
        return h


def training_masks(batch, size, seed=0):
    """1-3 circular holes of radius 2-40 px per sample (the calibration run's masks)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = torch.ones(batch, 1, size, size)
    for n in range(batch):
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            cy, cx = torch.randint(0, size, (2,), generator=g).tolist()
            r = float(torch.randint(2, 41, (1,), generator=g))
            masks[n, 0][((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r] = 0
    return masks


def median_time(fn, repeats):
    return statistics.median(_time_once(fn) for _ in range(repeats))


def _time_once(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="t128")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mask", choices=["training", "ones"], default="training")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    pconv = PConvUNet(args.preset).train()
    plain = PlainUNet(pconv).train()
    x = torch.randn(args.batch, pconv.in_channels, args.size, args.size) * 100
    mask = training_masks(args.batch, args.size) if args.mask == "training" else torch.ones_like(x[:, :1])
    x_plain = x / 100

    def fwd_p():
        pconv(x, mask)

    def fwd_q():
        plain(x_plain)

    def step_p():
        pconv.zero_grad(set_to_none=True)
        pconv(x, mask).square().mean().backward()

    def step_q():
        plain.zero_grad(set_to_none=True)
        plain(x_plain).square().mean().backward()

    def infer_p():
        with torch.no_grad():
            pconv.eval()(x, mask)
        pconv.train()

    def infer_q():
        with torch.no_grad():
            plain.eval()(x_plain)
        plain.train()

    print(f"preset {args.preset}, batch {args.batch}, {args.size}², {args.threads} threads, "
          f"masks: {args.mask}, median of {args.repeats} (interleaved)")
    for name, fp, fq in [("forward (train mode)", fwd_p, fwd_q), ("forward+backward", step_p, step_q),
                         ("inference (eval, no_grad)", infer_p, infer_q)]:
        fp(), fq()  # warm-up
        tp, tq = [], []
        for _ in range(args.repeats):
            tq.append(_time_once(fq))
            tp.append(_time_once(fp))
        mp, mq = statistics.median(tp), statistics.median(tq)
        print(f"{name:28s} plain {mq * 1e3:8.1f} ms   pconv {mp * 1e3:8.1f} ms   ratio {mp / mq:5.3f}")


if __name__ == "__main__":
    main()
