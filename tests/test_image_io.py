"""Map and mask files: HEALPix FITS, .npy and PNG (combine.image_io)."""

import warnings

import healpy as hp
import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from combine.errors import InputError
from combine.image_io import (
    PNG_SCALE_UK,
    file_kind,
    read_healpix_fits,
    read_npy,
    read_png,
    read_png_mask,
    write_healpix_fits,
    write_npy,
    write_png,
    write_png_mask,
)


def _map(nside=16, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).normal(0, 100, hp.nside2npix(nside)).astype(dtype)


# ------------------------------------------------------------------ FITS
@pytest.mark.parametrize("nest", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_read_healpy_written_map(tmp_path, nest, dtype):
    m = _map(dtype=dtype)
    m[5] = hp.UNSEEN
    m[6] = np.nan  # masked pixels may hold either: read as stored
    path = tmp_path / "m.fits"
    hp.write_map(path, m, nest=nest, dtype=dtype, column_units="uK", coord="G",
                 extra_header=[("TELESCOP", "PLANCK", "who"), ("FREQ", 143, "GHz")])
    hm = read_healpix_fits(path)
    assert hm.values.dtype == dtype and hm.values.dtype.isnative
    np.testing.assert_array_equal(hm.values, m)  # NaN == NaN here
    assert hm.nside == 16 and hm.nest is nest and hm.ordering_in_header and hm.unit == "uK"
    assert hm.header["TELESCOP"] == "PLANCK" and hm.header["FREQ"] == 143 and hm.header["COORDSYS"] == "G"


@pytest.mark.parametrize("name", ["out.fits", "out.fits.gz"])
def test_write_read_round_trip_keeps_everything(tmp_path, name):
    m = _map(nside=32, dtype=np.float32)
    src = tmp_path / "in.fits"
    hp.write_map(src, m, nest=True, column_units="K_CMB", column_names=["I_STOKES"],
                 extra_header=[("TELESCOP", "PLANCK", "who"), ("COMMENT", "a comment")])
    hm = read_healpix_fits(src)
    out = tmp_path / name
    write_healpix_fits(out, hm.values, nest=hm.nest, unit=hm.unit, column=hm.column, header=hm.header,
                       primary_header=hm.primary_header, history="filled")
    back = read_healpix_fits(out)
    assert np.array_equal(back.values, m) and back.values.dtype == np.float32
    assert back.nest and back.unit == "K_CMB" and back.column == "I_STOKES" and back.nside == 32
    assert back.header["TELESCOP"] == "PLANCK"
    assert "a comment" in str(back.header["COMMENT"]) and "filled" in str(back.header["HISTORY"])
    # healpy reads it back, in its own ordering, unchanged
    np.testing.assert_array_equal(hp.read_map(out, nest=True, dtype=np.float32), m)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_missing_ordering_means_ring(tmp_path):
    m = _map()
    col = fits.Column(name="T", format="E", array=m)
    hdu = fits.BinTableHDU.from_columns([col])
    hdu.header["PIXTYPE"] = "HEALPIX"
    hdu.header["NSIDE"] = 16
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / "m.fits")
    hm = read_healpix_fits(tmp_path / "m.fits")
    assert not hm.nest and not hm.ordering_in_header and hm.unit is None
    np.testing.assert_array_equal(hm.values, m)


def _image_fits(path):
    fits.PrimaryHDU(np.zeros((10, 10), np.float32)).writeto(path)


def _plain_table(path):
    fits.BinTableHDU.from_columns([fits.Column(name="X", format="E", array=np.zeros(3072, np.float32))]).writeto(path)


def _not_fits(path):
    path.write_bytes(b"hello, this is not FITS" * 200)


def _truncated(path):
    hp.write_map(path, _map(nside=64), dtype=np.float32)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _wrong_nside(path):
    hp.write_map(path, _map(), dtype=np.float32)
    with fits.open(path, mode="update") as h:
        h[1].header["NSIDE"] = 32


def _partial(path):
    cols = [fits.Column(name="PIXEL", format="J", array=np.arange(100)),
            fits.Column(name="SIGNAL", format="E", array=np.ones(100, np.float32))]
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header.update(PIXTYPE="HEALPIX", ORDERING="RING", NSIDE=16, INDXSCHM="EXPLICIT", OBJECT="PARTIAL")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)


def _bad_npix(path):
    col = fits.Column(name="T", format="E", array=np.zeros(3000, np.float32))
    hdu = fits.BinTableHDU.from_columns([col])
    hdu.header["PIXTYPE"] = "HEALPIX"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)


@pytest.mark.parametrize("make, match", [
    (_image_fits, "not a HEALPix map \\(no binary table\\)"),
    (_plain_table, "not a HEALPix map \\(no table with PIXTYPE"),
    (_not_fits, "not a readable FITS file"),
    (_truncated, "truncated FITS file"),
    (_wrong_nside, "NSIDE = 32"),
    (_partial, "partial-sky"),
    (_bad_npix, "3000 pixels is not 12\\*Nside\\^2"),
])
def test_not_a_healpix_map(tmp_path, make, match):
    path = tmp_path / "bad.fits"
    make(path)
    with pytest.raises(InputError, match=match) as info:
        read_healpix_fits(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_file_kind():
    assert [file_kind(p) for p in ("a.fits", "b.FITS.gz", "c.npy", "d.png")] == ["fits", "fits", "npy", "png"]
    with pytest.raises(InputError, match="unknown file type"):
        file_kind("e.jpg")


# ------------------------------------------------------------------ .npy
def test_npy_round_trip_and_errors(tmp_path):
    a = np.random.default_rng(1).normal(size=(2, 8, 8)).astype(np.float32)
    write_npy(tmp_path / "a.npy", a)
    assert np.array_equal(read_npy(tmp_path / "a.npy"), a)
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="not a readable .npy"):
        read_npy(tmp_path / "obj.npy")  # never unpickled
    with pytest.raises(InputError, match="dimensions"):
        read_npy(tmp_path / "a.npy", ndims=(1,))
    (tmp_path / "t.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:300])
    with pytest.raises(InputError, match="t.npy: not a readable"):
        read_npy(tmp_path / "t.npy")
    with pytest.raises(InputError, match="no such file"):
        read_npy(tmp_path / "missing.npy")


# ------------------------------------------------------------------ PNG
def test_png_grey_level_equation(tmp_path):
    """T = (g - 127.5) * 500/127.5 μK: black -500, white +500, levels 127/128 -> -/+1.96 μK."""
    g = np.array([[0, 127, 128, 255]], np.uint8)
    Image.fromarray(g).save(tmp_path / "g.png")
    np.testing.assert_allclose(read_png(tmp_path / "g.png"), [[-500, -500 / 255, 500 / 255, 500]], rtol=1e-6)
    assert PNG_SCALE_UK == pytest.approx(500 / 127.5)
    # the same grey stored as RGB, and as 16-bit
    Image.fromarray(np.repeat(g[..., None], 3, axis=2)).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_png(tmp_path / "rgb.png"), read_png(tmp_path / "g.png"))
    Image.fromarray(g.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    np.testing.assert_allclose(read_png(tmp_path / "g16.png"), read_png(tmp_path / "g.png"), atol=1e-4)


def test_png_round_trip_and_clipping(tmp_path):
    """Round trip within half a grey level (1.96 μK) inside ±500 μK; beyond, clipped with a warning."""
    img = np.linspace(-600, 600, 40 * 30).reshape(40, 30)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clipped = write_png(tmp_path / "i.png", img)
    inside = np.abs(img) <= 500
    assert clipped == int((np.abs(img) > 500 + PNG_SCALE_UK / 2).sum()) > 0
    assert len(caught) == 1 and "clipped" in str(caught[0].message)
    back = read_png(tmp_path / "i.png")
    assert np.abs(back[inside] - img[inside]).max() <= PNG_SCALE_UK / 2 + 1e-4
    np.testing.assert_allclose(back[img > 510], 500.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert write_png(tmp_path / "j.png", np.clip(img, -400, 400)) == 0


def test_png_colour_and_masks(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "c.png")
    with pytest.raises(InputError, match="colour PNG"):
        read_png(tmp_path / "c.png")
    mask = np.ones((6, 5))
    mask[2:4, 1:3] = 0
    write_png_mask(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(read_png_mask(tmp_path / "m.png"), mask)
    assert np.asarray(Image.open(tmp_path / "m.png")).max() == 255  # white = valid
    grey = (mask * 255).astype(np.uint8)
    grey[0, 0] = 128
    Image.fromarray(grey).save(tmp_path / "g.png")
    with pytest.raises(InputError, match="not black and white"):
        read_png_mask(tmp_path / "g.png")
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="x.png: not a readable PNG"):
        read_png(tmp_path / "x.png")
