"""E/B metrics of T, Q, U maps: apodised flat-sky spectra of patches, anafast spectra of full skies.

Flat patches (:func:`flat_spectra_tqu`). Each field is multiplied by the separable window
:math:`w` of :func:`combine.metrics.apodization_window`, transformed with numpy's FFT, and E, B
formed with the DESIGN convention (:mod:`combine.sky.polarisation`):

.. math::

    \\hat E = \\widehat{wQ}\\cos 2\\varphi + \\widehat{wU}\\sin 2\\varphi, \\qquad
    \\hat B = -\\widehat{wQ}\\sin 2\\varphi + \\widehat{wU}\\cos 2\\varphi,

    \\hat C^{XY}(\\ell_b) = \\Big\\langle \\frac{\\Delta^2\\, \\mathrm{Re}(\\hat X \\hat Y^*)}{H W\\, \\overline{w^2}}\\Big\\rangle_{|\\ell| \\in b}

(the normalisation of :func:`combine.metrics.flat_power_spectrum`). This is the naive pseudo-
spectrum: the window's gradients mix E into B (a floor of :math:`C^{BB}` of
0.005–0.017 of :math:`C^{EE}` at intermediate ℓ for a Hann window on 64² patches — median over
the bins 0.025 — but 0.1–1 in the lowest and highest bins, and 0.3 pooled over
300 ≤ ℓ ≤ 3000 on 32² patches; measured in ``tests/test_evaluate_tqu.py``). Compare filled and
true patches with the same estimator, or a fill against the pure-E truth's own floor.

Full sky (:func:`fullsky_spectra_tqu`): ``healpy.anafast(pol=True)`` of the map, or of the map
times a binary mask divided by :math:`f_{sky} = \\overline{M}` (the zero-filled, cut-sky
spectrum corrected to full sky to first order), optionally divided by the beam and pixel window.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .sky.defaults import ARCMIN_RAD
from .metrics import apodization_window, default_ell_bins, ell_grid
from .sky.polarisation import wavevector_angle_rad


PAIRS = ("tt", "ee", "bb", "te", "tb", "eb")


def _as_tqu_patches(patches) -> np.ndarray:
    arr = np.asarray(patches, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1] != 3:
        raise InputError(f"maps: expected T, Q, U patches (N, 3, H, W) or (3, H, W), got shape {np.shape(patches)}")
    if not np.all(np.isfinite(arr)):
        raise InputError("maps: NaN or inf in T, Q, U patches")
    return arr


def flat_teb_fourier(patches, apodization="hann") -> tuple[np.ndarray, float]:
    """FFTs of the apodised T and of E, B (module docstring): ``(N, 3, H, W)`` complex, and :math:`\\overline{w^2}`."""
    arr = _as_tqu_patches(patches)
    win = apodization_window(arr.shape[-2:], apodization)
    f = np.fft.fft2(arr * win, axes=(-2, -1))
    c, s = wavevector_angle_rad(arr.shape[-2:])
    e = f[:, 1] * c + f[:, 2] * s
    b = -f[:, 1] * s + f[:, 2] * c
    return np.stack([f[:, 0], e, b], axis=1), float((win**2).mean())


def flat_spectra_tqu(patches, pixel_arcmin: float, *, apodization="hann", bins=None) -> dict:
    """Binned apodised flat-sky TT, EE, BB, TE, TB, EB of T, Q, U patches (module docstring).

    Parameters
    ----------
    patches : (N, 3, H, W) or (3, H, W), μK
    pixel_arcmin : float
    apodization, bins
        As :func:`combine.metrics.flat_power_spectrum`.

    Returns
    -------
    dict with ``ell`` (B,) bin centres, ``n_modes`` (B,) modes per bin (both ±k), and for each
    of ``tt ee bb te tb eb`` the spectra (N, B) in μK², one row per patch.
    """
    pixel_arcmin = float(pixel_arcmin)
    if not (np.isfinite(pixel_arcmin) and pixel_arcmin > 0):
        raise InputError(f"pixel_arcmin: must be > 0, got {pixel_arcmin!r}")
    teb, w2 = flat_teb_fourier(patches, apodization)
    n, _, h, w = teb.shape
    d = pixel_arcmin * ARCMIN_RAD
    norm = d * d / (h * w * w2)
    ell = ell_grid((h, w), pixel_arcmin).ravel()
    edges = default_ell_bins((h, w), pixel_arcmin, bins)
    which = np.digitize(ell, edges) - 1
    nb = edges.size - 1
    inside = (which >= 0) & (which < nb)
    idx = which[inside]
    counts = np.bincount(idx, minlength=nb).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"ell": np.bincount(idx, weights=ell[inside], minlength=nb) / counts, "n_modes": counts}
        flat = teb.reshape(n, 3, -1)[:, :, inside]
        for name in PAIRS:
            i, j = "teb".index(name[0]), "teb".index(name[1])
            cross = (flat[:, i] * np.conj(flat[:, j])).real * norm
            out[name] = np.stack([np.bincount(idx, weights=row, minlength=nb) for row in cross]) / counts
    return out


def fullsky_spectra_tqu(tqu_map, mask=None, *, lmax=None, beam_bl=None) -> dict:
    """``{"tt", "ee", "bb", "te", "eb", "tb", "ell"}`` full-sky spectra (μK²) of a (3, Npix) map.

    .. math:: \\hat C_\\ell = \\mathrm{anafast}(M\\,m)_\\ell / f_{sky}, \\qquad f_{sky} = \\overline{M}

    with :math:`M = 1` when ``mask`` is None. ``beam_bl`` (ℓ = 0..), if given, divides the
    spectra by :math:`b_\\ell^2` (beam times pixel window). ``healpy.anafast`` (iter = 0).
    """
    import healpy as hp

    m = np.asarray(tqu_map, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != 3 or not hp.isnpixok(m.shape[1]):
        raise InputError(f"map: expected HEALPix T, Q, U maps of shape (3, 12 Nside^2), got {m.shape}")
    fsky = 1.0
    if mask is not None:
        mk = np.asarray(mask, dtype=np.float64)
        if mk.shape != (m.shape[1],) or not np.all((mk == 0) | (mk == 1)):
            raise InputError(f"mask: expected a binary HEALPix mask of {m.shape[1]} pixels")
        fsky = float(mk.mean())
        if fsky == 0:
            raise InputError("mask: mask has no valid (=1) pixel")
        m = m * mk
    if not np.all(np.isfinite(m)):
        raise InputError("map: NaN or inf in the (masked) T, Q, U map")
    cls = np.asarray(hp.anafast(m, lmax=lmax, pol=True, iter=0)) / fsky
    out = dict(zip(("tt", "ee", "bb", "te", "eb", "tb"), cls))
    if beam_bl is not None:
        bl = np.asarray(beam_bl, dtype=np.float64)[: cls.shape[1]]
        if bl.size < cls.shape[1]:
            raise InputError(f"beam_bl: need {cls.shape[1]} multipoles, got {bl.size}")
        with np.errstate(divide="ignore", invalid="ignore"):
            out = {k: np.where(bl > 0, v / bl**2, 0.0) for k, v in out.items()}
    out["ell"] = np.arange(cls.shape[1])
    return out


def band_mean(spectrum, ell_min: int, ell_max: int) -> float:
    """Mean of a full-sky spectrum over :math:`\\ell_{min} \\le \\ell \\le \\ell_{max}`."""
    s = np.asarray(spectrum, dtype=np.float64)
    if not 0 <= ell_min <= ell_max < s.size:
        raise InputError(f"band: need 0 <= {ell_min} <= {ell_max} < {s.size}")
    return float(s[ell_min:ell_max + 1].mean())


def bias_over_cosmic_variance(estimate, truth, ell_min: int, ell_max: int, width: int = 50, reference=None) -> list:
    r"""(mean of ``estimate`` − mean of ``truth``) / (cosmic-variance error of the band) in bands of
    ``width`` from ``ell_min`` up to ``ell_max``: the error of a band of C_ℓ is
    :math:`\bar C \sqrt{2 / \sum_\ell (2\ell + 1)}`, with :math:`\bar C` the band mean of
    ``reference`` (default ``truth``; e.g. the truth's EE for the BB of a pure-E sky, whose BB is 0)."""
    truth = np.asarray(truth)
    reference = truth if reference is None else np.asarray(reference)
    ell = np.arange(truth.size)
    out = []
    for b0 in range(int(ell_min), int(ell_max), int(width)):
        sl = slice(b0, b0 + int(width))
        cv = reference[sl].mean() * np.sqrt(2.0 / np.sum(2 * ell[sl] + 1))
        out.append(float((np.asarray(estimate)[sl].mean() - truth[sl].mean()) / cv))
    return out


__all__ = ["flat_spectra_tqu", "flat_teb_fourier", "fullsky_spectra_tqu", "band_mean", "bias_over_cosmic_variance",
           "PAIRS"]
