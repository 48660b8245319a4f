"""Full-sky evaluation: anafast spectra of a filled HEALPix map against the truth and the masked sky."""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError


def fullsky_spectra(truth_map, mask, filled_map, *, lmax: int | None = None, delta_ell: int = 20,
                    iterations: int = 0):
    r"""Angular power spectra of a filled full-sky map against the truth and the masked sky.

    With :math:`C_\ell^X` the ``anafast`` spectrum of map :math:`X`,

    .. math::

        r^\mathrm{fill}_b = \frac{\sum_{\ell\in b} C_\ell^\mathrm{filled}}{\sum_{\ell\in b} C_\ell^\mathrm{truth}},
        \qquad
        r^\mathrm{zero}_b = \frac{\sum_{\ell\in b} C_\ell^{M\cdot T} / f_\mathrm{sky}}{\sum_{\ell\in b} C_\ell^\mathrm{truth}},

    with :math:`f_\mathrm{sky} = \langle M \rangle` (the naive pseudo-:math:`C_\ell` correction).
    The cosmic-variance error of a bin is :math:`\sqrt{2 / \sum_{\ell\in b}(2\ell+1)}`.
    ``iterations`` is anafast's ``iter``: 0 (one spherical transform per map instead of the
    seven of healpy's default 3) is enough for ratios, whose quadrature errors largely cancel.

    Returns
    -------
    dict with ``ell`` (bin centres), ``edges``, ``ratio_filled``, ``ratio_zero_fsky``,
    ``err``, ``f_sky`` and the unbinned spectra ``cl_truth``, ``cl_filled``, ``cl_zero``.
    """
    import healpy as hp

    truth = np.asarray(truth_map, dtype=np.float64)
    filled = np.asarray(filled_map, dtype=np.float64)
    m = np.asarray(mask, dtype=np.float64)
    if truth.shape != filled.shape or truth.shape != m.shape:
        raise InputError(f"fullsky: map, mask and filled map differ in shape ({truth.shape}, {m.shape}, {filled.shape})")
    nside = hp.npix2nside(truth.size)
    lmax = int(lmax) if lmax else 3 * nside - 1
    f_sky = float(m.mean())
    if f_sky <= 0:
        raise InputError("fullsky mask: no valid pixel")
    zero = np.where(m > 0, truth, 0.0)
    it = int(iterations)
    cl_truth = hp.anafast(truth, lmax=lmax, iter=it)
    cl_filled = hp.anafast(filled, lmax=lmax, iter=it)
    cl_zero = hp.anafast(zero, lmax=lmax, iter=it) / f_sky
    edges = np.arange(2, lmax + 2, delta_ell)
    if edges[-1] != lmax + 1:
        edges = np.append(edges, lmax + 1)
    ell = np.arange(lmax + 1)
    centres, rf, rz, err = [], [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sl = slice(lo, hi)
        t = cl_truth[sl].sum()
        centres.append(float(ell[sl].mean()))
        rf.append(cl_filled[sl].sum() / t if t > 0 else np.nan)
        rz.append(cl_zero[sl].sum() / t if t > 0 else np.nan)
        err.append(math.sqrt(2.0 / np.sum(2 * ell[sl] + 1)))
    return {"ell": np.array(centres), "edges": edges, "ratio_filled": np.array(rf),
            "ratio_zero_fsky": np.array(rz), "err": np.array(err), "f_sky": f_sky,
            "cl_truth": cl_truth, "cl_filled": cl_filled, "cl_zero": cl_zero}


def fill_healpix(model, hmap, hmask, *, batch_size: int = 16, progress: bool = True):
    """Fill a RING HEALPix map's holes with ``model`` (:func:`combine.healpix_inpaint.inpaint_healpix`).

    Returns the filled map (float64).
    """
    from ..healpix_inpaint import inpaint_healpix

    out = inpaint_healpix(model, hmap, hmask, nest=False, batch_size=batch_size, progress=progress)
    return np.asarray(out, dtype=np.float64)


def fullsky_records(spectra: dict, *, method: str, mask_name: str = "fullsky") -> list[dict]:
    """Records (metric ``fullsky_power_ratio`` per ℓ bin) of :func:`fullsky_spectra`."""
    out = []
    edges = spectra["edges"]
    for b, ell in enumerate(spectra["ell"]):
        for name, key in ((method, "ratio_filled"), ("zero_fsky", "ratio_zero_fsky")):
            out.append({"method": name, "mask": mask_name, "metric": "fullsky_power_ratio",
                        "value": float(spectra[key][b]), "err": float(spectra["err"][b]),
                        "ell_bin": float(ell), "ell_min": int(edges[b]), "ell_max": int(edges[b + 1] - 1),
                        "f_sky": spectra["f_sky"]})
    return out


__all__ = ["fullsky_spectra", "fill_healpix", "fullsky_records"]
