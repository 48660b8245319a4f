"""The default sky ("planck18") of docs/DESIGN.md: cosmology, beam, pixel size, patch size.

Every other module takes these as defaults and records them in the files it writes.
"""

import math

#: One arcminute in radians (the only definition in the package).
ARCMIN_RAD = math.pi / (180.0 * 60.0)

# Planck 2018 best fit (TT,TE,EE+lowE+lensing), the parameters docs/DESIGN.md fixes.
PLANCK18_COSMOLOGY = {
    "H0": 67.36,
    "ombh2": 0.02237,
    "omch2": 0.1200,
    "tau": 0.0544,
    "As": 2.1e-9,
    "ns": 0.9649,
}

#: The original CoMBInE's spectral-index classes.
NS_CLASSES = (0.5, 0.7, 0.9, 0.95, 1.0, 1.05, 1.1, 1.3, 1.5)

#: Gaussian beam full width at half maximum, arcmin.
BEAM_FWHM_ARCMIN = 5.0

#: Pixel side, arcmin: the HEALPix Nside 2048 resolution, sqrt(4π / (12·2048²)) rad.
PIXEL_ARCMIN = 1.7177

#: Patch side, pixels (128 × 1.7177' ≈ 3.66°).
PATCH_SIZE = 128

#: Smallest patch side accepted anywhere (the UNets need several stride-2 levels).
MIN_PATCH_SIZE = 64

#: White-noise level of evaluation sets, μK·arcmin (keeps the exact Wiener filter well
#: conditioned; training defaults to 0).
EVAL_NOISE_UK_ARCMIN = 1.0

#: Default HEALPix resolution for full-sky simulation.
NSIDE_DEFAULT = 2048
