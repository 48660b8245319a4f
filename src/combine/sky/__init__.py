"""The CMB sky: theory spectra (CAMB), flat-sky and HEALPix simulation, patch projection."""

from .model import Sky, PRESETS as SKY_PRESETS  # noqa: F401
from .defaults import (  # noqa: F401
    BEAM_FWHM_ARCMIN,
    EVAL_NOISE_UK_ARCMIN,
    MIN_PATCH_SIZE,
    NS_CLASSES,
    NSIDE_DEFAULT,
    PATCH_SIZE,
    PIXEL_ARCMIN,
    PLANCK18_COSMOLOGY,
)
