"""Local Wiener fill and Gaussian constrained realisations of a HEALPix map, on the sphere.

Each group of holes :math:`h` (:func:`combine.sphere.holes.hole_groups`) is filled from the
valid pixels :math:`o` of its context with the exact conditional mean and, for a constrained
realisation, a draw from the exact conditional covariance of the Gaussian sky,

.. math::

    \\bar T_h = C_{ho}\\,(C_{oo} + N_o)^{-1} d_o, \\qquad
    T_h = \\bar T_h + L z, \\quad L L^{\\mathsf T} = C_{hh} + N_h - C_{ho}(C_{oo} + N_o)^{-1} C_{oh},
    \\quad z \\sim \\mathcal N(0, I),

with :math:`C` the pixel covariance at the true separations of the pixel centres
(:mod:`combine.sphere.covariance`, beam and HEALPix pixel window included), :math:`N` the
per-pixel noise variance and :math:`d_o` the observed values. What is estimated is the *map*
(sky plus noise) in the holes, so :math:`N_h` enters the draw: the realisation has the noise a
map pixel would have had. The map is taken to have zero mean (no monopole or dipole, as CMB
anisotropy maps have). A relative ridge :math:`10^{-8}\\,\\xi(0)` on the diagonal keeps the noise-free
case factorisable.

Numerics: float64 Cholesky factorisations with ``torch.linalg`` (scipy's OpenBLAS crashed on
large ones here), groups of equal padded size batched together (padding at the end of the
matrices, with unit diagonal and no correlation, leaves the leading factor unchanged), one
torch thread per worker and one worker per core: small factorisations run ~5x faster that way
than with torch's own threading. The draw :math:`z` of group :math:`g` in realisation :math:`k`
comes from ``numpy.random.default_rng([seed, k, g])``: a realisation depends only on its seed,
not on batching or the number of threads.

**Margin.** The context is the valid pixels within :math:`r_h + m` of each hole centre;
:data:`DEFAULT_MARGIN_PX` is the measured choice (``benchmarks/bench_sphere.py --margins``, see
docs/fullsky.md): on Nside 2048 planck18 skies (5′ beam, 1 μK·arcmin) it gives a pooled hole RMSE
within 1 % of a margin three times larger.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import math

import numpy as np
import torch

from ..errors import InputError
from .covariance import CorrelationTable, noise_variance_uk2
from .covariance_tqu import tqu_table
from .holes import HoleGroups, hole_groups

#: Default context margin, in map pixels (``healpy.nside2resol``); measured, module docstring.
DEFAULT_MARGIN_PX = 6.0

#: Relative ridge on the diagonal, times ξ(0).
RIDGE_REL = 1e-8

#: Largest group (hole + context pixels): its dense covariance is 8 n² bytes (8000: 512 MB).
MAX_GROUP_PIXELS = 8000

#: The same for T, Q, U (3 unknowns per pixel: 3000 pixels give 9000², 650 MB, plus its factor).
MAX_GROUP_PIXELS_TQU = 3000

#: Bytes of one batch's largest matrix stack (per worker): below glibc's 32 MB dynamic mmap threshold, so
#: freed stacks are reused instead of mapped afresh (48 MB: 5x the page faults, +25 % CPU, measured).
BATCH_BYTES = 16 * 2**20


@dataclasses.dataclass
class SphereFill:
    """Result of :func:`fill_holes`: the groups and, over ``groups.hole_pixels``, the
    conditional mean (μK) and ``realisations`` constrained draws (μK, shape (R, n))."""

    groups: HoleGroups
    mean_uk: np.ndarray
    draws_uk: np.ndarray

    def apply(self, hmap, values=None) -> np.ndarray:
        """Copy of ``hmap`` (float dtype kept; float32 for others) with ``values`` (default the
        mean) written into the hole pixels; valid pixels bit-identical."""
        hmap = np.asarray(hmap)
        dtype = hmap.dtype if np.issubdtype(hmap.dtype, np.floating) else np.dtype(np.float32)
        out = np.array(hmap, dtype=dtype, copy=True)
        out[..., self.groups.hole_pixels] = self.mean_uk if values is None else values
        return out


def _padded(n: int) -> int:
    """Round ``n`` up to a multiple of max(8, 2^floor(log2 n)/8): at most 12.5 % padding."""
    step = max(8, 1 << max(int(math.log2(max(n, 1))) - 3, 0))
    return -(-n // step) * step


@contextlib.contextmanager
def _torch_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _lower(out: torch.Tensor, v: torch.Tensor, xi, fields: int = 1, blocks: int = 4) -> None:
    """Fill the lower triangle (by row blocks of pixels: 5/8 of the entries for 4 blocks) of the
    ``fields``·n square at the top left of ``out`` with the covariance of the pixels ``v`` (n, 3),
    pixel-major: the Cholesky factorisations read only the lower triangle."""
    n, f = v.shape[0], fields
    edges = [round(n * k / blocks) for k in range(blocks + 1)]
    for r0, r1 in zip(edges[:-1], edges[1:]):
        if r1 > r0:
            xi(v[r0:r1], v[:r1], out=out[f * r0:f * r1, : f * r1])


def _cholesky(a: torch.Tensor, scale: float) -> torch.Tensor:
    """Cholesky factor, adding a growing ridge to the matrices that are not numerically PD."""
    L, info = torch.linalg.cholesky_ex(a)
    ridge = RIDGE_REL * scale
    while bool((info > 0).any()):
        bad = torch.nonzero(info > 0).ravel()
        ridge *= 10.0
        if ridge > 1e-3 * scale:
            raise RuntimeError("sphere fill: covariance not positive definite even with a 1e-3 ridge")
        eye = torch.eye(a.shape[-1], dtype=a.dtype)
        L2, info2 = torch.linalg.cholesky_ex(a[bad] + ridge * eye)
        L[bad], info[bad] = L2, info2
    return L


class _Problem:
    """Everything a batch needs that is shared: the map (fields, Npix), the table, the noise
    (per field: a float or a map), the options. ``fields`` = 1 (T) or 3 (T, Q, U, pixel-major)."""

    def __init__(self, hmap, groups, table, noise, realisations, seed):
        self.hmap, self.groups, self.table, self.noise = hmap, groups, table, noise
        self.fields = int(getattr(table, "fields", 1))
        self.realisations, self.seed = int(realisations), seed
        scales = table.field_scales_uk2() if self.fields > 1 else np.array([table.xi0_uk2])
        self.ridge = RIDGE_REL * np.asarray(scales, dtype=np.float64)

    def _diag(self, pix):
        """Noise variance plus ridge of ``pix``, pixel-major (len(pix)·fields,)."""
        cols = []
        for f in range(self.fields):
            var = self.noise[f]
            v = np.full(pix.size, float(var)) if np.ndim(var) == 0 else np.asarray(var[pix], dtype=np.float64)
            cols.append(v + self.ridge[f])
        return torch.from_numpy(np.stack(cols, axis=1).reshape(-1))

    def solve(self, batch: list[int]):
        """Mean and draws for the groups ``batch`` (all of the same padded sizes)."""
        import healpy as hp

        g, F = self.groups, self.fields
        B = len(batch)
        no = [g.context_start[k + 1] - g.context_start[k] for k in batch]
        nh = [g.hole_start[k + 1] - g.hole_start[k] for k in batch]
        No, Nh = F * _padded(max(no)), F * _padded(max(nh))
        # not zeroed (3 ms a batch): the Cholesky factorisations read only the lower triangles, which
        # _lower fills; the padding rows and columns are zeroed below
        c_oo = torch.empty(B, No, No, dtype=torch.float64)
        c_ho = torch.empty(B, Nh, No, dtype=torch.float64)
        c_hh = torch.empty(B, Nh, Nh, dtype=torch.float64) if self.realisations > 0 else None
        d = torch.zeros(B, No, 1, dtype=torch.float64)
        diag_o = torch.ones(B, No, dtype=torch.float64)  # padding: unit diagonal, no correlation
        diag_h = torch.ones(B, Nh, dtype=torch.float64)
        xi = self.table.between
        for b, k in enumerate(batch):
            ctx, holes = g.context(k), g.holes(k)
            vo = torch.from_numpy(np.stack(hp.pix2vec(g.nside, ctx, nest=g.nest), axis=1))
            vh = torch.from_numpy(np.stack(hp.pix2vec(g.nside, holes, nest=g.nest), axis=1))
            _lower(c_oo[b], vo, xi, F)
            c_oo[b, F * ctx.size:].zero_()
            xi(vh, vo, out=c_ho[b, : F * holes.size, : F * ctx.size])
            c_ho[b, F * holes.size:].zero_()
            c_ho[b, : F * holes.size, F * ctx.size:].zero_()
            if c_hh is not None:
                _lower(c_hh[b], vh, xi, F)
                c_hh[b, F * holes.size:].zero_()
            d[b, : F * ctx.size, 0] = torch.from_numpy(np.asarray(self.hmap[:, ctx], dtype=np.float64).T.reshape(-1))
            diag_o[b, : F * ctx.size] = self._diag(ctx)
            diag_h[b, : F * holes.size] = self._diag(holes)
        c_oo.diagonal(dim1=-2, dim2=-1).add_(diag_o)
        L = _cholesky(c_oo, self.table.xi0_uk2)
        del c_oo
        y = torch.linalg.solve_triangular(L, d, upper=False)  # L^-1 d (torch.cholesky_solve: 4x slower)
        draws = None
        if self.realisations == 0:
            mean = (c_ho @ torch.linalg.solve_triangular(L.transpose(-1, -2), y, upper=True))[..., 0]
        else:
            a = torch.linalg.solve_triangular(L, c_ho.transpose(-1, -2), upper=False)  # L^-1 C_oh
            del L
            mean = (a.transpose(-1, -2) @ y)[..., 0]  # C_ho L^-T L^-1 d
            cond = c_hh.sub_(a.transpose(-1, -2) @ a)
            cond.diagonal(dim1=-2, dim2=-1).add_(diag_h)
            Lc = _cholesky(cond, self.table.xi0_uk2)
            z = torch.zeros(B, Nh, self.realisations, dtype=torch.float64)
            for b, k in enumerate(batch):
                for r in range(self.realisations):
                    rng = np.random.default_rng([int(self.seed), r, int(k)])
                    z[b, : F * nh[b], r] = torch.from_numpy(rng.standard_normal(F * nh[b]))
            draws = mean[..., None] + Lc @ z  # (B, Nh, R)
        out = []
        for b in range(B):
            m = mean[b, : F * nh[b]].numpy().reshape(nh[b], F).T  # (F, nh)
            dr = None if draws is None else draws[b, : F * nh[b]].T.numpy().reshape(-1, nh[b], F).transpose(0, 2, 1)
            out.append((m, dr))
        return out


def _batches(groups: HoleGroups, fields: int = 1) -> list[list[int]]:
    """Groups batched by equal padded (context, hole) sizes, at most BATCH_BYTES per matrix stack."""
    no, nh = groups.context_sizes, groups.hole_sizes
    keys = {}
    for k in range(len(groups)):
        keys.setdefault((_padded(int(no[k])), _padded(int(nh[k]))), []).append(k)
    batches = []
    for (po, ph), members in sorted(keys.items()):
        per = max(1, BATCH_BYTES // (8 * (fields * max(po, ph)) ** 2))
        batches.extend(members[i:i + per] for i in range(0, len(members), per))
    return batches


def _noise_per_field(sky, nside: int, fields: int, noise_var_map):
    """Noise variance of each field (a float or a map, μK²): T from :func:`noise_variance_uk2`;
    Q, U from a (3, Npix) ``noise_var_map``, else white at ``sky.noise_qu_uk_arcmin`` — or twice
    the T variance map when the T noise is a map (the DESIGN's √2 for Q/U)."""
    import healpy as hp

    if fields == 1:
        if noise_var_map is not None and np.ndim(noise_var_map) == 0:
            raise InputError("noise_var_map: expected a HEALPix map of variances")
        return [noise_variance_uk2(sky, nside, noise_var_map)]
    if noise_var_map is not None:
        var = np.asarray(noise_var_map)
        if var.shape != (3, hp.nside2npix(nside)):
            raise InputError(f"noise map: expected T, Q, U variances of shape (3, {hp.nside2npix(nside)}), "
                             f"got {var.shape}")
        return [var[0], var[1], var[2]]
    t = noise_variance_uk2(sky, nside, None)
    if np.ndim(t) == 0:
        p = (sky.noise_qu_uk_arcmin / hp.nside2resol(nside, arcmin=True)) ** 2
        return [t, p, p]
    return [t, 2.0 * t, 2.0 * t]


def fill_holes(hmap, valid, *, sky, nest: bool = False, margin_px: float = DEFAULT_MARGIN_PX, noise_var_map=None,
               realisations: int = 0, seed: int | None = None, lmax: int | None = None, pixel_window: bool = True,
               threads: int | None = None, progress=False, max_group_pixels: int | None = None,
               mask_source: str = "mask") -> SphereFill:
    """Conditional mean (and ``realisations`` constrained draws) of every hole (module docstring).

    Parameters
    ----------
    hmap : ndarray (12 Nside²,) or (3, 12 Nside²)
        Map in μK: temperature, or T, Q, U (healpy's polarisation convention), filled jointly with
        the spin-2 covariance of :mod:`.covariance_tqu`. Masked pixels may hold anything (not read).
    valid : ndarray of bool (12 Nside²,)
        True where observed, same ordering as ``hmap``; one mask for all fields.
    sky : combine.sky.Sky
        Spectra, beam and (white) noise; ``sky.noise_var_uk2`` if it is a HEALPix map.
    margin_px : float
        Context margin in pixels of the map (:data:`DEFAULT_MARGIN_PX`).
    noise_var_map : ndarray, optional
        Per-pixel noise variance (μK²), overriding the sky's noise: (Npix,) for T, (3, Npix) for TQU.
    realisations, seed : int
        Number of constrained draws and their seed (required if ``realisations > 0``).
    pixel_window : bool
        Include the HEALPix pixel window in the covariance (default; :mod:`.covariance`).
    threads : int, optional
        Worker threads (default: torch's thread count).
    progress : bool or callable
        ``True``: a progress bar over groups; a callable: called with the number of holes done.
    max_group_pixels : int, optional
        Largest group (hole + context pixels): :data:`MAX_GROUP_PIXELS` for T,
        :data:`MAX_GROUP_PIXELS_TQU` for TQU (3 unknowns per pixel).

    Returns
    -------
    SphereFill
        ``mean_uk`` (n,) for T or (3, n) for TQU over ``groups.hole_pixels``; ``draws_uk`` (R, n) or (R, 3, n).
    """
    import healpy as hp

    from ..progress import progress as progress_bar

    valid = np.asarray(valid, dtype=bool)
    nside = int(hp.npix2nside(valid.size))
    hmap = np.asarray(hmap)
    fields = 1 if hmap.ndim == 1 else int(hmap.shape[0])
    if hmap.shape[-1] != valid.size or fields not in (1, 3) or hmap.ndim > 2:
        raise InputError(f"map: expected {valid.size} pixels of T or of T, Q, U, got shape {hmap.shape}")
    if not (math.isfinite(margin_px) and margin_px > 0):
        raise InputError(f"margin_px: must be > 0, got {margin_px!r}")
    realisations = int(realisations)
    if realisations < 0:
        raise InputError(f"realisations: must be >= 0, got {realisations}")
    if realisations and seed is None:
        raise InputError("seed: a constrained realisation needs a seed")
    if max_group_pixels is None:
        max_group_pixels = MAX_GROUP_PIXELS if fields == 1 else MAX_GROUP_PIXELS_TQU
    margin_rad = float(margin_px) * hp.nside2resol(nside)
    groups = hole_groups(valid, nside, nest=nest, margin_rad=margin_rad, max_group_pixels=max_group_pixels,
                         mask_source=mask_source)
    n = groups.hole_pixels.size
    mean = np.zeros((fields, n))
    draws = np.zeros((realisations, fields, n))

    def result():
        if fields == 1:
            return SphereFill(groups, mean[0], draws[:, 0])
        return SphereFill(groups, mean, draws)

    if len(groups) == 0:
        return result()
    noise = _noise_per_field(sky, nside, fields, noise_var_map)
    reach = 0.0  # largest separation inside a group <= twice its pixels' largest chord from their centroid
    for k in range(len(groups)):
        vec = np.stack(hp.pix2vec(nside, np.concatenate([groups.holes(k), groups.context(k)]), nest=nest), 1)
        centre = vec.mean(axis=0)
        centre /= max(float(np.linalg.norm(centre)), 1e-300)
        reach = max(reach, float(np.max(np.linalg.norm(vec - centre, axis=1))))
    max_theta = min(math.pi, 4.0 * math.asin(min(1.0, reach / 2.0)) + 4.0 * hp.nside2resol(nside))
    if fields == 1:
        table = CorrelationTable(sky, nside if pixel_window else None, max_theta, lmax=lmax)
    else:
        table = tqu_table(sky, nside if pixel_window else None, max_theta, lmax=lmax)
    problem = _Problem(hmap.reshape(fields, -1), groups, table, noise, realisations, seed)
    batches = _batches(groups, fields)
    workers = max(1, int(threads) if threads is not None else torch.get_num_threads())
    callback = progress if callable(progress) else None
    bar = progress_bar(total=len(groups), desc="holes", unit="group") if progress is True else None
    counts = groups.group_hole_counts
    done = 0
    try:
        with _torch_threads(1), concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for batch, res in zip(batches, pool.map(problem.solve, batches)):
                for k, (m, dr) in zip(batch, res):
                    sl = slice(groups.hole_start[k], groups.hole_start[k + 1])
                    mean[:, sl] = m
                    if dr is not None:
                        draws[:, :, sl] = dr
                if bar is not None:
                    bar.update(len(batch))
                if callback is not None:
                    done += int(counts[batch].sum()) if counts is not None else len(batch)
                    callback(done)
    finally:
        if bar is not None:
            bar.close()
    return result()


def wiener_fill_sphere(hmap, mask, *, sky, nest: bool = False, **options) -> np.ndarray:
    """Map with every hole (mask = 0) filled with its conditional mean (valid pixels unchanged)."""
    from ..healpix_inpaint import check_healpix_inputs

    hmap, valid, _ = check_healpix_inputs(hmap, mask)
    return fill_holes(hmap, valid, sky=sky, nest=nest, **options).apply(hmap)


def gcr_fill_sphere(hmap, mask, *, sky, seed: int, nest: bool = False, **options) -> np.ndarray:
    """Map with every hole filled with one constrained realisation (seeded)."""
    from ..healpix_inpaint import check_healpix_inputs

    hmap, valid, _ = check_healpix_inputs(hmap, mask)
    result = fill_holes(hmap, valid, sky=sky, nest=nest, realisations=1, seed=seed, **options)
    return result.apply(hmap, result.draws_uk[0])


__all__ = ["fill_holes", "wiener_fill_sphere", "gcr_fill_sphere", "SphereFill", "DEFAULT_MARGIN_PX", "MAX_GROUP_PIXELS",
           "MAX_GROUP_PIXELS_TQU"]
