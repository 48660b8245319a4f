"""VGG16 features up to pool3, built by hand, with ImageNet weights from a local file.

torchvision does not import with the CPU torch build used here, so the 7 convolutions of
VGG16 blocks 1-3 are laid out exactly as ``torchvision.models.vgg16().features[:17]``
(indices 0, 2, 5, 7, 10, 12, 14 are the convolutions; keys ``features.0.weight`` ...), so a
torchvision state dict loads as is (keys of later layers and of the classifier are ignored).

Weights files (no download happens here):

* torchvision ``vgg16-397923af.pth`` from https://download.pytorch.org/models/vgg16-397923af.pth
  (fetch it on a machine with internet access and copy it over), read with
  ``torch.load(weights_only=True)``;
* the original CoMBInE's Keras-ported ``.h5`` (``pytorch_to_keras_vgg16.h5`` of PConv-Keras,
  linked from the original CoMBInE README): groups ``block1_conv1`` ... ``block3_conv3`` with
  datasets ``kernel:0`` of shape (kh, kw, in, out) and ``bias:0``. These weights were ported
  from PyTorch, so both formats expect the same input: RGB in [0, 1] normalised by the
  ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import InputError

#: torchvision index -> (Keras layer name, in channels, out channels) for blocks 1-3.
VGG16_CONVS = {
    0: ("block1_conv1", 3, 64),
    2: ("block1_conv2", 64, 64),
    5: ("block2_conv1", 64, 128),
    7: ("block2_conv2", 128, 128),
    10: ("block3_conv1", 128, 256),
    12: ("block3_conv2", 256, 256),
    14: ("block3_conv3", 256, 256),
}
POOL_INDICES = (4, 9, 16)  # pool1, pool2, pool3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

WEIGHTS_HELP = (
    "VGG16 ImageNet weights are needed: download the torchvision file "
    "https://download.pytorch.org/models/vgg16-397923af.pth on a machine with internet "
    "(or the original CoMBInE's Keras-ported pytorch_to_keras_vgg16.h5 linked from its README) "
    "and pass its path (--vgg-weights FILE)"
)


class VGG16Features(nn.Module):
    """Frozen VGG16 blocks 1-3; ``forward(x)`` returns ``[pool1, pool2, pool3]``.

    ``x`` is (N, 3, H, W), already ImageNet-normalised. Parameters never require grad and
    the module stays in eval mode (gradients still flow to ``x``).
    """

    def __init__(self):
        super().__init__()
        layers = []
        for i in range(17):
            if i in VGG16_CONVS:
                _, cin, cout = VGG16_CONVS[i]
                layers.append(nn.Conv2d(cin, cout, 3, padding=1))
            elif i in POOL_INDICES:
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*layers)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # always frozen
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in POOL_INDICES:
                out.append(x)
        return out


def _expected_shapes() -> dict[str, tuple]:
    shapes = {}
    for i, (_, cin, cout) in VGG16_CONVS.items():
        shapes[f"features.{i}.weight"] = (cout, cin, 3, 3)
        shapes[f"features.{i}.bias"] = (cout,)
    return shapes


def _read_torchvision(path: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise InputError(f"{path}: cannot read as a torchvision state dict ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    if not isinstance(state, dict):
        raise InputError(f"{path}: expected a state dict (mapping of names to tensors), got {type(state).__name__}")
    return state


def _read_keras_h5(path: str) -> dict[str, torch.Tensor]:
    import h5py

    found: dict[str, dict[str, object]] = {}
    try:
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                if not isinstance(obj, h5py.Dataset):
                    return
                parts = name.split("/")
                layer = next((p for p in reversed(parts[:-1]) if p.startswith("block")), None)
                leaf = parts[-1]
                if layer is None:
                    return
                kind = "kernel" if leaf.startswith("kernel") else "bias" if leaf.startswith("bias") else None
                if kind:
                    found.setdefault(layer, {})[kind] = obj[()]

            f.visititems(visit)
    except OSError as exc:
        raise InputError(f"{path}: cannot read as HDF5 ({exc})") from None
    state = {}
    for i, (keras_name, _, _) in VGG16_CONVS.items():
        layer = found.get(keras_name, {})
        for kind in ("kernel", "bias"):
            if kind not in layer:
                raise InputError(f"{path}: missing key {keras_name}/{kind} (Keras VGG16 layer for features.{i})")
        kernel = torch.from_numpy(layer["kernel"].copy())
        if kernel.dim() != 4:
            raise InputError(f"{path}: key {keras_name}/kernel has shape {tuple(kernel.shape)}, expected (kh, kw, in, out)")
        state[f"features.{i}.weight"] = kernel.permute(3, 2, 0, 1).contiguous()  # (kh,kw,in,out) -> (out,in,kh,kw)
        state[f"features.{i}.bias"] = torch.from_numpy(layer["bias"].copy())
    return state


def load_vgg16_weights(path) -> VGG16Features:
    """Build :class:`VGG16Features` with weights from a torchvision ``.pth`` or Keras ``.h5``.

    Raises :class:`InputError` naming the file (and the key) when the file is missing,
    unreadable, lacks a block 1-3 convolution or holds a tensor of the wrong shape.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: VGG16 weights file not found. {WEIGHTS_HELP}")
    with open(path, "rb") as fh:
        magic = fh.read(8)
    state = _read_keras_h5(path) if magic == b"\x89HDF\r\n\x1a\n" else _read_torchvision(path)
    selected = {}
    for key, shape in _expected_shapes().items():
        if key not in state:
            raise InputError(f"{path}: missing key {key} (expected a torchvision VGG16 state dict)")
        value = state[key]
        if not torch.is_tensor(value):
            raise InputError(f"{path}: key {key} is not a tensor")
        if tuple(value.shape) != shape:
            raise InputError(f"{path}: key {key} has shape {tuple(value.shape)}, expected {shape}")
        selected[key] = value.to(torch.float32)
    model = VGG16Features()
    model.load_state_dict(selected)
    return model
