"""Candidate T, Q, U formulations against the exact joint fill, dense, hole group by hole group.

Question (issue 14's cost point): can a T, Q, U sphere fill cost much less than the joint solve
(3n unknowns per group, 27 × the T Cholesky flops) and stay at its accuracy? Three estimators of
the hole pixels, for each group of :func:`combine.sphere.holes.hole_groups` (margin 6 px, the T
default) on the first ``--subset`` sources of the Planck-like mask, Nside 2048, the cached lensed
planck18 T, Q, U sky of ``bench_sphere_pol.py`` (1 μK·arcmin T, √2 for Q/U), with ``C`` the
pixel covariance of :mod:`combine.sphere.covariance_tqu` plus noise and ridge:

* **joint**: :math:`\\hat x_h = C_{h o} C_{o o}^{-1} d_o` over T, Q, U (what ``fill_holes`` does);
* **split**: T from T alone, :math:`C_{T_h T_o} A^{-1} T_o` with :math:`A = C_{T_oT_o}`, and Q, U
  from Q, U alone, :math:`C_{P_h P_S} B^{-1} P_S` with :math:`B = C_{P_SP_S}` over the context
  pixels ``S`` within ``m_P`` pixels of a hole pixel (TE ignored);
* **one-step**: the split plus one block Gauss–Seidel step of the joint system, i.e. the exact
  correction for TE with the cross terms of the conditional covariance dropped,

  .. math::

      \\hat T_h \\mathrel{+}= \\left(C_{T_h P_S} - C_{T_h T_o} A^{-1} X\\right) B^{-1}
      \\left(P_S - X^{\\mathsf T} A^{-1} T_o\\right), \\qquad X = C_{T_o P_S},

  and the same for Q, U with the roles of T and P exchanged. Its Cholesky flops are those of the
  split (:math:`n^3/3 + 8 n_S^3/3`), plus matrix-vector products.

Output: pooled hole RMSE (μK) of T, Q, U per estimator and ``m_P``, and the ratios to the joint
fill. Dense numpy per group (a measurement, not a product path).

Usage: ``PYTHONPATH=src python benchmarks/bench_tqu_onestep.py --subset 80 --margins-qu 3,4,6
--json docs/polarisation/bench_tqu_onestep.json`` (about 2 min CPU per margin at subset 80).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

NSIDE = 2048


def run(subset: int, margin_qu_px: float, workdir: Path) -> dict:
    import healpy as hp
    import torch
    from scipy.spatial import cKDTree

    from combine.sky import Sky
    from combine.sphere.covariance_tqu import tqu_table
    from combine.sphere.holes import hole_groups
    from combine.sphere.point_sources import catalogue_mask, draw_catalogue

    tqu = np.load(workdir / f"tqu-{NSIDE}-201-lensed.npy").astype(np.float64)
    valid = catalogue_mask(draw_catalogue(seed=0)[:subset], NSIDE).astype(bool)
    sky = Sky.planck18(noise_uk_arcmin=1.0, pixel_arcmin=hp.nside2resol(NSIDE, arcmin=True))
    res = hp.nside2resol(NSIDE)
    groups = hole_groups(valid, NSIDE, margin_rad=6.0 * res, max_group_pixels=3000)
    table = tqu_table(sky, NSIDE, 0.05)
    n_t = (sky.noise_uk_arcmin / hp.nside2resol(NSIDE, arcmin=True)) ** 2
    noise = np.array([n_t, 2 * n_t, 2 * n_t])
    ridge = 1e-8 * table.field_scales_uk2()
    err = {k: [] for k in ("joint", "split", "onestep")}
    n_s = n_o = 0
    for g in range(len(groups)):
        ctx, holes = groups.context(g), groups.holes(g)
        vo = np.stack(hp.pix2vec(NSIDE, ctx), 1)
        vh = np.stack(hp.pix2vec(NSIDE, holes), 1)
        c_oo = table.between(torch.from_numpy(vo), torch.from_numpy(vo)).numpy()
        c_ho = table.between(torch.from_numpy(vh), torch.from_numpy(vo)).numpy()
        c_oo = 0.5 * (c_oo + c_oo.T) + np.diag(np.tile(noise + ridge, ctx.size))
        d = tqu[:, ctx].T.reshape(-1)
        truth = tqu[:, holes].T.reshape(-1)
        joint = c_ho @ np.linalg.solve(c_oo, d)
        sub = np.flatnonzero(cKDTree(vh).query(vo)[0] <= margin_qu_px * res)
        i_t = 3 * np.arange(ctx.size)
        i_p = np.sort(np.concatenate([3 * sub + 1, 3 * sub + 2]))
        h_t = 3 * np.arange(holes.size)
        h_p = np.sort(np.concatenate([h_t + 1, h_t + 2]))
        a, b, x = c_oo[np.ix_(i_t, i_t)], c_oo[np.ix_(i_p, i_p)], c_oo[np.ix_(i_t, i_p)]
        w_t, w_p = np.linalg.solve(a, d[i_t]), np.linalg.solve(b, d[i_p])
        split = np.empty_like(joint)
        split[h_t] = c_ho[np.ix_(h_t, i_t)] @ w_t
        split[h_p] = c_ho[np.ix_(h_p, i_p)] @ w_p
        one = split.copy()
        v = np.linalg.solve(b, d[i_p] - x.T @ w_t)
        one[h_t] += c_ho[np.ix_(h_t, i_p)] @ v - c_ho[np.ix_(h_t, i_t)] @ np.linalg.solve(a, x @ v)
        u = np.linalg.solve(a, d[i_t] - x @ w_p)
        one[h_p] += c_ho[np.ix_(h_p, i_t)] @ u - c_ho[np.ix_(h_p, i_p)] @ np.linalg.solve(b, x.T @ u)
        for name, est in (("joint", joint), ("split", split), ("onestep", one)):
            err[name].append((est - truth).reshape(holes.size, 3))
        n_s += sub.size
        n_o += ctx.size
    rmse = {k: np.sqrt(np.mean(np.concatenate(v) ** 2, axis=0)) for k, v in err.items()}
    return {"margin_qu_px": margin_qu_px, "groups": len(groups), "qu_over_t_context_pixels": n_s / n_o,
            "rmse_uk": {k: dict(zip("TQU", map(float, v))) for k, v in rmse.items()},
            "over_joint": {k: dict(zip("TQU", map(float, rmse[k] / rmse["joint"]))) for k in ("split", "onestep")}}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="/tmp/bench_sphere", type=Path)
    p.add_argument("--subset", type=int, default=80)
    p.add_argument("--margins-qu", default="3,4,6")
    p.add_argument("--json", required=True, type=Path)
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    record = {"nside": NSIDE, "subset_sources": args.subset, "margin_t_px": 6.0, "runs": [],
              "machine": {"cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}
    for m in (float(s) for s in args.margins_qu.split(",")):
        t0 = time.process_time()
        out = run(args.subset, m, args.workdir)
        out["cpu_s"] = time.process_time() - t0
        print(json.dumps(out), flush=True)
        record["runs"].append(out)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
