"""The bad-input contract of the command line (issue 15), one parametrised case per input class.

For every case: exit status 2, exactly one line on stderr (Python warnings count as lines: a
real run prints them), no traceback, and no file created, changed or removed anywhere in the
test's working directory (inputs and outputs alike; listings and contents compared before and
after). Commands run in-process through :func:`combine.cli.main`; the few cases that could
write terabytes or need a read-only file system run in a child process (resource limits, a
read-only tmpfs in a private mount namespace).

Each case names its class; :data:`CASES` is the list the README's count refers to.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from combine.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")
NSIDE = 8
SIZE = 64


# --------------------------------------------------------------------------------------------
# input files
# --------------------------------------------------------------------------------------------
def _maps(n=2, size=SIZE, seed=0):
    return (np.random.default_rng(seed).standard_normal((n, size, size)) * 100).astype(np.float32)


def _mask(size=SIZE, r=5):
    yy, xx = np.mgrid[:size, :size]
    return ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 > r * r).astype(np.float32)


def _png(path, grey):
    from PIL import Image

    Image.fromarray(np.asarray(grey, dtype=np.uint8)).save(path, format="PNG")


def _fits_map(path, values, unit="uK", nest=False):
    from astropy.io import fits

    col = fits.Column(name="T", format="E", array=np.asarray(values, np.float32),
                      **({} if unit is None else {"unit": unit}))
    hdu = fits.BinTableHDU.from_columns([col])
    hdu.header["PIXTYPE"] = "HEALPIX"
    hdu.header["ORDERING"] = "NESTED" if nest else "RING"
    hdu.header["NSIDE"] = int(round(np.sqrt(len(values) / 12)))
    hdu.header["INDXSCHM"] = "IMPLICIT"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)


def _healpix_values(nside=NSIDE, scale=100.0):
    return np.random.default_rng(1).standard_normal(12 * nside * nside) * scale


def _healpix_mask(nside=NSIDE, holes=5):
    m = np.ones(12 * nside * nside)
    m[1000:1000 + holes] = 0
    return m


def standard_inputs(d: Path) -> None:
    """The good inputs every case starts from (each case then adds or spoils one)."""
    np.save(d / "maps.npy", _maps())
    np.save(d / "mask.npy", _mask())
    _png(d / "map.png", np.clip(_maps(1)[0] / 4 + 127.5, 0, 255))
    _png(d / "mask.png", _mask() * 255)
    _fits_map(d / "map.fits", _healpix_values())
    _fits_map(d / "mask.fits", _healpix_mask(), unit=None)
    (d / "good.toml").write_text("[train]\nepochs = 1\n")


def _dataset(directory: Path, n=6, size=SIZE, **attrs):
    from combine.data import write_dataset

    base = dict(pixel_arcmin=1.7177, beam_fwhm_arcmin=5.0, noise_uk_arcmin=1.0, size=size, method="flat",
                seed=0, cosmology={"ns": 0.9649})
    base.update(attrs)
    directory.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        write_dataset(directory / f"{split}.h5", _maps(n, size, seed=hash(split) % 100), attrs=base)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, tiny_model_dir):
    """Inputs that cost more than a few ms, made once: a dataset directory and a model."""
    root = tmp_path_factory.mktemp("bad-inputs-shared")
    _dataset(root / "data", size=128)  # the test model's t128 preset takes multiples of 128
    return {"data": str(root / "data"), "model": str(tiny_model_dir)}


# --------------------------------------------------------------------------------------------
# the cases
# --------------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    argv: list[str]
    setup: object = None  # callable(in_dir) that adds or spoils an input
    match: str | tuple | None = None  # substring(s), one of which the error line must contain (file or option)
    isolate: str | None = None  # "limits" (child with rlimits) or "readonly" (child, read-only out/)
    owner: str = ""  # whose fix makes it pass, when that fix is not ours
    extra: dict = field(default_factory=dict)


def _w(name, writer):
    def setup(d):
        writer(d / name)
    return setup


def _npy(name, arr):
    return _w(name, lambda p: np.save(p, arr))


def _bytes(name, data):
    return _w(name, lambda p: p.write_bytes(data))


def _text(name, text):
    return _w(name, lambda p: p.write_text(text))


def _masked_with(value):
    def setup(d):
        maps = _maps()
        maps[0, 0, 0] = value  # pixel (0, 0) is valid in the standard mask
        np.save(d / "bad.npy", maps)
    return setup


def _several(*setups):
    def setup(d):
        for s in setups:
            s(d)
    return setup


def _pickled(path):
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)


def _corrupt_model(d):
    m = d / "model"
    m.mkdir()
    (m / "config.json").write_text("{not json")
    (m / "weights.safetensors").write_bytes(b"\0" * 16)


def _run_without_config(d):
    (d / "run").mkdir()
    (d / "run" / "history.csv").write_text("epoch,loss\n")


def _h5_without_maps(d):
    import h5py

    with h5py.File(d / "nomaps.h5", "w") as h:
        h["other"] = np.zeros(3)


def _existing_output(d):
    np.save(d / "exists.npy", np.zeros((2, 4, 4), np.float32))


IN, OUT = "{in}", "{out}"
INP = ["inpaint", "--model", "{model}"]
NPY_IO = ["--input", f"{IN}/maps.npy", "--mask", f"{IN}/mask.npy", "--output", f"{OUT}/filled.npy"]
FITS_IO = ["--input", f"{IN}/map.fits", "--mask", f"{IN}/mask.fits", "--output", f"{OUT}/filled.fits"]
SIM = ["simulate", "--out", f"{OUT}/sim", "--size", "64"]
TRAIN = ["train", "--data", "{data}", "--out", f"{OUT}/run", "--epochs", "1", "--steps-per-epoch", "1"]
MASKS = ["masks", "--kind", "circle", "--n", "2", "--size", "64", "--out", f"{OUT}/masks.npy"]


def _evaluate(*more, **replace):
    """evaluate argv (baselines only, 2 simulated 64² patches, mean fill) with options replaced."""
    opts = {"--model": "none", "--data": "simulate:2", "--size": "64", "--methods": "mean",
            "--masks": "circle-r4", "--out": f"{OUT}/report"}
    opts.update({f"--{k.replace('_', '-')}": v for k, v in replace.items()})
    return ["evaluate"] + [x for kv in opts.items() for x in kv] + list(more)


EVAL = _evaluate()


def _inpaint_npy(**replace):
    """inpaint .npy argv with some of --input/--mask/--output replaced."""
    io = dict(zip(NPY_IO[::2], NPY_IO[1::2]))
    io.update({f"--{k}": v for k, v in replace.items()})
    return INP + [x for kv in io.items() for x in kv]


CASES = [
    # ---------------------------------------------------------------- inpaint: files
    Case("inpaint: input file missing", _inpaint_npy(input=f"{IN}/nope.npy"), match="nope.npy"),
    Case("inpaint: mask file missing", _inpaint_npy(mask=f"{IN}/nope.npy"), match="nope.npy"),
    Case("inpaint: input is a directory", _inpaint_npy(input=IN), match=""),
    Case("inpaint: unknown input extension", _inpaint_npy(input=f"{IN}/maps.txt"),
         _text("maps.txt", "1 2 3"), match="maps.txt"),
    Case("inpaint: unsupported output extension", _inpaint_npy(output=f"{OUT}/filled.jpg"), match="filled.jpg"),
    Case("inpaint: .npy of random bytes", _inpaint_npy(input=f"{IN}/junk.npy"),
         _bytes("junk.npy", b"\x93NUMPY garbage" * 5), match="junk.npy"),
    Case("inpaint: empty .npy file", _inpaint_npy(input=f"{IN}/empty.npy"), _bytes("empty.npy", b""),
         match="empty.npy"),
    Case("inpaint: pickled object .npy", _inpaint_npy(input=f"{IN}/pickle.npy"), _w("pickle.npy", _pickled),
         match="pickle.npy"),
    Case("inpaint: string dtype .npy", _inpaint_npy(input=f"{IN}/str.npy"), _npy("str.npy", np.array([["a"]])),
         match="str.npy"),
    Case("inpaint: 5-D .npy", _inpaint_npy(input=f"{IN}/5d.npy"),
         _npy("5d.npy", np.zeros((1, 1, 1, 8, 8), np.float32)), match="5d.npy"),
    Case("inpaint: 1-D .npy not 12 Nside^2 long", _inpaint_npy(input=f"{IN}/1d.npy"),
         _several(_npy("1d.npy", np.zeros(1000, np.float32)), _npy("mask.npy", np.ones(1000, np.float32))),
         match="1d.npy"),
    Case("inpaint: mask not binary", _inpaint_npy(mask=f"{IN}/halfmask.npy"),
         _npy("halfmask.npy", _mask() * 0.5 + 0.25), match="halfmask.npy"),
    Case("inpaint: mask shape mismatch", _inpaint_npy(mask=f"{IN}/small.npy"),
         _npy("small.npy", _mask(32)), match="small.npy"),
    Case("inpaint: mask without valid pixel", _inpaint_npy(mask=f"{IN}/zeros.npy"),
         _npy("zeros.npy", np.zeros((SIZE, SIZE), np.float32)), match="zeros.npy"),
    Case("inpaint: NaN in a valid pixel", _inpaint_npy(input=f"{IN}/bad.npy"), _masked_with(np.nan), match="bad.npy"),
    Case("inpaint: inf in a valid pixel", _inpaint_npy(input=f"{IN}/bad.npy"), _masked_with(np.inf), match="bad.npy"),
    Case("inpaint: UNSEEN in a valid pixel", _inpaint_npy(input=f"{IN}/bad.npy"), _masked_with(-1.6375e30),
         match="bad.npy"),
    Case("inpaint: output inside a file", _inpaint_npy(output=f"{IN}/maps.npy/x.npy"), match="maps.npy"),
    Case("inpaint: PNG input not a PNG", _inpaint_npy(input=f"{IN}/fake.png", output=f"{OUT}/f.png",
                                                      mask=f"{IN}/mask.png"),
         _bytes("fake.png", b"GIF89a not a png"), match="fake.png"),
    Case("inpaint: grey-level PNG mask", _inpaint_npy(input=f"{IN}/map.png", mask=f"{IN}/grey.png",
                                                      output=f"{OUT}/f.png"),
         _w("grey.png", lambda p: _png(p, np.full((SIZE, SIZE), 128))), match="grey.png"),
    Case("inpaint: PNG mask size mismatch", _inpaint_npy(input=f"{IN}/map.png", mask=f"{IN}/m32.png",
                                                         output=f"{OUT}/f.png"),
         _w("m32.png", lambda p: _png(p, _mask(32) * 255)), match="m32.png"),
    Case("inpaint: 3-channel maps for a 1-channel model", _inpaint_npy(input=f"{IN}/tqu.npy"),
         _npy("tqu.npy", np.zeros((1, 3, SIZE, SIZE), np.float32)), match="tqu.npy"),
    Case("inpaint: model directory missing", ["inpaint", "--model", f"{IN}/nomodel"] + NPY_IO, match="nomodel"),
    Case("inpaint: corrupt model directory", ["inpaint", "--model", f"{IN}/model"] + NPY_IO, _corrupt_model,
         match="model"),
    Case("inpaint: --batch-size 0", INP + NPY_IO + ["--batch-size", "0"], match="--batch-size"),
    Case("inpaint: --png-scale negative", INP + NPY_IO + ["--png-scale", "-1"], match="--png-scale"),
    Case("inpaint: --batch-size not an integer", INP + NPY_IO + ["--batch-size", "two"], match="--batch-size"),
    Case("inpaint: unknown option", INP + NPY_IO + ["--colour", "red"], match="--colour"),
    Case("inpaint: FITS that is not FITS", INP + ["--input", f"{IN}/junk.fits", "--mask", f"{IN}/mask.fits",
                                                  "--output", f"{OUT}/f.fits"],
         _bytes("junk.fits", b"SIMPLE  = nonsense" * 10), match="junk.fits"),
    Case("inpaint: FITS not 12 Nside^2 pixels", INP + ["--input", f"{IN}/odd.fits", "--mask", f"{IN}/mask.fits",
                                                       "--output", f"{OUT}/f.fits"],
         _w("odd.fits", lambda p: _fits_map(p, np.zeros(1000))), match="odd.fits"),
    Case("inpaint: FITS mask of another Nside", INP + ["--input", f"{IN}/map.fits", "--mask", f"{IN}/m4.fits",
                                                       "--output", f"{OUT}/f.fits"],
         _w("m4.fits", lambda p: _fits_map(p, _healpix_mask(4), unit=None)), match="m4.fits"),
    Case("inpaint: FITS --field out of range", INP + FITS_IO + ["--field", "3"], match="map.fits"),
    Case("inpaint: read-only output directory", _inpaint_npy(output=f"{OUT}/ro/filled.npy"), match="read-only",
         isolate="readonly"),
    # ---------------------------------------------------------------- masks
    Case("masks: --n 0", ["masks", "--kind", "random", "--n", "0", "--out", f"{OUT}/m.npy"], match="--n"),
    Case("masks: --size too small", ["masks", "--kind", "random", "--n", "1", "--size", "3", "--out",
                                     f"{OUT}/m.npy"], match="--size"),
    Case("masks: --radius negative", MASKS + ["--radius", "-2"], match="--radius"),
    Case("masks: --radius larger than the patch", MASKS + ["--radius", "500"], match="--radius"),
    Case("masks: --center outside the patch", MASKS + ["--center", "100", "5"], match="--center"),
    Case("masks: --radius with --kind random", ["masks", "--kind", "random", "--n", "1", "--radius", "3",
                                                "--out", f"{OUT}/m.npy"], match="--radius"),
    Case("masks: --kind files without --from", ["masks", "--kind", "files", "--n", "1", "--out", f"{OUT}/m.npy"],
         match="--from"),
    Case("masks: --from missing directory", ["masks", "--kind", "files", "--n", "1", "--from", f"{IN}/none",
                                             "--out", f"{OUT}/m.npy"], match="none"),
    Case("masks: --out not .npy", ["masks", "--kind", "random", "--n", "1", "--out", f"{OUT}/m.txt"], match="m.txt"),
    Case("masks: --preview same file as --out", MASKS[:-1] + [f"{OUT}/m.png", "--preview", f"{OUT}/m.png"],
         match="m.png"),
    Case("masks: unknown --kind", ["masks", "--kind", "squares", "--n", "1", "--out", f"{OUT}/m.npy"],
         match="--kind"),
    Case("masks: --seed negative", MASKS + ["--seed", "-1"], match="--seed"),
    # ---------------------------------------------------------------- simulate
    Case("simulate: --n-patches 0", SIM + ["--n-patches", "0"], match="--n-patches"),
    Case("simulate: --n-patches 1e11 (not an integer)", SIM + ["--n-patches", "1e11"], match="--n-patches"),
    Case("simulate: --ns 7 (outside CAMB's range)", SIM + ["--n-patches", "4", "--ns", "7"], match=("--ns", "ns: 7")),
    Case("simulate: --ns nan", SIM + ["--n-patches", "4", "--ns", "nan"], match="--ns"),
    Case("simulate: --ns repeated", SIM + ["--n-patches", "4", "--ns", "0.9", "0.9"], match="--ns"),
    Case("simulate: --noise negative", SIM + ["--n-patches", "4", "--noise", "-1"], match="--noise"),
    Case("simulate: --split not summing to 1", SIM + ["--n-patches", "4", "--split", "0.5,0.2,0.1"],
         match="split"),
    Case("simulate: --split not numbers", SIM + ["--n-patches", "4", "--split", "a,b,c"], match="split"),
    Case("simulate: --size too small", ["simulate", "--out", f"{OUT}/sim", "--n-patches", "4", "--size", "2"],
         match="--size"),
    Case("simulate: --pixel-arcmin 0", SIM + ["--n-patches", "4", "--pixel-arcmin", "0"], match="--pixel-arcmin"),
    Case("simulate: --beam-fwhm negative", SIM + ["--n-patches", "4", "--beam-fwhm", "-5"], match="--beam-fwhm"),
    Case("simulate: --nside not a power of 2", SIM + ["--n-patches", "4", "--method", "healpix", "--nside", "3"],
         match="--nside"),
    Case("simulate: --out is a file", ["simulate", "--out", f"{IN}/maps.npy", "--n-patches", "4", "--size", "64"],
         match="maps.npy"),
    Case("simulate: --n-patches 100000000000 (more than the disk)", SIM + ["--n-patches", "100000000000"],
         match=("--n-patches", "sim"), isolate="limits"),
    Case("simulate: unknown --method", SIM + ["--n-patches", "4", "--method", "spherical"], match="--method"),
    Case("simulate: read-only output directory", ["simulate", "--out", f"{OUT}/ro/sim", "--n-patches", "4",
                                                  "--size", "64", "--seed", "1"],
         match="read-only", isolate="readonly"),
    # ---------------------------------------------------------------- train
    Case("train: --data missing", ["train", "--data", f"{IN}/nodata", "--out", f"{OUT}/run"], match="nodata"),
    Case("train: --data is not HDF5", ["train", "--data", f"{IN}/maps.npy", "--out", f"{OUT}/run"],
         match="maps.npy"),
    Case("train: --batch-size 0", TRAIN + ["--batch-size", "0"], match="batch_size"),
    Case("train: --epochs 0", TRAIN[:-4] + ["--epochs", "0"], match="epochs"),
    Case("train: --lr negative", TRAIN + ["--lr", "-1"], match="lr"),
    Case("train: --config not TOML", TRAIN + ["--config", f"{IN}/bad.toml"], _text("bad.toml", "[train\nx = "),
         match="bad.toml"),
    Case("train: --config missing", TRAIN + ["--config", f"{IN}/none.toml"], match="none.toml"),
    Case("train: --config unknown key", TRAIN + ["--config", f"{IN}/key.toml"], _text("key.toml", "[train]\nepoks = 3\n"),
         match="key.toml"),
    Case("train: --config wrong type", TRAIN + ["--config", f"{IN}/type.toml"],
         _text("type.toml", "[train]\nepochs = \"many\"\n"), match="type.toml"),
    Case("train: --stage 2 without --init", TRAIN + ["--stage", "2"], match="--init"),
    Case("train: --init missing", TRAIN + ["--init", f"{IN}/noinit"], match="noinit"),
    Case("train: --loss unknown", TRAIN + ["--loss", "fancy"], match="fancy"),
    Case("train: --vgg-weights missing", TRAIN + ["--loss", "paper", "--vgg-weights", f"{IN}/vgg.pth"],
         match="vgg.pth"),
    Case("train: --resume of a directory that is not a run", ["train", "--resume", f"{IN}/run"],
         _run_without_config, match="run"),
    Case("train: --resume with --init", ["train", "--resume", f"{IN}/run", "--init", "{model}"],
         _run_without_config, match="--init"),
    Case("train: --device unknown", TRAIN + ["--device", "tpu"], match="device"),
    Case("train: read-only output directory", ["train", "--data", "{data}", "--out", f"{OUT}/ro/run", "--epochs",
                                               "1", "--steps-per-epoch", "1", "--batch-size", "2"],
         match="read-only", isolate="readonly"),
    # ---------------------------------------------------------------- evaluate
    Case("evaluate: --model missing", _evaluate(model=f"{IN}/nomodel"), match="nomodel"),
    Case("evaluate: --data missing", _evaluate(data=f"{IN}/nodata"), match="nodata"),
    Case("evaluate: --data simulate:0", _evaluate(data="simulate:0"), match="simulate:0"),
    Case("evaluate: --data simulate:abc", _evaluate(data="simulate:abc"), match="simulate:abc"),
    Case("evaluate: --data .h5 without maps", _evaluate(data=f"{IN}/nomaps.h5"), _h5_without_maps,
         match="nomaps.h5"),
    Case("evaluate: unknown method", _evaluate(methods="magic"), match="magic"),
    Case("evaluate: unknown mask spec", _evaluate(masks="hexagon-r3"), match="hexagon"),
    Case("evaluate: method nn without a model", _evaluate(methods="nn"), match="nn"),
    Case("evaluate: --n-patches 0", EVAL + ["--n-patches", "0"], match="--n-patches"),
    Case("evaluate: --noise negative", EVAL + ["--noise", "-1"], match="--noise"),
    Case("evaluate: --ns 7 (outside CAMB's range)", _evaluate(methods="wiener", ns="7"),
         match=("--ns", "ns: 7")),
    Case("evaluate: --fullsky-map without --fullsky-mask", EVAL + ["--fullsky-map", f"{IN}/map.fits"],
         match="--fullsky"),
    Case("evaluate: --run that does not exist", EVAL + ["--run", f"{IN}/norun"], match="norun"),
    Case("evaluate: read-only output directory", _evaluate(out=f"{OUT}/ro/report"), match="read-only",
         isolate="readonly", owner="H1 (sky-plumbing)"),
    # ---------------------------------------------------------------- the command line itself
    Case("cli: no subcommand", [], match="combine"),
    Case("cli: unknown subcommand", ["paint"], match="paint"),
]


#: The rows of issue 15's table (fixed by the helpers who own those commands; see their commits).
ISSUE_ROWS = [
    Case("inpaint: complex64 .npy", _inpaint_npy(input=f"{IN}/complex.npy"),
         _npy("complex.npy", _maps().astype(np.complex64)), match="complex.npy", owner="H3 (sphere)"),
    Case("inpaint: --output equal to --input", _inpaint_npy(output=f"{IN}/maps.npy"), match="maps.npy",
         owner="H3 (sphere)"),
    Case("inpaint: existing output without --overwrite", _inpaint_npy(output=f"{IN}/exists.npy"),
         _existing_output, match="exists.npy", owner="H3 (sphere)"),
    Case("inpaint: unit-less FITS map in kelvin", INP + ["--input", f"{IN}/kelvin.fits", "--mask",
                                                         f"{IN}/mask256.fits", "--output", f"{OUT}/f.fits"],
         _several(_w("kelvin.fits", lambda p: _fits_map(p, _healpix_values(256, scale=1e-4), unit=None)),
                  _w("mask256.fits", lambda p: _fits_map(p, _healpix_mask(256, holes=1), unit=None))),
         match="kelvin.fits", owner="H3 (sphere)"),
    Case("masks: --n 100000000 (more than the disk)", ["masks", "--kind", "circle", "--n", "100000000",
                                                      "--out", f"{OUT}/m.npy"],
         match=("m.npy", "--n"), isolate="limits", owner="H3 (sphere)"),
    Case("masks: read-only output directory", MASKS[:-1] + [f"{OUT}/ro/m.npy"], match=("read-only", "not writable"),
         isolate="readonly", owner="H3 (sphere)"),
    Case("train: --batch-size 1 (batch norm)", TRAIN + ["--batch-size", "1"], match="--batch-size",
         owner="H2 (model)"),
]
CASES += ISSUE_ROWS


def _fits_table(name, columns, **header):
    """A HEALPix FITS table ``name`` of ``columns`` [(TTYPE, values, TUNIT or None), ...] (Nside 8,
    RING) with extra header keywords; values may be (rows, repeat) to give columns other lengths."""
    def write(d):
        from astropy.io import fits

        cols = []
        for cname, values, unit in columns:
            v = np.asarray(values, np.float32)
            fmt = "E" if v.ndim == 1 else f"{v.shape[1]}E"
            cols.append(fits.Column(name=cname, format=fmt, array=v, **({} if unit is None else {"unit": unit})))
        hdu = fits.BinTableHDU.from_columns(cols)
        hdu.header["PIXTYPE"] = "HEALPIX"
        hdu.header["ORDERING"] = "RING"
        hdu.header["NSIDE"] = NSIDE
        for key, value in header.items():
            hdu.header[key] = value
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(d / name)
    return write


def _tqu_columns(units=("uK", "uK", "uK"), q=None, names=("I_STOKES", "Q_STOKES", "U_STOKES")):
    t = _healpix_values()
    qu = _healpix_values(scale=5.0)
    return [(names[0], t, units[0]), (names[1], qu if q is None else q, units[1]), (names[2], -qu, units[2])]


def _q_with(value):
    q = _healpix_values(scale=5.0)
    q[0] = value  # pixel 0 is valid in the standard mask
    return q


TQU_IO = ["--input", f"{IN}/tqu.fits", "--mask", f"{IN}/mask.fits", "--output", f"{OUT}/filled.fits"]
TQU = ["inpaint", "--fields", "TQU", "--method", "wiener"]
TQU_FULL = TQU + TQU_IO
_TQU_FILE = _fits_table("tqu.fits", _tqu_columns())

#: Bad T, Q, U input (issue 14): HEALPix T, Q, U maps, their masks, and full-sky simulation.
TQU_ROWS = [
    Case("inpaint TQU: two fields only (T, Q)", TQU + ["--input", f"{IN}/tq.fits"] + TQU_IO[2:],
         _fits_table("tq.fits", [("TEMPERATURE", _healpix_values(), None), ("Q_POLARISATION", _healpix_values(), None)]),
         match="tq.fits"),
    Case("inpaint TQU: (2, Npix) .npy", TQU + ["--input", f"{IN}/tq.npy", "--mask", f"{IN}/mask.fits", "--output",
                                              f"{OUT}/f.npy"],
         _npy("tq.npy", np.stack([_healpix_values()] * 2).astype(np.float32)), match="tq.npy"),
    Case("inpaint TQU: --fields TQU on a one-column map", TQU + FITS_IO, match="map.fits"),
    Case("inpaint TQU: I_STOKES without Q_STOKES, U_STOKES", TQU + ["--input", f"{IN}/t.fits"] + TQU_IO[2:],
         _fits_table("t.fits", [("I_STOKES", _healpix_values(), "K_CMB"), ("HITS", np.ones(768), None),
                                ("II_COV", np.ones(768), "K_CMB^2")]), match="t.fits"),
    Case("inpaint TQU: mask with 2 columns", TQU + TQU_IO[:2] + ["--mask", f"{IN}/m2.fits"] + TQU_IO[4:],
         _several(_TQU_FILE, _fits_table("m2.fits", [("A", _healpix_mask(), None), ("B", _healpix_mask(), None)])),
         match="m2.fits"),
    Case("inpaint TQU: (2, Npix) .npy mask", TQU + TQU_IO[:2] + ["--mask", f"{IN}/m2.npy"] + TQU_IO[4:],
         _several(_TQU_FILE, _npy("m2.npy", np.stack([_healpix_mask()] * 2))), match="m2.npy"),
    Case("inpaint TQU: per-field masks with the joint fill", TQU + TQU_IO[:2] + ["--mask", f"{IN}/m3.fits"] + TQU_IO[4:],
         _several(_TQU_FILE, _fits_table("m3.fits", [("T", _healpix_mask(), None), ("Q", np.where(np.arange(768) < 4, 0, 1), None),
                                                     ("U", _healpix_mask(), None)])), match="m3.fits"),
    Case("inpaint TQU: NaN in a valid Q pixel", TQU_FULL, _fits_table("tqu.fits", _tqu_columns(q=_q_with(np.nan))),
         match="Q_STOKES"),
    Case("inpaint TQU: UNSEEN in a valid Q pixel", TQU_FULL, _fits_table("tqu.fits", _tqu_columns(q=_q_with(-1.6375e30))),
         match="Q_STOKES"),
    Case("inpaint TQU: Q and U in different units", TQU_FULL,
         _fits_table("tqu.fits", _tqu_columns(units=("uK", "K_CMB", "uK"))), match="tqu.fits"),
    Case("inpaint TQU: unit on T only", TQU_FULL, _fits_table("tqu.fits", _tqu_columns(units=("uK", None, None))),
         match="tqu.fits"),
    Case("inpaint TQU: Q column of another length", TQU_FULL,
         _fits_table("tqu.fits", [("I_STOKES", _healpix_values().reshape(192, 4), "uK"),
                                  ("Q_STOKES", _healpix_values()[:384].reshape(192, 2), "uK"),
                                  ("U_STOKES", _healpix_values().reshape(192, 4), "uK")]), match="tqu.fits"),
    Case("inpaint TQU: unit-less T, Q, U in kelvin", TQU_FULL,
         _fits_table("tqu.fits", [(n, v * 1e-6, None) for n, v, _ in _tqu_columns()]), match="--unit K"),
    Case("inpaint TQU: unknown POLCCONV", TQU_FULL, _fits_table("tqu.fits", _tqu_columns(), POLCCONV="HEALPIX"),
         match="tqu.fits"),
    Case("inpaint TQU: --model", ["inpaint", "--fields", "TQU", "--model", "{model}"] + TQU_IO, _TQU_FILE,
         match="--model"),
    Case("inpaint TQU: --noise-map without QQ_COV, UU_COV", TQU_FULL + ["--noise-map", f"{IN}/map.fits"], _TQU_FILE,
         match="map.fits"),
    Case("inpaint TQU: --noise-map with a per-field method", ["inpaint", "--fields", "TQU", "--method", "diffusive"]
         + TQU_IO + ["--noise-map", f"{IN}/map.fits"], _TQU_FILE, match="--noise-map"),
    Case("inpaint TQU: --spectrum (TT only)", TQU_FULL + ["--spectrum", f"{IN}/cl.npy"],
         _several(_TQU_FILE, _npy("cl.npy", np.ones(100))), match="--spectrum"),
    Case("inpaint TQU: --column", TQU_FULL + ["--column", "1"], _TQU_FILE, match="--column"),
    Case("inpaint TQU: (N, H, W) patches", ["inpaint", "--fields", "TQU", "--method", "wiener"] + NPY_IO,
         match="maps.npy"),
    Case("simulate: --out FILE.fits with --n-patches", ["simulate", "--out", f"{OUT}/sky.fits", "--nside", "8",
                                                        "--n-patches", "4"], match="--n-patches"),
    Case("simulate: --out FILE.fits with --method flat", ["simulate", "--out", f"{OUT}/sky.fits", "--nside", "8",
                                                          "--method", "flat"], match="flat"),
    Case("simulate: --out FILE.fits that exists", ["simulate", "--out", f"{IN}/map.fits", "--nside", "8"],
         match="map.fits"),
]
CASES += TQU_ROWS

IDS = [c.name for c in CASES]
assert len(set(IDS)) == len(IDS), "case names must be unique"


# --------------------------------------------------------------------------------------------
# running a case
# --------------------------------------------------------------------------------------------
def _snapshot(root: Path) -> dict:
    """Every path under ``root`` (hidden ones included) with a digest of each file's bytes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = "dir"
        for name in filenames:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha1(fh.read()).hexdigest()
    return out


def _argv(case: Case, in_dir: Path, out_dir: Path, shared: dict) -> list[str]:
    subs = {"{in}": str(in_dir), "{out}": str(out_dir), "{model}": shared["model"], "{data}": shared["data"]}
    argv = []
    for a in case.argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        argv.append(a)
    return argv


def _run_in_process(argv, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse usage errors
            status = exc.code
    out, err = capsys.readouterr()
    return status, out, err + "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)


CHILD = """\
import io, json, os, resource, sys, warnings
sys.path.insert(0, {src!r})
os.environ["COMBINE_CACHE_DIR"] = {cache!r}
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_bytes}, {limit_bytes}))
from combine.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    real, sys.stderr = sys.stderr, err
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = main(argv)
        except SystemExit as exc:
            status = exc.code
    sys.stderr = real
    text = err.getvalue() + "".join(f"{{w.category.__name__}}: {{w.message}}\\n" for w in caught)
    results.append([status, text])
print(json.dumps(results))
"""

#: A child may write at most this much per file (a runaway output fails with SIGXFSZ/EFBIG
#: instead of filling the disk).
CHILD_FILE_LIMIT = 256 * 1024**2


def _run_child(argvs, ro_dirs=()):
    """Run each argv of ``argvs`` in one child process, after mounting a read-only tmpfs on each
    of ``ro_dirs`` in a private mount namespace; return [(status, stderr)] per argv."""
    script = CHILD.format(src=SRC, cache=os.environ.get("COMBINE_CACHE_DIR", ""), limit_bytes=CHILD_FILE_LIMIT)
    cmd = [sys.executable, "-c", script, json.dumps(argvs)]
    if ro_dirs:
        mounts = " && ".join(f'mount -t tmpfs -o ro tmpfs "{d}"' for d in ro_dirs)
        cmd = ["unshare", "-rm", "sh", "-c", f'{mounts} && exec "$@"', "sh"] + cmd
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return [("timeout after 120 s", "")] * len(argvs)
    if ro_dirs and res.returncode and "mount" in res.stderr and not res.stdout:
        pytest.skip(f"cannot mount a read-only tmpfs here: {res.stderr.strip()}")
    if res.returncode or not res.stdout.strip():
        return [(f"child died with status {res.returncode}", res.stderr[-2000:])] * len(argvs)
    return [tuple(r) for r in json.loads(res.stdout.strip().splitlines()[-1])]


def _prepare(case: Case, root: Path, shared: dict):
    in_dir, out_dir = root / "in", root / "out"
    in_dir.mkdir(parents=True)
    out_dir.mkdir()
    standard_inputs(in_dir)
    if case.setup is not None:
        case.setup(in_dir)
    if case.isolate == "readonly":
        (out_dir / "ro").mkdir()  # the mount point of the read-only tmpfs
    return _argv(case, in_dir, out_dir, shared)


@pytest.fixture(scope="module")
def read_only_results(tmp_path_factory, shared):
    """All read-only cases, run in one child process (one torch import): name -> (status, err,
    snapshot before, snapshot after)."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a read-only tmpfs")
    cases = [c for c in CASES if c.isolate == "readonly"]
    roots = [tmp_path_factory.mktemp("ro") for _ in cases]
    argvs = [_prepare(c, r, shared) for c, r in zip(cases, roots)]
    before = [_snapshot(r) for r in roots]
    results = _run_child(argvs, [r / "out" / "ro" for r in roots])
    return {c.name: (status, err, b, _snapshot(r))
            for c, r, b, (status, err) in zip(cases, roots, before, results)}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_input(case, tmp_path, shared, capsys, request):
    if case.isolate == "readonly":
        status, err, before, after = request.getfixturevalue("read_only_results")[case.name]
    else:
        argv = _prepare(case, tmp_path, shared)
        before = _snapshot(tmp_path)
        if case.isolate == "limits":
            ((status, err),) = _run_child([argv])
        else:
            status, _, err = _run_in_process(argv, capsys)
        after = _snapshot(tmp_path)
    report = f"status {status}, stderr {err!r}"
    assert status == 2, report
    assert "Traceback" not in err, report
    assert err.count("\n") == 1 and err.endswith("\n"), f"expected one line on stderr: {report}"
    if case.match:
        options = (case.match,) if isinstance(case.match, str) else case.match
        assert any(m.lower() in err.lower() for m in options), f"the line should name {case.match!r}: {report}"
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))}"


def test_at_least_forty_classes_and_the_rows_of_issue_15():
    assert len(CASES) >= 40
    for command in ("inpaint", "masks", "simulate", "train", "evaluate"):
        assert sum(c.name.startswith(command + ":") for c in CASES) >= 5, command
        assert any(c.name.startswith(command + ":") and "read-only" in c.name for c in CASES), command
    rows = ["kelvin", "complex64", "--n 100000000", "--ns 7", "--batch-size 1", "--output equal to --input",
            "existing output without --overwrite"]
    for row in rows:
        assert any(row in c.name for c in CASES), row


def test_readme_states_the_number_of_classes():
    import re

    readme = Path(__file__).resolve().parents[1] / "README.md"
    m = re.search(r"checks this contract on (\d+) classes", readme.read_text(encoding="utf-8"))
    assert m, "README: 'Contract for bad input' section missing"
    assert int(m.group(1)) == len(CASES)


def test_temporary_left_by_kill_9_is_removed_by_the_next_write(tmp_path, shared, capsys):
    """Issue 15: `kill -9` during the FITS write of `combine inpaint` left a hidden temporary
    beside the output. The next write into that directory removes it (its pid is dead)."""
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out_dir.mkdir()
    standard_inputs(in_dir)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out_dir / f".filled.fits.combine-tmp-{dead.pid}-0badf00d.fits"
    stale.write_bytes(b"\0" * 2880)
    status = main(["inpaint", "--model", shared["model"], "--input", str(in_dir / "maps.npy"), "--mask",
                   str(in_dir / "mask.npy"), "--output", str(out_dir / "filled.npy"), "--quiet"])
    capsys.readouterr()
    assert status == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["filled.npy"]


def test_run_killed_before_its_first_checkpoint_can_be_restarted(tmp_path, shared, capsys):
    """Issue 15: `--resume` of a run killed before its first checkpoint was refused, and so was a
    fresh start in that directory (it had to be deleted by hand). Either must now work."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text("stage = 1\n")  # what a run writes before its first epoch ends
    common = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--quiet"]
    resumed = main(["train", "--resume", str(run)] + common)
    fresh = resumed if resumed == 0 else main(["train", "--data", shared["data"], "--out", str(run)] + common)
    err = capsys.readouterr().err
    assert 0 in (resumed, fresh), err
    assert (run / "last" / "weights.safetensors").is_file()
