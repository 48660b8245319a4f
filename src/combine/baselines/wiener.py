"""Exact Wiener filter and Gaussian constrained realisations (GCR) for flat patches.

For a zero-mean Gaussian patch with pixel covariance :math:`C` (signal + white noise, see
:mod:`combine.baselines.covariance`) and precision :math:`Q = C^{-1}`, the hole pixels
:math:`h` given the valid pixels :math:`v` are Gaussian with

.. math::

    \\mu_h = C_{hv} C_{vv}^{-1} d_v = -Q_{hh}^{-1} Q_{hv} d_v, \\qquad
    \\Sigma_h = C_{hh} - C_{hv} C_{vv}^{-1} C_{vh} = Q_{hh}^{-1}

(Schur complement). :math:`\\mu_h` is the Wiener filter (the minimum-variance fill) and
:math:`\\mathrm{tr}\\,\\Sigma_h / n_h` its expected mean squared error in the hole; a GCR is
:math:`\\mu_h + x` with :math:`x \\sim N(0, \\Sigma_h)`: it has the truth's statistics and twice the
Wiener filter's mean squared error.

Cost. :math:`Q` of the whole patch is computed once per sky configuration (Cholesky +
``cholesky_inverse`` in torch, float64; 128² → a 16384² matrix, 2.1 GB: 109 s on 2 free cores
in the measurement quoted in :mod:`combine.commands.demo`)
and kept in memory (one 128² matrix at a time) and on disk under ``$COMBINE_CACHE_DIR/wiener/``
(patches of 64² and more; ``COMBINE_WIENER_DISK_CACHE=0`` disables it). Each mask geometry then needs one :math:`n_h \\times n_h` Cholesky
:math:`Q_{hh} = L L^T`, cached by the mask's bytes; each patch needs one
:math:`n_h \\times n` product and two triangular solves.

The "truth" in the hole is the map *including* its white noise (what a simulated test set
holds): :math:`C` has the noise on its whole diagonal, so :math:`\\Sigma_h` and
:meth:`WienerFilter.expected_mse` include the noise variance of the hole pixels, and a GCR draws it.
With zero (or tiny) noise the covariance is numerically singular; a floor
:math:`\\sigma^2_{reg} = 10^{-8}\\,\\xi(0)` (≈ 0.01 μK rms for planck18) is added to the diagonal.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict

import numpy as np
import torch

from ..atomic import atomic_path
from ..errors import InputError
from ..sky.model import Sky, sky_from_keywords
from ..validation import check_maps_and_masks
from .covariance import correlation_table_uk2, covariance_from_table, patch_shape

#: Diagonal floor relative to the signal variance ξ(0) (regularises noiseless covariances).
REGULARISATION_REL = 1e-8

#: Bytes of precision matrices kept in memory across WienerFilter instances (one 128² matrix).
PRECISION_CACHE_BYTES = int(2.5e9)

#: Default bytes of hole-geometry factorisations kept per filter.
GEOMETRY_CACHE_BYTES = int(1e9)

#: Precision matrices of patches with at least this many pixels (64²) are cached on disk under
#: ``$COMBINE_CACHE_DIR/wiener/`` as float64 .npy (2.1 GB at 128², computed in minutes, read back
#: in seconds). Set ``COMBINE_WIENER_DISK_CACHE=0`` to disable.
DISK_CACHE_MIN_PIXELS = 64 * 64
_DISK_CACHE_VERSION = 1

#: Rows of Q gathered at once when forming Q_hv d_v (bounds the temporary to ~64 MB at 128²).
_ROW_CHUNK = 512

_PRECISION_CACHE: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()


def _cl_key(cl: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(cl, dtype=np.float64).tobytes()).hexdigest()[:24]


def _config_key(shape: tuple, sky: Sky) -> tuple:
    """What the precision matrix depends on: patch shape, pixel, beam, noise variance, TT bytes
    (the disk cache's key: unchanged since before ``Sky``, so existing cache entries stay valid)."""
    return (tuple(shape), sky.pixel_arcmin, sky.beam_fwhm_arcmin, sky.noise_var_pix_uk2, _cl_key(sky.cl_tt))


def precision_matrix(table_uk2: np.ndarray, noise_var_uk2: float) -> torch.Tensor:
    """:math:`Q = C^{-1}` (float64 torch tensor) of the stationary covariance built from ``table_uk2``.

    ``C`` is built once in numpy, factorised in place (``torch.linalg.cholesky(out=...)``) and
    inverted with ``torch.cholesky_inverse``: at most two n × n float64 arrays are alive.
    If the factorisation fails the diagonal floor is raised tenfold and the matrix rebuilt.
    """
    floor = REGULARISATION_REL * float(table_uk2[0, 0])
    diag = max(noise_var_uk2, floor)
    for _ in range(6):
        cov = torch.from_numpy(covariance_from_table(table_uk2, diag))
        _, info = torch.linalg.cholesky_ex(cov, out=(cov, torch.empty((), dtype=torch.int32)))
        if int(info) == 0:
            q = torch.cholesky_inverse(cov)
            del cov
            return q
        del cov
        diag = max(diag * 10.0, floor)
    raise InputError("cl_uk2: pixel covariance is not positive definite (even with a diagonal floor)")


def _disk_cache_path(key: tuple):
    """``$COMBINE_CACHE_DIR/wiener/<sha256>.npy`` for a configuration key, or None if disabled."""
    if os.environ.get("COMBINE_WIENER_DISK_CACHE", "1") in ("0", "", "false", "no"):
        return None
    from ..sky.spectra import cache_dir

    text = json.dumps({"key": [list(key[0])] + list(key[1:]), "floor": REGULARISATION_REL,
                       "version": _DISK_CACHE_VERSION})
    return cache_dir() / "wiener" / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.npy"


def _load_or_compute_precision(key: tuple, table_uk2: np.ndarray, noise_var_uk2: float) -> torch.Tensor:
    """Precision matrix from the disk cache (patches of >= DISK_CACHE_MIN_PIXELS) or computed (and stored)."""
    n = table_uk2.size
    path = _disk_cache_path(key) if n >= DISK_CACHE_MIN_PIXELS else None
    if path is not None and path.exists():
        try:
            arr = np.load(path, allow_pickle=False)
            if arr.shape == (n, n) and arr.dtype == np.float64:
                return torch.from_numpy(arr)
        except (OSError, ValueError):
            pass  # unreadable entry: recompute and overwrite
    q = precision_matrix(table_uk2, noise_var_uk2)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, q.numpy(), allow_pickle=False)
        except (OSError, InputError):
            pass  # an unwritable cache only costs time
    return q


class _Geometry:
    """Per-mask factorisation: hole indices and Cholesky factor of :math:`Q_{hh}`."""

    def __init__(self, hole_idx: np.ndarray, chol_hh: torch.Tensor):
        self.hole_idx = hole_idx
        self.chol_hh = chol_hh
        self.expected_mse = None  # filled lazily
        self.nbytes = chol_hh.numel() * 8 + hole_idx.nbytes


class WienerFilter:
    """Exact Wiener filter / constrained realisations for patches of one sky configuration.

    Parameters
    ----------
    size : int or (H, W)
        Patch shape in pixels (128 for the default sky; small sizes for tests).
    sky : Sky, optional
        The maps' sky: TT spectrum, beam, pixel side and white noise (default
        ``Sky.planck18()``, no noise). Callers of the first API may give the loose keywords
        ``cl_uk2``, ``ns``, ``pixel_arcmin``, ``beam_fwhm_arcmin``, ``noise_uk_arcmin`` instead.
    geometry_cache_bytes : int
        Memory budget of the per-geometry factorisations (least recently used are dropped).

    Examples
    --------
    >>> wf = WienerFilter(32, sky=Sky.planck18(noise_uk_arcmin=1.0))   # doctest: +SKIP
    >>> filled = wf.fill(maps, masks)                                   # doctest: +SKIP
    >>> wf.expected_mse(masks[0])                                       # doctest: +SKIP
    """

    def __init__(self, size, *, sky: Sky | None = None, geometry_cache_bytes: int = GEOMETRY_CACHE_BYTES,
                 **legacy_sky):
        self.shape = patch_shape(size)
        self.sky = sky_from_keywords(sky, **legacy_sky)
        if self.sky.noise_var_uk2 is not None:
            raise InputError("sky: the flat-patch Wiener filter takes white noise only, not a noise map")
        self.pixel_arcmin = self.sky.pixel_arcmin
        self.beam_fwhm_arcmin = self.sky.beam_fwhm_arcmin
        self.noise_uk_arcmin = self.sky.noise_uk_arcmin
        self.cl_uk2 = self.sky.cl_tt
        self.noise_var_uk2 = self.sky.noise_var_pix_uk2
        self.geometry_cache_bytes = int(geometry_cache_bytes)
        self._geometries: "OrderedDict[str, _Geometry]" = OrderedDict()
        self._q = None
        self._key = _config_key(self.shape, self.sky)

    # -- precision matrix (shared across instances) -------------------------------------------
    @property
    def precision(self) -> torch.Tensor:
        """:math:`Q = C^{-1}` of the whole patch, float64 (n × n, n = H·W), computed on first use.

        Held in a module-level cache shared by every filter of the same configuration and bounded
        by :data:`PRECISION_CACHE_BYTES` (one 128² matrix): filters do not keep their own
        reference, so an evicted matrix is freed (and recomputed if that filter is used again).
        """
        if self._q is not None:  # only for a matrix larger than the whole cache budget
            return self._q
        q = _PRECISION_CACHE.get(self._key)
        if q is not None:
            _PRECISION_CACHE.move_to_end(self._key)
            return q
        table = correlation_table_uk2(self.shape, self.sky)
        nbytes = (table.size ** 2) * 8
        # free room first so that at most ~2 big matrices are alive while computing
        while _PRECISION_CACHE and _cache_bytes() + nbytes > PRECISION_CACHE_BYTES:
            _PRECISION_CACHE.popitem(last=False)
        q = _load_or_compute_precision(self._key, table, self.noise_var_uk2)
        if nbytes <= PRECISION_CACHE_BYTES:
            _PRECISION_CACHE[self._key] = q
        else:
            self._q = q
        return q

    @property
    def precision_source(self) -> str:
        """Where :attr:`precision` comes from now: ``"memory"``, ``"disk"`` (the cache under
        ``$COMBINE_CACHE_DIR/wiener/``) or ``"compute"`` (Cholesky + inverse: minutes at 128²)."""
        if self._q is not None or self._key in _PRECISION_CACHE:
            return "memory"
        path = _disk_cache_path(self._key) if self.shape[0] * self.shape[1] >= DISK_CACHE_MIN_PIXELS else None
        return "disk" if path is not None and path.exists() else "compute"

    # -- per-geometry factorisation ------------------------------------------------------------
    def _check_mask(self, mask) -> np.ndarray:
        from ..validation import as_binary_mask

        m = as_binary_mask(mask, "mask")
        if m.shape != self.shape:
            raise InputError(f"mask: shape {m.shape} does not match the filter's patch shape {self.shape}")
        if not m.any():
            raise InputError("mask: mask has no valid (=1) pixel")
        return m

    def geometry(self, mask) -> _Geometry | None:
        """Factorisation for ``mask`` (cached by its bytes); None if it has no hole."""
        hole = np.ascontiguousarray(self._check_mask(mask) == 0)
        key = hashlib.sha1(hole.tobytes()).hexdigest()
        geom = self._geometries.get(key)
        if geom is not None:
            self._geometries.move_to_end(key)
            return geom
        hole_idx = np.flatnonzero(hole.ravel())
        if hole_idx.size == 0:
            return None
        idx = torch.from_numpy(hole_idx)
        q = self.precision
        q_hh = q[idx[:, None], idx[None, :]]  # gathers n_h² elements only (30× faster than row slices)
        chol, info = torch.linalg.cholesky_ex(q_hh)
        if int(info) != 0:  # cannot happen for a positive-definite Q; guard against round-off
            raise InputError("mask: Q_hh of this hole is not positive definite (numerical problem)")
        geom = _Geometry(hole_idx, chol)
        self._geometries[key] = geom
        while len(self._geometries) > 1 and self.cache_bytes() > self.geometry_cache_bytes:
            self._geometries.popitem(last=False)
        return geom

    def cache_bytes(self) -> int:
        """Bytes held by cached geometry factorisations."""
        return sum(g.nbytes for g in self._geometries.values())

    @property
    def n_cached_geometries(self) -> int:
        return len(self._geometries)

    # -- the filter -----------------------------------------------------------------------------
    def _mean(self, geom: _Geometry, data: np.ndarray) -> torch.Tensor:
        """:math:`\\mu_h = -Q_{hh}^{-1} Q_{hv} d_v` for data (k, n) float64 with holes zeroed → (n_h, k)."""
        q = self.precision
        d = torch.from_numpy(data).T.contiguous()  # (n, k)
        idx = torch.from_numpy(geom.hole_idx)
        rhs = torch.empty((idx.numel(), d.shape[1]), dtype=torch.float64)
        for start in range(0, idx.numel(), _ROW_CHUNK):
            rows = idx[start:start + _ROW_CHUNK]
            rhs[start:start + _ROW_CHUNK] = q[rows] @ d
        return -torch.cholesky_solve(rhs, geom.chol_hh)

    def _run(self, maps, masks, draw_rng=None) -> np.ndarray:
        raw = np.asarray(maps)
        checked, masks = check_maps_and_masks(raw, masks)
        out = np.array(raw, dtype=raw.dtype if np.issubdtype(raw.dtype, np.floating) else np.float32, copy=True)
        if checked.shape[-2:] != self.shape:
            raise InputError(f"maps: patch shape {checked.shape[-2:]} does not match the filter's {self.shape}")
        flat_maps = raw.reshape(-1, self.shape[0] * self.shape[1])  # original precision (float64 in, float64 math)
        flat_masks = masks.reshape(-1, self.shape[0] * self.shape[1])
        flat_out = out.reshape(-1, self.shape[0] * self.shape[1])
        groups: dict[bytes, list[int]] = {}
        for i, m in enumerate(flat_masks):
            groups.setdefault(m.tobytes(), []).append(i)
        for members in groups.values():
            mask = flat_masks[members[0]].reshape(self.shape)
            geom = self.geometry(mask)
            if geom is None:
                continue
            data = flat_maps[members].astype(np.float64)  # a copy; hole values (maybe NaN) zeroed next
            data[:, geom.hole_idx] = 0.0
            mu = self._mean(geom, data)  # (n_h, k)
            if draw_rng is not None:
                z = torch.from_numpy(draw_rng.standard_normal((len(members), geom.hole_idx.size)).T.copy())
                mu = mu + torch.linalg.solve_triangular(geom.chol_hh.T, z, upper=True)
            fill = mu.T.numpy().astype(out.dtype)
            for j, i in enumerate(members):
                flat_out[i, geom.hole_idx] = fill[j]
        return out

    def fill(self, maps, masks) -> np.ndarray:
        """Wiener-filter the holes: :math:`\\mu_h = -Q_{hh}^{-1} Q_{hv} d_v`.

        ``maps`` (H, W), (N, H, W) or (N, C, H, W) in μK with mask 1 = valid, 0 = hole; returns
        a copy whose valid pixels are bit-identical to the input (dtype kept if floating).
        Hole values of the input are ignored (may be NaN).
        """
        return self._run(maps, masks)

    def constrained_realisation(self, maps, masks, rng=None, seed=None) -> np.ndarray:
        """Wiener fill plus a draw :math:`x = L^{-T} z` (:math:`Q_{hh} = LL^T`, z ~ N(0, I)), so x ~ N(0, Σ_h).

        ``rng`` (numpy Generator) or ``seed``; patches draw in order, so a seed fixes all of them.
        """
        if rng is None:
            rng = np.random.default_rng(seed)
        return self._run(maps, masks, draw_rng=rng)

    def expected_mse(self, mask) -> float:
        """Expected hole mean squared error (μK²) of the Wiener fill: :math:`\\mathrm{tr}(Q_{hh}^{-1})/n_h`.

        Computed as :math:`\\|L^{-1}\\|_F^2 / n_h`; 0.0 for a mask without hole. Relative to the
        map including its white noise (module docstring).
        """
        geom = self.geometry(mask)
        if geom is None:
            return 0.0
        if geom.expected_mse is None:
            n_h = geom.hole_idx.size
            eye = torch.eye(n_h, dtype=torch.float64)
            inv_l = torch.linalg.solve_triangular(geom.chol_hh, eye, upper=False)
            geom.expected_mse = float((inv_l**2).sum()) / n_h
        return geom.expected_mse

    def posterior_covariance(self, mask) -> np.ndarray:
        """:math:`\\Sigma_h = Q_{hh}^{-1}` (n_h × n_h, μK², hole pixels in row-major order)."""
        geom = self.geometry(mask)
        if geom is None:
            return np.zeros((0, 0))
        return torch.cholesky_inverse(geom.chol_hh).numpy()

    def sample_residual(self, mask, rng=None) -> np.ndarray:
        """One draw of the Wiener residual :math:`x \\sim N(0, \\Sigma_h)` as an (H, W) map (0 outside the hole)."""
        rng = np.random.default_rng() if rng is None else rng
        out = np.zeros(self.shape[0] * self.shape[1])
        geom = self.geometry(mask)
        if geom is not None:
            z = torch.from_numpy(rng.standard_normal(geom.hole_idx.size))[:, None]
            out[geom.hole_idx] = torch.linalg.solve_triangular(geom.chol_hh.T, z, upper=True)[:, 0].numpy()
        return out.reshape(self.shape)


def _cache_bytes() -> int:
    return sum(q.numel() * 8 for q in _PRECISION_CACHE.values())


def clear_caches() -> None:
    """Drop every cached precision matrix and filter (frees memory)."""
    _PRECISION_CACHE.clear()
    _FILTERS.clear()


#: WienerFilter instances reused by :func:`wiener_fill` / :func:`gcr_fill`, keyed by sky config.
_FILTERS: "OrderedDict[tuple, WienerFilter]" = OrderedDict()
_MAX_FILTERS = 4


def get_filter(shape, sky: Sky | None = None, **legacy_sky) -> WienerFilter:
    """A (cached) :class:`WienerFilter` for this patch shape and sky; geometry caches persist across calls."""
    sky = sky_from_keywords(sky, **legacy_sky)
    key = _config_key(patch_shape(shape), sky)
    wf = _FILTERS.get(key)
    if wf is None:
        wf = WienerFilter(shape, sky=sky)
        _FILTERS[key] = wf
        while len(_FILTERS) > _MAX_FILTERS:
            _FILTERS.popitem(last=False)
    else:
        _FILTERS.move_to_end(key)
    return wf


def _shape_of(maps) -> tuple[int, int]:
    arr = np.asarray(maps)
    if arr.ndim not in (2, 3, 4):
        raise InputError(f"maps: expected maps of shape (H, W), (N, H, W) or (N, C, H, W), got {arr.shape}")
    return arr.shape[-2], arr.shape[-1]


def _legacy(kwargs: dict) -> dict:
    """The loose sky keywords among a fill's keyword arguments (the others are ignored)."""
    from ..sky.model import LEGACY_KEYWORDS

    return {k: kwargs[k] for k in LEGACY_KEYWORDS if k in kwargs}


def wiener_fill(maps, masks, *, sky: Sky | None = None, seed=None, **options) -> np.ndarray:
    """Exact Wiener fill of the holes (:class:`WienerFilter`, cached per sky).

    .. math:: \\mu_h = C_{hv} C_{vv}^{-1} d_v = -Q_{hh}^{-1} Q_{hv} d_v

    ``seed`` and unknown options are ignored (the baselines' common convention
    ``fill(maps, masks, *, sky, seed=None, **options)``); the loose sky keywords of the first
    API are accepted instead of ``sky``.
    """
    return get_filter(_shape_of(maps), sky, **_legacy(options)).fill(maps, masks)


def gcr_fill(maps, masks, *, sky: Sky | None = None, seed=None, rng=None, **options) -> np.ndarray:
    """Gaussian constrained realisation: Wiener fill plus a seeded draw from :math:`N(0, Q_{hh}^{-1})`.

    .. math:: x_h = \\mu_h + L^{-T} z, \\qquad Q_{hh} = L L^T,\\ z \\sim N(0, I)
    """
    wf = get_filter(_shape_of(maps), sky, **_legacy(options))
    return wf.constrained_realisation(maps, masks, rng=rng, seed=seed)


__all__ = ["WienerFilter", "wiener_fill", "gcr_fill", "get_filter", "precision_matrix", "clear_caches"]
