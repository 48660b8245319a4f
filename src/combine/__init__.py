"""CoMBInE: Cosmic Microwave Background inpainting with partial-convolution UNets.

Maps are CMB temperature anisotropy in μK; masks are 1 = observed, 0 = hole
(see docs/DESIGN.md). The main entry points are the ``combine`` command line and
:func:`combine.load_model`.
"""

__version__ = "0.1.0"


def load_model(name_or_dir, device="cpu"):
    """Load a shipped model by name (e.g. ``"planck18-t128"``) or a model directory.

    Returns an :class:`combine.models.InpaintingModel` whose ``.inpaint(maps, masks)`` fills
    the holes of numpy maps in μK.
    """
    from .models import load_model as _load

    return _load(name_or_dir, device=device)


__all__ = ["__version__", "load_model"]
