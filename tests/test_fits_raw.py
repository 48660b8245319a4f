"""FITS table data read and written with numpy (``combine.fits_raw``) through ``combine.image_io``:
the same values as astropy's reader, the same bytes as astropy's writer, unread columns copied
through bit for bit, and truncated or odd files still refused with one line."""

import gzip

import healpy as hp
import numpy as np
import pytest
from astropy.io import fits

from combine import fits_raw
from combine.cli import main
from combine.errors import InputError
from combine.image_io import read_healpix_fits, read_healpix_table, write_healpix_table

NSIDE = 16


def _planck_like(path, repeat=1, nside=NSIDE):
    """A multi-column HEALPix table of every plain type, odd float bit patterns included."""
    npix = hp.nside2npix(nside)
    rng = np.random.default_rng(3)
    t = rng.normal(0, 1e-4, npix).astype(np.float32)
    t[:5] = [np.nan, -0.0, np.inf, hp.UNSEEN, 1e-45]
    cov = rng.uniform(1e-12, 1e-10, npix).astype(np.float32)
    cov.view(np.uint32)[7:10] = [0x7FC00001, 0xFFC12345, 0x7F800001]  # NaNs with payloads
    arrays = {"I_STOKES": ("E", "K_CMB", t), "HITS": ("J", None, rng.integers(-2**31, 2**31 - 1, npix, dtype=np.int32)),
              "II_COV": ("E", "K_CMB^2", cov), "WEIGHT": ("D", None, rng.normal(size=npix)),
              "FLAG": ("B", None, rng.integers(0, 256, npix, dtype=np.uint8)),
              "NOBS": ("I", None, rng.integers(-2**15, 2**15 - 1, npix, dtype=np.int16)),
              "ID": ("K", None, rng.integers(-2**62, 2**62, npix, dtype=np.int64))}
    cols = [fits.Column(name=n, format=f"{repeat}{code}", unit=unit, array=a.reshape(-1, repeat) if repeat > 1 else a)
            for n, (code, unit, a) in arrays.items()]
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header.update(PIXTYPE="HEALPIX", ORDERING="NESTED", NSIDE=nside, TELESCOP="PLANCKISH")
    hdu.header["LONGSTR"] = "a long string value " * 6  # continues on CONTINUE cards
    hdu.header.add_comment("a comment card")
    primary = fits.PrimaryHDU()
    primary.header["ORIGIN"] = "test"
    fits.HDUList([primary, hdu]).writeto(path)
    return arrays


@pytest.mark.parametrize("repeat, nside, chunk", [(1, NSIDE, None), (1024, NSIDE, 512), (48, NSIDE, 1000), (1, 4, 7)])
def test_read_equals_astropy_and_write_equals_astropy_bytes(tmp_path, monkeypatch, repeat, nside, chunk):
    """Every column reads as astropy reads it (values, dtype); the file written is byte for byte
    the file astropy writes for the same table (its .fits.gz, decompressed), with a replaced
    column, unread columns copied from the input, and several write chunks."""
    if chunk is not None:
        monkeypatch.setattr(fits_raw, "CHUNK_PIXELS", chunk)
    arrays = _planck_like(tmp_path / "in.fits", repeat=repeat, nside=nside)
    table = read_healpix_table(tmp_path / "in.fits")
    assert isinstance(table.arrays, fits_raw.LazyColumns)
    ref = fits.getdata(tmp_path / "in.fits", 1)
    for i, name in enumerate(arrays):
        expected = np.asarray(ref[name]).ravel()
        got = table.arrays[i] if i in (0, 3) else fits_raw.RawTable(tmp_path / "in.fits", *_loc(tmp_path / "in.fits")).column(i)
        assert got.dtype == expected.dtype.newbyteorder("=") and got.dtype.isnative
        assert np.array_equal(got.view(f"u{got.itemsize}"), expected.astype(got.dtype).view(f"u{got.itemsize}"))
    assert [table.arrays.loaded(i) for i in range(len(arrays))] == [True, False, False, True, False, False, False]
    new = table.arrays[0].copy()
    new[::3] = 1.5e-5
    cards = [("COMBMETH", "wiener", ""), ("COMBSKY", "{" + "x" * 150 + "}", "long")]
    write_healpix_table(tmp_path / "out.fits", table, {0: new}, header_cards=cards, history="filled")
    write_healpix_table(tmp_path / "out.fits.gz", table, {0: new}, header_cards=cards, history="filled")
    fast = (tmp_path / "out.fits").read_bytes()
    assert len(fast) % 2880 == 0
    assert fast == gzip.decompress((tmp_path / "out.fits.gz").read_bytes())
    out = fits.getdata(tmp_path / "out.fits", 1)
    assert np.array_equal(np.asarray(out["I_STOKES"]).ravel(), new)
    for name in list(arrays)[1:]:  # unread columns: the input's bits (NaN payloads included)
        a, b = np.asarray(ref[name]).ravel(), np.asarray(out[name]).ravel()
        assert np.array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}"))


def _loc(path):
    with fits.open(path) as h:
        return h.fileinfo(1)["datLoc"], h[1].header["NAXIS2"], fits_raw.plain_columns(h[1].header)


def test_non_plain_columns_and_compressed_files_go_through_astropy(tmp_path):
    """A logical or scaled column, or a gzip file, is read by astropy: same values as before."""
    npix = hp.nside2npix(4)
    t = np.arange(npix, dtype=np.float32)
    cols = [fits.Column(name="T", format="E", array=t), fits.Column(name="OK", format="L", array=t % 2 == 0),
            fits.Column(name="U16", format="I", bzero=32768, array=(np.arange(npix) * 300).astype(np.uint16))]
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header.update(PIXTYPE="HEALPIX", NSIDE=4)
    assert fits_raw.plain_columns(hdu.header) is None
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / "a.fits")
    table = read_healpix_table(tmp_path / "a.fits")
    assert isinstance(table.arrays, list)
    assert np.array_equal(table.arrays[1], t % 2 == 0)
    assert np.array_equal(table.arrays[2], (np.arange(npix) * 300).astype(np.uint16))
    hp.write_map(tmp_path / "b.fits.gz", t, dtype=np.float32)
    assert np.array_equal(read_healpix_fits(tmp_path / "b.fits.gz").values, t)


def test_truncated_table_is_refused_in_one_line(tmp_path, capsys):
    """A file cut inside the table data: the reader and the command refuse it (exit 2, one line,
    no output), both for the map and for the mask."""
    _planck_like(tmp_path / "in.fits")
    data = (tmp_path / "in.fits").read_bytes()
    (tmp_path / "cut.fits").write_bytes(data[: len(data) - 2880 - 100])
    with pytest.raises(InputError, match="truncated FITS file") as info:
        read_healpix_table(tmp_path / "cut.fits")
    assert "\n" not in str(info.value)
    hp.write_map(tmp_path / "mask.fits", np.ones(hp.nside2npix(NSIDE), np.float32), nest=True, dtype=np.float32)
    for inp, mask in (("cut.fits", "mask.fits"), ("in.fits", "cut.fits")):
        status = main(["inpaint", "--quiet", "--method", "wiener", "--input", str(tmp_path / inp), "--mask",
                       str(tmp_path / mask), "--output", str(tmp_path / "out.fits")])
        err = capsys.readouterr().err
        assert status == 2 and "truncated FITS file" in err and str(tmp_path / "cut.fits") in err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out.fits").exists()


@pytest.mark.parametrize("name", ["mask.fits", "mask.fits.gz"])
def test_binary_mask_read_in_chunks(tmp_path, monkeypatch, name):
    """A mask column read as booleans a chunk at a time equals ``values == 1``; a value other than
    0 and 1 in any chunk (NaN, 0.5) is refused with their number and one example."""
    monkeypatch.setattr(fits_raw, "CHUNK_PIXELS", 1000)
    npix = hp.nside2npix(NSIDE)
    mask = (np.random.default_rng(2).random(npix) > 0.2).astype(np.float32)
    hp.write_map(tmp_path / name, mask, dtype=np.float32)
    got = read_healpix_fits(tmp_path / name, binary_mask=True).values
    assert got.dtype == bool and np.array_equal(got, mask == 1)
    mask[[5, 2500]] = [np.nan, 0.5]
    hp.write_map(tmp_path / name, mask, dtype=np.float32, overwrite=True)
    with pytest.raises(InputError, match=r"mask is not binary \(2 pixels other than 0 and 1, e.g. nan\)"):
        read_healpix_fits(tmp_path / name, binary_mask=True)
