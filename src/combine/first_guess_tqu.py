"""The joint T, Q, U local Wiener first guess of a network, from stored tables, with shared weights.

The fill is :func:`combine.baselines.wiener_pol.tqu_local_wiener_fill` (``method="local"``):
each hole :math:`h` (an 8-connected group of hole pixels, the same in T, Q and U) gets the exact
conditional mean given the T, Q and U values of the valid pixels :math:`o` within an L1 distance
``margin_px`` of it,

.. math::

    \\mu_h = C_{ho} \\, (C_{oo} + N_{oo})^{-1} \\, d_o ,

:math:`C` the spin-2 flat-sky T, Q, U covariance of
:class:`combine.baselines.covariance_pol.FlatTQUCovariance` (field-major, 3 values per pixel),
:math:`N` the white noise (:math:`\\sigma_T^2` on T, :math:`\\sigma_P^2` on Q, U) and the same
diagonal floor as the baseline (:func:`~combine.baselines.wiener_pol.cholesky_with_floor`).

What differs from the baseline is where the tables come from and how often the weights are
factorised:

* the covariance is built from the four correlation tables ξ^TT, ξ₊, ξ₋, ξ× by pixel offset
  (:class:`StoredTQUCovariance`), stored in the model directory, so no CAMB runs at inference;
* :math:`C_{oo}` and :math:`C_{ho}` depend only on the pixel *offsets* within the hole and its
  window (the covariance is stationary), so the weights
  :math:`W = (C_{oo} + N_{oo})^{-1} C_{oh}` (3m × 3k) are cached per *relative* geometry (the hole
  and window coordinates minus the hole's corner) and shared by every translated copy of the
  same hole: the same floating-point numbers as the baseline computes for each copy. A T, Q, U
  window costs ~27× the Cholesky flops of a T one (3× the unknowns); training on masks whose
  hole shapes repeat (discs of a few radii at integer centres, point-source discs) pays each
  factorisation once (``combine.training_data`` ``disc-set`` / ``point-set`` masks).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from .baselines.covariance_pol import CORRELATIONS, FlatTQUCovariance
from .errors import InputError

#: Bytes of cached weights kept (least recently used dropped first).
WEIGHTS_CACHE_BYTES = int(1.5e9)


class StoredTQUCovariance(FlatTQUCovariance):
    """:class:`FlatTQUCovariance` from stored tables (no Sky, no CAMB): ``tables[name][|dy|, |dx|]``
    for ``name`` in ξ^TT, ξ₊, ξ₋, ξ× (μK²), and the white-noise variances per pixel (μK²)."""

    def __init__(self, tables: dict, noise_var_t_uk2: float, noise_var_p_uk2: float):  # noqa: super() runs CAMB
        missing = [k for k in CORRELATIONS if k not in tables]
        if missing:
            raise InputError(f"first_guess: TQU correlation tables missing {', '.join(missing)}")
        self.tables = {k: np.asarray(tables[k], dtype=np.float64) for k in CORRELATIONS}
        shapes = {t.shape for t in self.tables.values()}
        shape = shapes.pop()
        if shapes or len(shape) != 2 or shape[0] != shape[1] or shape[0] < 1:
            raise InputError(f"first_guess: TQU correlation tables must be square and of one shape, got "
                             f"{[t.shape for t in self.tables.values()]}")
        if not all(np.isfinite(t).all() for t in self.tables.values()):
            raise InputError("first_guess: TQU correlation tables hold NaN or inf")
        self.sky = None
        self.max_offset_px = shape[0] - 1
        self.noise_var_t_uk2, self.noise_var_p_uk2 = float(noise_var_t_uk2), float(noise_var_p_uk2)


def tables_for_sky(sky, size: int) -> tuple[dict, float, float]:
    """(ξ tables (size, size) by offset, σ_T², σ_P²) of ``sky`` for patches of side up to ``size`` (CAMB)."""
    cov = FlatTQUCovariance(sky, int(size) - 1)
    return cov.tables, cov.noise_var_t_uk2, cov.noise_var_p_uk2


class TQULocalWiener:
    """The fill of the module docstring, with the weights cached per relative hole geometry.

    Parameters
    ----------
    cov : StoredTQUCovariance
    margin_px : int
        Window: valid pixels within this L1 distance of the hole.
    max_window_px : int
        Largest window (valid pixels) factorised; a larger one is an InputError (3 × that many
        unknowns in one dense Cholesky).
    """

    def __init__(self, cov: StoredTQUCovariance, margin_px: int, max_window_px: int,
                 cache_bytes: int = WEIGHTS_CACHE_BYTES):
        from .baselines.wiener_pol import _floors

        self.cov, self.margin_px, self.max_window_px = cov, int(margin_px), int(max_window_px)
        self.floors = _floors(cov)
        self.cache_bytes = int(cache_bytes)
        self._cache: "OrderedDict[bytes, np.ndarray]" = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    def __getstate__(self):  # DataLoader workers start with an empty cache of their own
        state = dict(self.__dict__)
        state["_cache"], state["_bytes"] = OrderedDict(), 0
        return state

    def weights(self, hole_yx: np.ndarray, win_yx: np.ndarray):
        """:math:`W = (C_{oo} + N_{oo})^{-1} C_{oh}`, torch float64 (3m, 3k), cached per relative geometry."""
        import torch

        from .baselines.wiener_pol import cholesky_with_floor

        corner = hole_yx.min(axis=0)
        key = hashlib.sha1(np.ascontiguousarray(hole_yx - corner).tobytes() + b"|"
                           + np.ascontiguousarray(win_yx - corner).tobytes()).digest()
        wts = self._cache.get(key)
        if wts is not None:
            self.hits += 1
            self._cache.move_to_end(key)
            return wts
        self.misses += 1
        chol = cholesky_with_floor(torch.from_numpy(self.cov.between(win_yx, win_yx, noise=True)),
                                   np.repeat(self.floors, len(win_yx)), "window covariance")
        wts = torch.cholesky_solve(torch.from_numpy(self.cov.between(win_yx, hole_yx)), chol)
        size = wts.numel() * wts.element_size()
        if size <= self.cache_bytes:
            self._cache[key] = wts
            self._bytes += size
            while self._bytes > self.cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._bytes -= old.numel() * old.element_size()
        return wts

    def fill(self, data: np.ndarray, holes: np.ndarray) -> np.ndarray:
        """Fill ``data`` (N, 3, H, W) float64 μK where ``holes`` (N, H, W) bool is True (all three
        fields); returns a new float64 array, valid pixels as given."""
        import torch

        from .baselines.classical import same_hole_groups
        from .baselines.local_wiener import hole_windows

        h, w = data.shape[-2:]
        if max(h, w) - 1 > self.cov.max_offset_px:
            raise InputError(f"first_guess: the stored T, Q, U tables cover offsets up to {self.cov.max_offset_px} px, "
                             f"the maps are {h}x{w} (tile them to the model's patch size)")
        out = np.array(data, dtype=np.float64, copy=True)
        for members in same_hole_groups(holes):
            block = data[members]
            for hole_yx, win_yx in hole_windows(holes[members[0]], self.margin_px):
                if len(win_yx) == 0:
                    raise InputError("mask: a hole has no valid pixel within margin_px of it; nothing to condition on")
                if len(win_yx) > self.max_window_px:
                    raise InputError(f"mask: a hole's window holds {len(win_yx)} valid pixels, more than the T, Q, U "
                                     f"first guess factorises ({self.max_window_px}); split the hole or fill it "
                                     "with --method lwiener")
                wts = self.weights(hole_yx, win_yx)
                d_o = torch.from_numpy(np.ascontiguousarray(
                    block[:, :, win_yx[:, 0], win_yx[:, 1]].reshape(len(members), -1)))
                vals = (d_o @ wts).numpy().reshape(len(members), 3, -1)
                for j, i in enumerate(members):
                    out[i][:, hole_yx[:, 0], hole_yx[:, 1]] = vals[j]
        return out


__all__ = ["StoredTQUCovariance", "TQULocalWiener", "tables_for_sky", "WEIGHTS_CACHE_BYTES"]
