"""Metrics of one (method, mask) cell of an evaluation: hole RMSE, |Δ| statistics, power ratio,
KS test and Gaussian fits of the hole pixels (the list of metrics is in :mod:`combine.evaluation`)."""

from __future__ import annotations

import math

import numpy as np

#: ℓ range whose per-bin power ratios are averaged into ``power_ratio_band``.
POWER_BAND_ELL = (300.0, 3000.0)
#: Hole pixels kept per (method, mask) for histograms (a random subset beyond this).
MAX_HOLE_SAMPLES = 200_000


def _pooled_rmse(filled, target, hole):
    """Pooled hole RMSE and its 1σ error from the scatter of per-patch MSEs.

    .. math:: \\mathrm{RMSE} = \\sqrt{\\sum_i s_i / \\sum_i n_i},\\quad
              \\sigma_\\mathrm{RMSE} \\approx \\sigma(\\mathrm{MSE}_i) / (2\\,\\mathrm{RMSE}\\sqrt{N})
    """
    d2 = np.where(hole, (filled.astype(np.float64) - target) ** 2, 0.0)
    s = d2.reshape(len(d2), -1).sum(axis=1)
    n = hole.reshape(len(hole), -1).sum(axis=1)
    keep = n > 0
    if not keep.any():
        return float("nan"), float("nan")
    rmse = math.sqrt(s[keep].sum() / n[keep].sum())
    per_patch = s[keep] / n[keep]
    if keep.sum() > 1 and rmse > 0:
        err = float(per_patch.std(ddof=1) / math.sqrt(keep.sum()) / (2 * rmse))
    else:
        err = float("nan")
    return rmse, err


def cell_metrics(filled, target, masks, *, pixel_arcmin: float, rng=None) -> tuple[list[dict], dict]:
    """All metrics of one method on one set of patches and masks.

    Parameters
    ----------
    filled, target : (N, H, W) arrays, μK
        Filled patches (valid pixels already composited from the target) and the truth.
    masks : (N, H, W) array
        1 = valid, 0 = hole.
    pixel_arcmin : float
        Pixel side, for the flat-sky spectra.

    Returns
    -------
    records : list of dict
        ``{"metric", "value", ...}`` without method/mask (the caller adds them).
    samples : dict
        ``{"filled": hole values, "truth": hole values}`` (subsampled to ``MAX_HOLE_SAMPLES``).
    """
    from .. import metrics

    filled = np.asarray(filled, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    hole = np.asarray(masks) < 0.5
    rec = []

    def add(metric, value, **extra):
        rec.append({"metric": metric, "value": None if value is None else float(value), **extra})

    rmse, err = _pooled_rmse(filled, target, hole)
    add("rmse_hole", rmse, err=err)

    valid = (~hole).astype(np.float32)
    for region in ("hole", "patch"):
        st = metrics.abs_diff_stats(filled, target, valid, region=region)
        add(f"abs_diff_mean_{region}", st["mean"])
        add(f"abs_diff_std_{region}", st["std"])
        add(f"abs_diff_percent_{region}", st["percent"])

    add("hole_variance_ratio", metrics.hole_variance_ratio(filled, target, 1.0 - hole))

    ell, ratio, ratio_err, edges = _power_ratio(filled, target, pixel_arcmin)
    for b in range(len(ell)):
        add("power_ratio", ratio[b], err=float(ratio_err[b]), ell_bin=float(ell[b]),
            ell_min=float(edges[b]), ell_max=float(edges[b + 1]))
    band = (ell >= POWER_BAND_ELL[0]) & (ell <= POWER_BAND_ELL[1]) & np.isfinite(ratio)
    if band.any():
        add("power_ratio_band", float(np.mean(ratio[band])),
            err=float(np.sqrt(np.sum(ratio_err[band] ** 2)) / band.sum()),
            ell_min=POWER_BAND_ELL[0], ell_max=POWER_BAND_ELL[1])

    fv = filled[hole]
    tv = target[hole]
    ks_stat, ks_p = metrics.ks_test(fv, tv)
    add("ks_statistic", ks_stat)
    add("ks_pvalue", ks_p)
    mu_f, sd_f = metrics.gaussian_fit(fv)
    mu_t, sd_t = metrics.gaussian_fit(tv)
    add("gauss_mu_hole", mu_f, truth=float(mu_t))
    add("gauss_sigma_hole", sd_f, truth=float(sd_t))

    if fv.size > MAX_HOLE_SAMPLES:
        rng = np.random.default_rng(0) if rng is None else rng
        idx = rng.choice(fv.size, MAX_HOLE_SAMPLES, replace=False)
        fv, tv = fv[idx], tv[idx]
    return rec, {"filled": fv.astype(np.float32), "truth": tv.astype(np.float32),
                 "fit": (float(mu_f), float(sd_f)), "fit_truth": (float(mu_t), float(sd_t))}


def _power_ratio(filled, target, pixel_arcmin):
    """(ell centres, ratio, cosmic-variance error, bin edges) of the pooled flat-sky spectra."""
    from .. import metrics

    out = metrics.power_ratio(filled, target, pixel_arcmin=pixel_arcmin)
    return tuple(np.asarray(x, dtype=np.float64) for x in (out["ell"], out["ratio"], out["err"], out["edges"]))


__all__ = ["cell_metrics", "POWER_BAND_ELL", "MAX_HOLE_SAMPLES"]
