"""What ``combine inpaint`` imports: not healpy's plotting (matplotlib.pyplot) nor CAMB when its
spectrum is cached, which cost ~0.4 s and 0.4-1 s of every run (``python -X importtime``)."""

import os
import subprocess
import sys
from pathlib import Path

import healpy as hp
import numpy as np

from combine.image_io import write_healpix_fits
from combine.sky import Sky

SCRIPT = """
import sys
from combine.cli import main
status = main(sys.argv[1:])
import healpy
loaded = ("matplotlib" in sys.modules, "camb" in sys.modules, hasattr(healpy, "mollview"))
import matplotlib.figure  # still importable afterwards
print(status, *loaded, healpy.nside2npix(4))
"""


def test_inpaint_imports_neither_plotting_nor_camb(tmp_path):
    nside = 16
    rng = np.random.default_rng(1)
    m = rng.normal(0, 100, hp.nside2npix(nside))
    valid = np.ones(m.size, bool)
    valid[hp.query_disc(nside, hp.ang2vec(30, 20, lonlat=True), np.radians(4))] = False
    write_healpix_fits(tmp_path / "map.fits", np.where(valid, m, hp.UNSEEN).astype(np.float32), unit="uK")
    write_healpix_fits(tmp_path / "mask.fits", valid.astype(np.float32), column="MASK")
    Sky.planck18().spectra_uk2()  # the command's spectrum, cached (computed here if the cache is cold)
    src = Path(__file__).resolve().parents[1] / "src"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]))
    argv = ["inpaint", "--quiet", "--method", "wiener", "--input", tmp_path / "map.fits", "--mask",
            tmp_path / "mask.fits", "--output", tmp_path / "out.fits"]
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *map(str, argv)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1].split() == ["0", "False", "False", "False", "192"]
    assert (tmp_path / "out.fits").exists()


def test_camb_version_without_import_is_cambs_own():
    """The spectra cache key keeps CAMB's own version string (cached spectra stay valid)."""
    import camb

    from combine.sky.spectra import camb_version

    assert camb_version() == camb.__version__
