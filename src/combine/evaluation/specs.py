"""Mask specifications and method names of an evaluation (``circle-rN``, ``random``, ``points``).

The masks of a specification are a deterministic function of the evaluation seed and the
specification's name (:func:`spec_seed`), not of the order in which specifications are given.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

ALL_METHODS = ("nn", "wiener", "gcr", "lwiener", "gmrf", "diffusive", "biharmonic", "telea", "navier-stokes", "mean")
DEFAULT_MASK_SPECS = ("circle-r4", "circle-r8", "circle-r16", "circle-r32", "random")
#: The original CoMBInE's sweep of centred holes, 5 … 65 px.
RADIUS_SWEEP_PX = (5, 15, 25, 35, 45, 55, 65)

_CIRCLE_RE = re.compile(r"^circle-r(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class MaskSpec:
    """A parsed mask specification: ``circle-rN`` (centred circle of radius N px), ``random``
    (random shapes, one per patch) or ``points`` (point-source holes, one set per patch)."""

    name: str
    kind: str
    radius_px: float | None = None

    @property
    def same_geometry(self) -> bool:
        """True when every patch shares one mask (Wiener factorises once)."""
        return self.kind == "circle"


def parse_mask_spec(spec: str, *, size: int | None = None, source: str = "--masks") -> MaskSpec:
    """Parse ``circle-rN`` / ``random`` / ``points``; raise InputError for anything else.

    A circle must leave valid pixels (radius below the patch half-diagonal minus 1 px; radii
    beyond the half side, like the original CoMBInE's 65 px on 128², keep the corners) and have a radius
    of at least 0.5 px (smaller ones, one-pixel holes, are taken to be mistakes).
    """
    spec = str(spec).strip()
    m = _CIRCLE_RE.match(spec)
    if m:
        radius = float(m.group(1))
        if radius < 0.5:
            raise InputError(f"{source}: mask spec {spec!r} is too small (radius must be at least 0.5 px)")
        if size is not None and radius >= size / math.sqrt(2) - 1:
            raise InputError(f"{source}: mask spec {spec!r} leaves no valid pixel in a {size}×{size} patch "
                             f"(radius must be < {size / math.sqrt(2) - 1:.0f} px)")
        radius_out = int(radius) if radius.is_integer() else radius
        return MaskSpec(spec, "circle", radius_out)
    if spec in ("random", "points"):
        return MaskSpec(spec, spec, None)
    raise InputError(f"{source}: unknown mask spec {spec!r} (expected circle-rN, random or points)")


def parse_methods(methods, *, source: str = "--methods", extra=()) -> tuple[str, ...]:
    """Validate method names against :data:`ALL_METHODS` (plus ``extra``); keep order, drop repeats.

    An old name (``ns``, now ``navier-stokes``) is refused with a message saying so.
    """
    from ..baselines import check_method_name

    out = []
    for name in methods:
        name = str(name).strip()
        if not name:
            continue
        check_method_name(name, source, known=ALL_METHODS + tuple(extra))
        if name not in out:
            out.append(name)
    if not out:
        raise InputError(f"{source}: no method given")
    return tuple(out)


def make_masks(spec: MaskSpec, n: int, size: int, seed: int) -> np.ndarray:
    """Masks (n, size, size) float32 for one specification (1 = valid, 0 = hole)."""
    from .. import masks as masks_mod

    if spec.kind == "circle":
        one = np.asarray(masks_mod.circle_mask(size, spec.radius_px), dtype=np.float32)
        return np.broadcast_to(one, (n, size, size)).copy()
    return np.asarray(masks_mod.generate_masks(spec.kind, n, size, seed=seed), dtype=np.float32)


def spec_seed(seed: int, spec: MaskSpec) -> int:
    """A seed per mask specification, stable across runs and independent of spec order."""
    key = sum((i + 1) * ord(c) for i, c in enumerate(spec.name))
    return int(np.random.SeedSequence([int(seed), key]).generate_state(1)[0])



__all__ = ["ALL_METHODS", "DEFAULT_MASK_SPECS", "RADIUS_SWEEP_PX", "MaskSpec", "parse_mask_spec",
           "parse_methods", "make_masks", "spec_seed"]
