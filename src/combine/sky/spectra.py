"""Theory spectra: lensed CMB TT from CAMB (cached on disk), beam and pixel windows.

All spectra are raw :math:`C_\\ell` (not :math:`D_\\ell = \\ell(\\ell+1)C_\\ell/2\\pi`) in μK²,
indexed by :math:`\\ell = 0 \\ldots \\ell_{max}`, with :math:`C_0 = C_1 = 0`.

CAMB takes several seconds per call, so every spectrum is cached as ``.npy`` under
``$COMBINE_CACHE_DIR`` (default ``~/.cache/combine``) in ``spectra/<sha256>.npy``, the hash
covering every parameter and the CAMB version. HEALPix pixel windows (which healpy would
download) are computed here and cached the same way under ``pixwin/``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from .defaults import ARCMIN_RAD, PLANCK18_COSMOLOGY

#: CAMB lensing accuracy used for every spectrum (part of the cache key).
LENS_POTENTIAL_ACCURACY = 1

def camb_version() -> str:
    """CAMB's version (part of every cache key), from the installed package's metadata: the
    same string as ``camb.__version__`` without importing CAMB (0.4-1 s), which a cached
    spectrum does not need."""
    from importlib import metadata

    try:
        return metadata.version("camb")
    except metadata.PackageNotFoundError:  # e.g. CAMB on the path without package metadata
        import camb

        return camb.__version__


def cache_dir() -> Path:
    """Root of the on-disk cache: ``$COMBINE_CACHE_DIR`` or ``~/.cache/combine``."""
    root = os.environ.get("COMBINE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "combine")
    return Path(root)


def _load_or_compute(subdir: str, key: dict, compute):
    """Return the cached array for ``key`` or compute, store (atomically) and return it."""
    text = json.dumps(key, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    path = cache_dir() / subdir / f"{digest}.npy"
    if path.exists():
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            pass  # corrupt cache entry: recompute and overwrite
    arr = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            np.save(tmp, arr, allow_pickle=False)
    except (OSError, InputError):
        pass  # an unwritable cache only costs time
    return arr


def validate_ns(ns, source: str = "ns") -> float:
    """Return ``ns`` as a finite float inside ``COSMOLOGY_RANGES["ns"]`` of
    :mod:`combine.sky.model` (the one table of parameter ranges), or raise :class:`InputError`.

    :data:`combine.sky.defaults.NS_CLASSES` are the named classes.
    """
    from .model import COSMOLOGY_RANGES

    try:
        value = float(ns)
    except (TypeError, ValueError):
        raise InputError(f"{source}: spectral index must be a number, got {ns!r}") from None
    lo, hi = COSMOLOGY_RANGES["ns"]
    if not (math.isfinite(value) and lo <= value <= hi):
        raise InputError(f"{source}: spectral index {ns!r} is outside the range CAMB is run for here, [{lo:g}, {hi:g}]")
    return value


def resolve_cosmology(cosmology=None, ns=None) -> dict:
    """The CAMB parameters actually used: Planck 2018, updated by ``cosmology``, then ``ns``,
    each checked by :func:`combine.sky.model.check_cosmology` (the one validation, with ranges)."""
    from .model import check_cosmology

    if ns is not None:
        ns = validate_ns(ns)
    return check_cosmology(cosmology, ns)


def _check_lmax(lmax) -> int:
    if int(lmax) != lmax or int(lmax) < 2:
        raise InputError(f"lmax: must be an integer >= 2, got {lmax!r}")
    return int(lmax)


def _camb_lensed_tt(params: dict, lmax: int) -> np.ndarray:
    import camb

    try:
        pars = camb.set_params(**params, lmax=lmax, lens_potential_accuracy=LENS_POTENTIAL_ACCURACY)
    except Exception as exc:  # CAMB rejects unknown or unphysical parameters
        raise InputError(f"cosmology: CAMB rejected the parameters ({exc})") from None
    results = camb.get_results(pars)
    powers = results.get_cmb_power_spectra(pars, CMB_unit="muK", raw_cl=True, lmax=lmax)
    cl = np.array(powers["lensed_scalar"][: lmax + 1, 0], dtype=np.float64)
    cl[:2] = 0.0
    return cl


def lensed_tt_cl_uk2(ns=None, lmax: int = 6500, cosmology=None) -> np.ndarray:
    """Lensed CMB temperature power spectrum :math:`C_\\ell^{TT}` in μK² from CAMB.

    Parameters
    ----------
    ns : float, optional
        Scalar spectral index; overrides ``cosmology["ns"]`` (default Planck 2018, 0.9649).
        Any positive value; the original CoMBInE classes are ``NS_CLASSES``.
    lmax : int
        Largest multipole returned.
    cosmology : dict, optional
        CAMB ``set_params`` parameters updating :data:`PLANCK18_COSMOLOGY`.

    Returns
    -------
    ndarray, shape (lmax + 1,), float64
        Raw :math:`C_\\ell` (μK², CMB thermodynamic units, ``T_CMB`` from CAMB), lensed with
        ``lens_potential_accuracy=1``; :math:`C_0 = C_1 = 0`. Cached on disk (module docstring).
    """

    lmax = _check_lmax(lmax)
    params = resolve_cosmology(cosmology, ns)
    key = {
        "what": "lensed_scalar TT raw_cl muK",
        "params": params,
        "lmax": lmax,
        "lens_potential_accuracy": LENS_POTENTIAL_ACCURACY,
        "camb": camb_version(),
    }
    return _load_or_compute("spectra", key, lambda: _camb_lensed_tt(params, lmax))


def _camb_spectra(params: dict, lmax: int, r: float) -> np.ndarray:
    import camb

    try:
        pars = camb.set_params(**params, r=r, WantTensors=r > 0, lmax=lmax,
                               lens_potential_accuracy=LENS_POTENTIAL_ACCURACY)
    except Exception as exc:  # CAMB rejects unknown or unphysical parameters
        raise InputError(f"cosmology: CAMB rejected the parameters ({exc})") from None
    results = camb.get_results(pars)
    powers = results.get_cmb_power_spectra(pars, CMB_unit="muK", raw_cl=True, lmax=lmax)
    cl = np.array(powers["total" if r > 0 else "lensed_scalar"][: lmax + 1, :4], dtype=np.float64)
    cl[:2] = 0.0
    return cl.T.copy()  # (4, lmax + 1): TT, EE, BB, TE


def camb_spectra_uk2(cosmology=None, lmax: int = 6500, r: float = 0.0) -> dict:
    """Lensed CMB spectra ``{"tt", "ee", "bb", "te"}`` in μK² from CAMB (cached on disk).

    Raw :math:`C_\\ell`, ℓ = 0..lmax, :math:`C_0 = C_1 = 0`, ``lens_potential_accuracy=1``;
    with ``r > 0`` CAMB's ``total`` (lensed scalar + tensor) spectra, else ``lensed_scalar``
    (whose BB is the lensing B modes). ``cosmology`` updates :data:`PLANCK18_COSMOLOGY`.
    The TT column is the spectrum :func:`lensed_tt_cl_uk2` returns for the same parameters.
    """

    lmax = _check_lmax(lmax)
    params = resolve_cosmology(cosmology)
    r = float(r)
    key = {
        "what": "lensed TT EE BB TE raw_cl muK",
        "params": params,
        "r": r,
        "lmax": lmax,
        "lens_potential_accuracy": LENS_POTENTIAL_ACCURACY,
        "camb": camb_version(),
    }
    table = _load_or_compute("spectra", key, lambda: _camb_spectra(params, lmax, r))
    return {name: table[i] for i, name in enumerate(("tt", "ee", "bb", "te"))}


def gaussian_beam_bl(fwhm_arcmin: float, lmax: int) -> np.ndarray:
    """Gaussian beam transfer function.

    .. math:: B_\\ell = \\exp\\!\\left(-\\tfrac12 \\ell(\\ell+1)\\sigma^2\\right),
              \\qquad \\sigma = \\mathrm{FWHM}/\\sqrt{8\\ln 2}

    (``healpy.gauss_beam``). ``fwhm_arcmin = 0`` gives :math:`B_\\ell = 1`.
    """
    import healpy as hp

    lmax = _check_lmax(lmax)
    try:
        fwhm = float(fwhm_arcmin)
    except (TypeError, ValueError):
        raise InputError(f"beam_fwhm_arcmin: must be a number, got {fwhm_arcmin!r}") from None
    if not (math.isfinite(fwhm) and fwhm >= 0):
        raise InputError(f"beam_fwhm_arcmin: must be >= 0, got {fwhm_arcmin!r}")
    if fwhm == 0:
        return np.ones(lmax + 1)
    return np.asarray(hp.gauss_beam(fwhm * ARCMIN_RAD, lmax=lmax), dtype=np.float64)


def legendre_table(lmax: int, x: np.ndarray) -> np.ndarray:
    """:math:`P_\\ell(x)` for ``ℓ = 0..lmax`` by the upward recurrence, shape (lmax+1, len(x)).

    .. math:: (\\ell+1) P_{\\ell+1} = (2\\ell+1) x P_\\ell - \\ell P_{\\ell-1}

    Written here because every ℓ is needed at once: ``scipy.special.eval_legendre`` evaluates
    each (ℓ, x) pair separately in O(ℓ), O(ℓ_max²) per x instead of this O(ℓ_max).
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty((lmax + 1,) + x.shape)
    out[0] = 1.0
    if lmax >= 1:
        out[1] = x
    for ell in range(1, lmax):
        out[ell + 1] = ((2 * ell + 1) * x * out[ell] - ell * out[ell - 1]) / (ell + 1)
    return out


#: Sub-pixel refinement (per side) of the pixel-window quadrature, and number of sampled pixels.
_PIXWIN_SUBDIV = 16
_PIXWIN_SAMPLE_PIXELS = 768
_PIXWIN_BINS = 4096


def _compute_pixwin(nside: int, lmax: int) -> np.ndarray:
    import healpy as hp

    npix = hp.nside2npix(nside)
    sub = _PIXWIN_SUBDIV
    n_sample = min(npix, _PIXWIN_SAMPLE_PIXELS)
    # sample pixels evenly in RING index: covers every latitude (pixel shapes vary with it)
    ring_pix = np.unique(np.linspace(0, npix - 1, n_sample).round().astype(np.int64))
    nest_pix = hp.ring2nest(nside, ring_pix)
    offsets = np.arange(sub * sub, dtype=np.int64)
    max_chord = 4.0 * hp.nside2resol(nside)  # a pixel's diameter is < 2 resolutions
    hist = np.zeros(_PIXWIN_BINS)
    sum_cos = np.zeros(_PIXWIN_BINS)
    for p in nest_pix:
        vec = np.array(hp.pix2vec(nside * sub, p * sub * sub + offsets, nest=True))  # (3, n)
        cos_gamma = (vec.T @ vec).ravel()
        # bin by chord |x - y| = sqrt(2 - 2 cos γ), which keeps precision at tiny separations
        chord = np.sqrt(np.maximum(2.0 - 2.0 * cos_gamma, 0.0))
        idx = np.minimum((chord * (_PIXWIN_BINS / max_chord)).astype(np.int64), _PIXWIN_BINS - 1)
        hist += np.bincount(idx, minlength=_PIXWIN_BINS)
        sum_cos += np.bincount(idx, weights=cos_gamma, minlength=_PIXWIN_BINS)
    used = hist > 0
    mean_cos = sum_cos[used] / hist[used]
    weights = hist[used] / hist.sum()
    w2 = legendre_table(lmax, mean_cos) @ weights
    return np.sqrt(np.clip(w2, 0.0, None))


def healpix_pixel_window(nside: int, lmax: int) -> np.ndarray:
    """HEALPix temperature pixel window :math:`w_\\ell` (computed here, no download).

    The window of the pixel average, averaged over pixels (the HEALPix definition):

    .. math::

        w_\\ell^2 = \\frac{1}{N_{pix}} \\sum_p \\frac{4\\pi}{2\\ell+1} \\sum_m
        \\Big|\\frac{1}{\\Omega_p}\\int_p Y_{\\ell m}\\,d\\Omega\\Big|^2
        = \\Big\\langle \\frac{1}{\\Omega_p^2}\\int_p\\!\\int_p P_\\ell(\\cos\\gamma_{xy})\\,dx\\,dy \\Big\\rangle_p

    by the addition theorem. The double integral is a midpoint rule over the
    ``16 × 16`` NESTED sub-pixels (equal area) of up to 768 pixels spread evenly in RING index
    (all latitudes); pair separations are binned finely by chord (4096 bins out to 4 pixel sizes) and
    :math:`P_\\ell` is evaluated at each bin's mean :math:`\\cos\\gamma`. healpy's
    ``pixwin`` would download the official tables, which these machines cannot do; this
    agrees with a direct pixel-averaging measurement (see tests). Cached on disk.

    Returns
    -------
    ndarray, shape (lmax + 1,), with :math:`w_0 = 1`.
    """
    import healpy as hp

    lmax = _check_lmax(lmax)
    if not hp.isnsideok(nside, nest=True):
        raise InputError(f"nside: {nside!r} is not a power of 2 HEALPix Nside")
    # one cache entry per Nside: compute to at least 4·Nside and slice
    lmax_computed = max(lmax, 4 * int(nside))
    key = {
        "what": "healpix pixel window T",
        "nside": int(nside),
        "lmax": lmax_computed,
        "subdiv": _PIXWIN_SUBDIV,
        "sample": _PIXWIN_SAMPLE_PIXELS,
        "bins": _PIXWIN_BINS,
        "version": 2,
    }
    window = _load_or_compute("pixwin", key, lambda: _compute_pixwin(int(nside), lmax_computed))
    return window[: lmax + 1]


__all__ = [
    "lensed_tt_cl_uk2",
    "camb_spectra_uk2",
    "gaussian_beam_bl",
    "healpix_pixel_window",
    "validate_ns",
    "resolve_cosmology",
    "legendre_table",
    "cache_dir",
]
