"""The harmonic prefill: agrees with the numpy diffusive baseline, keeps valid pixels, and makes
an untrained ``t128-pf`` network fill holes exactly as diffusive inpainting does."""

import numpy as np
import pytest
import torch

from combine.baselines import diffusive_fill
from combine.masks import circle_mask, generate_masks
from combine.nn import PConvUNet
from combine.nn.prefill import harmonic_fill, pull_push
from combine.sky.flat import simulate_flat_patches


@pytest.fixture(scope="module")
def maps():
    return simulate_flat_patches(4, size=64, noise_uk_arcmin=1.0, seed=5)


def _rmse_hole(a, b, mask):
    hole = mask < 0.5
    return float(np.sqrt(np.mean((a[hole] - b[hole]) ** 2)))


@pytest.mark.parametrize("kind", ["circle", "points"])
def test_converged_fill_equals_diffusive_baseline(maps, kind):
    """Both solve Laplace's equation in the hole with the valid pixels as boundary; they
    differ only at the image edge (reflected here, one-sided there) and in convergence:
    agree to 0.5 μK RMS in the hole when the hole is away from the edge."""
    if kind == "circle":
        masks = np.repeat(circle_mask(64, 6)[None], len(maps), axis=0)
    else:
        masks = generate_masks("points", len(maps), 64, seed=2)
        masks[:, :4] = 1; masks[:, -4:] = 1; masks[:, :, :4] = 1; masks[:, :, -4:] = 1  # noqa: E702
    ours = harmonic_fill(torch.from_numpy(maps[:, None]), torch.from_numpy(masks[:, None]), sweeps=200).numpy()[:, 0]
    ref = diffusive_fill(maps, masks)
    assert _rmse_hole(ours, ref, masks) < 0.5
    assert np.array_equal(ours[masks > 0], maps[masks > 0])


def test_pull_push_fills_every_hole_with_local_averages():
    x = torch.zeros(1, 1, 8, 8)
    w = torch.zeros(1, 1, 8, 8)
    x[..., 0, 0], w[..., 0, 0] = 3.0, 1.0
    x[..., 7, 7], w[..., 7, 7] = -1.0, 1.0
    y = pull_push(x * w, w)
    assert torch.isfinite(y).all()
    assert y[0, 0, 0, 0] == 3.0 and y[0, 0, 7, 7] == -1.0
    # values stay within the range of the data (an average never overshoots)
    assert y.min() >= -1.0 - 1e-6 and y.max() <= 3.0 + 1e-6
    assert y[0, 0, 1, 1] > y[0, 0, 6, 6]  # nearer the +3 pixel, larger


def test_untrained_pf_network_is_the_harmonic_fill(maps):
    torch.manual_seed(0)
    net = PConvUNet("t128-pf", levels=5).eval()
    masks = np.repeat(circle_mask(64, 8)[None], len(maps), axis=0)
    x, m = torch.from_numpy(maps[:, None]), torch.from_numpy(masks[:, None])
    with torch.no_grad():
        y = net(x, m)
    ref = harmonic_fill(x / net.input_scale_uk, m, sweeps=net.prefill_sweeps) * net.input_scale_uk
    assert torch.allclose(y, ref, atol=1e-3)
    # and the correction trains: one step moves the output away from the prefill
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss = ((net(x, m) - x) ** 2 * (1 - m)).mean()
    loss.backward()
    opt.step()
    with torch.no_grad():
        assert not torch.allclose(net.eval()(x, m), y, atol=1e-3)


def test_pf_output_ignores_hole_values(maps):
    torch.manual_seed(1)
    net = PConvUNet("t128-pf", levels=5).eval()
    with torch.no_grad():  # give the correction non-zero weights
        net.decoder[0].conv.weight.normal_(0, 0.01)
    masks = generate_masks("random", len(maps), 64, seed=4)
    x, m = torch.from_numpy(maps[:, None]).clone(), torch.from_numpy(masks[:, None])
    with torch.no_grad():
        a = net(x, m)
        x[m == 0] = float("nan")
        b = net(x, m)
    assert torch.allclose(a, b, atol=1e-4)


def test_untrained_bh_network_is_the_biharmonic_fill(maps):
    """The biharmonic first guess is computed outside the network (FirstGuess, the scikit-image
    baseline); an untrained t128-bh returns it to float32 rounding."""
    from combine.baselines import biharmonic_fill
    from combine.first_guess import FirstGuess

    torch.manual_seed(0)
    net = PConvUNet("t128-bh", levels=5).eval()
    masks = np.repeat(circle_mask(64, 5)[None], len(maps), axis=0)
    x, m = torch.from_numpy(maps[:, None]), torch.from_numpy(masks[:, None])
    fg = FirstGuess("biharmonic").fill(maps[:, None], masks[:, None])
    np.testing.assert_array_equal(fg[:, 0], biharmonic_fill(maps, masks).astype(np.float32))
    with torch.no_grad():
        y = net(x, m, first_guess=torch.from_numpy(fg))
    assert torch.allclose(y, torch.from_numpy(fg), atol=1e-3)
