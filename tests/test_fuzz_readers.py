"""Property-based fuzzing of the file readers: whatever the bytes, the only exception a reader
may raise is :class:`combine.errors.InputError` (which the command line turns into exit 2 and
one line). Inputs are random bytes, and valid files with bytes flipped, inserted or cut off.

Bounded: a fixed number of examples per reader, no deadline (the machine is shared).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from combine.errors import InputError  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_DIR = Path(tempfile.mkdtemp(prefix="combine-fuzz-"))


def _valid_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(64, dtype=np.float32).reshape(8, 8))
    return buf.getvalue()


def _valid_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _valid_fits() -> bytes:
    from astropy.io import fits

    col = fits.Column(name="T", format="E", array=np.arange(12, dtype=np.float32), unit="uK")
    hdu = fits.BinTableHDU.from_columns([col])
    hdu.header["PIXTYPE"] = "HEALPIX"
    hdu.header["ORDERING"] = "RING"
    hdu.header["NSIDE"] = 1
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    return buf.getvalue()


VALID = {"npy": _valid_npy(), "png": _valid_png(), "fits": _valid_fits()}


@st.composite
def mutated(draw, kind):
    """A valid file of ``kind`` with a few bytes overwritten, inserted or deleted, then maybe cut."""
    data = bytearray(VALID[kind])
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[i: i + draw(st.integers(1, 16))]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def _file_bytes(kind):
    return st.one_of(mutated(kind), st.binary(max_size=256))


def _write(name: str, data: bytes) -> Path:
    path = _DIR / name
    path.write_bytes(data)
    return path


def _only_input_errors(read, path):
    try:
        read(path)
    except InputError as exc:
        assert str(exc).startswith(str(path)), f"message must name the file: {exc}"


@SETTINGS
@given(_file_bytes("npy"))
def test_npy_readers_raise_only_input_errors(data):
    from combine.image_io import read_npy

    path = _write("fuzz.npy", data)
    _only_input_errors(read_npy, path)
    _only_input_errors(lambda p: read_npy(p, ndims=(1,)), path)


@SETTINGS
@given(_file_bytes("npy"))
def test_mask_file_reader_raises_only_input_errors(data):
    from combine.masks import _read_mask_file

    _only_input_errors(_read_mask_file, _write("mask.npy", data))


@SETTINGS
@given(_file_bytes("png"))
def test_mask_file_reader_png_raises_only_input_errors(data):
    from combine.masks import _read_mask_file

    _only_input_errors(_read_mask_file, _write("mask.png", data))


@st.composite
def npy_headers(draw):
    """A syntactically plausible .npy header with random dtype, order and shape, random body."""
    descr = draw(st.sampled_from(["<f4", ">f8", "|b1", "<c8", "|O", "<U3", "|V4", "<i8", "x", "<f4 "]))
    shape = draw(st.lists(st.integers(-2, 20), max_size=5))
    fortran = draw(st.sampled_from(["True", "False", "None", "1"]))
    header = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {tuple(shape)}, }}"
    header = header.ljust(((len(header) + 11) // 64 + 1) * 64 - 11) + "\n"
    body = draw(st.binary(max_size=128))
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1") + body


@SETTINGS
@given(npy_headers())
def test_npy_reader_with_random_headers(data):
    from combine.image_io import read_npy

    _only_input_errors(read_npy, _write("header.npy", data))


@SETTINGS
@given(_file_bytes("png"))
def test_png_readers_raise_only_input_errors(data):
    from combine.image_io import read_png, read_png_mask

    path = _write("fuzz.png", data)
    _only_input_errors(read_png, path)
    _only_input_errors(read_png_mask, path)


@SETTINGS
@given(_file_bytes("fits"))
def test_fits_reader_raises_only_input_errors(data):
    from combine.image_io import read_healpix_fits

    path = _write("fuzz.fits", data)
    _only_input_errors(read_healpix_fits, path)
    _only_input_errors(lambda p: read_healpix_fits(p, field=1), path)


_TOML_KEYS = {
    "": ["stage", "seed", "bogus"],
    "data": ["source", "size", "num_workers", "noise_uk_arcmin", "target", "mask_mix", "hole_fill_uk"],
    "train": ["epochs", "steps_per_epoch", "batch_size", "lr", "betas", "device", "precision", "grad_clip"],
    "model": ["preset", "levels", "channels", "in_channels"],
    "loss": ["preset", "vgg_weights", "hole_weight"],
}

_TOML_VALUES = st.one_of(
    st.integers(-3, 2**70), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.text(max_size=8), st.lists(st.integers(-2, 5), max_size=3), st.lists(st.floats(-1, 2), max_size=3),
    st.dictionaries(st.sampled_from(["random", "circle", "points", "x"]), st.floats(-1, 2), max_size=3),
)


def _toml_value(v) -> str:
    import json
    import math

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


@st.composite
def toml_configs(draw):
    """A TOML file with known and unknown sections and keys holding values of random types."""
    lines = []
    for section in draw(st.lists(st.sampled_from(sorted(_TOML_KEYS) + ["extra"]), max_size=4, unique=True)):
        if section:
            lines.append(f"[{section}]")
        for key in draw(st.lists(st.sampled_from(_TOML_KEYS.get(section, ["anything"])), max_size=4, unique=True)):
            lines.append(f"{key} = {_toml_value(draw(_TOML_VALUES))}")
    return "\n".join(lines) + "\n"


def _load_and_resolve(path):
    from combine.config import load_config

    load_config(path).resolve(str(path))


@SETTINGS
@given(toml_configs())
def test_toml_config_with_random_values(text):
    _only_input_errors(_load_and_resolve, _write("fuzz.toml", text.encode()))


@SETTINGS
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_toml_config_with_random_bytes(data):
    _only_input_errors(_load_and_resolve, _write("bytes.toml", data))


@st.composite
def fits_headers(draw):
    """A valid HEALPix table whose header keywords take random values."""
    from astropy.io import fits

    values = st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=True, allow_infinity=False), st.text(
        alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12), st.booleans())
    n = draw(st.sampled_from([12, 48, 11]))
    col = fits.Column(name="T", format=draw(st.sampled_from(["E", "D", "J", "B", "L", "2E"])),
                      array=np.zeros(n), unit=draw(st.sampled_from(["uK", "K", None, "m"])))
    hdu = fits.BinTableHDU.from_columns([col])
    for key in draw(st.lists(st.sampled_from(["PIXTYPE", "ORDERING", "NSIDE", "INDXSCHM", "OBJECT", "FIRSTPIX",
                                              "LASTPIX"]), max_size=5, unique=True)):
        hdu.header[key] = draw(values)
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    return buf.getvalue()


@SETTINGS
@given(fits_headers())
def test_fits_reader_with_random_header_values(data):
    from combine.image_io import read_healpix_fits

    _only_input_errors(read_healpix_fits, _write("header.fits", data))


