"""Each loss term against a direct (numpy / loop) computation on small tensors."""

import math

import numpy as np
import pytest
import torch

from combine.errors import InputError
from combine.nn import build_loss
from combine.nn.losses import (
    LOSS_PRESETS,
    RandomFilterBank,
    binned_power,
    composite,
    gram_matrix,
    loss_hole,
    loss_hole_mse,
    loss_hole_mse_norm,
    loss_perceptual,
    loss_power,
    loss_style,
    loss_tv,
    loss_valid,
    loss_valid_mse,
    to_vgg_input,
)
from combine.nn.vgg import VGG16Features


@pytest.fixture
def small():
    g = torch.Generator().manual_seed(7)
    pred = torch.randn(2, 2, 6, 7, generator=g)
    target = torch.randn(2, 2, 6, 7, generator=g)
    mask = (torch.rand(2, 1, 6, 7, generator=g) > 0.4).float()
    mask[0, 0, 1:4, 2:5] = 0
    return pred, target, mask


def test_pixel_terms_direct(small):
    pred, target, mask = small
    p, t, m = pred.numpy(), target.numpy(), np.broadcast_to(mask.numpy(), pred.shape)
    n_elem = p.size  # N·C·H·W: batch mean of the per-image 1/(C·H·W)
    assert loss_valid(pred, target, mask).item() == pytest.approx(np.sum(m * np.abs(p - t)) / n_elem, rel=1e-6)
    assert loss_hole(pred, target, mask).item() == pytest.approx(np.sum((1 - m) * np.abs(p - t)) / n_elem, rel=1e-6)
    assert loss_valid_mse(pred, target, mask).item() == pytest.approx(np.sum(m * (p - t) ** 2) / n_elem, rel=1e-6)
    assert loss_hole_mse(pred, target, mask).item() == pytest.approx(np.sum((1 - m) * (p - t) ** 2) / n_elem, rel=1e-6)
    # (N, H, W) mask layout gives the same
    assert loss_hole(pred, target, mask[:, 0]).item() == pytest.approx(loss_hole(pred, target, mask).item())


def test_hole_mse_norm_direct(small):
    """Per-sample hole MSE, each sample divided by its own hole-element count, then averaged."""
    pred, target, mask = small
    p, t, m = (a.numpy().astype(np.float64) for a in (pred, target, mask))
    hole = np.broadcast_to(m < 0.5, p.shape)
    per_sample = [((p[b] - t[b]) ** 2)[hole[b]].sum() / hole[b].sum() for b in range(p.shape[0])]
    assert loss_hole_mse_norm(pred, target, mask).item() == pytest.approx(np.mean(per_sample), rel=1e-6)
    # a sample whose hole is twice as large weighs the same: scaling one sample's error scales
    # the loss by that sample's share only
    full = torch.ones_like(mask)
    assert loss_hole_mse_norm(pred, target, full).item() == 0.0


def test_valid_term_ignores_non_finite_hole_predictions(small):
    pred, target, mask = small
    bad = torch.where(mask > 0, pred, torch.tensor(float("nan")))
    assert loss_valid(bad, target, mask).item() == pytest.approx(loss_valid(pred, target, mask).item())


def test_tv_direct(small):
    pred, target, mask = small
    comp = composite(pred, target, mask)
    c = comp.numpy()
    hole = 1 - mask.numpy()[:, 0]
    n, ch, h, w = c.shape
    region = np.zeros_like(hole, dtype=bool)  # hole dilated by one pixel (3x3)
    for b in range(n):
        for i in range(h):
            for j in range(w):
                region[b, i, j] = hole[b, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].any()
    total = 0.0
    for b in range(n):
        for k in range(ch):
            for i in range(h):
                for j in range(w):
                    if j + 1 < w and region[b, i, j] and region[b, i, j + 1]:
                        total += abs(c[b, k, i, j + 1] - c[b, k, i, j])
                    if i + 1 < h and region[b, i, j] and region[b, i + 1, j]:
                        total += abs(c[b, k, i + 1, j] - c[b, k, i, j])
    assert loss_tv(comp, mask).item() == pytest.approx(total / c.size, rel=1e-5)
    # the valid region far from the hole does not count: changing it there changes nothing
    assert not region[1].all() or not region[0].all()


def test_composite(small):
    pred, target, mask = small
    comp = composite(pred, target, mask)
    m = mask.expand_as(pred) > 0
    assert torch.equal(comp[m], target[m]) and torch.equal(comp[~m], pred[~m])


def test_gram_style_perceptual_direct():
    g = torch.Generator().manual_seed(3)
    feats = [torch.randn(2, 4, 5, 3, generator=g), torch.randn(2, 6, 2, 2, generator=g)]
    feats_gt = [torch.randn_like(f) for f in feats]
    feats_c = [torch.randn_like(f) for f in feats]
    style, perc = 0.0, 0.0
    for f, fg, fc in zip(feats, feats_gt, feats_c):
        n, c, h, w = f.shape
        for b in range(n):
            a = f[b].reshape(c, -1).numpy().astype(np.float64)
            ag = fg[b].reshape(c, -1).numpy().astype(np.float64)
            style += np.abs(a @ a.T / (c * h * w) - ag @ ag.T / (c * h * w)).sum() / (c * c) / n
            torch.testing.assert_close(gram_matrix(f)[b].double(), torch.from_numpy(a @ a.T / (c * h * w)),
                                       atol=1e-6, rtol=1e-5)
        perc += np.abs((f - fg).numpy()).sum() / f.numel() + np.abs((fc - fg).numpy()).sum() / f.numel()
    assert loss_style(feats, feats_gt).item() == pytest.approx(style, rel=1e-5)
    assert loss_perceptual(feats, feats_c, feats_gt).item() == pytest.approx(perc, rel=1e-5)


def test_binned_power_direct():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 1, 16, 12, generator=g)
    n_bins = 3  # wide enough that no bin is empty on 16 x 12
    got = binned_power(x, n_bins=n_bins, taper_fraction=0.125)[0, 0].numpy()
    h, w = 16, 12

    def taper(n):
        t = (np.arange(n) + 0.5) / n
        return np.where(t < 0.125, 0.5 * (1 - np.cos(np.pi * t / 0.125)),
                        np.where(t > 0.875, 0.5 * (1 - np.cos(np.pi * (1 - t) / 0.125)), 1.0))

    f = np.fft.fft2(x[0, 0].numpy() * taper(h)[:, None] * taper(w)[None, :])
    edges = np.linspace(1, min(h, w) / 2, n_bins + 1)
    sums, counts = np.zeros(n_bins), np.zeros(n_bins)
    for i in range(h):
        for j in range(w // 2 + 1):  # rfft half plane, as the implementation averages
            ky = i if i <= h // 2 else i - h
            k = math.hypot(ky, j)
            for b in range(n_bins):
                if edges[b] <= k < edges[b + 1]:
                    sums[b] += abs(f[i, j]) ** 2
                    counts[b] += 1
    np.testing.assert_allclose(got, sums / counts, rtol=1e-4)


def test_power_term_values():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 1, 16, 16, generator=g)
    assert loss_power(x, x).item() == pytest.approx(0.0, abs=1e-10)
    # doubling the map multiplies every band power by 4: ln(4)^2 with no floor
    assert loss_power(2 * x, x, floor=0.0).item() == pytest.approx(math.log(4) ** 2, rel=1e-5)


def test_filter_bank_fixed_and_zero_mean():
    a, b = RandomFilterBank(), RandomFilterBank()
    assert torch.equal(a.filters, b.filters)
    assert not torch.equal(a.filters, RandomFilterBank(seed=1).filters)
    torch.testing.assert_close(a.filters.sum(dim=(-1, -2)), torch.zeros(3, 16, 1), atol=1e-6, rtol=0)
    assert a.state_dict() == {} or len(a.state_dict()) == 0
    feats = a(torch.randn(2, 1, 16, 16))
    assert [tuple(f.shape) for f in feats] == [(2, 16, 16, 16), (2, 16, 8, 8), (2, 16, 4, 4)]
    # a constant map gives zero features (zero-mean filters, away from the zero padding)
    const = a(torch.full((1, 1, 16, 16), 3.0))
    assert const[0][..., 2:-2, 2:-2].abs().max().item() < 1e-5


def test_vgg_input_mapping():
    x = torch.tensor([[[[-0.5, 0.0, 0.5]]]])  # image units: -500, 0, +500 μK
    v = to_vgg_input(x)
    assert v.shape == (1, 3, 1, 3)
    np.testing.assert_allclose(v[0, :, 0, 0].numpy(), -np.array([0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225],
                               rtol=1e-6)
    np.testing.assert_allclose(v[0, :, 0, 2].numpy(), (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225],
                               rtol=1e-6)


def test_pixel_preset_total_in_image_units(small):
    pred, target, mask = small
    pred_uk, target_uk = pred * 100, target * 100
    loss = build_loss("pixel")
    total, terms = loss(pred_uk, target_uk, mask)
    expected = (loss_valid(pred_uk, target_uk, mask) + 6 * loss_hole(pred_uk, target_uk, mask)) / 1000
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(terms) == {"valid", "hole"}
    mse_total, _ = build_loss("mse")(pred_uk, target_uk, mask)
    exp_mse = (loss_valid_mse(pred_uk, target_uk, mask) + 6 * loss_hole_mse(pred_uk, target_uk, mask)) / 1e6
    assert mse_total.item() == pytest.approx(exp_mse.item(), rel=1e-5)


def test_overrides_and_errors(small):
    pred, target, mask = small
    loss = build_loss("pixel", hole=10.0, valid=0, tv=0.5)
    total, terms = loss(pred, target, mask)
    assert set(terms) == {"hole", "tv"}
    assert total.item() == pytest.approx(10 * terms["hole"].item() + 0.5 * terms["tv"].item(), rel=1e-6)
    with pytest.raises(InputError, match="unknown term"):
        build_loss("pixel", holes=1.0)
    with pytest.raises(InputError, match="unknown loss preset"):
        build_loss("fancy")
    with pytest.raises(InputError, match="vgg16-397923af.pth"):
        build_loss("paper")


@pytest.mark.parametrize("preset", sorted(LOSS_PRESETS))
def test_every_preset_total_and_gradient(preset):
    torch.manual_seed(6)
    pred = (torch.randn(2, 1, 32, 32) * 100).requires_grad_(True)
    target = torch.randn(2, 1, 32, 32) * 100
    mask = torch.ones(2, 1, 32, 32)
    mask[:, :, 10:20, 12:22] = 0
    vgg = VGG16Features() if preset == "paper" else None  # random weights (no file needed here)
    loss = build_loss(preset, vgg_weights=vgg)
    total, terms = loss(pred, target, mask)
    assert set(terms) == set(LOSS_PRESETS[preset])
    weighted = sum(LOSS_PRESETS[preset][k] * v.item() for k, v in terms.items())
    assert total.item() == pytest.approx(weighted, rel=1e-5)
    total.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # a perfect prediction zeroes every term but tv (the truth's own variation)
    _, terms0 = loss(target.clone(), target, mask)
    assert all(abs(v.item()) < 1e-6 for k, v in terms0.items() if k != "tv")
    assert loss.config()["weights"] == {k: float(v) for k, v in LOSS_PRESETS[preset].items()}


def test_paper_preset_from_file_and_terms(tmp_path):
    vgg = VGG16Features()
    torch.save(vgg.state_dict(), tmp_path / "vgg.pth")
    loss = build_loss("paper", vgg_weights=tmp_path / "vgg.pth")
    g = torch.Generator().manual_seed(8)
    pred, target = torch.randn(1, 1, 16, 16, generator=g) * 100, torch.randn(1, 1, 16, 16, generator=g) * 100
    mask = torch.ones(1, 1, 16, 16)
    mask[..., 4:9, 4:9] = 0
    _, terms = loss(pred, target, mask)
    # the perceptual/style terms equal the functions applied to VGG features of the mapped maps
    u = 1000.0
    comp = composite(pred / u, target / u, mask)
    fo, fc, fg = vgg(to_vgg_input(pred / u)), vgg(to_vgg_input(comp)), vgg(to_vgg_input(target / u))
    assert terms["perceptual"].item() == pytest.approx(loss_perceptual(fo, fc, fg).item(), rel=1e-4)
    assert terms["style_out"].item() == pytest.approx(loss_style(fo, fg).item(), rel=1e-4)
    assert terms["style_comp"].item() == pytest.approx(loss_style(fc, fg).item(), rel=1e-4)
    assert terms["tv"].item() == pytest.approx(loss_tv(comp, mask).item(), rel=1e-5)
