"""Neural-network parts of CoMBInE: partial convolution, the PConv UNet, losses, VGG16.

``PRESETS`` are the UNet presets (``t128``, ``t128-fr``, ``t512``); loss presets are
``combine.nn.losses.LOSS_PRESETS``.
"""

from .partial_conv import PartialConv2d
from .unet import PRESETS, PConvUNet


def __getattr__(name):
    # Losses import lazily so that building a UNet does not need the VGG/loss code.
    if name in ("build_loss", "LOSS_PRESETS"):
        from . import losses

        return getattr(losses, name)
    raise AttributeError(f"module 'combine.nn' has no attribute {name!r}")


__all__ = ["PartialConv2d", "PConvUNet", "PRESETS", "build_loss", "LOSS_PRESETS"]
