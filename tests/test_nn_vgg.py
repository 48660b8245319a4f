"""VGG16 loader: torchvision .pth and Keras .h5 files written here with random values."""

import h5py
import numpy as np
import pytest
import torch

from combine.errors import InputError
from combine.nn.vgg import VGG16_CONVS, VGG16Features, load_vgg16_weights

# the full torchvision VGG16 feature layout (13 convs); the loader needs only the first 7
FULL_VGG16_CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
                    (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512),
                    (26, 512, 512), (28, 512, 512)]


def torchvision_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i, cin, cout in FULL_VGG16_CONVS:
        state[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * 0.05
        state[f"features.{i}.bias"] = torch.randn(cout, generator=g) * 0.05
    state["classifier.0.weight"] = torch.randn(8, 4, generator=g)  # ignored
    return state


def write_keras_h5(path, state, skip=None):
    with h5py.File(path, "w") as f:
        names = []
        for i, (name, _, _) in VGG16_CONVS.items():
            if name == skip:
                continue
            grp = f.create_group(f"{name}/{name}")
            kernel = state[f"features.{i}.weight"].permute(2, 3, 1, 0).numpy()  # (kh, kw, in, out)
            grp.create_dataset("kernel:0", data=kernel)
            grp.create_dataset("bias:0", data=state[f"features.{i}.bias"].numpy())
            names.append(name.encode())
        f.attrs["layer_names"] = np.array(names)


def test_torchvision_pth_loads(tmp_path):
    state = torchvision_state()
    path = tmp_path / "vgg16-397923af.pth"
    torch.save(state, path)
    vgg = load_vgg16_weights(path)
    for i in VGG16_CONVS:
        assert torch.equal(vgg.features[i].weight, state[f"features.{i}.weight"])
        assert torch.equal(vgg.features[i].bias, state[f"features.{i}.bias"])
    assert not any(p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    feats = vgg(x)
    assert [tuple(f.shape) for f in feats] == [(2, 64, 8, 8), (2, 128, 4, 4), (2, 256, 2, 2)]
    feats[-1].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_keras_h5_loads_with_transposed_kernels(tmp_path):
    state = torchvision_state(seed=1)
    pth, h5 = tmp_path / "v.pth", tmp_path / "v.h5"
    torch.save(state, pth)
    write_keras_h5(h5, state)
    a, b = load_vgg16_weights(pth), load_vgg16_weights(h5)
    with h5py.File(h5, "r") as f:
        kernel = f["block2_conv1/block2_conv1/kernel:0"][()]
    # features.5.weight[o, i, y, x] == kernel[y, x, i, o]
    assert b.features[5].weight[7, 3, 0, 2].item() == pytest.approx(float(kernel[0, 2, 3, 7]))
    x = torch.randn(1, 3, 16, 16)
    for fa, fb in zip(a(x), b(x)):
        torch.testing.assert_close(fa, fb)


def test_missing_file_says_where_weights_come_from(tmp_path):
    with pytest.raises(InputError, match="download.pytorch.org/models/vgg16-397923af.pth"):
        load_vgg16_weights(tmp_path / "nope.pth")


def test_missing_and_misshaped_keys_rejected(tmp_path):
    state = torchvision_state()
    del state["features.12.bias"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(InputError, match=r"missing.pth: missing key features\.12\.bias"):
        load_vgg16_weights(tmp_path / "missing.pth")
    state = torchvision_state()
    state["features.7.weight"] = torch.zeros(128, 128, 5, 5)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(InputError, match=r"shape.pth: key features\.7\.weight has shape \(128, 128, 5, 5\)"):
        load_vgg16_weights(tmp_path / "shape.pth")
    write_keras_h5(tmp_path / "missing.h5", torchvision_state(), skip="block3_conv2")
    with pytest.raises(InputError, match="missing.h5: missing key block3_conv2/kernel"):
        load_vgg16_weights(tmp_path / "missing.h5")
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(InputError, match="junk.pth: cannot read"):
        load_vgg16_weights(tmp_path / "junk.pth")


def test_torchvision_key_layout():
    keys = set(VGG16Features().state_dict())
    assert keys == {f"features.{i}.{p}" for i in (0, 2, 5, 7, 10, 12, 14) for p in ("weight", "bias")}
