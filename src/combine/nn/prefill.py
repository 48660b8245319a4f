"""The harmonic first guess, computed inside the network in torch (``prefill="harmonic"``).

Used by :class:`combine.nn.PConvUNet` with ``prefill="harmonic"``: the last decoder level sees
the prefilled map as an always-valid input and the network predicts the *correction*,

.. math:: \\hat T = T_\\mathrm{harm} + f_\\theta(T_v, M),

so an untrained network starts at the quality of diffusive inpainting (the discrete harmonic
interpolant of the hole, as Planck's point-source "diffusive" fill and
:func:`combine.baselines.diffusive_fill`) and training only has to learn what the harmonic
interpolant misses (the CMB is not harmonic: the optimum is the Wiener filter).

The other first guesses (biharmonic, GMRF, local Wiener) are classical numpy/scipy fills and are
not part of the network: :mod:`combine.first_guess` computes them, outside ``forward``.

The harmonic fill is computed without gradient, in two steps:

1. *pull–push* (Gortler et al. 1996): masked 2×2 averages up a pyramid,
   :math:`x_{l+1} = \\mathrm{avg}(x_l w_l)/\\mathrm{avg}(w_l)`, then down again, each hole pixel
   taking the bilinear upsampling of the coarser filled level — a smooth initial guess;
2. ``iters`` sweeps of red–black successive over-relaxation of Laplace's equation in the hole,
   :math:`x_p \\leftarrow x_p + \\omega(\\tfrac14\\sum_{q\\in\\mathcal N_p} x_q - x_p)`, valid
   pixels fixed, edges reflected (``ω = 1.8``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: SOR relaxation factor and default number of red–black sweeps.
SOR_OMEGA = 1.8
DEFAULT_SWEEPS = 60

_CROSS = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]])


def pull_push(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Fill the holes (``w == 0``) of ``x`` (N, C, H, W) from a masked-average pyramid.

    Valid pixels (``w == 1``) are returned unchanged; every sample needs one valid pixel.
    """
    h, wd = x.shape[-2:]
    if h % 2 or wd % 2 or min(h, wd) <= 1:
        mean = (x * w).sum((-2, -1), keepdim=True) / w.sum((-2, -1), keepdim=True).clamp_min(1e-12)
        return torch.where(w > 0, x, mean.expand_as(x))
    ws = F.avg_pool2d(w, 2)
    xs = torch.where(ws > 0, F.avg_pool2d(x * w, 2) / ws.clamp_min(1e-12), torch.zeros_like(ws))
    coarse = pull_push(xs, (ws > 0).to(x.dtype))
    up = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)
    return torch.where(w > 0, x, up)


@torch.no_grad()
def harmonic_fill(x: torch.Tensor, mask: torch.Tensor, sweeps: int = DEFAULT_SWEEPS,
                  omega: float = SOR_OMEGA) -> torch.Tensor:
    """Harmonic interpolation of the holes of ``x`` (N, C, H, W); ``mask`` (N, 1 or C, H, W), 1 = valid.

    Hole values of ``x`` are ignored. Returns a new tensor equal to ``x`` on valid pixels.
    """
    w = (mask > 0).to(x.dtype).expand_as(x)
    x = torch.where(w > 0, x, torch.zeros((), dtype=x.dtype, device=x.device))
    y = pull_push(x, w)
    hole = w == 0
    if sweeps <= 0:
        return y
    n, c, h, wd = y.shape
    kernel = _CROSS.to(dtype=y.dtype, device=y.device).view(1, 1, 3, 3)
    ii, jj = torch.meshgrid(torch.arange(h, device=y.device), torch.arange(wd, device=y.device), indexing="ij")
    red = ((ii + jj) % 2 == 0).view(1, 1, h, wd)
    colours = (hole & red, hole & ~red)
    flat = y.reshape(n * c, 1, h, wd)
    for _ in range(int(sweeps)):
        for sel in colours:
            avg = F.conv2d(F.pad(flat, (1, 1, 1, 1), mode="reflect"), kernel).view(n, c, h, wd)
            y = torch.where(sel, y + omega * (avg - y), y)
            flat = y.reshape(n * c, 1, h, wd)
    return y
