"""Baseline hole fills that CoMBInE is measured against.

Every entry of :data:`BASELINES` is ``fill(maps, masks, *, sky, seed=None, **options) -> maps``
with the model's conventions: ``maps`` (H, W), (N, H, W) or (N, C, H, W) in μK, masks 1 = valid /
0 = hole (broadcast over maps and channels), valid pixels of the output bit-identical to the
input, and unknown keyword arguments ignored. ``sky`` (:class:`combine.sky.Sky`) describes the
maps (the statistical fills use it; the others ignore it); ``seed`` seeds "gcr".

- ``wiener``: exact Wiener filter (conditional mean), :mod:`combine.baselines.wiener`
- ``gcr``: Gaussian constrained realisation (Wiener + residual draw)
- ``lwiener``: local Wiener filter (each hole from the valid pixels within 8 px), :mod:`combine.baselines.local_wiener`
- ``gmrf``: conditional mean of a sparse GMRF fitted to the sky's spectrum, :mod:`combine.baselines.gmrf`
- ``diffusive``: iterative neighbour averaging (Planck point sources)
- ``biharmonic``: scikit-image biharmonic inpainting
- ``telea`` / ``navier-stokes``: OpenCV fast marching / Navier–Stokes (``ns`` is the spectral
  index everywhere; the old method name ``ns`` is refused by :func:`get_baseline`)
- ``mean``: mean of the valid pixels
"""

from ..errors import InputError
from .classical import biharmonic_fill, diffusive_fill, mean_fill, navier_stokes_fill, telea_fill
from .gmrf import gmrf_fill
from .local_wiener import local_wiener_fill
from .covariance import correlation_table_uk2, pixel_covariance_uk2
from .wiener import WienerFilter, gcr_fill, get_filter, wiener_fill

BASELINES = {
    "wiener": wiener_fill,
    "gcr": gcr_fill,
    "lwiener": local_wiener_fill,
    "gmrf": gmrf_fill,
    "diffusive": diffusive_fill,
    "biharmonic": biharmonic_fill,
    "telea": telea_fill,
    "navier-stokes": navier_stokes_fill,
    "mean": mean_fill,
}

#: Method names that were renamed: old name -> new name.
RENAMED = {"ns": "navier-stokes"}


def check_method_name(name: str, source: str = "--method", known=None) -> str:
    """``name`` if it is a baseline (or in ``known``); InputError naming ``source`` otherwise,
    saying so when it is an old name (``ns`` is now ``navier-stokes``)."""
    known = tuple(BASELINES) if known is None else tuple(known)
    if name in known:
        return name
    if name in RENAMED:
        raise InputError(f"{source}: method {name!r} was renamed {RENAMED[name]!r} "
                         "(ns is the spectral index, --ns)")
    raise InputError(f"{source}: unknown method {name!r} (expected one of {', '.join(known)})")


def get_baseline(name: str, source: str = "--method"):
    """The fill function of baseline ``name`` (:func:`check_method_name` for unknown or renamed names)."""
    return BASELINES[check_method_name(name, source)]


__all__ = [
    "BASELINES",
    "RENAMED",
    "check_method_name",
    "get_baseline",
    "WienerFilter",
    "wiener_fill",
    "gcr_fill",
    "gmrf_fill",
    "local_wiener_fill",
    "get_filter",
    "diffusive_fill",
    "biharmonic_fill",
    "telea_fill",
    "navier_stokes_fill",
    "mean_fill",
    "pixel_covariance_uk2",
    "correlation_table_uk2",
]
