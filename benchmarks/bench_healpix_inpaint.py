"""Time and peak memory of ``combine inpaint`` on a full-sky map with point-source holes.

Makes (once, cached in ``--workdir``) a simulated planck18 CMB map (μK, beam 5', RING, float32)
at ``--nside`` and a mask of ``--n-holes`` disks at uniform random positions with radii uniform
in [``--rmin``, ``--rmax``] arcmin; the masked pixels of the input map hold ``UNSEEN``. Then runs

    /usr/bin/time -v combine inpaint --quiet --model MODEL --input map.fits --mask mask.fits \\
        --output out.fits --batch-size B

with ``OMP_NUM_THREADS=--threads`` and reports the wall time, the peak resident memory, the
number of holes, and two checks of the output (valid pixels bit-identical, every hole pixel
finite) plus the hole RMSE against the unmasked map and, for scale, the diffusive fill's.

``--model`` defaults to the shipped ``planck18-t128`` if installed, else an untrained t128
saved in the work directory (timing only: its fills are meaningless).

Usage::

    .venv/bin/python benchmarks/bench_healpix_inpaint.py [--nside 2048] [--n-holes 2000] \\
        [--threads 2] [--workdir /tmp/bench_healpix_inpaint] [--model NAME|DIR] [--no-diffusive]

Making the Nside 2048 map takes a minute or two and ~2 GB (not part of the timing).

Measured 2026-12-01 (after the network's first guess became the sphere-native Wiener fill,
issue 13), ``--no-diffusive``, load 1-2: wall 134.8 s, CPU 97.3 s, peak RSS 1.67 GB, hole RMSE
10.35 μK; ``combine inpaint --method wiener`` on the same files: 10.35 μK, 19.0 s wall (15.2 s
CPU), 1.07 GB; ``--method gcr --seed 1``: 15.28 μK, 21.9 s wall, 1.11 GB.

Measured 2026-11-26 on the 2-core machine, Nside 2048, 1980 holes (197,974 pixels, radii 3-15'),
``--threads 1``, shipped planck18-t128 (t128-lw): wall 123.2 s, CPU 122.6 s, peak RSS 1.40 GB,
hole RMSE 13.6 μK (diffusive fill through the same pipeline, ``--no-diffusive`` off: 33.3 μK).
The earlier t128-gm model: wall 95.7 s, 14.6 μK; before hole-edge patch pixels with a masked
interpolation neighbour were counted as holes (``combine.healpix_inpaint``, step 3) it gave
31.6 μK: the biased edge values spoil fills that match the hole edge to high order.

Earlier (2026-11-25, t128-bh, load ~3.7 from other jobs): ``--threads 1`` wall 137 s, CPU 102.5 s;
``--threads 2`` wall 303 s, CPU 236 s (OpenMP threads spin against the other jobs; use one
thread on a busy machine). Outside the network, the pipeline (holes, clusters, projections,
write-back) costs ~9 s and reading the two FITS files ~2.5 s.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_inputs(workdir: Path, nside: int, n_holes: int, rmin: float, rmax: float, seed: int):
    import healpy as hp

    from combine.image_io import write_healpix_fits
    from combine.sky.healpix import simulate_healpix_map

    tag = f"n{nside}-h{n_holes}-r{rmin:g}-{rmax:g}-s{seed}"
    truth_path, map_path, mask_path = (workdir / f"{k}-{tag}.fits" for k in ("truth", "map", "mask"))
    if truth_path.exists() and map_path.exists() and mask_path.exists():
        return truth_path, map_path, mask_path
    t0 = time.time()
    truth = simulate_healpix_map(nside, seed=seed)
    print(f"simulated Nside {nside} map in {time.time() - t0:.0f} s", flush=True)
    rng = np.random.default_rng(seed + 1)
    mask = np.ones(truth.size, np.float32)
    vecs = hp.ang2vec(np.arccos(rng.uniform(-1, 1, n_holes)), rng.uniform(0, 2 * np.pi, n_holes))
    for v, r in zip(vecs, rng.uniform(rmin, rmax, n_holes)):
        mask[hp.query_disc(nside, v, np.radians(r / 60.0))] = 0
    given = np.where(mask > 0, truth, np.float32(hp.UNSEEN)).astype(np.float32)
    write_healpix_fits(truth_path, truth, unit="uK")
    write_healpix_fits(map_path, given, unit="uK")
    write_healpix_fits(mask_path, mask)
    return truth_path, map_path, mask_path


def default_model(workdir: Path) -> tuple[str, str]:
    from combine.models import list_pretrained

    if "planck18-t128" in list_pretrained():
        return "planck18-t128", "shipped planck18-t128"
    d = workdir / "untrained-t128"
    if not (d / "config.json").is_file():
        import torch

        from combine.models import save_model
        from combine.nn import PConvUNet

        torch.manual_seed(0)
        save_model(PConvUNet("t128").eval(), d)
    return str(d), "untrained t128 (timing only)"


def parse_time_v(text: str) -> dict:
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    parts = [float(p) for p in wall.split(":")]
    seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    user = float(re.search(r"User time \(seconds\): (\S+)", text).group(1))
    sys_t = float(re.search(r"System time \(seconds\): (\S+)", text).group(1))
    return {"wall_s": seconds, "peak_rss_gb": rss_kb / 1024**2, "cpu_s": user + sys_t}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nside", type=int, default=2048)
    ap.add_argument("--n-holes", type=int, default=2000)
    ap.add_argument("--rmin", type=float, default=3.0, help="smallest hole radius, arcmin")
    ap.add_argument("--rmax", type=float, default=15.0, help="largest hole radius, arcmin")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model", default=None)
    ap.add_argument("--workdir", default="/tmp/bench_healpix_inpaint")
    ap.add_argument("--no-diffusive", action="store_true", help="skip the diffusive-fill comparison")
    args = ap.parse_args(argv)

    import healpy as hp

    from combine.image_io import read_healpix_fits

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    truth_path, map_path, mask_path = make_inputs(workdir, args.nside, args.n_holes, args.rmin, args.rmax, args.seed)
    model, model_desc = (args.model, args.model) if args.model else default_model(workdir)
    out_path = workdir / "out.fits"
    combine = str(Path(sys.executable).with_name("combine"))
    cmd = ["/usr/bin/time", "-v", combine, "inpaint", "--quiet", "--model", model, "--input", str(map_path),
           "--mask", str(mask_path), "--output", str(out_path), "--batch-size", str(args.batch_size)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    print("running:", f"OMP_NUM_THREADS={args.threads}", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(proc.returncode)
    stats = parse_time_v(proc.stderr)

    truth = read_healpix_fits(truth_path).values
    mask = read_healpix_fits(mask_path).values
    out = read_healpix_fits(out_path).values
    holes = mask == 0
    from combine.healpix_inpaint import find_holes

    n_holes, _ = find_holes(np.flatnonzero(holes), args.nside)
    identical = bool(np.array_equal(out[~holes], truth[~holes]))
    finite = bool(np.isfinite(out[holes]).all())
    rmse = float(np.sqrt(np.mean((out[holes].astype(np.float64) - truth[holes]) ** 2)))
    line = (f"Nside {args.nside}, {n_holes} holes ({int(holes.sum())} pixels, radii {args.rmin:g}-{args.rmax:g}'), "
            f"model {model_desc}, {args.threads} thread(s): wall {stats['wall_s']:.1f} s, "
            f"CPU {stats['cpu_s']:.1f} s, peak RSS {stats['peak_rss_gb']:.2f} GB; valid pixels identical: "
            f"{identical}; hole pixels finite: {finite}; hole RMSE {rmse:.2f} μK")
    if not args.no_diffusive:
        from combine.baselines import diffusive_fill
        from combine.healpix_inpaint import inpaint_healpix

        t0 = time.time()
        given = np.where(holes, np.float32(hp.UNSEEN), truth)
        dif = inpaint_healpix(diffusive_fill, given, mask, progress=False, pixel_arcmin=1.7177, patch_size=128)
        drmse = float(np.sqrt(np.mean((dif[holes].astype(np.float64) - truth[holes]) ** 2)))
        line += f" (diffusive fill through the same pipeline: {drmse:.2f} μK, {time.time() - t0:.0f} s in-process)"
    print(line)


if __name__ == "__main__":
    main()
