"""PConvUNet: shapes, parameter counts, hole-value independence, masks, BN freezing, config."""

import json

import pytest
import torch

from combine.errors import InputError
from combine.nn import PRESETS, PConvUNet


pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Parameter counts (weights + biases + BN affine), stated in the report.
# t128-pf: t128-fr plus the prefilled map as one more 3×3 input of the last level (+9)
PARAM_COUNTS = {"t128": 2_038_474, "t128-fr": 2_039_603, "t128-pf": 2_039_612, "t128-bh": 2_039_612,
                "t128-gm": 2_039_612, "t128-lw": 2_039_612, "t512": 32_857_738,
                # three input and output channels: +2·49·32 (first level), +2·25·32 (stem), and the
                # last level 9·(32 + 3 + 33 + 3)·3 + 3 instead of 9·(32 + 1 + 33 + 1) + 1
                "tqu128-lw": 2_045_664}


def expected_param_count(kernels, channels, in_ch=1, stem=0, stem_kernel=5, dec_k=3, prefill=False):
    """Count from the architecture description (independent of the module code)."""
    n, prev = 0, in_ch
    for i, (k, c) in enumerate(zip(kernels, channels)):
        n += k * k * prev * c + c + (2 * c if i > 0 else 0)
        prev = c
    for i in range(len(channels) - 1, 0, -1):
        cin, cout = channels[i] + channels[i - 1], channels[i - 1]
        n += dec_k * dec_k * cin * cout + cout + 2 * cout
    n += dec_k * dec_k * (channels[0] + in_ch + (stem + 1 if stem else 0) + (in_ch if prefill else 0)) * in_ch + in_ch
    if stem:
        n += stem_kernel * stem_kernel * in_ch * stem + stem
    return n


def circle_mask(n, size, radius, centre=None):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    cy, cx = centre if centre else (size / 2, size / 2)
    m = (((yy - cy) ** 2 + (xx - cx) ** 2) > radius ** 2).float()
    return m.expand(n, 1, size, size).clone()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_parameter_counts(preset):
    net = PConvUNet(preset)
    cfg = PRESETS[preset]
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == PARAM_COUNTS[preset]
    assert n_params == expected_param_count(cfg["kernels"], cfg["channels"], in_ch=cfg.get("in_channels", 1),
                                            stem=cfg["stem_channels"], prefill=cfg.get("prefill", "none") != "none")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_forward_backward_every_preset(preset):
    """Smoke+property: smallest legal size, output shape, finite values and gradients."""
    torch.manual_seed(0)
    net = PConvUNet(preset)
    size = net.input_size_multiple * (2 if preset.startswith("t128") else 1)
    x = torch.randn(2, net.in_channels, size, size) * 100
    mask = circle_mask(2, size, size / 8)
    fg = torch.randn(2, net.in_channels, size, size) * 100 if net.needs_first_guess else None
    y = net(x, mask, first_guess=fg)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("preset", ["t128", "t128-fr"])
@pytest.mark.parametrize("train_mode", [True, False])
def test_output_independent_of_hole_values(preset, train_mode):
    torch.manual_seed(1)
    net = PConvUNet(preset).train(train_mode)
    x = torch.randn(2, 1, 128, 128) * 100
    mask = circle_mask(2, 128, 20)
    mask[1, 0, 5:9, 90:120] = 0
    with torch.no_grad():
        y = net(x, mask)
        for fill in (0.0, 1e6, -3e4, float("nan"), float("inf")):
            x2 = torch.where(mask > 0, x, torch.tensor(fill))
            torch.testing.assert_close(net(x2, mask), y, atol=1e-5, rtol=1e-5)
        x3 = torch.where(mask > 0, x, torch.randn_like(x) * 1e3)
        torch.testing.assert_close(net(x3, mask), y, atol=1e-5, rtol=1e-5)


def test_hole_smaller_than_receptive_field_is_closed():
    net = PConvUNet("t128")
    x = torch.zeros(1, 1, 128, 128)
    mask = circle_mask(1, 128, 6)  # 12 px hole
    masks = net.encoder_masks(x, mask)
    assert (masks[0] == 0).any()  # still open at 64x64
    assert all(bool((m == 1).all()) for m in masks[3:])  # closed by 16x16
    assert masks[-1].shape == (1, 1, 1, 1)


def test_mask_layouts_and_channels():
    torch.manual_seed(2)
    net = PConvUNet("t128", in_channels=3, levels=4).eval()
    assert net.input_size_multiple == 16
    x = torch.randn(2, 3, 32, 48) * 50
    m1 = circle_mask(2, 32, 5)
    m1 = torch.cat([m1, torch.ones(2, 1, 32, 16)], dim=-1)
    with torch.no_grad():
        y1 = net(x, m1)
        y2 = net(x, m1[:, 0])  # (N, H, W)
        y3 = net(x, m1.expand(-1, 3, -1, -1))  # one identical mask per channel
    assert y1.shape == x.shape
    torch.testing.assert_close(y2, y1)
    torch.testing.assert_close(y3, y1, atol=1e-4, rtol=1e-5)
    # a per-channel mask: channel 1 has its own hole, channel 1's hole values must not matter
    mc = m1.expand(-1, 3, -1, -1).clone()
    mc[:, 1, 20:30, 30:40] = 0
    with torch.no_grad():
        ya = net(x, mc)
        xb = x.clone()
        xb[:, 1, 20:30, 30:40] = float("nan")
        torch.testing.assert_close(net(xb, mc), ya, atol=1e-5, rtol=1e-5)


def test_input_normalisation_in_config():
    torch.manual_seed(3)
    net = PConvUNet("t128", levels=3, input_scale_uk=50.0, input_offset_uk=10.0).eval()
    x = torch.randn(1, 1, 16, 16) * 50 + 10
    m = circle_mask(1, 16, 3)
    net2 = PConvUNet("t128", levels=3).eval()  # scale 100, offset 0
    net2.load_state_dict(net.state_dict())
    with torch.no_grad():
        # (x - 10)/50 == ((x - 10) * 2)/100 ; outputs: y_net*50 + 10 vs y_net*100
        y1 = net(x, m)
        y2 = net2((x - 10) * 2, m)
    torch.testing.assert_close(y1, (y2 / 2) + 10, atol=1e-4, rtol=1e-5)


def test_bad_inputs_raise():
    net = PConvUNet("t128")
    with pytest.raises(InputError, match="divisible"):
        net(torch.zeros(1, 1, 100, 128), torch.ones(1, 1, 100, 128))
    # value checks (host synchronisations) are check_inputs', run at the boundary, not forward's
    with pytest.raises(InputError, match="no valid"):
        net.check_inputs(torch.zeros(2, 1, 128, 128), torch.cat([torch.ones(1, 1, 128, 128), torch.zeros(1, 1, 128, 128)]))
    with pytest.raises(InputError, match="binary"):
        net.check_inputs(torch.zeros(1, 1, 128, 128), torch.full((1, 1, 128, 128), 0.5))
    with pytest.raises(InputError, match="first_guess"):
        PConvUNet("t128-lw", levels=4)(torch.zeros(1, 1, 64, 64), torch.ones(1, 1, 64, 64))
    with pytest.raises(InputError, match="first_guess"):
        PConvUNet("t128", levels=4)(torch.zeros(1, 1, 64, 64), torch.ones(1, 1, 64, 64),
                                    first_guess=torch.zeros(1, 1, 64, 64))
    with pytest.raises(InputError, match="mask"):
        net(torch.zeros(1, 1, 128, 128), torch.ones(1, 2, 128, 128))
    with pytest.raises(InputError, match="preset"):
        PConvUNet("t64")


def test_freeze_encoder_bn_survives_train():
    torch.manual_seed(4)
    net = PConvUNet("t128", levels=4).freeze_encoder_bn()
    net.train()
    enc_bn = [lvl.bn for lvl in net.encoder if lvl.bn is not None]
    dec_bn = [lvl.bn for lvl in net.decoder if lvl.bn is not None]
    assert all(not bn.training for bn in enc_bn) and all(bn.training for bn in dec_bn)
    before_enc = [bn.running_mean.clone() for bn in enc_bn]
    before_dec = [bn.running_mean.clone() for bn in dec_bn]
    x = torch.randn(2, 1, 32, 32) * 100
    net(x, circle_mask(2, 32, 4)).mean().backward()
    assert all(torch.equal(a, bn.running_mean) for a, bn in zip(before_enc, enc_bn))
    assert any(not torch.equal(a, bn.running_mean) for a, bn in zip(before_dec, dec_bn))
    assert enc_bn[0].weight.grad is not None  # affine parameters still train
    net.freeze_encoder_bn(False).train()
    assert all(bn.training for bn in enc_bn)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_config_round_trip(preset):
    torch.manual_seed(5)
    if PRESETS[preset].get("prefill") == "lwiener-tqu":  # T, Q, U only: per-field units instead
        net = PConvUNet(preset, input_scale_uk=[80.0, 4.0, 3.0], input_offset_uk=[1.0, 0.0, -1.0]).eval()
    else:
        net = PConvUNet(preset, in_channels=2, input_scale_uk=80.0).eval()
    cfg = json.loads(json.dumps(net.config()))
    net2 = PConvUNet(**cfg).eval()
    assert net2.config() == cfg
    sd, sd2 = net.state_dict(), net2.state_dict()
    assert {k: v.shape for k, v in sd.items()} == {k: v.shape for k, v in sd2.items()}
    net2.load_state_dict(sd)
    size = net.input_size_multiple
    x = torch.randn(1, net.in_channels, size, size) * 100
    m = circle_mask(1, size, size / 10)
    fg = torch.randn(1, net.in_channels, size, size) * 100 if net.needs_first_guess else None
    with torch.no_grad():
        torch.testing.assert_close(net2(x, m, fg), net(x, m, fg))


def test_512_forward_batch1():
    """Smoke test (the acceptance asks that a 512² pass runs): t512 at 512², batch 1."""
    net = PConvUNet("t512").eval()
    x = torch.randn(1, 1, 512, 512) * 100
    with torch.no_grad():
        y = net(x, circle_mask(1, 512, 40))
    assert y.shape == (1, 1, 512, 512) and torch.isfinite(y).all()


def test_stem_output_slice_starts_at_zero():
    """The stem's slice of the output conv is zero at init: stem weights do not change the output."""
    torch.manual_seed(9)
    fr = PConvUNet("t128-fr", levels=4).eval()
    assert fr.decoder[0].conv.weight[:, 33:].abs().max().item() == 0.0
    x = torch.randn(1, 1, 32, 32) * 100
    m = circle_mask(1, 32, 4)
    with torch.no_grad():
        y = fr(x, m)
        fr.stem.weight.mul_(-3.0)
        torch.testing.assert_close(fr(x, m), y)


@pytest.mark.parametrize("preset", ["t128-fr", "t128-pf", "t128-lw"])
@pytest.mark.parametrize("train_mode", [True, False])
def test_forward_reads_no_tensor_value_on_the_host(preset, train_mode, monkeypatch):
    """forward is torch only, with no host synchronisation: with every tensor -> Python/numpy
    conversion (bool, item, tolist, numpy, __array__, int, float) made to raise, forward and
    backward still run, and give the same output as before."""
    torch.manual_seed(3)
    net = PConvUNet(preset, levels=4).train(train_mode)
    x = torch.randn(2, 1, 64, 64) * 100
    m = circle_mask(2, 64, 6)
    m[1, 0, 3:7, 40:60] = 0
    fg = torch.randn(2, 1, 64, 64) * 100 if net.needs_first_guess else None
    with torch.no_grad():
        ref = PConvUNet(preset, levels=4).train(train_mode)
        ref.load_state_dict(net.state_dict())
        expected = ref(x, m, first_guess=fg)

    def sync(*_args, **_kw):
        raise AssertionError("host synchronisation in forward")

    for name in ("__bool__", "item", "tolist", "numpy", "__array__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, sync)
    y = net(x, m, first_guess=fg)
    y.square().mean().backward()
    monkeypatch.undo()
    torch.testing.assert_close(y.detach(), expected, atol=1e-4, rtol=1e-5)
