"""Baseline hole fills that CoMBInE is measured against.

Every entry of :data:`BASELINES` is ``fill(maps, masks, **kw) -> maps`` with the model's
conventions: ``maps`` (H, W), (N, H, W) or (N, C, H, W) in μK, masks 1 = valid / 0 = hole
(broadcast over maps and channels), valid pixels of the output bit-identical to the input, and
unknown keyword arguments ignored. The sky keywords are ``pixel_arcmin``, ``beam_fwhm_arcmin``,
``noise_uk_arcmin``, ``cl_uk2`` (and ``ns``) for "wiener"/"gcr", ``seed`` for "gcr".

- ``wiener``: exact Wiener filter (conditional mean), :mod:`combine.baselines.wiener`
- ``gcr``: Gaussian constrained realisation (Wiener + residual draw)
- ``lwiener``: local Wiener filter (each hole from the valid pixels within 8 px), :mod:`combine.baselines.local_wiener`
- ``gmrf``: conditional mean of a sparse GMRF fitted to the sky's spectrum, :mod:`combine.baselines.gmrf`
- ``diffusive``: iterative neighbour averaging (Planck point sources)
- ``biharmonic``: scikit-image biharmonic inpainting
- ``telea`` / ``ns``: OpenCV fast marching / Navier–Stokes
- ``mean``: mean of the valid pixels
"""

from .classical import biharmonic_fill, diffusive_fill, mean_fill, ns_fill, telea_fill
from .gmrf import gmrf_fill
from .local_wiener import local_wiener_fill
from .covariance import correlation_function_uk2, correlation_table_uk2, pixel_covariance_uk2
from .wiener import WienerFilter, gcr_fill, get_filter, wiener_fill

BASELINES = {
    "wiener": wiener_fill,
    "gcr": gcr_fill,
    "lwiener": local_wiener_fill,
    "gmrf": gmrf_fill,
    "diffusive": diffusive_fill,
    "biharmonic": biharmonic_fill,
    "telea": telea_fill,
    "ns": ns_fill,
    "mean": mean_fill,
}

__all__ = [
    "BASELINES",
    "WienerFilter",
    "wiener_fill",
    "gcr_fill",
    "gmrf_fill",
    "local_wiener_fill",
    "get_filter",
    "diffusive_fill",
    "biharmonic_fill",
    "telea_fill",
    "ns_fill",
    "mean_fill",
    "pixel_covariance_uk2",
    "correlation_table_uk2",
    "correlation_function_uk2",
]
