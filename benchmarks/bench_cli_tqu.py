"""End-to-end cost of ``combine inpaint --fields TQU`` on a HEALPix FITS map, against the
library call it wraps and against the T-only command on the same sky and mask.

Steps: ``combine simulate --fields TQU --out sky.fits`` (planck18, 5' beam, 1 μK·arcmin, seed
``--seed``); ``combine masks --kind sphere-points --n N`` (Planck-like point sources); then, each
under ``/usr/bin/time -v`` (wall, user+sys CPU, peak RSS):

* ``combine inpaint --fields TQU --method wiener`` (FITS in, FITS out);
* ``combine inpaint --method wiener`` (T only: the I_STOKES column);

and, in this process, :func:`combine.baselines.sphere_wiener_pol.sphere_tqu_fill` on the same
map (``time.process_time``): the command's overhead is reading, checks and writing. The load
average is recorded: the machine may be shared.

Usage (background)::

    PYTHONPATH=src COMBINE_CACHE_DIR=... nohup .venv/bin/python benchmarks/bench_cli_tqu.py \\
        --nside 512 --n 300 --json bench_cli_tqu.json > bench_cli_tqu.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _timed(argv, env):
    """Run ``argv`` under /usr/bin/time -v: (wall s, user+sys s, peak RSS MB, stdout)."""
    res = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True, env=env)
    if res.returncode:
        raise SystemExit(f"{' '.join(argv)} failed: {res.stderr[-2000:]}")

    def field(name):
        return re.search(rf"{re.escape(name)}: (.*)", res.stderr).group(1).strip()

    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
    wall_s = sum(float(x) * 60 ** k for k, x in enumerate(reversed(wall)))
    cpu_s = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    rss_mb = int(field("Maximum resident set size (kbytes)")) / 1024
    return wall_s, cpu_s, rss_mb, res.stdout.strip()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nside", type=int, default=512)
    p.add_argument("--n", type=int, default=300, help="point sources in the mask")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    combine = [sys.executable, "-m", "combine"]
    env = dict(os.environ)
    out = {"nside": args.nside, "n_sources": args.n, "seed": args.seed, "load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        _timed(combine + ["simulate", "--quiet", "--fields", "TQU", "--nside", str(args.nside), "--out",
                          str(d / "sky.fits"), "--seed", str(args.seed), "--noise", "1"], env)
        _timed(combine + ["masks", "--quiet", "--kind", "sphere-points", "--nside", str(args.nside), "--n",
                          str(args.n), "--seed", str(args.seed), "--out", str(d / "mask.fits")], env)
        for name, extra in (("tqu_wiener", ["--fields", "TQU"]), ("t_wiener", [])):
            wall, cpu, rss, line = _timed(combine + ["inpaint", "--quiet", *extra, "--method", "wiener", "--input",
                                                     str(d / "sky.fits"), "--mask", str(d / "mask.fits"),
                                                     "--output", str(d / f"{name}.fits")], env)
            out[name] = {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": rss, "summary": line}
            print(name, out[name], flush=True)
        import healpy as hp
        import numpy as np

        from combine.baselines.sphere_wiener_pol import sphere_tqu_fill
        from combine.sky import Sky

        tqu = hp.read_map(d / "sky.fits", field=None, dtype=np.float32)
        mask = hp.read_map(d / "mask.fits", dtype=np.float32)
        sky = Sky.planck18(noise_uk_arcmin=1.0).replace(pixel_arcmin=hp.nside2resol(args.nside, arcmin=True))
        t0, w0 = time.process_time(), time.perf_counter()
        sphere_tqu_fill(tqu, mask, sky=sky)
        out["library_tqu_fill"] = {"cpu_s": time.process_time() - t0, "wall_s": time.perf_counter() - w0}
        out["masked_fraction"] = float(np.mean(mask == 0))
    out["load_average_end"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
