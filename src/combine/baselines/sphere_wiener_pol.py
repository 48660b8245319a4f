"""T, Q, U local Wiener filter and constrained realisations of holes in HEALPix maps, on the sphere.

Each hole (a connected group of masked pixels, 8-neighbour connectivity of
``healpy.get_all_neighbours``) is filled from the T, Q and U values of the valid pixels of a
disc around it — the hole's bounding disc widened by ``margin_arcmin`` — with the spin-2 pixel
covariance of :class:`combine.baselines.covariance_pol.SphereTQUCovariance` (true pixel
positions, Q/U rotated to the great circle through each pixel pair, healpy's frame; beam and
HEALPix pixel window in the spectra; white noise per pixel):

.. math::

    \\mu_h = C_{ho} C_{oo}^{-1} d_o, \\qquad
    x_h = \\mu_h + S z, \\quad SS^T = \\Sigma_h = C_{hh} - C_{ho} C_{oo}^{-1} C_{oh}, \\quad z \\sim N(0, I).

Holes are filled independently (each from its own disc). This is the sphere counterpart of
``method="local"`` of :mod:`combine.baselines.wiener_pol`; it needs no projection and leaves
every valid pixel bit-identical. A hole larger than ``max_hole_px`` pixels (a Galactic cut, not
a point source) is an :class:`InputError`: its dense solve would not fit.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from ..sky.model import Sky
from ..validation import UNSEEN
from .covariance_pol import SphereTQUCovariance
from .wiener_pol import REGULARISATION_REL, cholesky_with_floor, psd_sqrt

#: Largest hole (pixels per field) filled by one dense window solve (3 × 1500 unknowns: the
#: hole-hole and window matrices stay below ~0.5 GB with their temporaries).
MAX_HOLE_PX = 1500


def hole_components(nside: int, hole_pix: np.ndarray, nest: bool = False) -> list[np.ndarray]:
    """Connected groups (8-neighbour) of the pixels ``hole_pix`` (``scipy.sparse.csgraph``)."""
    import healpy as hp
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    hole_pix = np.asarray(hole_pix, dtype=np.int64)
    if hole_pix.size == 0:
        return []
    neigh = hp.get_all_neighbours(nside, hole_pix, nest=nest)  # (8, n), -1 where none
    position = np.full(hp.nside2npix(nside), -1, dtype=np.int64)
    position[hole_pix] = np.arange(hole_pix.size)
    src = np.repeat(np.arange(hole_pix.size)[None], 8, axis=0)
    dst = np.where(neigh >= 0, position[np.maximum(neigh, 0)], -1)
    keep = dst >= 0
    graph = coo_matrix((np.ones(keep.sum()), (src[keep], dst[keep])), shape=(hole_pix.size, hole_pix.size))
    n, labels = connected_components(graph, directed=False)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n + 1))
    return [hole_pix[order[bounds[i]:bounds[i + 1]]] for i in range(n)]


def _check_inputs(tqu_map, mask):
    import healpy as hp

    m = np.asarray(tqu_map)
    if m.ndim != 2 or m.shape[0] != 3 or not hp.isnpixok(m.shape[1]):
        raise InputError(f"map: expected HEALPix T, Q, U maps of shape (3, 12 Nside^2), got {m.shape}")
    mk = np.asarray(mask)
    if mk.ndim == 2 and mk.shape[0] == 3:
        if not np.all(mk == mk[:1]):
            raise InputError("mask: the sphere TQU filter needs one mask for T, Q and U")
        mk = mk[0]
    if mk.shape != (m.shape[1],):
        raise InputError(f"mask: expected {m.shape[1]} pixels (the map's), got shape {mk.shape}")
    if not np.all((mk == 0) | (mk == 1)):
        raise InputError("mask: mask is not binary (values other than 0 and 1)")
    valid = mk == 1
    if not valid.any():
        raise InputError("mask: mask has no valid (=1) pixel")
    vals = m[:, valid]
    if not np.all(np.isfinite(vals)) or np.any(vals <= UNSEEN * 0.99):
        raise InputError("map: valid (mask = 1) pixels of T, Q or U hold NaN, inf or UNSEEN")
    return m, valid


def sphere_tqu_fill(tqu_map, mask, *, sky: Sky, seed=None, rng=None, gcr: bool = False, margin_arcmin=None,
                    pixwin: bool = True, nest: bool = False, max_hole_px: int = MAX_HOLE_PX,
                    progress=None) -> np.ndarray:
    """Local Wiener fill (or GCR with ``gcr=True``) of the holes of a (3, Npix) T, Q, U map (module docstring).

    Parameters
    ----------
    tqu_map : (3, Npix) μK, healpy's polarisation convention
    mask : (Npix,) binary, 1 = valid (or (3, Npix) with three equal rows)
    sky : Sky
        Spectra, beam and white noise (μK·arcmin; per pixel of this Nside).
    margin_arcmin : float, optional
        Width of the ring of valid pixels conditioned on; default ``max(2 × FWHM, 4 pixels)``.
    pixwin : bool
        Whether the map carries the HEALPix pixel window (a synthesised map does).
    seed, rng
        For ``gcr``.
    progress : callable, optional
        Called with the number of holes done, after each hole.
    """
    import healpy as hp

    if not isinstance(sky, Sky):
        raise InputError(f"sky: expected a combine.sky.Sky, got {type(sky).__name__}")
    m, valid = _check_inputs(tqu_map, mask)
    nside = hp.npix2nside(m.shape[1])
    pix_arcmin = hp.nside2resol(nside, arcmin=True)
    margin = max(2 * sky.beam_fwhm_arcmin, 4 * pix_arcmin) if margin_arcmin is None else float(margin_arcmin)
    if not np.isfinite(margin) or margin <= 0:
        raise InputError(f"margin_arcmin: need > 0, got {margin_arcmin!r}")
    if gcr and rng is None:
        rng = np.random.default_rng(seed)
    out = np.array(m, dtype=m.dtype if np.issubdtype(m.dtype, np.floating) else np.float32, copy=True)
    components = hole_components(nside, np.flatnonzero(~valid), nest=nest)
    if not components:
        return out
    biggest = max(c.size for c in components)
    if biggest > max_hole_px:
        raise InputError(f"mask: a hole of {biggest} pixels is larger than max_hole_px = {max_hole_px} "
                         "(the sphere TQU filter is for point-source holes)")
    radii, centres = [], []
    for comp in components:
        vec = np.array(hp.pix2vec(nside, comp, nest=nest)).T
        c = vec.sum(0)
        c /= np.linalg.norm(c)
        radii.append(float(np.arccos(np.clip(vec @ c, -1, 1)).max()))
        centres.append(c)
    arcmin = np.pi / (180 * 60)
    theta_max = min(2 * (max(radii) + (margin + 2 * pix_arcmin) * arcmin), np.pi)
    window_fn = None  # healpy.pixwin's tables need a download: use ours
    if pixwin:
        from ..sky.spectra import healpix_pixel_window

        window_fn = healpix_pixel_window(nside, sky.spectra_uk2()["tt"].size - 1)
    cov = SphereTQUCovariance(sky.replace(pixel_arcmin=pix_arcmin), theta_max_rad=theta_max,
                              pixel_window=window_fn)
    xi0 = cov.correlations(0.0)
    floors_min = REGULARISATION_REL * np.array([xi0["tt"], 0.5 * xi0["plus"], 0.5 * xi0["plus"]])
    floors = np.maximum(floors_min - np.array([cov.noise_var_t_uk2, cov.noise_var_p_uk2, cov.noise_var_p_uk2]),
                        0.0)
    for done, (comp, c, r) in enumerate(zip(components, centres, radii), start=1):
        disc = hp.query_disc(nside, c, r + (margin + pix_arcmin) * arcmin, inclusive=False, nest=nest)
        win = disc[valid[disc]]
        if win.size == 0:
            raise InputError("mask: a hole has no valid pixel within margin_arcmin of it")
        v_h = np.array(hp.pix2vec(nside, comp, nest=nest)).T
        v_o = np.array(hp.pix2vec(nside, win, nest=nest)).T
        chol = cholesky_with_floor(torch.from_numpy(cov.between(v_o, v_o, noise=True)),
                                   np.repeat(floors, win.size), "window covariance")
        c_oh = torch.from_numpy(cov.between(v_o, v_h))
        wts = torch.cholesky_solve(c_oh, chol)  # (3m, 3k)
        d_o = torch.from_numpy(m[:, win].astype(np.float64).reshape(-1))
        mu = (d_o @ wts).numpy()
        if gcr:
            l_s = psd_sqrt(torch.from_numpy(cov.between(v_h, v_h, noise=True)) - c_oh.T @ wts)
            mu = mu + (l_s @ torch.from_numpy(rng.standard_normal(l_s.shape[0]))).numpy()
        out[:, comp] = mu.reshape(3, comp.size)
        if progress is not None:
            progress(done)
    return out


__all__ = ["sphere_tqu_fill", "hole_components", "MAX_HOLE_PX"]
