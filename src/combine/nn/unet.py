"""The partial-convolution UNet of Liu et al. (2018) and the original CoMBInE, in μK.

Architecture (``L`` levels, encoder kernels ``k_i`` and channels ``c_i``):

* input normalisation inside the model: ``x_net = (x_uK - offset_uK) / scale_uK`` on valid
  pixels (holes set to 0, whatever they held: NaN and inf included);
* encoder level ``i``: stride-2 partial conv (``k_i``, ``c_i``), batch norm (not on level 0),
  ReLU;
* decoder level ``i`` (from the bottom up): nearest-neighbour ×2 upsampling of features and
  mask, concatenation with the encoder features and mask of the level above, 3×3 partial conv,
  batch norm, LeakyReLU(0.2); the last level concatenates the (normalised) input image and its
  mask and has neither batch norm nor activation;
* linear output in μK: ``y_uK = y_net * scale_uK + offset_uK``. The network predicts the whole
  image; callers composite (keep valid pixels, take the prediction in the holes).

Optional full-resolution stem (``stem_channels = K > 0``): a stride-1 ``stem_kernel`` partial
conv with ``K`` channels and ReLU at full resolution, whose output joins the input image as an
extra skip of the last decoder level (with its mask as one more channel, and counted as valid
everywhere by the last partial conv's renormalisation, see ``forward``). Without it, hole pixels at full resolution only see
features nearest-upsampled from half resolution (2×2 blocks) plus the raw input; with it they
also get full-resolution features (which matters for holes of a few pixels). The stem runs
beside the encoder on the input (the encoder is unchanged): feeding the stride-2 7×7 encoder
with K stem channels instead of the map would cost ~K times more in the first level.
``stem_channels=0`` is exactly the original architecture.

Presets (``PRESETS``):

* ``t128``: 7 levels, kernels 7,5,3,3,3,3,3, channels 32,64,128,128,128,128,128
  (the original CoMBInE ``PConv_Unet_model_100.py``), 128×128 patches;
* ``t128-fr``: ``t128`` with a 32-channel 5×5 full-resolution stem;
* ``t128-pf``: ``t128-fr`` predicting a correction to a harmonic prefill (below);
* ``t128-bh``: the same with a biharmonic prefill;
* ``t128-gm``: the same with a GMRF prefill;
* ``t128-lw``: the same with a local Wiener prefill (the shipped ``planck18-t128``);
* ``tqu128-lw``: ``t128-lw`` for T, Q, U maps (3 channels in and out, per-field units
  :data:`TQU_INPUT_SCALE_UK`) predicting a correction to the joint T, Q, U local Wiener fill
  (``prefill="lwiener-tqu"``, :mod:`combine.first_guess_tqu`);
* ``t512``: 8 levels, kernels 7,5,5,3,3,3,3,3, channels 64,128,256,512×5 (the paper and
  ``PConv_Unet_model.py``), 512×512 images.

Parameter counts (one input channel): t128 2,038,474; t128-fr 2,039,603; t128-pf, -bh, -gm, -lw 2,039,612;
tqu128-lw (three channels) 2,045,664; t512 32,857,738.
The last decoder partial conv outputs the map channels directly (NVIDIA's layout; PConv-Keras
adds a 1×1 convolution with a sigmoid for RGB, not used here).

Optional first guess (``prefill``): a classical fill of the hole from the valid pixels enters
the last decoder level as an always-valid input (like the stem) and is added to its output,
whose weights start at zero: ``y = T_fg + f(T_v, M)``. An untrained network then returns the
first guess, and training learns the correction towards the conditional mean.

* ``prefill="harmonic"``: the harmonic (diffusive) interpolation, computed inside ``forward``
  in torch (:func:`combine.nn.prefill.harmonic_fill`), unless a ``first_guess`` is passed;
* ``prefill="biharmonic"``, ``"gmrf"``, ``"lwiener"``, ``"lwiener-tqu"``: classical fills (scikit-image, sparse LU,
  dense Cholesky per hole) that are *not* part of the network: the caller computes them
  (:class:`combine.first_guess.FirstGuess`, by :class:`combine.models.InpaintingModel` at
  inference and by :class:`combine.training_data.InpaintingSamples` in the DataLoader workers
  during training) and passes ``forward(x, mask, first_guess=...)`` in μK.

``forward`` is torch only: no numpy, no host synchronisation (value checks of the mask are in
:meth:`PConvUNet.check_inputs`, which callers at the boundary run), so it runs on any device
and can be traced.

Masks travel one channel wide (see :mod:`combine.nn.partial_conv`): each tensor is masked once
(at low resolution before upsampling) and reused.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .partial_conv import PartialConv2d, mask_features
from .prefill import harmonic_fill

#: Per-field network units of the T, Q, U preset (μK): about the rms of each field of the
#: planck18 sky at 5' beam (T ≈ 110 μK; Q, U ≈ 4.5 μK), so that the three inputs and the three
#: corrections live on the same scale.
TQU_INPUT_SCALE_UK = (100.0, 5.0, 5.0)

PRESETS: dict[str, dict] = {
    "t128": dict(levels=7, kernels=[7, 5, 3, 3, 3, 3, 3], channels=[32, 64, 128, 128, 128, 128, 128],
                 stem_channels=0),
    "t128-fr": dict(levels=7, kernels=[7, 5, 3, 3, 3, 3, 3], channels=[32, 64, 128, 128, 128, 128, 128],
                    stem_channels=32),
    "t128-pf": dict(levels=7, kernels=[7, 5, 3, 3, 3, 3, 3], channels=[32, 64, 128, 128, 128, 128, 128],
                    stem_channels=32, prefill="harmonic"),
    "t128-bh": dict(levels=7, kernels=[7, 5, 3, 3, 3, 3, 3], channels=[32, 64, 128, 128, 128, 128, 128],
                    stem_channels=32, prefill="biharmonic"),
    "t128-gm": dict(levels=7, kernels=[7, 5, 3, 3, 3, 3, 3], channels=[32, 64, 128, 128, 128, 128, 128],
                    stem_channels=32, prefill="gmrf"),
    "t128-lw": dict(levels=7, kernels=[7, 5, 3, 3, 3, 3, 3], channels=[32, 64, 128, 128, 128, 128, 128],
                    stem_channels=32, prefill="lwiener"),
    "tqu128-lw": dict(levels=7, kernels=[7, 5, 3, 3, 3, 3, 3], channels=[32, 64, 128, 128, 128, 128, 128],
                      stem_channels=32, prefill="lwiener-tqu", in_channels=3,
                      input_scale_uk=list(TQU_INPUT_SCALE_UK)),
    "t512": dict(levels=8, kernels=[7, 5, 5, 3, 3, 3, 3, 3],
                 channels=[64, 128, 256, 512, 512, 512, 512, 512], stem_channels=0),
}

LEAKY_SLOPE = 0.2

#: ``prefill`` values whose first guess is computed outside the network and passed to ``forward``.
EXTERNAL_PREFILLS = ("biharmonic", "gmrf", "lwiener", "lwiener-tqu")

#: Every ``prefill`` value.
PREFILLS = ("none", "harmonic") + EXTERNAL_PREFILLS


def _per_channel(value, channels: int, name: str):
    """A float, or a list of ``channels`` floats (per-channel network units), as given."""
    if isinstance(value, (list, tuple)):
        out = [float(v) for v in value]
        if len(out) != channels or not all(math.isfinite(v) for v in out):
            raise InputError(f"{name}: expected {channels} finite values (one per channel), got {list(value)}")
        return out
    out = float(value)
    if not math.isfinite(out):
        raise InputError(f"{name}: must be finite, got {value}")
    return out


def _fit_list(values, levels, name):
    """Truncate or extend (repeating the last entry) a per-level list to ``levels`` entries."""
    values = [int(v) for v in values]
    if len(values) >= levels:
        return values[:levels]
    return values + [values[-1]] * (levels - len(values))


class _Level(nn.Module):
    """One partial conv, optionally followed by batch norm."""

    def __init__(self, in_ch, out_ch, kernel_size, stride, bn: bool, multi_channel_mask=False):
        super().__init__()
        self.conv = PartialConv2d(in_ch, out_ch, kernel_size, stride=stride, padding="same",
                                  multi_channel_mask=multi_channel_mask)
        self.bn = nn.BatchNorm2d(out_ch) if bn else None


class PConvUNet(nn.Module):
    """Partial-convolution UNet predicting temperature maps in μK.

    Parameters
    ----------
    preset : str
        ``"t128"``, ``"t128-fr"`` or ``"t512"`` (see module docstring); explicit arguments
        override it.
    in_channels : int, optional
        Map channels (1 for T, 3 for T/Q/U); default the preset's (1 unless it says otherwise).
    levels : int, optional
        Number of encoder (= decoder) levels; given alone, the preset's kernel and channel
        lists are truncated or extended by repeating their last entry.
    kernels, channels : list of int, optional
        Encoder kernel sizes and channel counts per level.
    input_scale_uk, input_offset_uk : float or list of float
        Network units: ``x_net = (x_uK - offset) / scale``; output ``y_net * scale + offset``.
        A list gives one value per channel (per field: T and Q/U have rms differing ~25×).
    stem_channels : int
        Channels of the optional full-resolution stem (0 = none, the original architecture).
    stem_kernel : int
        Kernel of the stem partial conv.
    decoder_kernel : int
        Kernel of the decoder partial convs (3 in the paper).

    Examples
    --------
    >>> net = PConvUNet("t128")
    >>> x = torch.randn(2, 1, 128, 128) * 100; m = torch.ones(2, 1, 128, 128); m[..., 60:68, 60:68] = 0
    >>> net(x, m).shape
    torch.Size([2, 1, 128, 128])
    """

    def __init__(self, preset: str = "t128", in_channels=None, *, levels=None, kernels=None,
                 channels=None, input_scale_uk=None, input_offset_uk=0.0,
                 stem_channels=None, stem_kernel: int = 5, decoder_kernel: int = 3, prefill=None,
                 prefill_sweeps: int = 24):
        super().__init__()
        if preset not in PRESETS:
            raise InputError(f"preset: unknown UNet preset {preset!r} (known: {', '.join(PRESETS)})")
        base = PRESETS[preset]
        levels = int(base["levels"] if levels is None else levels)
        if levels < 1:
            raise InputError(f"levels: must be >= 1, got {levels}")
        kernels = _fit_list(base["kernels"] if kernels is None else kernels, levels, "kernels")
        channels = _fit_list(base["channels"] if channels is None else channels, levels, "channels")
        stem_channels = int(base["stem_channels"] if stem_channels is None else stem_channels)
        prefill = base.get("prefill", "none") if prefill is None else str(prefill)
        if prefill not in PREFILLS:
            raise InputError(f"prefill: unknown prefill {prefill!r} (known: {', '.join(PREFILLS)})")
        in_channels = int(base.get("in_channels", 1) if in_channels is None else in_channels)
        if in_channels < 1 or stem_channels < 0 or min(channels) < 1:
            raise InputError("in_channels/channels/stem_channels: must be positive")
        if prefill == "lwiener-tqu" and in_channels != 3:
            raise InputError(f"prefill: 'lwiener-tqu' fills T, Q, U maps (in_channels 3), got in_channels {in_channels}")
        scale = _per_channel(base.get("input_scale_uk", 100.0) if input_scale_uk is None else input_scale_uk,
                             in_channels, "input_scale_uk")
        offset = _per_channel(input_offset_uk, in_channels, "input_offset_uk")
        if not all(s > 0 for s in np.atleast_1d(scale)):
            raise InputError(f"input_scale_uk: must be > 0, got {input_scale_uk}")
        self.preset = preset
        self.in_channels = in_channels
        self.levels, self.kernels, self.channels = levels, kernels, channels
        self.input_scale_uk, self.input_offset_uk = scale, offset
        self.stem_channels, self.stem_kernel = stem_channels, int(stem_kernel)
        self.decoder_kernel = int(decoder_kernel)
        self.prefill, self.prefill_sweeps = prefill, int(prefill_sweeps)
        self._encoder_bn_frozen = False

        c_in = self.in_channels
        self.stem = (PartialConv2d(c_in, stem_channels, self.stem_kernel, multi_channel_mask=True)
                     if stem_channels > 0 else None)
        enc, prev = [], c_in
        for i, (k, c) in enumerate(zip(kernels, channels)):
            enc.append(_Level(prev, c, k, 2, bn=i > 0, multi_channel_mask=(i == 0)))
            prev = c
        self.encoder = nn.ModuleList(enc)
        # decoder[i] goes from level i (resolution H / 2**(i+1)) up to resolution H / 2**i.
        dec = []
        for i in range(levels):
            up_ch = channels[i]
            if i > 0:
                dec.append(_Level(up_ch + channels[i - 1], channels[i - 1], self.decoder_kernel, 1, bn=True))
            else:
                stem_in = stem_channels + 1 if stem_channels else 0  # stem features + stem mask
                stem_in += c_in if prefill != "none" else 0  # the prefilled map
                dec.append(_Level(up_ch + c_in + stem_in, c_in, self.decoder_kernel, 1, bn=False,
                                  multi_channel_mask=True))
        self.decoder = nn.ModuleList(dec)
        if stem_channels:
            # The stem's slice of the output conv starts at zero: at init t128-fr computes what
            # t128 does and learns to use the full-resolution features (their renormalised
            # values at hole edges are large and would otherwise go straight to the output).
            with torch.no_grad():
                self.decoder[0].conv.weight[:, channels[0] + c_in:].zero_()
        if prefill != "none":
            # start exactly at the prefill: the correction is zero until training moves it
            with torch.no_grad():
                self.decoder[0].conv.weight.zero_()
                if self.decoder[0].conv.bias is not None:
                    self.decoder[0].conv.bias.zero_()

    # ------------------------------------------------------------------ configuration
    @property
    def input_size_multiple(self) -> int:
        """Input height and width must be multiples of this (``2**levels``)."""
        return 2 ** self.levels

    def config(self) -> dict:
        """JSON-able architecture; ``PConvUNet(**config())`` rebuilds the same network."""
        return {
            "preset": self.preset,
            "in_channels": self.in_channels,
            "levels": self.levels,
            "kernels": list(self.kernels),
            "channels": list(self.channels),
            "input_scale_uk": list(self.input_scale_uk) if isinstance(self.input_scale_uk, list) else self.input_scale_uk,
            "input_offset_uk": list(self.input_offset_uk) if isinstance(self.input_offset_uk, list) else self.input_offset_uk,
            "stem_channels": self.stem_channels,
            "stem_kernel": self.stem_kernel,
            "decoder_kernel": self.decoder_kernel,
            "prefill": self.prefill,
            "prefill_sweeps": self.prefill_sweeps,
        }

    @property
    def needs_first_guess(self) -> bool:
        """True when ``forward`` needs a ``first_guess`` from the caller (a classical fill that is
        not torch: ``prefill`` ``"biharmonic"``, ``"gmrf"``, ``"lwiener"`` or ``"lwiener-tqu"``)."""
        return self.prefill in EXTERNAL_PREFILLS

    def freeze_encoder_bn(self, frozen: bool = True) -> "PConvUNet":
        """Fix the encoder batch-norm running statistics (the paper's fine-tuning stage).

        The encoder BN layers stay in eval mode (normalising with their running mean and
        variance, not updating them) even after ``model.train()``; their affine weights still
        train. The decoder BN layers are unaffected.
        """
        self._encoder_bn_frozen = bool(frozen)
        return self.train(self.training)

    @property
    def encoder_bn_frozen(self) -> bool:
        return self._encoder_bn_frozen

    def train(self, mode: bool = True):
        super().train(mode)
        if self._encoder_bn_frozen:
            for level in self.encoder:
                if level.bn is not None:
                    level.bn.eval()
        return self

    # ------------------------------------------------------------------ forward
    def _check_shapes(self, x, mask):
        """Shape and dtype checks only (no host synchronisation); mask as (N, 1|C, H, W) in x's dtype."""
        if not torch.is_tensor(x) or x.dim() != 4 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise InputError(f"x: expected a tensor of shape (N, {self.in_channels}, H, W), got {shape}")
        h, w = x.shape[-2:]
        mult = self.input_size_multiple
        if h % mult or w % mult:
            raise InputError(f"x: size {h}x{w} is not divisible by 2**levels = {mult} "
                             f"(pad or crop to a multiple of {mult})")
        if not torch.is_tensor(mask):
            mask = torch.as_tensor(mask)
        if mask.dim() == 3:
            mask = mask.unsqueeze(1)
        if mask.dim() != 4 or mask.shape[0] != x.shape[0] or mask.shape[-2:] != x.shape[-2:] \
                or mask.shape[1] not in (1, self.in_channels):
            raise InputError(f"mask: shape {tuple(mask.shape)} does not match x {tuple(x.shape)} "
                             f"(expected (N, 1, H, W), (N, {self.in_channels}, H, W) or (N, H, W))")
        return mask.to(device=x.device, dtype=x.dtype)

    def _check_first_guess(self, x, first_guess) -> None:
        if first_guess is None and self.needs_first_guess:
            raise InputError(f"first_guess: prefill {self.prefill!r} is computed outside the network; pass "
                             "forward(x, mask, first_guess=...) (combine.first_guess.FirstGuess.fill)")
        if first_guess is not None:
            if self.prefill == "none":
                raise InputError("first_guess: this network has no first-guess input (prefill = 'none')")
            if not torch.is_tensor(first_guess) or tuple(first_guess.shape) != tuple(x.shape):
                shape = tuple(first_guess.shape) if torch.is_tensor(first_guess) else type(first_guess).__name__
                raise InputError(f"first_guess: expected a tensor of x's shape {tuple(x.shape)}, got {shape}")

    @torch.no_grad()
    def check_inputs(self, x, mask) -> None:
        """The checks of ``x`` and ``mask`` that ``forward`` leaves out because they read values:
        shapes, a binary mask, a valid pixel in every sample and channel (these synchronise with
        the device: run them at the boundary, as :meth:`combine.models.InpaintingModel.predict`
        does, not in the training loop)."""
        mask = self._check_shapes(x, mask)
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise InputError("mask: not binary (values other than 0 and 1)")
        has_valid = mask.flatten(2).amax(dim=2) > 0
        if not bool(has_valid.all()):
            n, c = (~has_valid).nonzero()[0].tolist()
            raise InputError(f"mask: no valid (=1) pixel in sample {n}, channel {c}")

    def forward(self, x_uk: torch.Tensor, mask: torch.Tensor, first_guess: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the full map in μK (torch operations only).

        Parameters
        ----------
        x_uk : Tensor (N, C, H, W)
            Maps in μK; hole values are ignored (may be anything, NaN included).
        mask : Tensor (N, 1, H, W), (N, C, H, W) or (N, H, W)
            1 = valid, 0 = hole; binary, every sample (and channel) with a valid pixel
            (:meth:`check_inputs` checks the values; ``forward`` checks shapes only).
        first_guess : Tensor (N, C, H, W), optional
            The classical fill in μK (holes filled; its valid pixels are ignored and taken from
            ``x_uk``); required when :attr:`needs_first_guess`, optional for ``"harmonic"``
            (computed here otherwise).

        Returns
        -------
        Tensor (N, C, H, W): prediction in μK at every pixel (composite it yourself).
        """
        mask = self._check_shapes(x_uk, mask)
        self._check_first_guess(x_uk, first_guess)
        with torch.no_grad():
            valid = mask > 0
        scale, offset = self._units(x_uk)
        x0 = torch.where(valid, (x_uk - offset) / scale, x_uk.new_zeros(()))
        m0 = mask

        stem = stem_mask = None
        if self.stem is not None:
            stem, stem_mask = self.stem.forward_masked(x0, [m0], [self.in_channels])
            stem = F.relu(stem, inplace=True)  # 0 under its holes already (pconv gives 0, relu(0) = 0)

        prefilled = None
        if first_guess is not None:
            with torch.no_grad():
                fg = (first_guess.to(x0.dtype) - offset) / scale
                prefilled = torch.where(valid, x0, fg)
        elif self.prefill == "harmonic":
            prefilled = harmonic_fill(x0, m0, sweeps=self.prefill_sweeps)

        feats, masks = [], []
        h, m = x0, m0
        for level in self.encoder:
            h, m = level.conv.forward_masked(h, [m], [h.shape[1]])
            if level.bn is not None:
                h = F.relu(level.bn(h), inplace=True)
                h = mask_features(h, m)  # BN moved hole values off 0: mask once, reuse twice
            else:
                h = F.relu(h, inplace=True)
            feats.append(h)
            masks.append(m)

        h, m = feats[-1], masks[-1]
        for i in range(self.levels - 1, -1, -1):
            level = self.decoder[i]
            up = F.interpolate(h, scale_factor=2, mode="nearest")
            up_mask = F.interpolate(m, scale_factor=2, mode="nearest")
            if i > 0:
                parts = [(up, up_mask), (feats[i - 1], masks[i - 1])]
            else:
                parts = [(up, up_mask), (x0, m0)]
                if stem is not None:
                    # Stem features enter as always valid (0 inside their holes, with their mask
                    # as an extra channel): counting them as holes would make sum(1)/sum(M)
                    # jump by (C + K + 33)/33 ≈ 2 across the stem's hole edge, right at the
                    # output, which has no batch norm to absorb it.
                    parts.append((torch.cat([stem, stem_mask], dim=1), None))
                if prefilled is not None:
                    parts.append((prefilled, None))
            h, m = level.conv.forward_masked(torch.cat([p for p, _ in parts], dim=1),
                                             [q for _, q in parts], [p.shape[1] for p, _ in parts])
            if level.bn is not None:
                h = F.leaky_relu(level.bn(h), LEAKY_SLOPE, inplace=True)
                h = mask_features(h, m)  # masked at low resolution, before upsampling
        if prefilled is not None:
            h = h + prefilled
        return h * scale + offset

    def _units(self, x: torch.Tensor):
        """(scale, offset) in μK: Python floats (one unit for all channels, the T presets) or
        (1, C, 1, 1) tensors on ``x``'s device (per-channel units)."""
        def one(v):
            return x.new_tensor(v).view(1, -1, 1, 1) if isinstance(v, list) else v

        return one(self.input_scale_uk), one(self.input_offset_uk)

    @torch.no_grad()
    def encoder_masks(self, x_uk, mask) -> list:
        """The mask after each encoder level (list of (N, 1, h, w)), for ``x_uk``'s shape."""
        m = self._check_shapes(x_uk, mask)
        masks = []
        for level in self.encoder:
            _, m = level.conv.mask_update([m], [level.conv.in_ch])
            masks.append(m)
        return masks
