"""Figures of the T, Q, U evaluation: BB leakage of filled flat patches and of filled full skies.

The same conventions as :mod:`combine.plots` (methods named by its :data:`~combine.plots.METHOD_LABELS`,
the one legend table, and coloured by :data:`~combine.plots.METHOD_COLOURS`; axes with units;
written atomically). Spectra are drawn on a logarithmic axis: the leakage of a zero or
per-field fill and that of a Wiener fill differ by orders of magnitude.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .plots import METHOD_LABELS, _save, mask_label, method_colour, method_label
from .sky.defaults import PIXEL_ARCMIN

#: Fixed margins (a constrained layout took ~1 s per figure on the shared cores); the legend sits
#: right of the second panel.
_GRID = dict(left=0.06, right=0.80, bottom=0.12, top=0.82, wspace=0.25)


def _positive(y):
    y = np.asarray(y, dtype=np.float64)
    return np.where(np.isfinite(y) & (y > 0), y, np.nan)


def plot_flat_bb_leakage(path, ell, bb_truth, ee_truth, methods: dict, *, mask_spec: str = "",
                         pixel_arcmin: float = PIXEL_ARCMIN, title: str = "") -> Path:
    r"""Flat-sky BB of filled patches by method (left) and the B power of each fill's error (right).

    Parameters
    ----------
    ell : (B,) bin centres
    bb_truth, ee_truth : (B,) the truth's apodised spectra (μK², mean over patches)
    methods : dict[str, dict]
        Per method ``{"bb": (B,), "bb_residual": (B,)}``: the filled patches' BB and
        :math:`\hat C^{BB}[\mathrm{fill} - \mathrm{truth}]` (μK²).

    Left: :math:`\hat C^{BB}_{fill}/\hat C^{BB}_{true}` (1 = no leakage; for a pure-E truth the
    denominator is the estimator's own E→B floor). Right: the residual's BB with the truth's EE
    and BB dashed for scale.
    """
    ell = np.asarray(ell, dtype=np.float64)
    ok = np.isfinite(ell)
    fig = Figure(figsize=(13.4, 4.6))
    left, right = fig.subplots(1, 2, gridspec_kw=_GRID)
    bb_truth = np.asarray(bb_truth, dtype=np.float64)
    ratios = []
    for m, s in methods.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.asarray(s["bb"], dtype=np.float64) / bb_truth
        ratios.append(_positive(ratio)[ok])
        left.plot(ell[ok], _positive(ratio)[ok], marker=".", color=method_colour(m), label=method_label(m))
    spread = np.concatenate(ratios) if ratios else np.ones(1)
    if np.nanmax(spread) > 10 * np.nanmin(spread):
        left.set_yscale("log")  # a fill far off must not flatten the others
        right.semilogy(ell[ok], _positive(s["bb_residual"])[ok], marker=".", color=method_colour(m),
                       label=method_label(m))
    left.axhline(1.0, color="k", lw=0.8, ls="--")
    right.semilogy(ell[ok], _positive(ee_truth)[ok], "k--", lw=1, label="truth EE")
    right.semilogy(ell[ok], _positive(bb_truth)[ok], "k:", lw=1, label="truth BB")
    left.set_ylabel("C^BB(fill) / C^BB(truth) [ratio]")
    right.set_ylabel("C^BB of (fill − truth) [μK²]")
    for ax in (left, right):
        ax.set_xlabel("multipole ℓ")
        ax.grid(alpha=0.3)
    left.set_title("BB of the filled patches relative to the truth's", fontsize=10)
    right.set_title("B power of the fill's error", fontsize=10)
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    where = mask_label(mask_spec, pixel_arcmin) if mask_spec else ""
    fig.suptitle((title or "Apodised flat-sky BB: what each fill leaks") + (f"\n{where}" if where else ""), fontsize=10)
    return _save(fig, path)


def plot_fullsky_bb_leakage(path, ell, binned: dict, *, f_sky: float, nside: int, title: str = "",
                            methods=None) -> Path:
    r"""Full-sky binned :math:`C_\ell^{BB}` (left) and :math:`C_\ell^{EE}` ratio to the truth (right) by method.

    ``binned`` maps ``truth``, ``zero_fsky`` (the cut sky over :math:`f_{sky}`) and each method to
    ``{"ee": (B,), "bb": (B,)}`` binned anafast spectra (μK²) at bin centres ``ell`` (ℓ from 30 to 3 Nside).
    """
    ell = np.asarray(ell, dtype=np.float64)
    names = [n for n in binned if n != "truth"] if methods is None else ["zero_fsky", *methods]
    fig = Figure(figsize=(13.4, 4.6))
    left, right = fig.subplots(1, 2, gridspec_kw=_GRID)
    left.semilogy(ell, _positive(binned["truth"]["bb"]), "k--", lw=1.2, label="truth (no mask)")
    for n in names:
        style = dict(ls=":" if n == "zero_fsky" else "-", marker=".")
        # the sphere fills have their own legend names (the patch "wiener" is the dense exact one)
        key = f"{n}-sphere" if f"{n}-sphere" in METHOD_LABELS else n
        style.update(color=method_colour(key), label=method_label(key))
        left.semilogy(ell, _positive(binned[n]["bb"]), **style)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.asarray(binned[n]["ee"]) / np.asarray(binned["truth"]["ee"])
        right.plot(ell, ratio, **style)
    right.axhline(1.0, color="k", lw=0.8, ls="--")
    left.set_ylabel("binned C_ℓ^BB [μK²]")
    right.set_ylabel("C_ℓ^EE / C_ℓ^EE(truth) [ratio]")
    for ax in (left, right):
        ax.set_xlabel("multipole ℓ (bin centres)")
        ax.grid(alpha=0.3)
    left.set_title("BB of the filled maps (anafast)", fontsize=10)
    right.set_title("EE relative to the truth", fontsize=10)
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle((title or f"Full-sky E→B leakage by method, Nside {nside}") + f"\nf_sky = {f_sky:.4f}; "
                 "Wiener and GCR filled on the sphere, classical fills per field", fontsize=10)
    return _save(fig, path)


__all__ = ["plot_flat_bb_leakage", "plot_fullsky_bb_leakage"]
