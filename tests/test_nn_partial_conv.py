"""PartialConv2d against a plain reference written from the paper's equation (unfold)."""

import pytest
import torch
import torch.nn.functional as F

from combine.errors import InputError
from combine.nn import PartialConv2d


def reference_partial_conv(x, mask, weight, bias, stride, padding):
    """x' = W^T (X ⊙ M) sum(1)/sum(M) + b where sum(M) > 0 else 0;  m' = 1[sum(M) > 0].

    Straight from the equation: every window is unfolded with its mask (expanded to all
    input channels, zero padding = hole), sums run over window and channels.
    """
    n, c, h, w = x.shape
    out_ch, _, k, _ = weight.shape
    mask = mask.expand(n, c, h, w).to(torch.float64)
    x = torch.where(mask > 0, x.to(torch.float64), torch.zeros((), dtype=torch.float64))
    xu = F.unfold(x, k, padding=padding, stride=stride)  # (N, C k k, L)
    mu = F.unfold(mask, k, padding=padding, stride=stride)
    sum_1 = c * k * k
    sum_m = mu.sum(dim=1)  # (N, L)
    conv = torch.einsum("ok,nkl->nol", weight.reshape(out_ch, -1).to(torch.float64), xu * mu)
    y = conv * (sum_1 / sum_m.clamp_min(1e-30))[:, None, :]
    if bias is not None:
        y = y + bias.to(torch.float64)[None, :, None]
    y = torch.where((sum_m > 0)[:, None, :], y, torch.zeros((), dtype=torch.float64))
    ho = (h + 2 * padding - k) // stride + 1
    wo = (w + 2 * padding - k) // stride + 1
    return y.reshape(n, out_ch, ho, wo), (sum_m > 0).to(torch.float64).reshape(n, 1, ho, wo)


def random_mask(shape, seed, p_hole=0.5, block=True):
    g = torch.Generator().manual_seed(seed)
    m = (torch.rand(shape, generator=g) > p_hole).float()
    if block:  # plus a big hole wider than the kernel, so some windows are empty
        m[..., 2:11, 3:12] = 0
    return m


@pytest.mark.parametrize("kernel", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mask_channels", ["one", "multi"])
def test_matches_reference(kernel, stride, bias, mask_channels):
    torch.manual_seed(kernel * 10 + stride)
    c_in, c_out = 3, 4
    x = torch.randn(2, c_in, 16, 14)
    mc = 1 if mask_channels == "one" else c_in
    mask = random_mask((2, mc, 16, 14), seed=kernel + stride)
    conv = PartialConv2d(c_in, c_out, kernel, stride=stride, bias=bias, multi_channel_mask=(mc > 1))
    if bias:
        torch.nn.init.normal_(conv.bias)
    y, m2 = conv(x, mask)
    y_ref, m_ref = reference_partial_conv(x, mask, conv.weight.detach(), None if not bias else conv.bias.detach(),
                                          stride, (kernel - 1) // 2)
    assert y.shape == y_ref.shape and m2.shape == m_ref.shape
    assert torch.equal(m2.double(), m_ref)
    assert (m_ref == 0).any()  # the test covers empty windows
    torch.testing.assert_close(y.double(), y_ref, atol=1e-5, rtol=1e-5)


def test_grouped_masks_equal_full_width_mask():
    """forward_masked with per-source one-channel masks == one concatenated full-width mask."""
    torch.manual_seed(0)
    a, b = torch.randn(2, 5, 12, 12), torch.randn(2, 3, 12, 12)
    ma, mb = random_mask((2, 1, 12, 12), 1), random_mask((2, 1, 12, 12), 2, block=False)
    conv = PartialConv2d(8, 6, 3, multi_channel_mask=True)
    torch.nn.init.normal_(conv.bias)
    full_mask = torch.cat([ma.expand(-1, 5, -1, -1), mb.expand(-1, 3, -1, -1)], dim=1)
    x = torch.cat([a, b], dim=1)
    y_full, m_full = conv(x, full_mask)
    xm = torch.cat([torch.where(ma > 0, a, 0.0), torch.where(mb > 0, b, 0.0)], dim=1)
    y_grp, m_grp = conv.forward_masked(xm, [ma, mb], [5, 3])
    torch.testing.assert_close(y_grp, y_full, atol=1e-5, rtol=1e-5)
    assert torch.equal(m_grp, m_full)
    y_ref, _ = reference_partial_conv(x, full_mask, conv.weight.detach(), conv.bias.detach(), 1, 1)
    torch.testing.assert_close(y_grp.double(), y_ref, atol=1e-5, rtol=1e-5)


def test_always_valid_group_equals_all_ones_mask():
    torch.manual_seed(3)
    a, b = torch.randn(2, 4, 10, 10), torch.randn(2, 3, 10, 10)
    ma = random_mask((2, 1, 10, 10), 4)
    conv = PartialConv2d(7, 5, 3)
    torch.nn.init.normal_(conv.bias)
    xm = torch.cat([torch.where(ma > 0, a, 0.0), b], dim=1)
    y_none, m_none = conv.forward_masked(xm, [ma, None], [4, 3])
    y_ones, m_ones = conv.forward_masked(xm, [ma, torch.ones_like(ma)], [4, 3])
    torch.testing.assert_close(y_none, y_ones, atol=1e-6, rtol=1e-6)
    assert torch.equal(m_none, m_ones)


def test_all_ones_mask_is_plain_conv():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 10, 10)
    conv = PartialConv2d(3, 4, 3, padding=0)
    torch.nn.init.normal_(conv.bias)
    y, m = conv(x, torch.ones(2, 1, 10, 10))
    torch.testing.assert_close(y, F.conv2d(x, conv.weight, conv.bias), atol=1e-5, rtol=1e-5)
    assert torch.equal(m, torch.ones(2, 1, 8, 8))
    # "same" padding counts the padding as hole: interior == plain conv, border renormalised.
    conv_same = PartialConv2d(3, 4, 3)
    conv_same.load_state_dict(conv.state_dict())
    y_same, _ = conv_same(x, torch.ones(2, 1, 10, 10))
    plain = F.conv2d(x, conv.weight, None, padding=1)
    torch.testing.assert_close(y_same[..., 1:-1, 1:-1], plain[..., 1:-1, 1:-1] + conv.bias.view(1, -1, 1, 1),
                               atol=1e-5, rtol=1e-5)
    # a corner window sees 2x2 of 3x3 pixels: factor 9/4
    torch.testing.assert_close(y_same[..., 0, 0], plain[..., 0, 0] * 9 / 4 + conv.bias, atol=1e-5, rtol=1e-5)


def test_hole_values_do_not_matter_and_no_mask_gradient():
    torch.manual_seed(2)
    x = torch.randn(1, 2, 12, 12)
    mask = random_mask((1, 1, 12, 12), 3)
    conv = PartialConv2d(2, 3, 5)
    y, _ = conv(x, mask)
    for fill in (1e6, float("nan"), float("inf"), -float("inf")):
        x2 = torch.where(mask > 0, x, torch.tensor(fill))
        x2.requires_grad_(True)
        y2, _ = conv(x2, mask)
        assert torch.equal(y2, y)
        y2.sum().backward()
        assert torch.isfinite(x2.grad).all()
        assert (x2.grad[mask.expand_as(x2) == 0] == 0).all()
    mask_req = mask.clone().requires_grad_(True)
    _, m2 = conv(x, mask_req)
    assert not m2.requires_grad


def test_ones_kernel_is_a_non_persistent_buffer():
    conv = PartialConv2d(2, 3, 5)
    assert set(conv.state_dict()) == {"weight", "bias"}
    assert "ones_kernel" in dict(conv.named_buffers())
    assert not any(p is conv.ones_kernel for p in conv.parameters())


def test_no_valid_pixel_raises():
    conv = PartialConv2d(1, 2, 3)
    mask = torch.ones(2, 1, 8, 8)
    mask[1] = 0
    with pytest.raises(InputError, match="no valid"):
        conv(torch.randn(2, 1, 8, 8), mask)


def test_bad_mask_shapes_raise():
    conv = PartialConv2d(3, 2, 3)
    with pytest.raises(InputError, match="multi_channel_mask"):
        conv(torch.randn(1, 3, 8, 8), torch.ones(1, 3, 8, 8))
    with pytest.raises(InputError, match="does not match"):
        conv(torch.randn(1, 3, 8, 8), torch.ones(1, 1, 8, 7))
    with pytest.raises(InputError, match="binary"):
        conv(torch.randn(1, 3, 8, 8), torch.full((1, 1, 8, 8), 0.5))
    with pytest.raises(ValueError, match="odd"):
        PartialConv2d(1, 1, 4)
