"""Inpainting losses: the paper's eq. 7 terms, squared-error terms, and an offline texture loss.

Notation (Liu et al. 2018, arXiv:1804.07723, sec. 3.4): ``I_out`` the prediction, ``I_gt``
the truth, ``M`` the mask (1 = valid), ``I_comp = M ⊙ I_gt + (1 − M) ⊙ I_out`` the composite,
``N_X`` the number of elements (C·H·W) of ``X``; every term is averaged over the batch.

* ``valid = (1/N_gt) ||M ⊙ (I_out − I_gt)||_1``,  ``hole = (1/N_gt) ||(1 − M) ⊙ (I_out − I_gt)||_1``
* ``valid_mse``, ``hole_mse``: the same with squared errors (``||·||_2^2``);
* ``perceptual = Σ_p ||ψ_p(I_out) − ψ_p(I_gt)||_1 / N_ψp + ||ψ_p(I_comp) − ψ_p(I_gt)||_1 / N_ψp``,
  ψ_p = VGG16 pool1, pool2, pool3;
* ``style_out = Σ_p (1/C_p²) ||G_p(I_out) − G_p(I_gt)||_1`` with the Gram matrix
  ``G_p = ψ_pᵀ ψ_p / (C_p H_p W_p)`` (and ``style_comp`` with ``I_comp``), as in NVIDIA's and
  PConv-Keras' implementations (mean over the C_p × C_p entries);
* ``tv = Σ_{(i,j),(i,j+1) ∈ P} |I_comp^{i,j+1} − I_comp^{i,j}| / N_comp + (same vertically)``,
  with ``P`` the hole dilated by one pixel (3 × 3);
* ``power``: mean over radial bins and samples of ``[ln(P_comp(k_b) + ε) − ln(P_gt(k_b) + ε)]²``,
  ``P(k_b)`` the annulus average of ``|FFT(w · I)|²`` with ``w`` a cosine (Tukey) taper of 1/8
  of the size on each edge, 16 linear bins from k = 1 to the Nyquist radius,
  ``ε = 1e-3 · max_b P_gt(k_b)`` (beam-smoothed skies have almost no power at the highest k:
  the floor keeps those bins from dominating);
* ``texture_out``, ``texture_comp``: the style term on a fixed, seeded, shallow multi-scale
  random filter bank instead of VGG (Ustyuzhaninov et al. 2017, "What does it take to generate
  natural textures?"): the map (÷ 100 μK) at scales 1, 2 and 4 (2 × 2 average pooling),
  each convolved with 16 zero-mean, unit-norm Gaussian random 5 × 5 filters (seed 0) and a ReLU
  (16 rather than 32 filters: a third of the cost, 0.3× a t128 UNet step instead of 0.65×).

Units. Maps arrive in μK. Every term is computed in *image units*: ``x / unit_uk`` with
``unit_uk = 1000 μK`` by default (or one unit per channel for T, Q, U maps, pixel terms only:
``[1000, 50, 50]`` gives the Q/U errors, ~25× smaller than T's, the weight of T's), the span that the VGG input mapping sends to [0, 1]
(``v = 0.5 + x_uK / 1000``, not clamped), so that the paper's weights keep the paper's balance
between pixel and VGG terms. For VGG each map channel is a grey image repeated to RGB and
normalised by the ImageNet mean and std.

Presets (``LOSS_PRESETS``):

* ``paper``: 1·valid + 6·hole + 0.05·perceptual + 120·(style_out + style_comp) + 0.1·tv (eq. 7;
  needs VGG16 weights);
* ``pixel``: valid + 6·hole (L1; the minimum-absolute-error model: conditional median). The
  shipped ``planck18-t128`` model's loss (its ``config.json`` ``loss.preset``);
* ``mse``: valid_mse + 6·hole_mse (minimum mean-squared error: the optimum is the conditional
  mean, i.e. for a Gaussian sky the Wiener filter);
* ``mmse``: 0.1·valid_mse + hole_mse_norm (per-sample hole-normalised MSE: every mask weighs
  the same, small holes included; the optimum is again the conditional mean);
* ``texture``: valid + 6·hole + 1·power + 2.5·(texture_out + texture_comp), offline (no
  download). Weights calibrated on a CMB-like Gaussian field (P(k) ∝ k^-2.5 × 5' beam, 128²,
  centred holes of radius 4-32 px) with the truth Gaussian-blurred (σ = 2-8 px) in the holes,
  i.e. the smooth fill an L1 model tends to give: there the gradient norm (with respect to the
  prediction) of 1·power is ≈ 0.25-0.3× that of 6·hole, of 2.5·texture_out ≈ 0.37×, of
  2.5·texture_comp ≈ 0.03-0.07×, so the fill stays anchored to the truth while being pushed
  towards its power and local texture statistics. No TV term: smoothing is what this preset
  works against.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

IMAGE_RANGE_UK = 1000.0
TEXTURE_INPUT_SCALE_UK = 100.0

LOSS_PRESETS: dict[str, dict[str, float]] = {
    "paper": {"valid": 1.0, "hole": 6.0, "perceptual": 0.05, "style_out": 120.0, "style_comp": 120.0,
              "tv": 0.1},
    "pixel": {"valid": 1.0, "hole": 6.0},
    "mse": {"valid_mse": 1.0, "hole_mse": 6.0},
    "texture": {"valid": 1.0, "hole": 6.0, "power": 1.0, "texture_out": 2.5, "texture_comp": 2.5},
    "mmse": {"valid_mse": 0.1, "hole_mse_norm": 1.0},
}
TERMS = ("valid", "hole", "valid_mse", "hole_mse", "hole_mse_norm", "perceptual", "style_out", "style_comp", "tv",
         "power", "texture_out", "texture_comp")
VGG_TERMS = ("perceptual", "style_out", "style_comp")
TEXTURE_TERMS = ("texture_out", "texture_comp")


# ---------------------------------------------------------------------------- helpers
def valid_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Boolean valid mask broadcastable to ``like`` (N, C, H, W); accepts (N, H, W)."""
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    return mask > 0


def composite(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``I_comp = M ⊙ I_gt + (1 − M) ⊙ I_out``."""
    return torch.where(valid_mask(mask, pred), target, pred)


# ---------------------------------------------------------------------------- pixel terms
def _masked_mean(err: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return torch.where(keep, err, err.new_zeros(())).sum() / err.numel()


def loss_valid(pred, target, mask):
    """``(1/N) ||M ⊙ (I_out − I_gt)||_1``, N = number of elements (batch included)."""
    return _masked_mean((pred - target).abs(), valid_mask(mask, pred))


def loss_hole(pred, target, mask):
    """``(1/N) ||(1 − M) ⊙ (I_out − I_gt)||_1``."""
    return _masked_mean((pred - target).abs(), ~valid_mask(mask, pred))


def loss_valid_mse(pred, target, mask):
    """``(1/N) ||M ⊙ (I_out − I_gt)||_2^2``."""
    return _masked_mean((pred - target).square(), valid_mask(mask, pred))


def loss_hole_mse(pred, target, mask):
    """``(1/N) ||(1 − M) ⊙ (I_out − I_gt)||_2^2``."""
    return _masked_mean((pred - target).square(), ~valid_mask(mask, pred))


def loss_hole_mse_norm(pred, target, mask):
    """Per-sample hole-normalised MSE: ``(1/B) Σ_b ||(1 − M_b) ⊙ (I_out − I_gt)_b||² / |hole_b|``.

    Unlike :func:`loss_hole_mse` (normalised by all elements), every sample weighs the same
    whatever its hole area, so small point-source holes are not drowned by large ones; the
    minimiser is still the conditional mean in every hole pixel (the Wiener filter for a
    Gaussian sky). Samples without hole pixels contribute 0.
    """
    hole = ~valid_mask(mask, pred)
    err = torch.where(hole, (pred - target).square(), pred.new_zeros(())).flatten(1).sum(1)
    n_hole = hole.expand_as(pred).flatten(1).sum(1).clamp(min=1)
    return (err / n_hole).mean()


def loss_tv(comp, mask):
    """Total variation of the composite over P, the hole dilated by one pixel (3 × 3).

    ``Σ_{both (i,j),(i,j+1) ∈ P} |Δ_x I_comp| / N + Σ_{both (i,j),(i+1,j) ∈ P} |Δ_y I_comp| / N``.
    """
    hole = (~valid_mask(mask, comp)).to(comp.dtype)
    region = F.max_pool2d(hole, 3, stride=1, padding=1).expand_as(comp) > 0
    dx = (comp[..., :, 1:] - comp[..., :, :-1]).abs()
    dy = (comp[..., 1:, :] - comp[..., :-1, :]).abs()
    px = region[..., :, 1:] & region[..., :, :-1]
    py = region[..., 1:, :] & region[..., :-1, :]
    zero = comp.new_zeros(())
    return (torch.where(px, dx, zero).sum() + torch.where(py, dy, zero).sum()) / comp.numel()


# ---------------------------------------------------------------------------- feature terms
def gram_matrix(feat: torch.Tensor) -> torch.Tensor:
    """``G = ψᵀψ / (C H W)`` for ``ψ`` of shape (N, C, H, W); returns (N, C, C)."""
    n, c, h, w = feat.shape
    f = feat.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def loss_perceptual(feats_out, feats_comp, feats_gt):
    """``Σ_p mean|ψ_p(out) − ψ_p(gt)| + mean|ψ_p(comp) − ψ_p(gt)|`` (mean = 1/N_ψp, batch-averaged)."""
    total = 0.0
    for fo, fc, fg in zip(feats_out, feats_comp, feats_gt):
        total = total + (fo - fg).abs().mean() + (fc - fg).abs().mean()
    return total


def loss_style(feats, feats_gt):
    """``Σ_p (1/C_p²) ||G_p(x) − G_p(gt)||_1`` with ``G_p = ψᵀψ/(C_p H_p W_p)`` (batch-averaged)."""
    total = 0.0
    for f, fg in zip(feats, feats_gt):
        total = total + (gram_matrix(f) - gram_matrix(fg)).abs().mean()
    return total


# ---------------------------------------------------------------------------- power spectrum
def tukey_window(n: int, taper_fraction: float = 0.125, device=None, dtype=torch.float32) -> torch.Tensor:
    """1-D cosine taper: 1 in the middle, half-cosine ramps over ``taper_fraction·n`` at each end."""
    x = (torch.arange(n, device=device, dtype=torch.float64) + 0.5) / n
    t = taper_fraction
    w = torch.ones(n, dtype=torch.float64, device=device)
    left, right = x < t, x > 1 - t
    w[left] = 0.5 * (1 - torch.cos(math.pi * x[left] / t))
    w[right] = 0.5 * (1 - torch.cos(math.pi * (1 - x[right]) / t))
    return w.to(dtype)


def binned_power(maps: torch.Tensor, n_bins: int = 16, taper_fraction: float = 0.125) -> torch.Tensor:
    """Annulus-averaged ``|FFT(w · x)|²`` of (N, C, H, W) maps; returns (N, C, n_bins).

    Bins are linear in |k| (FFT index units) from 1 to ``min(H, W)/2``; the k = 0 mode is
    excluded; bins holding no mode (only on very small maps) are dropped.
    """
    h, w = maps.shape[-2:]
    win = tukey_window(h, taper_fraction, maps.device, maps.dtype)[:, None] * \
        tukey_window(w, taper_fraction, maps.device, maps.dtype)[None, :]
    power = torch.fft.rfft2(maps * win).abs().square()  # (N, C, H, W//2+1)
    ky = torch.fft.fftfreq(h, d=1.0 / h, device=maps.device)
    kx = torch.fft.rfftfreq(w, d=1.0 / w, device=maps.device)
    k = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    edges = torch.linspace(1.0, min(h, w) / 2, n_bins + 1, device=maps.device)
    idx = torch.bucketize(k, edges, right=True) - 1  # bin b: edges[b] <= k < edges[b+1]
    inside = (idx >= 0) & (idx < n_bins)
    onehot = F.one_hot(idx.clamp(0, n_bins - 1), n_bins).to(maps.dtype) * inside[..., None]
    counts = onehot.sum(dim=(0, 1))
    nonempty = counts > 0  # small maps have annuli without any mode: drop them
    return torch.einsum("nchw,hwb->ncb", power, onehot[..., nonempty]) / counts[nonempty]


def loss_power(comp, target, n_bins: int = 16, floor: float = 1e-3):
    """Mean over bins and samples of ``[ln(P_comp + ε) − ln(P_gt + ε)]²``, ``ε = floor · max_b P_gt``."""
    p_comp = binned_power(comp, n_bins)
    with torch.no_grad():
        p_gt = binned_power(target, n_bins)
        eps = floor * p_gt.amax(dim=-1, keepdim=True) + torch.finfo(p_gt.dtype).tiny
    return (torch.log(p_comp + eps) - torch.log(p_gt + eps)).square().mean()


# ---------------------------------------------------------------------------- feature extractors
def to_vgg_input(x_image: torch.Tensor) -> torch.Tensor:
    """Image-unit maps (N, C, H, W) -> ImageNet-normalised RGB (N·C, 3, H, W).

    ``v = 0.5 + x_image`` (with image units x_uK / 1000: ±500 μK -> [0, 1], not clamped),
    each map channel a grey image repeated to R, G, B, then ``(v − mean_c) / std_c``.
    """
    from .vgg import IMAGENET_MEAN, IMAGENET_STD

    n, c, h, w = x_image.shape
    grey = (x_image + 0.5).reshape(n * c, 1, h, w)
    mean = x_image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x_image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (grey - mean) / std


class RandomFilterBank(nn.Module):
    """Fixed, seeded, shallow multi-scale random features (Ustyuzhaninov et al. 2017).

    For each scale ``s`` in ``scales``: ``2×2`` average pooling ``log2 s`` times, then
    ``n_filters`` zero-mean unit-norm Gaussian random ``kernel × kernel`` filters and a ReLU.
    Filters are non-persistent buffers regenerated from ``seed`` (no file, no training).
    Input: image-unit maps (N, C, H, W), each channel treated separately.
    """

    def __init__(self, n_filters: int = 16, kernel: int = 5, scales=(1, 2, 4), seed: int = 0,
                 input_gain: float = IMAGE_RANGE_UK / TEXTURE_INPUT_SCALE_UK):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(len(scales), n_filters, 1, kernel, kernel, generator=g, dtype=torch.float64)
        w = w - w.mean(dim=(-1, -2), keepdim=True)
        w = w / w.flatten(2).norm(dim=-1)[:, :, None, None, None]
        self.register_buffer("filters", w.float(), persistent=False)
        self.scales, self.kernel, self.input_gain = tuple(scales), kernel, float(input_gain)

    def forward(self, x_image: torch.Tensor) -> list[torch.Tensor]:
        n, c, h, w = x_image.shape
        x = x_image.reshape(n * c, 1, h, w) * self.input_gain
        feats, level = [], 1
        for i, s in enumerate(self.scales):
            while level < s:
                x = F.avg_pool2d(x, 2)
                level *= 2
            feats.append(F.relu(F.conv2d(x, self.filters[i], padding=self.kernel // 2)))
        return feats


# ---------------------------------------------------------------------------- the module
class InpaintingLoss(nn.Module):
    """Weighted sum of loss terms; ``forward(pred_uk, target_uk, mask) -> (total, {term: value})``.

    Terms with weight 0 are not computed. The returned term values are detached and
    unweighted; ``total = Σ weight_t · term_t`` carries the gradient.
    """

    def __init__(self, weights: dict[str, float], *, vgg: nn.Module | None = None,
                 unit_uk: float = IMAGE_RANGE_UK, preset: str | None = None):
        super().__init__()
        unknown = set(weights) - set(TERMS)
        if unknown:
            raise InputError(f"loss weights: unknown term(s) {sorted(unknown)} (known: {', '.join(TERMS)})")
        self.weights = {k: float(v) for k, v in weights.items() if float(v) != 0.0}
        if any(t in self.weights for t in VGG_TERMS) and vgg is None:
            raise InputError("--vgg-weights: the perceptual/style terms need a VGG16 weights file")
        self.vgg = vgg if any(t in self.weights for t in VGG_TERMS) else None
        self.filter_bank = RandomFilterBank() if any(t in self.weights for t in TEXTURE_TERMS) else None
        if isinstance(unit_uk, (list, tuple)):
            self.unit_uk = [float(u) for u in unit_uk]
            if not self.unit_uk or not all(math.isfinite(u) and u > 0 for u in self.unit_uk):
                raise InputError(f"[loss] unit_uk: expected positive numbers, got {list(unit_uk)}")
            if self.vgg is not None or self.filter_bank is not None:
                raise InputError("[loss] unit_uk: per-channel units are for the pixel terms only "
                                 "(the VGG and texture terms assume one image unit)")
        else:
            self.unit_uk = float(unit_uk)
            if not (math.isfinite(self.unit_uk) and self.unit_uk > 0):
                raise InputError(f"[loss] unit_uk: must be a positive number, got {unit_uk}")
        self.preset = preset

    def config(self) -> dict:
        """JSON-able description (preset name, weights, units) for run and model configs."""
        unit = list(self.unit_uk) if isinstance(self.unit_uk, list) else self.unit_uk
        return {"preset": self.preset, "weights": dict(self.weights), "unit_uk": unit}

    def _unit(self, x: torch.Tensor):
        """The image unit: a float, or (1, C, 1, 1) per channel (C must match)."""
        if not isinstance(self.unit_uk, list):
            return self.unit_uk
        if x.shape[1] != len(self.unit_uk):
            raise InputError(f"[loss] unit_uk: {len(self.unit_uk)} per-channel units for {x.shape[1]}-channel maps")
        return x.new_tensor(self.unit_uk).view(1, -1, 1, 1)

    def forward(self, pred_uk: torch.Tensor, target_uk: torch.Tensor, mask: torch.Tensor):
        if pred_uk.shape != target_uk.shape or pred_uk.dim() != 4:
            raise InputError(f"loss: pred {tuple(pred_uk.shape)} and target {tuple(target_uk.shape)} "
                             "must both be (N, C, H, W)")
        mask = mask.unsqueeze(1) if mask.dim() == 3 else mask
        unit = self._unit(pred_uk)
        pred = pred_uk / unit
        target = target_uk / unit
        comp = composite(pred, target, mask)
        w = self.weights
        terms: dict[str, torch.Tensor] = {}
        pixel = {"valid": loss_valid, "hole": loss_hole, "valid_mse": loss_valid_mse, "hole_mse": loss_hole_mse,
                 "hole_mse_norm": loss_hole_mse_norm}
        for name, fn in pixel.items():
            if name in w:
                terms[name] = fn(pred, target, mask)
        if "tv" in w:
            terms["tv"] = loss_tv(comp, mask)
        if "power" in w:
            terms["power"] = loss_power(comp, target)
        for extractor, to_input, names in (
            (self.vgg, to_vgg_input, ("perceptual", "style_out", "style_comp")),
            (self.filter_bank, lambda t: t, (None, "texture_out", "texture_comp")),
        ):
            if extractor is None:
                continue
            n = pred.shape[0] * pred.shape[1]
            feats = extractor(to_input(torch.cat([pred, comp])))
            f_out = [f[:n] for f in feats]
            f_comp = [f[n:] for f in feats]
            with torch.no_grad():
                f_gt = extractor(to_input(target))
            perc, style_out, style_comp = names
            if perc is not None and perc in w:
                terms[perc] = loss_perceptual(f_out, f_comp, f_gt)
            if style_out in w:
                terms[style_out] = loss_style(f_out, f_gt)
            if style_comp in w:
                terms[style_comp] = loss_style(f_comp, f_gt)
        total = sum(w[name] * value for name, value in terms.items())
        return total, {name: value.detach() for name, value in terms.items()}


def build_loss(preset: str, *, vgg_weights=None, unit_uk: float = IMAGE_RANGE_UK,
               **weight_overrides) -> InpaintingLoss:
    """Build the loss of a named preset, with optional per-term weight overrides.

    Parameters
    ----------
    preset : str
        ``"paper"``, ``"pixel"``, ``"mse"`` or ``"texture"`` (see module docstring).
    vgg_weights : path or VGG16Features, optional
        Needed when a perceptual/style term has a non-zero weight (``paper``).
    unit_uk : float
        μK per image unit (default 1000: the VGG input span).
    **weight_overrides : float
        ``term=weight``; 0 removes a term, a term absent from the preset is added.

    Examples
    --------
    >>> loss = build_loss("pixel", hole=10.0)
    >>> total, terms = loss(pred_uk, target_uk, mask)  # doctest: +SKIP
    """
    if preset not in LOSS_PRESETS:
        raise InputError(f"--loss: unknown loss preset {preset!r} (known: {', '.join(LOSS_PRESETS)})")
    weights = dict(LOSS_PRESETS[preset])
    weights.update(weight_overrides)
    vgg = None
    if any(float(weights.get(t, 0.0)) != 0.0 for t in VGG_TERMS):
        if vgg_weights is None:
            from .vgg import WEIGHTS_HELP

            raise InputError(f"--vgg-weights: loss preset {preset!r} uses VGG16 features. {WEIGHTS_HELP}")
        if isinstance(vgg_weights, nn.Module):
            vgg = vgg_weights
        else:
            from .vgg import load_vgg16_weights

            vgg = load_vgg16_weights(vgg_weights)
    return InpaintingLoss(weights, vgg=vgg, unit_uk=unit_uk, preset=preset)
