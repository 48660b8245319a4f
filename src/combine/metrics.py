"""Pixel and spectral metrics of a filled patch against the truth (pure numpy).

Conventions: maps in μK, shape (H, W) or (N, H, W); masks 1 = valid, 0 = hole, broadcast to the
maps; "hole" statistics pool the hole pixels of all patches. Pixel sides are in arcmin, ℓ is the
flat-sky multipole :math:`\\ell = 2\\pi |k|` (k in cycles per radian).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InputError
from .sky.defaults import ARCMIN_RAD


def _pair(pred, target, mask=None):
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise InputError(f"pred: shape {pred.shape} does not match target shape {target.shape}")
    if mask is None:
        return pred, target, None
    mask = np.asarray(mask)
    bad = ~((mask == 0) | (mask == 1))
    if bad.any():
        raise InputError("mask: mask is not binary (values other than 0 and 1)")
    try:
        hole = np.broadcast_to(mask == 0, pred.shape)
    except ValueError:
        raise InputError(f"mask: shape {mask.shape} does not match map shape {pred.shape}") from None
    return pred, target, hole


# --------------------------------------------------------------------------------------------
# pixel metrics
# --------------------------------------------------------------------------------------------
def abs_diff_stats(pred, target, mask=None, *, region: str = "hole") -> dict:
    """The original CoMBInE's statistics of :math:`|\\hat T - T|` over a region.

    .. math::

        m = \\langle |\\hat T - T| \\rangle_R, \\quad s = \\mathrm{std}_R |\\hat T - T|, \\quad
        \\text{percent} = 100\\, m / \\langle |T| \\rangle_R, \\quad
        \\text{std\\_percent} = 100\\, s / \\langle |T| \\rangle_R

    Parameters
    ----------
    pred, target : array_like, (H, W) or (N, H, W), μK
    mask : array_like, optional
        1 = valid, 0 = hole (broadcast); needed for ``region="hole"``.
    region : {"hole", "patch"}
        ``"hole"``: the pixels with mask 0 (pooled over patches); ``"patch"``: every pixel.

    Returns
    -------
    dict with ``mean`` and ``std`` (μK, std with ddof = 0), ``percent`` and ``std_percent``
    (% of the mean |target| over the same region) and ``n_pixels``.
    """
    pred, target, hole = _pair(pred, target, mask)
    if region == "hole":
        if hole is None:
            raise InputError("mask: region 'hole' needs a mask")
        sel = hole
    elif region == "patch":
        sel = np.ones(pred.shape, dtype=bool)
    else:
        raise InputError(f"region: expected 'hole' or 'patch', got {region!r}")
    if not sel.any():
        raise InputError(f"mask: no pixel in region {region!r}")
    diff = np.abs(pred[sel] - target[sel])
    scale = np.abs(target[sel]).mean()
    mean, std = float(diff.mean()), float(diff.std())
    pct = 100.0 / scale if scale > 0 else float("nan")
    return {"mean": mean, "std": std, "percent": mean * pct, "std_percent": std * pct,
            "n_pixels": int(sel.sum())}


def rmse_hole(pred, target, mask, *, per_patch: bool = False):
    """Root mean squared error over the hole pixels (μK).

    .. math:: \\mathrm{RMSE} = \\sqrt{\\sum_{i,p \\in h_i} (\\hat T_{ip} - T_{ip})^2 \\big/ \\sum_i n_{h,i}}

    pooled over patches, or per patch (array (N,), NaN for a patch without hole) if ``per_patch``.
    """
    pred, target, hole = _pair(pred, target, mask)
    d2 = np.where(hole, (pred - target) ** 2, 0.0)
    if per_patch:
        d2 = d2.reshape((-1,) + d2.shape[-2:])
        n = hole.reshape(d2.shape).sum(axis=(-2, -1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(d2.sum(axis=(-2, -1)) / n)
    n = hole.sum()
    if n == 0:
        raise InputError("mask: no hole pixel")
    return float(np.sqrt(d2.sum() / n))


def hole_variance_ratio(filled, target, mask) -> float:
    """Variance of the filled hole pixels over that of the true hole pixels (pooled over patches).

    .. math:: r = \\mathrm{Var}(\\hat T_h) / \\mathrm{Var}(T_h)

    each about its own mean. A Wiener fill has r < 1 (it is smooth); a constrained realisation
    has r ≈ 1.
    """
    filled, target, hole = _pair(filled, target, mask)
    if not hole.any():
        raise InputError("mask: no hole pixel")
    var_t = target[hole].var()
    return float(filled[hole].var() / var_t) if var_t > 0 else float("nan")


def gaussian_fit(values) -> tuple[float, float]:
    """Maximum-likelihood Gaussian fit (mean, sigma) of a pixel-value sample (μK).

    .. math:: \\hat\\mu = \\bar x, \\qquad \\hat\\sigma = \\sqrt{\\overline{(x - \\bar x)^2}}

    (``scipy.stats.norm.fit``).
    """
    from scipy.stats import norm

    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise InputError("values: empty sample")
    mu, sigma = norm.fit(x)
    return float(mu), float(sigma)


def ks_two_sample(a, b) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov test (``scipy.stats.ks_2samp``): (statistic D, p-value).

    .. math:: D = \\sup_x |F_a(x) - F_b(x)|

    Note that hole pixels are strongly correlated, so the p-value (which assumes independent
    draws) is far too small for any real difference; compare D between methods instead.
    """
    from scipy.stats import ks_2samp

    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise InputError("values: empty sample")
    res = ks_2samp(a, b)
    return float(res.statistic), float(res.pvalue)


#: Alias (the name :mod:`combine.evaluate` uses).
ks_test = ks_two_sample


# --------------------------------------------------------------------------------------------
# flat-sky power spectrum
# --------------------------------------------------------------------------------------------
def apodization_window(shape, apodization="hann") -> np.ndarray:
    """Separable apodisation window of ``shape`` (H, W).

    ``"hann"``: :math:`w(y,x) = \\sin^2(\\pi (y + \\tfrac12)/H)\\,\\sin^2(\\pi (x + \\tfrac12)/W)`;
    a float α in (0, 1]: a cosine (Tukey) taper over a fraction α/2 of each side
    (α = 1 is Hann); None or 0: no apodisation (w = 1).
    """
    h, w = shape

    from scipy.signal.windows import tukey as scipy_tukey

    def tukey(n, alpha):
        # scipy's symmetric Tukey window of 2n+1 points samples t = j/2n; its odd samples are the
        # pixel centres t = (i + 1/2)/n, so no edge pixel gets weight 0
        return scipy_tukey(2 * n + 1, alpha)[1::2]

    if apodization is None:
        alpha = 0.0
    elif isinstance(apodization, str):
        if apodization != "hann":
            raise InputError(f"apodization: expected 'hann', a taper fraction in [0, 1] or None, got {apodization!r}")
        alpha = 1.0
    else:
        alpha = float(apodization)
        if not 0.0 <= alpha <= 1.0:
            raise InputError(f"apodization: taper fraction must be in [0, 1], got {apodization!r}")
    return np.outer(tukey(h, alpha), tukey(w, alpha))


def ell_grid(shape, pixel_arcmin: float) -> np.ndarray:
    """:math:`|\\ell|` of each FFT mode of an (H, W) patch: :math:`\\ell = 2\\pi\\sqrt{k_y^2 + k_x^2}`."""
    d = pixel_arcmin * ARCMIN_RAD
    ly = 2 * np.pi * np.fft.fftfreq(shape[0], d=d)
    lx = 2 * np.pi * np.fft.fftfreq(shape[1], d=d)
    return np.sqrt(ly[:, None] ** 2 + lx[None, :] ** 2)


def default_ell_bins(shape, pixel_arcmin: float, bins=None) -> np.ndarray:
    """Bin edges in ℓ: linear, from the fundamental mode :math:`\\ell_f = 2\\pi / (\\max(H,W)\\Delta)` up to
    the Nyquist :math:`\\ell_N = \\pi/\\Delta`, width :math:`2\\ell_f` (``bins=None``) or ``bins`` equal
    bins (int), or explicit increasing edges (array). 128² planck18 patches: ℓ_f ≈ 98, 31 bins.
    """
    d = pixel_arcmin * ARCMIN_RAD
    ell_f = 2 * np.pi / (max(shape) * d)
    ell_n = np.pi / d
    if bins is None:
        return np.arange(ell_f, ell_n + 1e-9 * ell_n, 2 * ell_f)
    if np.ndim(bins) == 0:
        if int(bins) != bins or int(bins) < 1:
            raise InputError(f"bins: expected a positive number of bins or an array of edges, got {bins!r}")
        return np.linspace(ell_f, ell_n, int(bins) + 1)
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise InputError("bins: edges must be a 1-D increasing array of at least 2 values")
    return edges


def flat_power_spectrum(maps, pixel_arcmin: float, *, apodization="hann", bins=None, return_edges: bool = False):
    """Binned flat-sky power spectrum of apodised patches.

    .. math::

        \\hat C(\\ell_b) = \\Big\\langle \\frac{\\Delta^2\\, |\\mathrm{FFT}(w T)(\\mathbf{k})|^2}
                            {H W\\, \\overline{w^2}} \\Big\\rangle_{|\\ell(\\mathbf k)| \\in b}

    (:math:`\\Delta` the pixel side in radians) — unbiased for a spectrum that is smooth across
    the window's width in ℓ; white noise of pixel variance :math:`\\sigma^2` gives
    :math:`C = \\sigma^2\\Delta^2`. The mean of each map is not removed (the DC mode is outside
    every bin).

    Parameters
    ----------
    maps : array_like, (H, W) or (N, H, W), μK
    pixel_arcmin : float
    apodization : "hann", float taper fraction or None
        See :func:`apodization_window`.
    bins : None, int or array of edges
        See :func:`default_ell_bins`.
    return_edges : bool
        Also return the bin edges.

    Returns
    -------
    ell_centres : (B,) mean |ℓ| of the modes in each bin
    cl_uk2 : (B,) or (N, B) binned :math:`C_\\ell` in μK² (NaN for an empty bin)
    n_modes : (B,) effective number of modes per bin,
        :math:`n_{eff} = n_{grid}\\,\\overline{w^2}^2/\\overline{w^4}` (:math:`n_{grid}` counts
        the FFT grid points, ±k both). The cosmic-variance error of one patch's binned spectrum is
        :math:`\\sigma_C / C = \\sqrt{2/n_{eff}}`, and :math:`\\sqrt{2/(N n_{eff})}` for the mean of
        N independent patches.
    edges : (B + 1,), if ``return_edges``
    """
    arr = np.asarray(maps, dtype=np.float64)
    if arr.ndim not in (2, 3):
        raise InputError(f"maps: expected (H, W) or (N, H, W), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError("maps: NaN or inf in maps")
    pixel_arcmin = float(pixel_arcmin)
    if not (math.isfinite(pixel_arcmin) and pixel_arcmin > 0):
        raise InputError(f"pixel_arcmin: must be > 0, got {pixel_arcmin!r}")
    single = arr.ndim == 2
    arr = arr[None] if single else arr
    shape = arr.shape[-2:]
    win = apodization_window(shape, apodization)
    w2 = float((win**2).mean())
    w4 = float((win**4).mean())
    d = pixel_arcmin * ARCMIN_RAD
    power = np.abs(np.fft.fft2(arr * win)) ** 2 * (d * d / (shape[0] * shape[1] * w2))
    ell = ell_grid(shape, pixel_arcmin).ravel()
    edges = default_ell_bins(shape, pixel_arcmin, bins)
    which = np.digitize(ell, edges) - 1  # bin b holds edges[b] <= ell < edges[b+1]
    nb = edges.size - 1
    inside = (which >= 0) & (which < nb)
    counts = np.bincount(which[inside], minlength=nb).astype(np.float64)
    ell_sum = np.bincount(which[inside], weights=ell[inside], minlength=nb)
    flat_power = power.reshape(arr.shape[0], -1)[:, inside]
    cl = np.stack([np.bincount(which[inside], weights=p, minlength=nb) for p in flat_power])
    with np.errstate(invalid="ignore", divide="ignore"):
        cl = cl / counts
        centres = ell_sum / counts
    n_eff = counts * (w2 * w2 / w4)
    cl = cl[0] if single else cl
    if return_edges:
        return centres, cl, n_eff, edges
    return centres, cl, n_eff


def power_ratio(filled, target, pixel_arcmin: float, *, apodization="hann", bins=None) -> dict:
    """Per-bin ratio of the flat-sky spectra of filled and true patches, pooled over patches.

    .. math::

        R_b = \\frac{\\sum_i \\hat C_{\\hat T_i}(\\ell_b)}{\\sum_i \\hat C_{T_i}(\\ell_b)}, \\qquad
        \\mathrm{err}_b = \\sqrt{\\frac{2}{N\\, n_{eff,b}}}

    ``err`` is the cosmic-variance error of the target's pooled spectrum (N independent patches):
    the band within which a spectrum measured on these patches cannot tell two skies apart. It is
    not the error of R itself — filled and target share their valid pixels, so R scatters much
    less than err, and a biased fill can be significant well inside the band.

    Returns
    -------
    dict with ``ell`` (B,), ``ratio`` (B,), ``err`` (B,), ``edges`` (B + 1,), ``n_modes`` (B,),
    ``cl_filled`` and ``cl_target`` (B,, pooled means, μK²).
    """
    filled, target, _ = _pair(filled, target)
    ell, cl_f, n_eff, edges = flat_power_spectrum(filled, pixel_arcmin, apodization=apodization, bins=bins,
                                                 return_edges=True)
    _, cl_t, _ = flat_power_spectrum(target, pixel_arcmin, apodization=apodization, bins=bins)
    n_patches = 1 if np.ndim(cl_f) == 1 else cl_f.shape[0]
    cl_f = np.atleast_2d(cl_f).mean(axis=0)
    cl_t = np.atleast_2d(cl_t).mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = cl_f / cl_t
        err = np.sqrt(2.0 / (n_patches * n_eff))
    return {"ell": ell, "ratio": ratio, "err": err, "edges": edges, "n_modes": n_eff,
            "cl_filled": cl_f, "cl_target": cl_t}


__all__ = [
    "abs_diff_stats",
    "rmse_hole",
    "hole_variance_ratio",
    "gaussian_fit",
    "ks_two_sample",
    "ks_test",
    "apodization_window",
    "ell_grid",
    "default_ell_bins",
    "flat_power_spectrum",
    "power_ratio",
]
