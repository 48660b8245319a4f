"""Neural-network parts of CoMBInE: partial convolution, the PConv UNet, losses, VGG16.

``PRESETS`` are the UNet presets (``t128``, ``t128-fr``, ``t512``); loss presets are
``LOSS_PRESETS`` (``paper``, ``pixel``, ``mse``, ``texture``), built with :func:`build_loss`.
"""

from .losses import LOSS_PRESETS, InpaintingLoss, build_loss
from .partial_conv import PartialConv2d
from .unet import PRESETS, PConvUNet
from .vgg import VGG16Features, load_vgg16_weights

__all__ = ["PartialConv2d", "PConvUNet", "PRESETS", "build_loss", "LOSS_PRESETS", "InpaintingLoss",
           "VGG16Features", "load_vgg16_weights"]
