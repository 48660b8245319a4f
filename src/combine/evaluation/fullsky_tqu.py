"""Full-sky T, Q, U evaluation: anafast EE and BB of maps filled on the sphere against the truth and the cut sky.

For a true (3, Npix) T, Q, U map (healpy's convention) and a binary point-source mask M, every
method fills the holes and :func:`combine.metrics_pol.fullsky_spectra_tqu` (``healpy.anafast``,
``pol=True``) gives :math:`C_\\ell^{EE}, C_\\ell^{BB}` of

* the truth (no mask),
* the zero-filled cut sky corrected to full sky, :math:`\\mathrm{anafast}(M m)/f_{sky}` with
  :math:`f_{sky} = \\overline M` (method ``zero_fsky``: the leakage a cut sky leaves),
* each filled map.

Methods (:data:`SPHERE_TQU_METHODS`): ``wiener`` / ``gcr`` the local joint T, Q, U Wiener
filter and constrained realisation on the sphere
(:func:`combine.baselines.sphere_wiener_pol.sphere_tqu_fill`: true pixel positions, Q/U rotated to
the great circle of each pixel pair); the scalar classical fills (``diffusive``, ``biharmonic``,
``telea``, ``navier-stokes``, ``mean``) run on T, Q and U separately through gnomonic patches
(:func:`combine.healpix_inpaint.inpaint_healpix`, as ``combine inpaint --method diffusive`` on a
FITS map does), the baseline of what leaks; ``nn`` a 3-channel network through gnomonic T, Q, U
patches (:func:`combine.healpix_inpaint_tqu.inpaint_healpix_tqu`, correcting the sphere Wiener
fill when it takes a first guess), as ``combine inpaint --fields TQU --model`` fills a map.

Records (per method; ℓ bins :func:`leakage_bins` from ``lmin`` to :math:`3 N_{side} - 1`): binned
means ``fullsky_cl_ee`` / ``fullsky_cl_bb`` (μK²) and their ratios to the truth's
``fullsky_ee_ratio`` / ``fullsky_bb_ratio``; over the band ``band_ell`` (default ℓ from 30 to
:math:`2 N_{side}`) the means ``fullsky_cl_ee_band`` / ``fullsky_cl_bb_band``, their ratios to the
truth ``fullsky_ee_band_ratio`` / ``fullsky_bb_band_ratio``, ``fullsky_bb_zero_over_method``
(the zero-filled cut sky's band BB over the method's: how much leakage the fill removes), and
``fullsky_{ee,bb}_dev_cv`` — :math:`(\\bar C^{fill}_b - \\bar C^{truth}_b) / (\\bar C^{truth}_b
\\sqrt{2/\\sum_{\\ell\\in b}(2\\ell+1)})`, the deviation in units of the truth's cosmic variance
per bin; ``seconds`` the wall time of the fill.

A pure-E sky (:func:`combine.sky.polarisation.pure_e_sky`) has only anafast's round-off in the
truth's BB; a lensed sky has the lensing B.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..errors import InputError
from ..sky.model import Sky

SPHERE_TQU_METHODS = ("nn", "wiener", "gcr", "diffusive", "biharmonic", "telea", "navier-stokes", "mean")
#: Lowest multipole of the leakage figures and bins.
LMIN = 30
#: Number of logarithmic ℓ bins between LMIN and 3 Nside.
N_BINS = 12
#: Largest side of the gnomonic patches of the per-field classical fills, degrees.
MAX_PATCH_DEG = 45.0


def fullsky_sky(sky: Sky, nside: int, *, beam_fwhm_arcmin=None) -> Sky:
    """``sky`` on a HEALPix Nside: pixel side ``healpy.nside2resol``, spectra cut at
    :math:`\\ell_{max} = 3 N_{side} - 1` (the band that a map of this Nside carries and anafast
    measures; explicit arrays, so the simulation and the filters' covariance agree), and the beam
    ``beam_fwhm_arcmin`` if given."""
    import healpy as hp

    lmax = 3 * int(nside) - 1
    spectra = sky.spectra_uk2()
    n = spectra["tt"].size
    if n <= lmax:
        raise InputError(f"sky: spectra reach ℓ = {n - 1}, a Nside-{nside} map needs ℓ = {lmax}")
    changes = {f"cl_{k}_uk2": np.asarray(spectra[k][: lmax + 1]) for k in ("tt", "ee", "bb", "te")}
    if beam_fwhm_arcmin is not None:
        changes["beam_fwhm_arcmin"] = float(beam_fwhm_arcmin)
    return sky.replace(pixel_arcmin=hp.nside2resol(int(nside), arcmin=True), lmax=lmax, preset=None, **changes)


def check_fullsky_tqu(tqu_map, mask, map_source: str = "--fullsky-map", mask_source: str = "--fullsky-mask"):
    """(map float64 (3, Npix), mask float64 (Npix,)) validated: a complete truth, a binary mask with holes."""
    import healpy as hp

    m = np.asarray(tqu_map, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != 3 or not hp.isnpixok(m.shape[1]):
        raise InputError(f"{map_source}: expected HEALPix T, Q, U maps (3, 12 Nside²), got shape {m.shape}")
    mk = np.asarray(mask, dtype=np.float64)
    if mk.shape != (m.shape[1],):
        raise InputError(f"{mask_source}: mask has {mk.size} pixels, the map has {m.shape[1]}")
    if not np.all((mk == 0) | (mk == 1)):
        raise InputError(f"{mask_source}: mask is not binary (values other than 0 and 1)")
    if not mk.any():
        raise InputError(f"{mask_source}: mask has no valid (=1) pixel")
    if mk.all():
        raise InputError(f"{mask_source}: mask has no hole (=0) pixel: nothing to fill")
    if not np.all(np.isfinite(m)) or np.any(m < -1e30):
        raise InputError(f"{map_source}: the truth map must be complete (no NaN/UNSEEN pixel in T, Q or U)")
    return m, mk


def leakage_bins(nside: int, lmin: int = LMIN, n_bins: int = N_BINS) -> np.ndarray:
    """Integer bin edges (lower inclusive, upper exclusive), logarithmic from ``lmin`` to 3 Nside."""
    top = 3 * int(nside)
    if top <= lmin + 1:
        raise InputError(f"--fullsky: Nside {nside} reaches ℓ = {top - 1}, below ℓ_min = {lmin}")
    edges = np.unique(np.round(np.geomspace(lmin, top, n_bins + 1)).astype(int))
    return edges


def per_field_patch_px(mask) -> int:
    """Side of the gnomonic patches of the per-field fills: the smallest power of 2 (16 … 128)
    whose usable radius :math:`S/2 - S/8` (:func:`combine.healpix_inpaint.inpaint_healpix`) holds
    1.5 × the largest hole radius, capped at :data:`MAX_PATCH_DEG` across (small patches: fast)."""
    import healpy as hp

    from ..sphere.holes import find_holes, hole_geometry

    nside = hp.npix2nside(np.asarray(mask).size)
    pix = hp.nside2resol(nside)
    holes = np.flatnonzero(np.asarray(mask) == 0)
    n, labels = find_holes(holes, nside)
    r_px = float(hole_geometry(holes, labels, n, nside)[1].max()) / pix if n else 1.0
    size = 16
    while size < 128 and 3 * size / 8 < 1.5 * r_px and (2 * size) * pix <= math.radians(MAX_PATCH_DEG):
        size *= 2
    return size


def _per_field_fill(method: str, tqu_map, mask, *, sky: Sky, seed):
    """A scalar classical fill of T, Q and U separately through gnomonic patches."""
    import healpy as hp

    from ..baselines import get_baseline
    from ..healpix_inpaint import inpaint_healpix

    nside = hp.npix2nside(tqu_map.shape[1])
    size = per_field_patch_px(mask)
    fill = get_baseline(method, "--methods")

    def scalar(maps, masks):
        return fill(maps, masks, sky=sky, seed=seed)

    return np.stack([np.asarray(inpaint_healpix(scalar, tqu_map[f], mask, patch_size=size, progress=False,
                                                cluster_radius_px=0), dtype=np.float64) for f in range(3)])


def _network_fill(model, tqu_map, mask, *, sky: Sky) -> np.ndarray:
    """A 3-channel network through gnomonic T, Q, U patches
    (:func:`combine.healpix_inpaint_tqu.inpaint_healpix_tqu`); a network with a first-guess
    input corrects the joint sphere Wiener fill, as ``combine inpaint --fields TQU --model`` does."""
    from ..healpix_inpaint_tqu import inpaint_healpix_tqu

    first = None
    if getattr(getattr(model, "unet", None), "prefill", "none") != "none":
        from ..baselines.sphere_wiener_pol import sphere_tqu_fill

        first = np.asarray(sphere_tqu_fill(tqu_map, mask, sky=sky), dtype=np.float64)
    return np.asarray(inpaint_healpix_tqu(model, tqu_map, mask, first_guess_map=first, progress=False),
                      dtype=np.float64)


def fill_fullsky_tqu(method: str, tqu_map, mask, *, sky: Sky, seed=None, model=None) -> np.ndarray:
    """The (3, Npix) map with its holes filled by ``method`` (module docstring); ``nn`` needs a
    3-channel ``model``."""
    if method == "nn":
        if model is None:
            raise InputError("--methods: method 'nn' needs a model (--model NAME|DIR)")
        return _network_fill(model, tqu_map, mask, sky=sky)
    if method in ("wiener", "gcr"):
        from ..baselines.sphere_wiener_pol import sphere_tqu_fill

        return np.asarray(sphere_tqu_fill(tqu_map, mask, sky=sky, seed=seed, gcr=method == "gcr"), dtype=np.float64)
    if method in SPHERE_TQU_METHODS:
        return _per_field_fill(method, tqu_map, mask, sky=sky, seed=seed)
    raise InputError(f"--methods: {method!r} has no full-sky T, Q, U version (expected {', '.join(SPHERE_TQU_METHODS)})")


def fullsky_tqu_evaluation(truth, mask, *, sky: Sky, methods=("wiener",), seed: int = 0, band_ell=None,
                           lmin: int = LMIN, fills: dict | None = None, sky_label: str = "", model=None) -> dict:
    """Fill ``truth`` (3, Npix) where ``mask`` is 0 with each method and compare EE, BB (module docstring).

    Returns ``{"records", "edges", "ell", "cl": {name: {"ee", "bb"} unbinned}, "binned": {name:
    {"ee", "bb"}}, "f_sky", "nside", "band", "seconds": {method: s}, "methods", "sky_label"}``;
    names are ``truth``, ``zero_fsky`` and the methods. ``fills`` adds methods
    ``fill(tqu_map, mask, *, sky, seed) -> (3, Npix)``.
    """
    import healpy as hp

    from ..metrics_pol import fullsky_spectra_tqu

    truth, mask = check_fullsky_tqu(truth, mask)
    fills = dict(fills or {})
    nside = hp.npix2nside(truth.shape[1])
    band = (lmin, 2 * nside) if band_ell is None else (int(band_ell[0]), int(band_ell[1]))
    if not 2 <= band[0] < band[1] <= 3 * nside - 1:
        raise InputError(f"band: need 2 <= {band[0]} < {band[1]} <= 3 Nside - 1 = {3 * nside - 1}")
    masked = np.where(mask > 0, truth, 0.0)
    cl = {"truth": fullsky_spectra_tqu(truth), "zero_fsky": fullsky_spectra_tqu(truth, mask)}
    seconds = {}
    for method in methods:
        t0 = time.perf_counter()
        if method in fills:
            filled = fills[method](masked, mask, sky=sky, seed=seed)
        else:
            filled = fill_fullsky_tqu(method, masked, mask, sky=sky, seed=seed, model=model)
        seconds[method] = time.perf_counter() - t0
        filled = np.where(mask > 0, truth, np.asarray(filled, dtype=np.float64))
        if not np.all(np.isfinite(filled)):
            raise RuntimeError(f"method {method} left non-finite values in the full-sky holes")
        cl[method] = fullsky_spectra_tqu(filled)
    edges = leakage_bins(nside, lmin)
    ell = np.arange(cl["truth"]["ee"].size)
    centres = np.array([ell[lo:hi].mean() for lo, hi in zip(edges[:-1], edges[1:])])
    n_modes = np.array([np.sum(2 * ell[lo:hi] + 1) for lo, hi in zip(edges[:-1], edges[1:])])
    binned = {name: {x: np.array([s[x][lo:hi].mean() for lo, hi in zip(edges[:-1], edges[1:])]) for x in ("ee", "bb")}
              for name, s in cl.items()}
    f_sky = float(mask.mean())
    common = {"mask": "fullsky", "f_sky": f_sky, "nside": int(nside)}
    if sky_label:
        common["sky_label"] = sky_label
    records = []
    band_mean = {name: {x: float(s[x][band[0]:band[1] + 1].mean()) for x in ("ee", "bb")} for name, s in cl.items()}
    for name in cl:
        for b, centre in enumerate(centres):
            bin_info = {"ell_bin": float(centre), "ell_min": int(edges[b]), "ell_max": int(edges[b + 1] - 1)}
            for x in ("ee", "bb"):
                value = binned[name][x][b]
                ref = binned["truth"][x][b]
                records.append({"method": name, **common, "metric": f"fullsky_cl_{x}", "value": float(value),
                                "unit": "uK2", **bin_info})
                if name != "truth":
                    ratio = value / ref if ref > 0 else float("nan")
                    records.append({"method": name, **common, "metric": f"fullsky_{x}_ratio", "value": float(ratio),
                                    **bin_info})
                    cv = ref * math.sqrt(2.0 / n_modes[b])
                    records.append({"method": name, **common, "metric": f"fullsky_{x}_dev_cv",
                                    "value": float((value - ref) / cv) if cv > 0 else float("nan"), **bin_info})
        info = {"ell_min": band[0], "ell_max": band[1]}
        for x in ("ee", "bb"):
            records.append({"method": name, **common, "metric": f"fullsky_cl_{x}_band", "value": band_mean[name][x],
                            "unit": "uK2", **info})
            if name != "truth":
                t = band_mean["truth"][x]
                records.append({"method": name, **common, "metric": f"fullsky_{x}_band_ratio",
                                "value": band_mean[name][x] / t if t > 0 else float("nan"), **info})
        if name not in ("truth", "zero_fsky"):
            records.append({"method": name, **common, "metric": "fullsky_bb_zero_over_method",
                            "value": band_mean["zero_fsky"]["bb"] / band_mean[name]["bb"]
                            if band_mean[name]["bb"] > 0 else float("nan"), **info})
            records.append({"method": name, **common, "metric": "seconds", "value": seconds[name]})
    return {"records": records, "edges": edges, "ell": centres, "cl": cl, "binned": binned, "f_sky": f_sky,
            "nside": int(nside), "band": band, "seconds": seconds, "methods": tuple(methods), "band_mean": band_mean,
            "sky_label": sky_label}


def simulate_fullsky_tqu(nside: int, *, sky: Sky, n_holes: int, seed: int):
    """(truth (3, Npix) float64, point-source mask float64): a seeded T, Q, U sky of ``sky`` (already
    on this Nside, :func:`fullsky_sky`) and a drawn point-source catalogue
    (:func:`combine.sphere.point_sources.draw_catalogue`) whose smallest radius is the larger of
    15′ and 1.5 pixels (so every source masks pixels at a coarse Nside)."""
    import healpy as hp

    from ..sky.polarisation import simulate_healpix_tqu
    from ..sphere.point_sources import DEFAULT_MIN_RADIUS_ARCMIN, catalogue_mask, draw_catalogue

    if not hp.isnsideok(int(nside), nest=True) or int(nside) < 8:
        raise InputError(f"--fullsky-simulate: Nside must be a power of 2 of at least 8, got {nside}")
    if int(n_holes) < 1:
        raise InputError(f"--fullsky-holes: need at least one hole, got {n_holes}")
    seeds = np.random.SeedSequence([int(seed), 14]).spawn(2)
    truth = simulate_healpix_tqu(int(nside), sky=sky, pixwin=True, rng=np.random.default_rng(seeds[0]))
    r_min = max(DEFAULT_MIN_RADIUS_ARCMIN, 1.5 * hp.nside2resol(int(nside), arcmin=True))
    cat = draw_catalogue(int(n_holes), min_radius_arcmin=r_min, seed=int(seeds[1].generate_state(1)[0]))
    return np.asarray(truth, dtype=np.float64), catalogue_mask(cat, int(nside)).astype(np.float64)


__all__ = ["SPHERE_TQU_METHODS", "per_field_patch_px", "fullsky_sky", "check_fullsky_tqu", "leakage_bins", "fill_fullsky_tqu",
           "fullsky_tqu_evaluation", "simulate_fullsky_tqu", "LMIN"]
