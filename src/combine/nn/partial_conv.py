"""Partial convolution (Liu et al. 2018, arXiv:1804.07723, eq. 1-2).

For a window of the input ``X`` with binary mask ``M`` (1 = valid, 0 = hole),

.. math::

    x' = \\begin{cases} W^T (X \\odot M)\\,\\frac{\\mathrm{sum}(\\mathbf 1)}{\\mathrm{sum}(M)} + b
         & \\mathrm{sum}(M) > 0 \\\\ 0 & \\text{otherwise} \\end{cases}
    \\qquad
    m' = \\mathbb 1[\\mathrm{sum}(M) > 0],

where the sums run over the whole window *and all input channels*: ``sum(1) = k·k·C_in``.
Zero padding counts as hole (the mask is padded with zeros), as in NVIDIA's reference
implementation, so border windows are renormalised too; with an all-ones mask and
``padding=0`` the layer is exactly a plain convolution.

Speed. Masks are kept one channel wide wherever possible. A layer whose input is a
concatenation of sources (decoder: upsampled features + skip features), each with its own
one-channel mask, never builds a full-width mask: since the window sum is linear,

.. math:: \\mathrm{sum}(M) = \\mathrm{box}_k\\Big(\\sum_g C_g\\, m_g\\Big),

one single-channel convolution with the all-ones kernel gives ``sum(M)`` for all groups.
The renormalisation, bias and hole zeroing are fused into one ``addcmul`` (plus a fill only
where some output window is empty). Mask maths runs under ``torch.no_grad``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError


def check_has_valid_pixel(mask: torch.Tensor, source: str = "mask") -> None:
    """Raise :class:`InputError` if any sample of ``mask`` (N, C, H, W) has no valid pixel."""
    with torch.no_grad():
        has_valid = (mask > 0).flatten(1).any(dim=1)
    if not bool(has_valid.all()):
        bad = int((~has_valid).nonzero()[0, 0])
        raise InputError(f"{source}: mask has no valid (=1) pixel (sample {bad})")


def _normalise_mask(mask: torch.Tensor, like: torch.Tensor, source: str = "mask") -> torch.Tensor:
    """Return mask as (N, C, H, W) in the dtype of ``like``; accepts (N, H, W)."""
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if mask.dim() != 4:
        raise InputError(f"{source}: expected a mask of shape (N, C, H, W) or (N, H, W), got {tuple(mask.shape)}")
    if mask.shape[0] != like.shape[0] or mask.shape[-2:] != like.shape[-2:]:
        raise InputError(
            f"{source}: mask shape {tuple(mask.shape)} does not match input shape {tuple(like.shape)}"
        )
    return mask.to(dtype=like.dtype)


class PartialConv2d(nn.Module):
    """2-D partial convolution layer.

    Parameters
    ----------
    in_ch, out_ch : int
        Input and output feature channels.
    kernel_size : int
        Square kernel size ``k``.
    stride : int
        Stride (1 or 2 in the UNet).
    padding : "same" or int
        ``"same"`` means ``(k - 1) // 2`` (odd ``k`` only): output size ``ceil(H / stride)``.
        Padded pixels are holes.
    bias : bool
        Add a bias (only where ``m' = 1``).
    multi_channel_mask : bool
        If False the mask must have one channel, shared by all input channels. If True the
        mask may also have one channel per input channel, (N, C_in, H, W).

    Notes
    -----
    ``forward(x, mask) -> (y, new_mask)`` with ``new_mask`` of shape (N, 1, H', W'): since
    ``sum(M)`` runs over every input channel, all output channels share one mask.

    Examples
    --------
    >>> conv = PartialConv2d(1, 8, 3)
    >>> x = torch.randn(2, 1, 16, 16); m = torch.ones(2, 1, 16, 16); m[:, :, 4:8, 4:8] = 0
    >>> y, m2 = conv(x, m)
    >>> y.shape, m2.shape
    (torch.Size([2, 8, 16, 16]), torch.Size([2, 1, 16, 16]))
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1,
                 padding="same", bias: bool = True, multi_channel_mask: bool = False):
        super().__init__()
        k = int(kernel_size)
        if padding == "same":
            if k % 2 == 0:
                raise ValueError(f"PartialConv2d: padding='same' needs an odd kernel, got {k}")
            padding = (k - 1) // 2
        elif not isinstance(padding, int) or padding < 0:
            raise ValueError(f"PartialConv2d: padding must be 'same' or an int >= 0, got {padding!r}")
        self.in_ch, self.out_ch = int(in_ch), int(out_ch)
        self.kernel_size, self.stride, self.padding = k, int(stride), int(padding)
        self.multi_channel_mask = bool(multi_channel_mask)
        self.weight = nn.Parameter(torch.empty(self.out_ch, self.in_ch, k, k))
        self.bias = nn.Parameter(torch.empty(self.out_ch)) if bias else None
        # Fixed window-sum kernel: follows .to(device), stays out of checkpoints.
        self.register_buffer("ones_kernel", torch.ones(1, 1, k, k), persistent=False)
        self.sum1 = float(k * k * self.in_ch)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The paper initialises as He et al. (kaiming normal, fan_in, ReLU gain).
        nn.init.kaiming_normal_(self.weight, mode="fan_in", nonlinearity="relu")
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return (f"{self.in_ch}, {self.out_ch}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}, "
                f"multi_channel_mask={self.multi_channel_mask}")

    # ------------------------------------------------------------------ public API
    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        """Apply the partial convolution.

        Parameters
        ----------
        x : Tensor (N, C_in, H, W)
            Features; values under the hole are ignored (may be NaN or inf).
        mask : Tensor (N, 1, H, W) or (N, C_in, H, W) (or (N, H, W))
            1 = valid, 0 = hole.

        Returns
        -------
        y : Tensor (N, C_out, H', W')
        new_mask : Tensor (N, 1, H', W'), 0/1 in the dtype of ``x``.
        """
        if x.dim() != 4 or x.shape[1] != self.in_ch:
            raise InputError(f"x: expected shape (N, {self.in_ch}, H, W), got {tuple(x.shape)}")
        mask = _normalise_mask(mask, x)
        if mask.shape[1] != 1 and not (self.multi_channel_mask and mask.shape[1] == self.in_ch):
            want = f"1 or {self.in_ch}" if self.multi_channel_mask else "1 (set multi_channel_mask=True for per-channel masks)"
            raise InputError(f"mask: has {mask.shape[1]} channels, expected {want}")
        with torch.no_grad():
            if not bool(((mask == 0) | (mask == 1)).all()):
                raise InputError("mask: not binary (values other than 0 and 1)")
        check_has_valid_pixel(mask)
        x_masked = mask_features(x, mask)
        return self.forward_masked(x_masked, [mask], [self.in_ch])

    def forward_masked(self, x_masked: torch.Tensor, masks: Sequence[torch.Tensor],
                       channels: Sequence[int]):
        """Partial convolution of an input that is already zero under its holes.

        ``x_masked`` is the channel concatenation of groups ``g`` with ``channels[g]``
        channels each, group ``g`` masked by ``masks[g]`` (N, 1, H, W) or (N, channels[g], H, W),
        or ``None`` for a group valid at every pixel (at least one group must have a mask).
        The caller guarantees ``x_masked == where(M > 0, X, 0)``; this lets the UNet mask each
        tensor once and reuse it (skip connection and next layer) and never widen a mask.
        """
        scale, new_mask = self.mask_update(masks, channels)
        y = F.conv2d(x_masked, self.weight, None, self.stride, self.padding)
        if self.bias is None:
            return y * scale, new_mask
        # bias·m' + conv·scale: 0 on empty windows (scale = m' = 0 there), no branch on the mask
        return torch.addcmul(self.bias.view(1, -1, 1, 1) * new_mask, y, scale), new_mask

    @torch.no_grad()
    def mask_update(self, masks: Sequence[torch.Tensor], channels: Sequence[int]):
        """Mask maths only: return ``(scale, new_mask)``.

        ``scale = sum(1)/sum(M) · m'`` (0 on empty windows), ``new_mask = m'`` (N, 1, H', W').
        No host synchronisation (nothing branches on the mask's values).
        """
        if sum(channels) != self.in_ch:
            raise ValueError(f"PartialConv2d: mask groups cover {sum(channels)} channels, layer has {self.in_ch}")
        # sum(M) = box_k( sum_g (C_g / C_mask_g) * sum_c m_{g,c} ): one 1-channel conv.
        combo, always_valid = None, 0
        for m, c in zip(masks, channels):
            if m is None:  # a group valid everywhere (only zero padding counts as hole)
                always_valid += c
                continue
            mc = m.shape[1]
            if mc not in (1, c):
                raise ValueError(f"PartialConv2d: a mask group has {mc} channels for {c} feature channels")
            term = m if mc == 1 else m.sum(dim=1, keepdim=True)
            if mc != c:
                term = term * (c / mc)
            combo = term if combo is None else combo + term
        if always_valid:
            combo = combo + always_valid
        sum_m = F.conv2d(combo, self.ones_kernel, stride=self.stride, padding=self.padding)
        new_mask = (sum_m > 0.5).to(sum_m.dtype)  # sums are exact small integers
        scale = (self.sum1 / sum_m.clamp_min(1.0)) * new_mask  # sum(1)/sum(M), 0 on empty windows
        return scale, new_mask


def mask_features(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return ``where(mask > 0, x, 0)`` (NaN-safe, unlike ``x * mask``; no host synchronisation)."""
    with torch.no_grad():
        valid = mask > 0
    return torch.where(valid, x, x.new_zeros(()))
