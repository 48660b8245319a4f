"""T, Q, U local Wiener filter and constrained realisations of holes in HEALPix maps, on the sphere.

A thin wrapper over :func:`combine.sphere.wiener.fill_holes`, which fills T and T, Q, U maps with the
same machinery (:mod:`combine.sphere.holes`: holes, groups of holes whose contexts overlap, context
discs; one batched float64 Cholesky solve per group): each group of holes :math:`h` is filled
from the T, Q and U values of the valid pixels :math:`o` of its context (the valid pixels within
the hole's radius plus a margin of its centre) with the spin-2 pixel covariance of
:mod:`combine.sphere.covariance_tqu` (true pixel positions, Q/U rotated to the great circle through
each pixel pair, healpy's frame; beam and HEALPix pixel window in the spectra; white or per-pixel
noise, Q/U at √2 the T level unless the sky sets it):

.. math::

    \\mu_h = C_{ho} (C_{oo} + N_o)^{-1} d_o, \\qquad
    x_h = \\mu_h + S z, \\quad SS^T = C_{hh} + N_h - C_{ho} (C_{oo} + N_o)^{-1} C_{oh}, \\quad z \\sim N(0, I).

T informs Q and U through TE (the solve is joint). ``tqu_solve="split"`` fills T alone and Q, U
jointly from Q, U alone with their own, narrower margin (:mod:`combine.sphere.split`: TE ignored,
cheaper; its cost and accuracy against the joint fill are measured in docs/polarisation.md). The draw of group ``g`` comes from
``numpy.random.default_rng([seed, 0, g])``: a realisation depends only on its seed. Valid pixels
are bit-identical. A group with more than ``MAX_GROUP_PIXELS_TQU`` pixels (a Galactic cut, not a
point source) is an :class:`InputError`: its dense solve would not fit.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..sky.model import Sky
from ..validation import UNSEEN


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


def sphere_tqu_fill(tqu_map, mask, *, sky: Sky, seed=None, gcr: bool = False, nest: bool = False, progress=None,
                    rng=None, margin_arcmin=None, margin_px=None, pixwin: bool = True, tqu_solve: str = "joint",
                    margin_qu_px=None, **options) -> np.ndarray:
    """Local Wiener fill (or GCR with ``gcr=True``) of the holes of a (3, Npix) T, Q, U map (module docstring).

    Parameters
    ----------
    tqu_map : (3, Npix) μK, healpy's polarisation convention
    mask : (Npix,) binary, 1 = valid (or (3, Npix) with three equal rows)
    sky : Sky
        Spectra, beam and noise (white μK·arcmin, per pixel of this Nside).
    seed : int
        For ``gcr`` (``rng``, a numpy Generator, is still accepted: a seed is drawn from it).
    margin_px, margin_arcmin : float, optional
        Context margin in map pixels or arcmin; default ``max(2 × FWHM, 4 pixels)``: 5.8 px at
        Nside 2048 with a 5′ beam, where the temperature fill's 6 px were measured to reach 1 % of
        a margin three times larger (:data:`combine.sphere.wiener.DEFAULT_MARGIN_PX`).
    pixwin : bool
        Whether the map carries the HEALPix pixel window (a synthesised map does).
    tqu_solve : {"joint", "split"}
        Joint T, Q, U solve (default) or T alone and Q, U from Q, U alone (margin ``margin_qu_px``,
        default :data:`combine.sphere.split.DEFAULT_MARGIN_QU_PX`); the T margin is the one above.
    progress : callable, optional
        Called with the number of holes done (after each batch of groups).
    **options
        Passed to :func:`combine.sphere.wiener.fill_holes` (``threads``, ``lmax``,
        ``noise_var_map`` of shape (3, Npix), ``max_group_pixels``, ``mask_source``).
    """
    import healpy as hp

    from ..sphere.wiener import fill_holes

    if not isinstance(sky, Sky):
        raise InputError(f"sky: expected a combine.sky.Sky, got {type(sky).__name__}")
    m, valid = _check_inputs(tqu_map, mask)
    nside = hp.npix2nside(m.shape[1])
    if margin_arcmin is not None and margin_px is not None:
        raise InputError("margin: give margin_px or margin_arcmin, not both")
    if margin_arcmin is not None:
        margin = float(margin_arcmin) / hp.nside2resol(nside, arcmin=True)
    else:
        pix_arcmin = hp.nside2resol(nside, arcmin=True)
        default = max(2.0 * sky.beam_fwhm_arcmin / pix_arcmin, 4.0)
        margin = default if margin_px is None else float(margin_px)
    if not np.isfinite(margin) or margin <= 0:
        raise InputError(f"margin: need > 0, got {margin_arcmin if margin_arcmin is not None else margin_px!r}")
    if gcr and seed is None:
        if rng is None:
            raise InputError("seed: a constrained realisation (gcr) needs a seed")
        seed = int(rng.integers(2**63))
    res = fill_holes(m, valid, sky=sky, nest=nest,
                     margin_px=margin, realisations=1 if gcr else 0, seed=seed if gcr else None,
                     pixel_window=bool(pixwin), progress=progress if callable(progress) else False,
                     tqu_solve=tqu_solve, margin_qu_px=margin_qu_px, **options)
    return res.apply(m, res.draws_uk[0] if gcr else None)


__all__ = ["sphere_tqu_fill"]
