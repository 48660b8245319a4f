"""Reading and writing maps and masks: HEALPix FITS, ``.npy`` patches and PNG images.

Every reader raises :class:`combine.errors.InputError` naming the file for anything it cannot
use; every writer writes atomically (:func:`combine.atomic.atomic_path`).

HEALPix FITS
------------
The map is the first binary-table HDU with ``PIXTYPE = 'HEALPIX'`` (or an ``NSIDE`` keyword),
its header read with astropy; plain numeric columns of an uncompressed file are read (each only
when used) and written (an unused one copied from the input's bytes) by :mod:`combine.fits_raw`,
anything else (gzip, logical or scaled columns) by astropy. Ordering is RING unless the header says
``ORDERING = 'NESTED'``; the column's ``TUNITn`` is the unit; every other keyword of that HDU
(and of the primary HDU) is kept and written back unchanged, so a map comes out with the
ordering, Nside, unit and keywords it went in with. Masked pixels may hold ``UNSEEN`` or NaN.
Partial-sky (``INDXSCHM = 'EXPLICIT'``) maps are refused.

PNG images (the original CoMBInE's image workflow)
--------------------------------------------------
A grey level :math:`g \\in [0, 255]` stands for the temperature

.. math:: T = (g - 127.5)\\, s, \\qquad s = \\texttt{PNG_SCALE_UK} = 500/127.5\\ \\mu\\mathrm{K},

so black is −500 μK, white +500 μK and mid-grey 0 (one grey level ≈ 3.9 μK). 16-bit PNGs are
read as :math:`g = v/257`. Writing rounds :math:`g = T/s + 127.5` to the nearest level and clips
to [0, 255] with a warning (the only place CoMBInE clips temperatures). RGB(A) PNGs are accepted
only if they are grey (R = G = B).

Mask files (one reader, one rule: :func:`read_mask_file`, used by ``combine masks --kind files``
and ``combine inpaint --mask``): masks are strictly binary, 1 = valid, 0 = hole. A PNG mask
holds only black (0) = hole and white (255, or 65535 in 16-bit) = valid, or only the levels
0 and 1; any other level (grey, anti-aliased edges) is an error, never thresholded. A ``.npy``
mask holds only 0 and 1 (or booleans).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import InputError
from .fits_raw import PLAIN_TYPES, LazyColumns, TruncatedData, mask_to_valid, raw_table, write_table

#: μK per grey level of PNG images: levels 0..255 span −500..+500 μK.
PNG_SCALE_UK = 500.0 / 127.5

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")

# Keywords that describe the table layout or the HEALPix geometry: rewritten, never copied.
_STRUCTURAL = {"XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "TFIELDS", "SIMPLE", "EXTEND",
               "PIXTYPE", "ORDERING", "NSIDE", "FIRSTPIX", "LASTPIX", "INDXSCHM", "THEAP"}
_COLUMN_PREFIXES = ("TTYPE", "TFORM", "TUNIT", "TDIM", "TNULL", "TSCAL", "TZERO", "TDISP", "NAXIS")


def file_kind(path) -> str:
    """``"fits"``, ``"npy"`` or ``"png"`` from the file name (InputError otherwise)."""
    name = str(path).lower()
    if name.endswith(FITS_SUFFIXES):
        return "fits"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(".png"):
        return "png"
    raise InputError(f"{path}: unknown file type (expected .fits, .fits.gz, .npy or .png)")


def _require_file(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    return path


# --------------------------------------------------------------------------------------------
# HEALPix FITS
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class HealpixMap:
    """A HEALPix map as read from FITS, with what is needed to write it back alike.

    Attributes
    ----------
    values : ndarray (12 Nside²,)
        The pixel values, native byte order (float32/float64 as stored; integer and logical
        columns as stored).
    nside : int
    nest : bool
        True if the header says ``ORDERING = 'NESTED'``.
    ordering_in_header : bool
        False if the file has no ``ORDERING`` keyword (then RING was assumed).
    unit : str or None
        ``TUNITn`` of the column.
    column : str
        ``TTYPEn`` of the column.
    header, primary_header : astropy.io.fits.Header
        The other keywords of the map HDU and of the primary HDU, written back unchanged.
    """

    values: np.ndarray
    nside: int
    nest: bool
    ordering_in_header: bool
    unit: str | None
    column: str
    header: object
    primary_header: object


def read_healpix_fits(path, *, field: int = 0, binary_mask: bool = False) -> HealpixMap:
    """Read column ``field`` of a full-sky HEALPix FITS map (module docstring).

    With ``binary_mask`` the column is a mask and ``values`` are booleans, True where it holds 1
    (valid), False where 0 (hole); any other value (NaN included) is an InputError giving their
    number and an example. A plain column is converted a chunk at a time, so the column itself
    (200 MB of float32 for an Nside 2048 mask) is never held in memory.

    Raises InputError if the file is missing, not FITS, has no HEALPix binary table, is a
    partial-sky map, or its pixel count does not match ``NSIDE``.
    """
    path = _require_file(path)
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hm = _read_healpix_hdul(path, field, binary_mask)
        except InputError as exc:
            error = exc
    truncated = [w for w in caught if "truncated" in str(w.message).lower()]
    if truncated:  # astropy only warns; the data, if any, is incomplete
        raise InputError(f"{path}: truncated FITS file ({truncated[0].message})") from None
    if error is not None:
        raise error
    return hm


def _read_healpix_hdul(path, field, binary_mask=False):
    import healpy as hp
    from astropy.io import fits

    try:
        hdul = fits.open(path, memmap=False)
    except Exception as exc:  # astropy raises OSError, ValueError, ... for non-FITS bytes
        raise InputError(f"{path}: not a readable FITS file ({type(exc).__name__}: {exc})") from None
    with hdul:
        try:
            tables = [h for h in hdul if isinstance(h, fits.BinTableHDU)]
            hdu = next((h for h in tables if str(h.header.get("PIXTYPE", "")).strip().upper() == "HEALPIX"), None)
            if hdu is None:
                hdu = next((h for h in tables if "NSIDE" in h.header), None)
            if hdu is None:
                what = "no binary table" if not tables else "no table with PIXTYPE = 'HEALPIX' or NSIDE"
                raise InputError(f"{path}: not a HEALPix map ({what})")
            hdr = hdu.header
            if str(hdr.get("INDXSCHM", "IMPLICIT")).strip().upper() == "EXPLICIT" or \
                    str(hdr.get("OBJECT", "")).strip().upper() == "PARTIAL":
                raise InputError(f"{path}: partial-sky (explicit index) HEALPix map; write it as a full-sky map")
            ordering = str(hdr.get("ORDERING", "")).strip().upper()
            if ordering not in ("", "RING", "NESTED", "NEST"):
                raise InputError(f"{path}: unknown HEALPix ORDERING {ordering!r} (expected RING or NESTED)")
            n_fields = len(hdu.columns)
            raw = raw_table(path, hdul, hdu)
            if raw is not None and field is None:
                names = [c.name or f"COLUMN{i + 1}" for i, c in enumerate(hdu.columns)]
                units = [c.unit or None for c in hdu.columns]
                formats = [str(c.format) for c in hdu.columns]
                arrays = LazyColumns(raw)  # each column read when first used
                sizes = [raw.size(i) for i in range(n_fields)]
            elif field is None:
                names, arrays, units, formats = [], [], [], []
                for i, c in enumerate(hdu.columns):
                    d = np.asarray(hdu.data.field(i))
                    arrays.append(d.astype(d.dtype.newbyteorder("="), copy=True).ravel())
                    names.append(c.name or f"COLUMN{i + 1}")
                    units.append(c.unit or None)
                    formats.append(str(c.format))
                sizes = [a.size for a in arrays]
            elif not 0 <= field < n_fields:
                raise InputError(f"{path}: no column {field} (the map has {n_fields})")
            elif raw is not None:
                col = hdu.columns[field]
                values = mask_to_valid(path, raw.chunks(field), raw.size(field)) if binary_mask else raw.column(field)
            else:
                col = hdu.columns[field]
                data = np.asarray(hdu.data.field(field))
                values = data.astype(data.dtype.newbyteorder("="), copy=True).ravel()
                if binary_mask:
                    values = mask_to_valid(path, [(0, values)], values.size)
        except InputError:
            raise
        except TruncatedData as exc:
            raise InputError(f"{path}: truncated FITS file ({exc})") from None
        except Exception as exc:  # truncated data, bad table
            raise InputError(f"{path}: unreadable HEALPix table ({type(exc).__name__}: {exc})") from None
        n_values = (sizes[0] if sizes else 0) if field is None else values.size
        if not hp.isnpixok(n_values):
            raise InputError(f"{path}: not a HEALPix map ({n_values} pixels is not 12*Nside^2)")
        nside = int(hp.npix2nside(n_values))
        if "NSIDE" in hdr and int(hdr["NSIDE"]) != nside:
            raise InputError(f"{path}: header NSIDE = {hdr['NSIDE']} but the table has {n_values} pixels "
                             f"(Nside {nside}); truncated file?")
        keep = fits.Header([c for c in hdr.cards if _keep_keyword(c.keyword)])
        primary = fits.Header([c for c in hdul[0].header.cards if _keep_keyword(c.keyword)])
        if field is None:
            if any(size != n_values for size in sizes):
                listed = ", ".join(f"{n} {size}" for n, size in zip(names, sizes))
                raise InputError(f"{path}: columns of different lengths ({listed} pixels); not a HEALPix map table")
            return HealpixTable(names=names, arrays=arrays, units=units, formats=formats, nside=nside,
                                nest=ordering in ("NESTED", "NEST"), ordering_in_header=bool(ordering),
                                header=keep, primary_header=primary)
        return HealpixMap(values=values, nside=nside, nest=ordering in ("NESTED", "NEST"),
                          ordering_in_header=bool(ordering), unit=(col.unit or None), column=col.name or "T",
                          header=keep, primary_header=primary)


def _keep_keyword(key: str) -> bool:
    key = key.upper()
    if key in _STRUCTURAL:
        return False
    return not any(key.startswith(p) and key[len(p):].isdigit() for p in _COLUMN_PREFIXES)


def write_healpix_fits(path, values, *, nest: bool = False, unit: str | None = None, column: str = "T",
                       header=None, primary_header=None, history: str | None = None) -> Path:
    """Write a full-sky HEALPix map to FITS atomically (healpy's layout: 1024 pixels per row).

    Parameters
    ----------
    values : ndarray (12 Nside²,)
        float32 is written as ``E``, float64 as ``D`` (other dtypes as float32).
    nest : bool
        ``ORDERING = 'NESTED'`` if true, else ``'RING'``.
    unit, column
        ``TUNIT1`` and ``TTYPE1``.
    header, primary_header : astropy.io.fits.Header, optional
        Extra keywords (e.g. :attr:`HealpixMap.header`) copied onto the map and primary HDUs.
    history : str, optional
        Appended as a ``HISTORY`` card.
    """
    import healpy as hp
    from astropy.io import fits

    values = np.asarray(values)
    if values.ndim != 1 or not hp.isnpixok(values.size):
        raise InputError(f"{path}: cannot write a HEALPix map of shape {values.shape}")
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float32)
    npix = values.size
    repeat = 1024 if npix % 1024 == 0 else 1
    fmt = f"{repeat}{'E' if values.dtype == np.float32 else 'D'}"
    col = fits.Column(name=column, format=fmt, unit=unit or None, array=values.reshape(npix // repeat, repeat))
    hdu = fits.BinTableHDU.from_columns([col])
    h = hdu.header
    h["PIXTYPE"] = ("HEALPIX", "HEALPIX pixelisation")
    h["ORDERING"] = ("NESTED" if nest else "RING", "Pixel ordering scheme, either RING or NESTED")
    h["NSIDE"] = (int(hp.npix2nside(npix)), "Resolution parameter of HEALPIX")
    h["FIRSTPIX"] = (0, "First pixel # (0 based)")
    h["LASTPIX"] = (npix - 1, "Last pixel # (0 based)")
    h["INDXSCHM"] = ("IMPLICIT", "Indexing: IMPLICIT or EXPLICIT")
    if header is not None:
        for card in header.cards:
            if _keep_keyword(card.keyword):
                h.append(card, end=True)
    if "OBJECT" not in h:
        h["OBJECT"] = ("FULLSKY", "Sky coverage, either FULLSKY or PARTIAL")
    if history:
        h.add_history(history)
    primary = fits.PrimaryHDU()
    if primary_header is not None:
        for card in primary_header.cards:
            if _keep_keyword(card.keyword):
                primary.header.append(card, end=True)
    with atomic_path(path) as tmp:
        fits.HDUList([primary, hdu]).writeto(tmp)
    return Path(path)


# --------------------------------------------------------------------------------------------
# Planck-format multi-column HEALPix FITS, units
# --------------------------------------------------------------------------------------------
#: Temperature units understood (normalised: upper case, μ/µ -> U, spaces and '_CMB' suffix
#: dropped), as the factor converting to μK.
UNIT_TO_UK = {"K": 1e6, "KCMB": 1e6, "MK": 1e3, "MKCMB": 1e3, "UK": 1.0, "UKCMB": 1.0, "MICROK": 1.0}

#: A map without a unit whose valid pixels have an rms below this is taken to be in kelvin.
KELVIN_RMS_THRESHOLD = 1e-2


def _normalise_unit(unit: str) -> str:
    u = str(unit).strip().replace("μ", "u").replace("µ", "u").upper().replace(" ", "").replace("-", "_")
    return u.replace("_CMB", "CMB").replace("_", "")


def unit_to_uk(unit, source: str = "unit") -> float:
    """Factor converting values in ``unit`` (K, K_CMB, mK, uK, uK_CMB, μK) to μK; InputError otherwise."""
    key = _normalise_unit(unit)
    if key not in UNIT_TO_UK:
        raise InputError(f"{source}: unknown temperature unit {unit!r} (known: K, K_CMB, mK, uK, uK_CMB, μK)")
    return UNIT_TO_UK[key]


def variance_unit_to_uk2(unit, source: str = "unit") -> float:
    """Factor converting a variance in ``unit`` (K^2, K_CMB^2, Kcmb2, uK^2, μK², ...) to μK²."""
    u = str(unit).strip().replace("²", "^2").replace("**2", "^2")
    base = u[:-2] if u.endswith("^2") else (u[:-1] if u.endswith("2") else None)
    if base is None:
        raise InputError(f"{source}: unit {unit!r} is not a variance (expected e.g. K_CMB^2 or uK^2)")
    return unit_to_uk(base, source) ** 2


@dataclasses.dataclass
class HealpixTable:
    """Every column of a HEALPix FITS table (Planck format: I_STOKES, Q_STOKES, U_STOKES, HITS,
    II_COV, ...), with what is needed to write it back alike (:func:`write_healpix_table`)."""

    names: list
    arrays: list
    units: list
    formats: list
    nside: int
    nest: bool
    ordering_in_header: bool
    header: object
    primary_header: object

    def index(self, column, source: str = "--column") -> int:
        """Column index from a name (case-insensitive) or an index (int or digit string)."""
        if isinstance(column, (int, np.integer)) or (isinstance(column, str) and column.strip().lstrip("-").isdigit()):
            i = int(column)
            if not 0 <= i < len(self.names):
                raise InputError(f"{source}: no column {i} (the map has {len(self.names)}: {', '.join(self.names)})")
            return i
        wanted = str(column).strip().upper()
        for i, name in enumerate(self.names):
            if name.strip().upper() == wanted:
                return i
        raise InputError(f"{source}: no column named {column!r} (columns: {', '.join(self.names)})")


def read_healpix_table(path) -> HealpixTable:
    """Read every column of a full-sky HEALPix FITS map (see :func:`read_healpix_fits`)."""
    path = _require_file(path)
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            table = _read_healpix_hdul(path, None)
        except InputError as exc:
            error = exc
    truncated = [w for w in caught if "truncated" in str(w.message).lower()]
    if truncated:
        raise InputError(f"{path}: truncated FITS file ({truncated[0].message})") from None
    if error is not None:
        raise error
    return table


def write_healpix_table(path, table: HealpixTable, replace: dict | None = None, *, header_cards=(),
                        history: str | None = None) -> Path:
    """Write ``table`` back (same columns, formats, units, ordering and keywords) atomically, with
    the columns in ``replace`` ({index: values in the column's unit}) replaced, ``header_cards``
    ((key, value, comment) tuples; long strings continue on CONTINUE cards) and a HISTORY card."""
    import healpy as hp
    from astropy.io import fits

    replace = replace or {}
    npix = hp.nside2npix(table.nside)
    repeat = 1024 if npix % 1024 == 0 else 1
    lazy = table.arrays if isinstance(table.arrays, LazyColumns) else None
    columns = []  # (code, values or (RawTable, index) to copy a column never read straight through)
    for i, fmt in enumerate(table.formats):
        code = fmt.lstrip("0123456789") or "E"
        if i in replace:  # no copy when already of the column's type (an Nside 4096 map is 805 MB)
            values = np.asarray(replace[i]).astype(np.float64 if code == "D" else np.float32, copy=False)
            code = "D" if code == "D" else "E"
        elif lazy is not None and not lazy.loaded(i) and lazy.raw.size(i) == npix:
            values = (lazy.raw, i)
        else:
            values = np.asarray(table.arrays[i])
        columns.append((code, values))
    fast = all(code in PLAIN_TYPES for code, _ in columns) and not str(path).lower().endswith(".gz")
    if not fast:  # astropy writes what fits_raw does not (logical columns, ...) and compressed files
        columns = [(code, np.asarray(table.arrays[v[1]]) if isinstance(v, tuple) else v) for code, v in columns]
    cols = [fits.Column(name=name, format=f"{repeat}{code}", unit=unit or None,
                        array=None if fast else values.reshape(npix // repeat, repeat))
            for name, unit, (code, values) in zip(table.names, table.units, columns)]
    hdu = fits.BinTableHDU.from_columns(cols, nrows=0) if fast else fits.BinTableHDU.from_columns(cols)
    h = hdu.header
    if fast:
        h["NAXIS2"] = npix // repeat
    h["PIXTYPE"] = ("HEALPIX", "HEALPIX pixelisation")
    h["ORDERING"] = ("NESTED" if table.nest else "RING", "Pixel ordering scheme, either RING or NESTED")
    h["NSIDE"] = (int(table.nside), "Resolution parameter of HEALPIX")
    h["FIRSTPIX"] = (0, "First pixel # (0 based)")
    h["LASTPIX"] = (npix - 1, "Last pixel # (0 based)")
    h["INDXSCHM"] = ("IMPLICIT", "Indexing: IMPLICIT or EXPLICIT")
    if table.header is not None:
        for card in table.header.cards:
            if _keep_keyword(card.keyword) and card.keyword not in {k for k, *_ in header_cards}:
                h.append(card, end=True)
    if "OBJECT" not in h:
        h["OBJECT"] = ("FULLSKY", "Sky coverage, either FULLSKY or PARTIAL")
    for key, value, comment in header_cards:
        h[key] = (value, comment)
    if history:
        h.add_history(history)
    primary = fits.PrimaryHDU()
    if table.primary_header is not None:
        for card in table.primary_header.cards:
            if _keep_keyword(card.keyword):
                primary.header.append(card, end=True)
    hdul = fits.HDUList([primary, hdu])
    with atomic_path(path) as tmp:
        if fast:  # the same bytes as astropy's writeto (tests/test_fits_raw.py), without its record copy
            hdul.update_extend()
            with open(tmp, "wb") as fh:
                write_table(fh, primary.header, h, [(repeat, code, v) for code, v in columns], npix)
        else:
            hdul.writeto(tmp)
    return Path(path)


def looks_like_kelvin(values_valid) -> bool:
    """True if the rms of ``values_valid`` is below :data:`KELVIN_RMS_THRESHOLD` (but not all zero)."""
    v = np.asarray(values_valid, dtype=np.float64)
    if v.size == 0:
        return False
    rms = float(np.sqrt(np.mean(v * v)))
    return 0.0 < rms < KELVIN_RMS_THRESHOLD


# --------------------------------------------------------------------------------------------
# .npy
# --------------------------------------------------------------------------------------------
def read_npy(path, *, ndims=(2, 3, 4)) -> np.ndarray:
    """Load a numeric ``.npy`` array (no pickles) whose number of dimensions is in ``ndims``."""
    path = _require_file(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError (pickled/corrupt), EOFError, OSError
        raise InputError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})") from None
    if not isinstance(arr, np.ndarray) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{path}: expected a numeric array, got dtype {getattr(arr, 'dtype', type(arr))}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"{path}: complex array (dtype {arr.dtype}); maps are real temperatures "
                         "(float, or integers converted to float32)")
    if arr.ndim not in ndims:
        raise InputError(f"{path}: expected an array with {' or '.join(map(str, ndims))} dimensions, "
                         f"got shape {arr.shape}")
    return arr


def write_npy(path, arr) -> Path:
    """Save ``arr`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(arr), allow_pickle=False)
    return Path(path)


# --------------------------------------------------------------------------------------------
# PNG
# --------------------------------------------------------------------------------------------
def _png_levels(path) -> np.ndarray:
    """Grey levels (H, W) float64 in [0, 255] of a PNG file."""
    from PIL import Image, UnidentifiedImageError

    path = _require_file(path)
    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                raise InputError(f"{path}: not a PNG image (format {im.format})")
            im.load()
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA")
                mode = "RGBA"
            arr = np.asarray(im)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{path}: not a readable PNG image ({exc})") from None
    if mode == "1":
        return arr.astype(np.float64) * 255.0
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        return arr.astype(np.float64) / 257.0
    if mode in ("LA", "RGBA"):
        alpha = arr[..., -1]
        if (alpha != 255).any():
            raise InputError(f"{path}: PNG has transparent pixels; save it without an alpha channel")
        arr = arr[..., :-1]
    if arr.ndim == 3:
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
        elif (arr[..., 1:] == arr[..., :1]).all():
            arr = arr[..., 0]
        else:
            raise InputError(f"{path}: colour PNG; CoMBInE reads grey levels as temperature (save it as greyscale)")
    if arr.ndim != 2:
        raise InputError(f"{path}: unsupported PNG layout (mode {mode}, shape {arr.shape})")
    return arr.astype(np.float64)


def read_png(path, *, scale_uk: float = PNG_SCALE_UK) -> np.ndarray:
    """PNG grey levels -> temperature (H, W) float32 μK: :math:`T = (g - 127.5)\\,s`."""
    g = _png_levels(path)
    return ((g - 127.5) * float(scale_uk)).astype(np.float32)


def write_png(path, image_uk, *, scale_uk: float = PNG_SCALE_UK) -> int:
    """Temperature (H, W) μK -> 8-bit grey PNG, :math:`g = \\mathrm{round}(T/s + 127.5)`.

    Values beyond :math:`\\pm 127.5\\,s` (±500 μK by default) are clipped, with a
    ``UserWarning`` giving their number. Returns the number of clipped pixels.
    """
    from PIL import Image

    image = np.asarray(image_uk, dtype=np.float64)
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 2:
        raise InputError(f"{path}: a PNG holds one (H, W) image, got shape {image.shape}")
    g = np.rint(image / float(scale_uk) + 127.5)
    clipped = int(((g < 0) | (g > 255)).sum())
    if clipped:
        warnings.warn(f"{path}: {clipped} pixels beyond ±{127.5 * scale_uk:.0f} μK clipped in the PNG", stacklevel=2)
    with atomic_path(path) as tmp:
        Image.fromarray(np.clip(g, 0, 255).astype(np.uint8)).save(os.fspath(tmp), format="PNG")
    return clipped


def read_png_mask(path) -> np.ndarray:
    """PNG mask -> (H, W) float32, white (255) = 1 valid, black (0) = 0 hole; other levels are an error."""
    g = _png_levels(path)
    if g.max() <= 1.0 and not (g == 0).all():  # a 0/1 PNG (looks black) is also accepted
        g = g * 255.0
    bad = (g != 0) & (g != 255)
    if bad.any():
        raise InputError(f"{path}: mask PNG is not black and white ({int(bad.sum())} grey pixels, e.g. level "
                         f"{g[bad][0]:.0f}); masks are binary: white = valid, black = hole")
    return (g == 255).astype(np.float32)


def read_npy_mask(path) -> np.ndarray:
    """``.npy`` mask -> float32 array of 0 (hole) and 1 (valid), any shape; other values are an error."""
    arr = read_npy(path, ndims=(2, 3, 4))
    if arr.dtype != bool and not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{path}: mask has non-numeric dtype {arr.dtype}")
    if not np.isin(arr, (0, 1)).all():
        raise InputError(f"{path}: mask is not binary (found values other than 0 and 1); "
                         "masks are 1 = valid, 0 = hole")
    return arr.astype(np.float32)


def read_mask_file(path) -> np.ndarray:
    """The one mask-file reader: a ``.png`` (:func:`read_png_mask`) or ``.npy``
    (:func:`read_npy_mask`) mask as float32 0/1 (1 = valid); the rule is in the module docstring."""
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        return read_png_mask(path)
    if suffix == ".npy":
        return read_npy_mask(path)
    raise InputError(f"{path}: a mask file is .png or .npy, got {suffix or 'no suffix'}")


def write_png_mask(path, mask) -> Path:
    """(H, W) binary mask -> black (hole) and white (valid) PNG."""
    from PIL import Image

    from .validation import as_binary_mask

    m = as_binary_mask(mask, str(path))
    if m.ndim != 2:
        raise InputError(f"{path}: a PNG mask holds one (H, W) mask, got shape {m.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray((m * 255).astype(np.uint8)).save(os.fspath(tmp), format="PNG")
    return Path(path)


__all__ = [
    "PNG_SCALE_UK",
    "HealpixMap",
    "file_kind",
    "read_healpix_fits",
    "write_healpix_fits",
    "HealpixTable",
    "read_healpix_table",
    "write_healpix_table",
    "unit_to_uk",
    "variance_unit_to_uk2",
    "looks_like_kelvin",
    "read_npy",
    "write_npy",
    "read_png",
    "write_png",
    "read_png_mask",
    "read_npy_mask",
    "read_mask_file",
    "write_png_mask",
]
