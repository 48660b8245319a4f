"""Model directories: save/load round trip, inpainting contract (valid pixels bit-identical, shapes,
hole values ignored), every broken model directory is an InputError naming the path."""

import json
import shutil
import struct

import numpy as np
import pytest
import torch

import combine
import combine.models as models
from combine.errors import InputError
from combine.models import CONFIG_FILE, WEIGHTS_FILE, list_pretrained, load_model, save_model
from combine.nn import PConvUNet
from combine.validation import UNSEEN

SIZE = 128


def _untrained(preset="t128", seed=0):
    torch.manual_seed(seed)
    return PConvUNet(preset).eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models") / "toy"
    save_model(_untrained(), d, extra={"sky": {"size": SIZE, "pixel_arcmin": 1.7177}, "loss": {"preset": "l1"}})
    return d


@pytest.fixture(scope="module")
def model(model_dir):
    return load_model(model_dir)


def _maps_and_masks(n=2, size=SIZE, seed=1, dtype=np.float32):
    rng = np.random.default_rng(seed)
    maps = (rng.normal(0, 100, (n, size, size))).astype(dtype)
    masks = np.ones((n, size, size), np.float32)
    for i in range(n):
        y, x = rng.integers(10, size - 30, 2)
        masks[i, y:y + 12, x:x + 20] = 0
        masks[i, rng.integers(0, size, 30), rng.integers(0, size, 30)] = 0  # scattered single pixels
    return maps, masks


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------ save / load
def test_round_trip_identical_outputs(tmp_path, model_dir):
    unet = _untrained()
    d = save_model(unet, tmp_path / "m")
    loaded = load_model(d)
    assert loaded.patch_size == SIZE and loaded.in_channels == 1 and loaded.name == "m"
    for (k, a), (k2, b) in zip(unet.state_dict().items(), loaded.unet.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    x, m = _maps_and_masks(2)
    with torch.inference_mode():
        ref = unet(torch.from_numpy(np.where(m > 0, x, 0)[:, None]), torch.from_numpy(m[:, None])).numpy()
    np.testing.assert_array_equal(loaded.predict(x[:, None], m[:, None]), ref)
    # a second load (and the top-level entry point) gives the same network
    np.testing.assert_array_equal(combine.load_model(d).inpaint(x, m), loaded.inpaint(x, m))


def test_files_are_json_and_safetensors_no_pickle(model_dir):
    config = json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    assert config["format"] == models.MODEL_FORMAT
    assert config["architecture"] == _untrained().config()
    assert config["patch_size"] == SIZE and config["pixel_arcmin"] == 1.7177
    assert config["loss"] == {"preset": "l1"} and config["sky"]["size"] == SIZE
    raw = (model_dir / WEIGHTS_FILE).read_bytes()
    header_len = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + header_len])
    assert header["__metadata__"]["format"] == models.MODEL_FORMAT
    assert not raw.startswith(b"\x80") and b"PK\x03\x04" not in raw[:4]  # not a pickle, not a torch zip


def test_extra_cannot_override_core_keys_and_save_replaces(tmp_path):
    d = tmp_path / "m"
    save_model(_untrained(seed=1), d, extra={"architecture": {"preset": "bogus"}, "format": "x", "patch_size": 64})
    cfg = json.loads((d / CONFIG_FILE).read_text())
    assert cfg["architecture"]["preset"] == "t128" and cfg["format"] == models.MODEL_FORMAT
    assert cfg["patch_size"] == 64
    # saving again over an existing directory replaces it completely
    save_model(_untrained(seed=2), d)
    reloaded = load_model(d).unet.state_dict()
    fresh = _untrained(seed=2).state_dict()
    assert all(torch.equal(reloaded[k], fresh[k]) for k in fresh)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary or old directories


def test_other_preset_and_frozen_bn_round_trip(tmp_path):
    unet = _untrained("t128-fr", seed=3).freeze_encoder_bn(True)
    loaded = load_model(save_model(unet, tmp_path / "fr"))
    assert loaded.unet.preset == "t128-fr" and loaded.unet.stem_channels == 32
    assert loaded.unet.encoder_bn_frozen
    x, m = _maps_and_masks(1)
    with torch.inference_mode():
        ref = unet(torch.from_numpy(np.where(m > 0, x, 0)[:, None]), torch.from_numpy(m[:, None])).numpy()
    np.testing.assert_array_equal(loaded.predict(x[:, None], m[:, None]), ref)


# ------------------------------------------------------------------------ inpaint contract
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_valid_pixels_bit_identical(model, dtype):
    maps, masks = _maps_and_masks(3, dtype=dtype)
    maps[0, 0, 0], maps[0, 0, 1], maps[0, 0, 2] = -0.0, np.finfo(dtype).tiny / 4, 0.1  # -0, subnormal, 0.1
    masks[0, 0, :3] = 1
    out = model.inpaint(maps, masks)
    assert out.dtype == dtype and out.shape == maps.shape
    valid = masks > 0
    bits = np.uint32 if dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(out[valid].view(bits), maps[valid].view(bits))
    assert np.isfinite(out).all()
    assert not np.allclose(out[~valid], maps[~valid])  # holes are replaced
    # float64 input: valid pixels are not rounded through float32 (0.1 stays 0.1 exactly)
    assert out[0, 0, 2] == dtype(0.1)


def test_shapes_hw_nhw_n1hw(model):
    maps, masks = _maps_and_masks(2)
    ref = model.inpaint(maps, masks)
    out_hw = model.inpaint(maps[0], masks[0])
    assert out_hw.shape == (SIZE, SIZE)
    out_n1 = model.inpaint(maps[:, None], masks[:, None])
    assert out_n1.shape == (2, 1, SIZE, SIZE)
    out_n1_mask3 = model.inpaint(maps[:, None], masks)  # (N, H, W) mask broadcast over channels
    np.testing.assert_array_equal(out_n1[:, 0], ref)
    np.testing.assert_array_equal(out_n1_mask3, out_n1)
    # one image alone vs in a batch of two: same prediction (eval mode, per-image network)
    np.testing.assert_allclose(out_hw, ref[0], rtol=1e-5, atol=1e-3)
    # one (H, W) mask broadcast to N maps
    shared = model.inpaint(maps, masks[0])
    np.testing.assert_allclose(shared[0], ref[0], rtol=1e-5, atol=1e-3)
    assert np.array_equal(shared[1][masks[0] > 0], maps[1][masks[0] > 0])


def test_hole_values_do_not_change_the_output(model):
    maps, masks = _maps_and_masks(2)
    outs = []
    for fill in (0.0, np.nan, UNSEEN, 1e4, -273.15, np.inf):
        filled = np.where(masks > 0, maps, np.float32(fill))
        outs.append(model.inpaint(filled, masks))
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_images_other_than_the_patch_size(model):
    """Smaller and larger images go through the tiled path; valid pixels still bit-identical."""
    for shape in ((64, 64), (1, 200, 300)):
        rng = np.random.default_rng(2)
        maps = rng.normal(0, 100, shape).astype(np.float32)
        masks = np.ones(shape, np.float32)
        masks[..., 20:30, 40:52] = 0
        out = model.inpaint(maps, masks)
        assert out.shape == shape and np.isfinite(out).all()
        np.testing.assert_array_equal(out[masks > 0], maps[masks > 0])


@pytest.mark.parametrize("change, word", [
    (lambda x, m: (x, np.where(m > 0, 0.5, 0.0)), "not binary"),
    (lambda x, m: (x, np.zeros_like(m)), "no valid"),
    (lambda x, m: (np.where(m > 0, np.nan, x), m), "NaN"),
    (lambda x, m: (x, m[:, :64]), "does not match"),
])
def test_inpaint_bad_inputs(model, change, word):
    x, m = change(*_maps_and_masks(1))
    with pytest.raises(InputError, match=word):
        model.inpaint(x, m)


def test_predict_checks(model):
    x, m = _maps_and_masks(1)
    with pytest.raises(InputError, match="not a multiple"):
        model.predict(x[:, None, :96, :96], m[:, None, :96, :96])
    with pytest.raises(InputError, match="channel"):
        model.predict(np.repeat(x[:, None], 3, axis=1), m[:, None])
    with pytest.raises(InputError, match="batch_size"):
        model.inpaint(x, m, batch_size=0)


# ------------------------------------------------------------------------ broken model directories
def _expect(path_in_message, call):
    with pytest.raises(InputError) as info:
        call()
    assert str(path_in_message) in str(info.value)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("cut", ["half", "header", "empty", "garbage"])
def test_corrupt_or_truncated_weights(tmp_path, model_dir, cut):
    d = _copy(model_dir, tmp_path / "m")
    w = d / WEIGHTS_FILE
    raw = w.read_bytes()
    w.write_bytes({"half": raw[: len(raw) // 2], "header": raw[:6], "empty": b"", "garbage": b"\x00" * 64}[cut])
    msg = _expect(w, lambda: load_model(d))
    assert "corrupt or truncated" in msg


def test_nan_weights(tmp_path):
    unet = _untrained()
    with torch.no_grad():
        unet.encoder[0].conv.weight[0, 0, 0, 0] = float("nan")
    d = save_model(unet, tmp_path / "nan")
    assert "NaN" in _expect(d / WEIGHTS_FILE, lambda: load_model(d))


@pytest.mark.parametrize("missing", [CONFIG_FILE, WEIGHTS_FILE])
def test_missing_file(tmp_path, model_dir, missing):
    d = _copy(model_dir, tmp_path / "m")
    (d / missing).unlink()
    assert f"missing {missing}" in _expect(d, lambda: load_model(d))


@pytest.mark.parametrize("text, word", [
    ("{not json", "unreadable model config"),
    ("[1, 2]", "no 'architecture'"),
    ('{"format": "combine-model/1"}', "no 'architecture'"),
    ('{"architecture": {"preset": "t999"}}', "invalid architecture"),
    ('{"architecture": {"preset": "t128", "bogus": 1}}', "invalid architecture"),
    ('{"architecture": {"preset": "t128", "levels": "many"}}', "invalid architecture"),
    ('{"format": "other/9", "architecture": {"preset": "t128"}}', "unsupported model format"),
    ('{"architecture": {"preset": "t128"}, "patch_size": "big"}', "patch_size"),
    ('{"architecture": {"preset": "t128"}, "pixel_arcmin": -1}', "pixel_arcmin"),
])
def test_bad_config(tmp_path, model_dir, text, word):
    d = _copy(model_dir, tmp_path / "m")
    (d / CONFIG_FILE).write_text(text)
    assert word in _expect(d / CONFIG_FILE, lambda: load_model(d))


def test_binary_config(tmp_path, model_dir):
    d = _copy(model_dir, tmp_path / "m")
    (d / CONFIG_FILE).write_bytes(b"\xff\xfe\x00garbage")
    _expect(d / CONFIG_FILE, lambda: load_model(d))


@pytest.mark.parametrize("arch", [{"preset": "t128-fr"}, {"preset": "t128", "levels": 6},
                                  {"preset": "t128", "channels": [16, 64, 128]}, {"preset": "t128", "in_channels": 3}])
def test_architecture_mismatch(tmp_path, model_dir, arch):
    d = _copy(model_dir, tmp_path / "m")
    cfg = json.loads((d / CONFIG_FILE).read_text())
    cfg["architecture"] = arch
    (d / CONFIG_FILE).write_text(json.dumps(cfg))
    msg = _expect(d / WEIGHTS_FILE, lambda: load_model(d))
    assert "do not match the architecture" in msg


def test_unknown_name_and_not_a_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "PRETRAINED_DIR", tmp_path / "pretrained")
    msg = _expect("no-such-model", lambda: load_model("no-such-model"))
    assert str(tmp_path / "pretrained") in msg and "none installed" in msg
    f = tmp_path / "file.safetensors"
    f.write_bytes(b"x")
    _expect(f, lambda: load_model(f))
    _expect("a/b/c", lambda: load_model("a/b/c"))


def test_load_shipped_model_by_name(tmp_path, monkeypatch, model_dir):
    shipped = tmp_path / "pretrained"
    shipped.mkdir()
    _copy(model_dir, shipped / "toy-t128")
    (shipped / "incomplete").mkdir()  # no config.json: not listed
    (shipped / "README.txt").write_text("not a model")
    monkeypatch.setattr(models, "PRETRAINED_DIR", shipped)
    monkeypatch.chdir(tmp_path)  # no directory named toy-t128 here
    assert list_pretrained() == ["toy-t128"]
    m = combine.load_model("toy-t128")
    assert m.name == "toy-t128" and m.directory == shipped / "toy-t128"
    x, k = _maps_and_masks(1)
    np.testing.assert_array_equal(m.inpaint(x, k), load_model(model_dir).inpaint(x, k))
    msg = _expect("toy", lambda: load_model("toy"))
    assert "shipped: toy-t128" in msg
    # names never escape the pretrained directory
    _expect("../pretrained/toy-t128x", lambda: load_model("../pretrained/toy-t128x"))


def test_sky_from_model_dir_reads_back_the_recorded_sky(tmp_path):
    """Sky.from_model_dir returns the Sky whose to_json() was recorded (no CAMB call: the
    spectra are not touched), and the shipped model's legacy sky block reads as planck18 + 1 μK·arcmin."""
    from combine.sky import Sky

    sky = Sky.planck18(noise_uk_arcmin=2.5, beam_fwhm_arcmin=7.0).with_ns(0.7)
    save_model(PConvUNet("t128", levels=2, channels=[4, 4], stem_channels=0), tmp_path / "m",
               extra={"sky": sky.to_json()})
    back = Sky.from_model_dir(tmp_path / "m")
    assert back == sky and back.ns == 0.7 and back.noise_uk_arcmin == 2.5 and back.beam_fwhm_arcmin == 7.0
    shipped = Sky.from_model_dir(models.resolve_model_dir("planck18-t128"))
    assert shipped.noise_uk_arcmin == 1.0 and shipped.beam_fwhm_arcmin == 5.0 and shipped.ns == 0.9649
    (tmp_path / "m" / CONFIG_FILE).write_text(json.dumps({"architecture": {}}))
    with pytest.raises(InputError, match="no 'sky' table"):
        Sky.from_model_dir(tmp_path / "m")
    with pytest.raises(InputError, match="no such model config"):
        Sky.from_model_dir(tmp_path / "nothing")


def test_first_guess_model_directory_is_self_contained(tmp_path, monkeypatch):
    """A network with a local Wiener first guess saves the first guess's tensors and parameters;
    loading and predicting then needs no CAMB and no cache, predict(first_guess=...) uses the
    caller's first guess instead, and a missing tensor file is an InputError naming it."""
    import sys

    from combine.baselines.local_wiener import local_wiener_fill
    from combine.first_guess import TENSORS_FILE, FirstGuess

    torch.manual_seed(2)
    unet = PConvUNet("t128-lw", levels=3, channels=[4, 8, 8], kernels=[3, 3, 3], stem_channels=4).eval()
    with torch.no_grad():
        unet.decoder[0].conv.weight.normal_(0, 0.01)
    fg = FirstGuess.for_sky("lwiener", size=64, margin_px=5)
    save_model(unet, tmp_path / "lw", extra={"patch_size": 64}, first_guess=fg)
    cfg = json.loads((tmp_path / "lw" / CONFIG_FILE).read_text())
    assert cfg["first_guess"]["margin_px"] == 5 and cfg["first_guess"]["xi_table_shape"] == [64, 64]
    assert "prefill_coeffs" not in cfg["architecture"]
    maps, masks = _maps_and_masks(n=2, size=64, seed=3)
    ref_fg = local_wiener_fill(maps, masks, margin_px=5)[:, None].astype(np.float32)  # CAMB (cache) path
    monkeypatch.setitem(sys.modules, "camb", None)
    monkeypatch.setenv("COMBINE_CACHE_DIR", str(tmp_path / "no-cache"))
    loaded = load_model(tmp_path / "lw")
    assert loaded.first_guess.margin_px == 5
    np.testing.assert_array_equal(loaded.first_guess.xi_table_uk2, fg.xi_table_uk2)
    own = loaded.predict(maps[:, None], masks[:, None])
    given = loaded.predict(maps[:, None], masks[:, None], first_guess=ref_fg)
    np.testing.assert_allclose(own, given, atol=1e-3, rtol=0)
    other = loaded.predict(maps[:, None], masks[:, None], first_guess=np.zeros_like(ref_fg))
    assert np.abs(other - own)[np.broadcast_to(masks[:, None] < 0.5, own.shape)].max() > 1.0  # it is used
    with pytest.raises(InputError, match="first_guess has shape"):
        loaded.predict(maps[:, None], masks[:, None], first_guess=ref_fg[:1])
    with pytest.raises(InputError, match="takes no first guess"):
        load_model(_write_toy(tmp_path / "plain")).predict(maps[:, None], masks[:, None], first_guess=ref_fg)
    (tmp_path / "lw" / TENSORS_FILE).unlink()
    with pytest.raises(InputError, match=TENSORS_FILE):
        load_model(tmp_path / "lw")
    assert not (tmp_path / "no-cache").exists()


def _write_toy(path):
    save_model(PConvUNet("t128", levels=3, channels=[4, 8, 8], kernels=[3, 3, 3], stem_channels=0), path,
               extra={"patch_size": 64})
    return path
