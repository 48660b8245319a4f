"""T, Q, U holes filled split: T as a temperature map alone, Q and U jointly from Q and U alone.

The joint fill of :func:`combine.sphere.wiener.fill_holes` solves for T, Q, U together: 3 unknowns
per pixel, so 27 × the Cholesky flops of the T fill. The split fill solves two smaller problems,
each exactly (its own hole groups, contexts and batched Cholesky solve):

.. math::

    \\mu^T_h = C^{TT}_{ho}(C^{TT}_{oo} + N^T_o)^{-1} T_o \\quad (\\text{margin } m_T), \\qquad
    \\mu^P_h = C^{PP}_{ho}(C^{PP}_{oo} + N^P_o)^{-1} P_o \\quad (\\text{margin } m_P),\\quad P = (Q, U),

with :math:`C^{PP}` the spin-2 Q/U covariance of :mod:`combine.sphere.covariance_qu` and
:math:`m_P` (``margin_qu_px``) its own margin (:data:`DEFAULT_MARGIN_QU_PX`, measured: Q/U need
a context as wide as T's, so it is not smaller than :math:`m_T`).
A constrained realisation draws T from its T-only conditional covariance and (Q, U) from theirs,

.. math::

    T_h = \\mu^T_h + L_T z_T, \\qquad P_h = \\mu^P_h + L_P z_P, \\qquad z_T, z_P \\sim N(0, I) \\text{ independent}.

**What is ignored**: the T–E cross-covariance :math:`C^{TP}` everywhere: T does not inform Q, U
(nor Q, U T) in the means, and the draws leave out the T–P cross-covariance of the residual
(:math:`C^{TP}_{hh} - C^{TP}_{ho}\\ldots`), so T and Q/U residuals are independent where the joint
fill's are correlated.

**Measured** (docs/polarisation.md "Split T | Q, U solve"; ``benchmarks/bench_sphere_pol.py
--split-margins``; Nside 2048 planck18, 5′ beam, 1 μK·arcmin, the first 150 sources of the Planck-like
mask, T at 6 px): over the joint fill at 12 px, the Q/U hole RMSE is +5.1/+4.6 % at a 2 px Q/U
margin, +2.9/+2.5 % at 3 px, +0.9/+1.1 % at 6 px, +0.5/+0.8 % at 7 px (the default:
:data:`DEFAULT_MARGIN_QU_PX`), and T's +2.6 % (the T-only fill at 6 px). Against the T-only fill the
split costs 2.6 × the CPU (Wiener) at a 2 px Q/U margin, 3.1 × at 3 px, 9.8 × at 7 px (the joint
fill at 6 px: 11.2 ×), on a loaded machine; on the whole mask (2,000 sources) 2.1 × at 2 px and
3.5 × at 3 px (GCR 2.9 × and 4.0 ×). The split at 6 px is the joint fill with TE set to zero (the same numbers).

The T part is exactly the T-only fill (``fill_holes(hmap[0], ...)``, same groups, same draws
``default_rng([seed, r, g])``); the Q/U draws use ``default_rng([s_P, r, g])`` with
:math:`s_P` derived from the seed (:func:`qu_seed`), so that they are independent of T's and a
realisation still depends only on its seed.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError

#: Default Q/U context margin of the split fill, in map pixels: the smallest whose Q and U hole RMSE
#: are within 1 % of the joint fill at 12 px (module docstring).
DEFAULT_MARGIN_QU_PX = 7.0

#: Entropy word that separates the Q/U draw streams from the T ones.
QU_STREAM = 0x5155


def qu_seed(seed: int) -> int:
    """Seed of the Q/U draws of a split GCR with ``seed``: ``SeedSequence([seed, QU_STREAM])``'s first word."""
    return int(np.random.SeedSequence([int(seed), QU_STREAM]).generate_state(1, np.uint64)[0])


def fill_split(hmap, valid, *, sky, nest: bool = False, margin_px: float, margin_qu_px: float | None = None,
               noise_var_map=None, realisations: int = 0, seed: int | None = None, progress=False, **options):
    """Split fill of a (3, Npix) T, Q, U map (module docstring): a :class:`~combine.sphere.wiener.SphereFill`
    over the T fill's groups, ``mean_uk`` (3, n), ``draws_uk`` (R, 3, n).

    ``noise_var_map`` (3, Npix) is split into its T row and its Q, U rows; ``progress``: ``True``
    shows one bar per part, a callable gets the mean of the two parts' holes done."""
    from .wiener import SphereFill, fill_holes

    margin_qu = DEFAULT_MARGIN_QU_PX if margin_qu_px is None else float(margin_qu_px)
    if not (math.isfinite(margin_qu) and margin_qu > 0):
        raise InputError(f"margin_qu_px: must be > 0, got {margin_qu_px!r}")
    hmap = np.asarray(hmap)
    noise_t = noise_qu = None
    if noise_var_map is not None:
        var = np.asarray(noise_var_map)
        if var.shape != hmap.shape:
            raise InputError(f"noise map: expected T, Q, U variances of shape {hmap.shape}, got {var.shape}")
        noise_t, noise_qu = var[0], var[1:]
    done = [0, 0]

    def part(k):
        if not callable(progress):
            return progress

        def report(n):
            done[k] = int(n)
            progress((done[0] + done[1]) // 2)
        return report

    t = fill_holes(hmap[0], valid, sky=sky, nest=nest, margin_px=margin_px, noise_var_map=noise_t,
                   realisations=realisations, seed=seed, progress=part(0), **options)
    p = fill_holes(hmap[1:], valid, sky=sky, nest=nest, margin_px=margin_qu, noise_var_map=noise_qu,
                   realisations=realisations, seed=None if seed is None else qu_seed(seed), progress=part(1),
                   **options)
    # the two fills order the same hole pixels by their own groups: put Q, U in T's order
    srt = np.argsort(p.groups.hole_pixels)
    at = srt[np.searchsorted(p.groups.hole_pixels[srt], t.groups.hole_pixels)]
    mean = np.concatenate([t.mean_uk[None], p.mean_uk[:, at]])
    draws = np.concatenate([t.draws_uk[:, None], p.draws_uk[:, :, at]], axis=1)
    return SphereFill(t.groups, mean, draws)


__all__ = ["fill_split", "qu_seed", "DEFAULT_MARGIN_QU_PX", "QU_STREAM"]
