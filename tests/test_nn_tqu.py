"""The T, Q, U network preset (tqu128-lw), its joint local Wiener first guess and model directory.

Small sizes: 32² patches, 5-level networks with few channels.
"""

import sys

import numpy as np
import pytest
import torch

from combine.errors import InputError
from combine.first_guess import FirstGuess
from combine.masks import circle_mask
from combine.nn import PConvUNet
from combine.sky import Sky

SIZE = 32
SKY = Sky.planck18(noise_uk_arcmin=1.0)
SMALL = dict(levels=5, channels=[8, 16, 16, 16, 16], stem_channels=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tqu_maps():
    from combine.sky.polarisation import simulate_flat_tqu

    return simulate_flat_tqu(4, SIZE, sky=SKY, seed=7, min_size=2)


@pytest.fixture(scope="module")
def first_guess():
    return FirstGuess.for_sky("lwiener-tqu", SKY, size=SIZE)


def _masks():
    """Two maps sharing a mask with two translated discs of radius 3 (one factorisation), one other."""
    same = circle_mask(SIZE, 3, center=(8, 9)) * circle_mask(SIZE, 3, center=(23, 20))
    other = circle_mask(SIZE, 4.5, center=(15.5, 15.5)) * circle_mask(SIZE, 1.5, center=(4, 27))
    return np.stack([same, same, other, same]).astype(np.float32)


def _perturbed(net, seed=5):
    """The network with a random (non-zero) output layer, so that it does more than its first guess."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = net.decoder[0].conv.weight
        w.copy_(0.05 * torch.randn(w.shape, generator=g))
    return net


def test_preset_shape_units_and_untrained_output_is_the_first_guess():
    net = PConvUNet("tqu128-lw", **SMALL).eval()
    assert net.in_channels == 3 and net.prefill == "lwiener-tqu" and net.needs_first_guess
    assert net.input_scale_uk == [100.0, 5.0, 5.0]
    assert PConvUNet(**net.config()).config() == net.config()
    x = torch.randn(2, 3, SIZE, SIZE) * torch.tensor([100.0, 4.0, 4.0]).view(1, 3, 1, 1)
    m = torch.from_numpy(_masks()[:2, None])
    fg = torch.randn(2, 3, SIZE, SIZE) * 3
    with torch.no_grad():
        y = net(x, m, first_guess=fg)
    assert y.shape == (2, 3, SIZE, SIZE)
    # zero-initialised output layer: the prediction is the composite of data and first guess
    torch.testing.assert_close(y, torch.where(m > 0, x, fg), atol=2e-5, rtol=1e-5)
    with pytest.raises(InputError, match="in_channels 3"):
        PConvUNet("tqu128-lw", in_channels=1)
    with pytest.raises(InputError, match="3 finite values"):
        PConvUNet("tqu128-lw", input_scale_uk=[100.0, 5.0])


def test_per_channel_units_act_on_their_channel_only():
    """x_net = (x − offset_c) / scale_c per channel: scaling Q's data, first guess and unit by k
    scales Q's prediction by k and leaves T's and U's unchanged."""
    torch.manual_seed(2)
    net = _perturbed(PConvUNet("tqu128-lw", **SMALL)).eval()
    x = torch.randn(2, 3, SIZE, SIZE) * torch.tensor([100.0, 4.0, 4.0]).view(1, 3, 1, 1)
    m = torch.from_numpy(_masks()[:2, None])
    fg = torch.randn(2, 3, SIZE, SIZE) * 3
    with torch.no_grad():
        y = net(x, m, first_guess=fg)
        k = torch.tensor([1.0, 7.0, 1.0]).view(1, 3, 1, 1)
        net.input_scale_uk = [100.0, 35.0, 5.0]
        y7 = net(x * k, m, first_guess=fg * k)
    assert (y[:, 1] - fg[:, 1]).abs().max() > 0.1  # the network changes Q
    torch.testing.assert_close(y7, y * k, atol=1e-4, rtol=1e-4)


def test_forward_reads_no_tensor_value_on_the_host(monkeypatch):
    torch.manual_seed(3)
    net = _perturbed(PConvUNet("tqu128-lw", **SMALL)).train()
    x = torch.randn(2, 3, SIZE, SIZE) * 50
    m = torch.from_numpy(_masks()[:2, None])
    fg = torch.randn(2, 3, SIZE, SIZE)

    def sync(*_args, **_kw):
        raise AssertionError("host synchronisation in forward")

    for name in ("__bool__", "item", "tolist", "numpy", "__array__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, sync)
    y = net(x, m, first_guess=fg)
    y.square().mean().backward()
    monkeypatch.undo()
    assert y.shape == (2, 3, SIZE, SIZE) and bool(torch.isfinite(y).all())


def test_first_guess_equals_the_tqu_local_wiener_baseline():
    """The stored-table fill with weights shared between translated holes equals
    tqu_local_wiener_fill (its own covariance from the Sky, one factorisation per hole) to 1e-6 μK."""
    from combine.baselines.wiener_pol import tqu_local_wiener_fill
    from combine.sky.polarisation import simulate_flat_tqu

    size = 48
    maps = simulate_flat_tqu(3, size, sky=SKY, seed=8, min_size=2)
    # two translated r = 2 discs whose windows lie inside the patch: one geometry
    same = circle_mask(size, 2, center=(14, 14)) * circle_mask(size, 2, center=(33, 33))
    other = circle_mask(size, 4.5, center=(23.5, 23.5)) * circle_mask(size, 1.5, center=(4, 40))
    masks = np.stack([same, other, same]).astype(np.float32)
    fg = FirstGuess.for_sky("lwiener-tqu", SKY, size=size)
    ours = fg.fill(maps, masks[:, None])
    ref = tqu_local_wiener_fill(maps, masks, sky=SKY)
    hole = np.broadcast_to(masks[:, None] == 0, ours.shape)
    assert np.abs(ref[hole]).max() > 1.0
    np.testing.assert_allclose(ours, ref.astype(np.float32), atol=1e-6, rtol=0)
    assert np.array_equal(ours[~hole], maps[~hole])
    assert fg._tqu.misses == 3 and fg._tqu.hits == 1
    with pytest.raises(InputError, match="same mask"):
        fg.fill(maps[:1], np.stack([masks[0], masks[0], masks[1]])[None])
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        fg.fill(maps[:, :1], masks[:, None])


def test_model_directory_round_trip_without_camb(tqu_maps, first_guess, tmp_path, monkeypatch):
    """save_model + load_model of a T, Q, U model: with CAMB unimportable and an empty cache, the
    loaded model's first guess tables equal the saved ones and inpaint gives the in-memory
    network's prediction on that first guess; valid pixels bit-identical."""
    import combine
    from combine.models import InpaintingModel, save_model

    torch.manual_seed(4)
    net = _perturbed(PConvUNet("tqu128-lw", **SMALL)).eval()
    save_model(net, tmp_path / "m", extra={"sky": SKY.to_json(), "patch_size": SIZE}, first_guess=first_guess)
    masks = _masks()
    expected = InpaintingModel(net, {"patch_size": SIZE}, first_guess=first_guess).inpaint(tqu_maps, masks)
    monkeypatch.setitem(sys.modules, "camb", None)
    monkeypatch.setenv("COMBINE_CACHE_DIR", str(tmp_path / "empty"))
    loaded = combine.load_model(tmp_path / "m")
    assert loaded.in_channels == 3 and loaded.first_guess.kind == "lwiener-tqu"
    for k, table in first_guess.tqu_tables.items():
        assert np.array_equal(loaded.first_guess.tqu_tables[k], table)
    assert loaded.first_guess.noise_var_p_uk2 == pytest.approx(2 * loaded.first_guess.noise_var_uk2)
    out = loaded.inpaint(tqu_maps, masks)
    assert out.shape == tqu_maps.shape
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)
    hole = np.broadcast_to(masks[:, None] == 0, out.shape)
    assert np.array_equal(out[~hole], tqu_maps[~hole])
    assert np.abs(out - loaded.first_guess.fill(tqu_maps, masks[:, None]))[hole].max() > 1e-3
    assert not (tmp_path / "empty").exists()
