"""Full-sky HEALPix maps filled on the sphere: holes and contexts, covariance at the true pixel
separations (T, or T, Q, U spin-2), local Wiener fill and constrained realisations, point-source masks."""

from .covariance import CorrelationTable, noise_variance_uk2
from .covariance_tqu import TQUCorrelationTable
from .holes import HoleGroups, find_holes, hole_geometry, hole_groups
from .wiener import DEFAULT_MARGIN_PX, SphereFill, fill_holes, gcr_fill_sphere, wiener_fill_sphere

__all__ = ["CorrelationTable", "TQUCorrelationTable", "noise_variance_uk2", "HoleGroups", "find_holes", "hole_geometry", "hole_groups",
           "DEFAULT_MARGIN_PX", "SphereFill", "fill_holes", "gcr_fill_sphere", "wiener_fill_sphere"]
