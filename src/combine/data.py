"""Datasets of simulated patches: the HDF5 layout of docs/DESIGN.md, reading, writing, splits.

Layout of ``DIR/{train,val,test}.h5``::

    maps   (N, H, W) or (N, C, H, W) float32, μK (never clipped or rescaled)
    ns     (N,) float64, optional: spectral index of each patch (several classes)
    attrs  sky (JSON text of :class:`combine.sky.Sky`), and, for readers of the first layout,
           pixel_arcmin, beam_fwhm_arcmin, noise_uk_arcmin, size, method, seed,
           cosmology (JSON text), combine_version  [+ any extra, e.g. split, nside]

``seed`` is an integer, or the text ``"none"`` when no seed was given. Files are written
atomically (temporary name, then rename).

The ``sky`` attribute is the one description of the data's sky; the loose attributes repeat
it (the layout of docs/DESIGN.md). Files written before ``Sky`` existed have no ``sky`` attribute: their
sky is rebuilt from the loose ones (:meth:`combine.sky.Sky.from_legacy_attrs`). A dataset with
several spectral-index classes (per-patch ``ns``) records the sky with the Planck ns and
``cosmology.ns = null``; ``sky.with_ns(v)`` is the sky of class ``v``.

One reader: :func:`read_header` checks the layout and attributes without loading the maps,
:func:`read_dataset` adds the maps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from . import __version__
from .atomic import atomic_path
from .errors import InputError

#: Attributes every dataset file carries.
REQUIRED_ATTRS = (
    "pixel_arcmin",
    "beam_fwhm_arcmin",
    "noise_uk_arcmin",
    "size",
    "method",
    "seed",
    "cosmology",
    "combine_version",
)

#: Split names, in the order of ``--split``.
SPLITS = ("train", "val", "test")


def _attr_value(name, value):
    """Convert an attribute to something HDF5 stores and reads back unchanged."""
    from .sky import Sky

    if isinstance(value, Sky):
        return value.to_json_text()
    if name == "cosmology" and not isinstance(value, str):
        return json.dumps(value, sort_keys=True)
    if name == "seed" and value is None:
        return "none"
    if value is None:
        raise InputError(f"attrs: attribute {name!r} is None")
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    if isinstance(value, (np.generic,)):
        return value.item()
    return value


def _checked_maps(maps, source="maps") -> np.ndarray:
    arr = np.asarray(maps)
    if arr.ndim not in (3, 4):
        raise InputError(f"{source}: expected (N, H, W) or (N, C, H, W) maps, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"{source}: maps must be real numbers, got dtype {arr.dtype}")
    return arr


def sky_attrs(sky) -> dict:
    """The attributes that describe ``sky`` (:class:`combine.sky.Sky`): ``sky`` (its JSON) and
    the loose ``pixel_arcmin``, ``beam_fwhm_arcmin``, ``noise_uk_arcmin``, ``cosmology`` kept
    for readers of the first layout."""
    return {"sky": sky.to_json_text(), "pixel_arcmin": float(sky.pixel_arcmin),
            "beam_fwhm_arcmin": float(sky.beam_fwhm_arcmin), "noise_uk_arcmin": float(sky.noise_uk_arcmin),
            "cosmology": json.dumps(dict(sky.cosmology), sort_keys=True)}


def prepare_attrs(attrs: dict, maps_shape, sky=None) -> dict:
    """Complete and check the attributes of a dataset (adds ``combine_version`` if absent).

    With ``sky`` (:class:`combine.sky.Sky`), its attributes (:func:`sky_attrs`) fill in those
    not given in ``attrs``.
    """
    attrs = dict(attrs or {})
    if sky is not None:
        for key, value in sky_attrs(sky).items():
            attrs.setdefault(key, value)
    attrs.setdefault("combine_version", __version__)
    attrs.setdefault("size", int(maps_shape[-1]))
    missing = [name for name in REQUIRED_ATTRS if name not in attrs]
    if missing:
        raise InputError(f"attrs: missing required attribute(s) {', '.join(missing)}")
    return {name: _attr_value(name, value) for name, value in attrs.items()}


def init_h5(handle, n, map_shape, *, with_ns: bool, attrs: dict, sky=None):
    """Create the ``maps`` (and ``ns``) datasets and attributes in an open ``h5py.File``.

    ``map_shape`` is (H, W) or (C, H, W). Returns ``(maps_dataset, ns_dataset_or_None)`` to be
    filled by slices (used to stream large simulations to disk).
    """
    shape = (int(n),) + tuple(int(s) for s in map_shape)
    chunks = (1,) + shape[1:] if n > 0 else None
    maps_ds = handle.create_dataset("maps", shape=shape, dtype=np.float32, chunks=chunks)
    ns_ds = handle.create_dataset("ns", shape=(int(n),), dtype=np.float64) if with_ns else None
    for name, value in prepare_attrs(attrs, shape, sky).items():
        handle.attrs[name] = value
    return maps_ds, ns_ds


def write_dataset(path, maps, *, ns=None, attrs: dict | None = None, sky=None) -> None:
    """Write a dataset file (atomically).

    Parameters
    ----------
    path : str or Path
        Destination ``.h5`` file.
    maps : array_like, (N, H, W) or (N, C, H, W)
        Patches in μK; stored as float32.
    ns : array_like, (N,), optional
        Spectral index of each patch.
    attrs : dict
        Must hold :data:`REQUIRED_ATTRS` (``combine_version`` and ``size`` are filled in if
        absent, and the sky attributes when ``sky`` is given); ``cosmology`` may be a dict
        (stored as JSON text). Extra keys are stored too.
    sky : combine.sky.Sky, optional
        The data's sky, written as the ``sky`` attribute (and the loose attributes).
    """
    import h5py

    maps = _checked_maps(maps, str(path))
    if ns is not None:
        ns = np.asarray(ns, dtype=np.float64)
        if ns.shape != (maps.shape[0],):
            raise InputError(f"{path}: ns must have shape ({maps.shape[0]},), got {ns.shape}")
    prepared = prepare_attrs(attrs, maps.shape, sky)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            maps_ds, ns_ds = init_h5(handle, maps.shape[0], maps.shape[1:], with_ns=ns is not None, attrs=prepared)
            if maps.shape[0]:
                maps_ds[...] = maps.astype(np.float32, copy=False)
            if ns_ds is not None:
                ns_ds[...] = ns


def _python(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def read_header(path):
    """Check a dataset file's layout and attributes without reading the maps.

    Returns
    -------
    shape : tuple of int
        Shape of ``maps`` as stored: (N, H, W) or (N, C, H, W).
    attrs : dict
        All attributes as Python values; ``cosmology`` stays JSON text (parse it with
        :func:`dataset_cosmology`), ``seed`` is an int or None.
    sky : combine.sky.Sky
        The ``sky`` attribute, or for files without one the sky of the loose attributes
        (:meth:`combine.sky.Sky.from_legacy_attrs`).

    Raises
    ------
    InputError
        File missing or not HDF5, no ``maps`` dataset, wrong dimensions or dtype, ``ns`` of
        the wrong length, a missing required attribute, ``size`` not the maps' side, invalid
        cosmology JSON or sky description.
    """
    import h5py

    from .sky import Sky

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path}: not an HDF5 file")
    try:
        with h5py.File(path, "r") as handle:
            if "maps" not in handle or not isinstance(handle["maps"], h5py.Dataset):
                raise InputError(f"{path}: no 'maps' dataset")
            ds = handle["maps"]
            if ds.ndim not in (3, 4):
                raise InputError(f"{path}: 'maps' must be (N, H, W) or (N, C, H, W), got shape {ds.shape}")
            if ds.dtype.kind != "f":
                raise InputError(f"{path}: 'maps' must be floating point, got {ds.dtype}")
            shape = tuple(int(s) for s in ds.shape)
            if "ns" in handle and handle["ns"].shape != (shape[0],):
                raise InputError(f"{path}: 'ns' has shape {handle['ns'].shape}, expected ({shape[0]},)")
            attrs = {name: _python(value) for name, value in handle.attrs.items()}
    except OSError as exc:
        raise InputError(f"{path}: cannot read HDF5 file ({exc})") from None
    missing = [name for name in REQUIRED_ATTRS if name not in attrs]
    if missing:
        raise InputError(f"{path}: missing attribute(s) {', '.join(missing)}")
    if attrs["seed"] == "none":
        attrs["seed"] = None
    try:
        json.loads(attrs["cosmology"])
    except (TypeError, ValueError):
        raise InputError(f"{path}: attribute 'cosmology' is not JSON text") from None
    try:
        size_ok = int(attrs["size"]) == shape[-1]
    except (TypeError, ValueError):
        size_ok = False
    if not size_ok:
        raise InputError(f"{path}: attribute size={attrs['size']!r} but maps are {shape[-2]}×{shape[-1]}")
    sky = Sky.from_legacy_attrs(attrs, source=str(path))
    return shape, attrs, sky


def read_dataset(path):
    """Read and validate a dataset file (:func:`read_header`, then the maps).

    Returns
    -------
    maps : ndarray float32, (N, H, W) or (N, C, H, W), μK
    ns : ndarray float64 (N,) or None
    attrs : dict
        As :func:`read_header`'s.
    """
    import h5py

    path = Path(path)
    _, attrs, _ = read_header(path)
    try:
        with h5py.File(path, "r") as handle:
            maps = handle["maps"][...].astype(np.float32, copy=False)
            ns = np.asarray(handle["ns"][...], dtype=np.float64) if "ns" in handle else None
    except OSError as exc:
        raise InputError(f"{path}: cannot read HDF5 file ({exc})") from None
    return maps, ns, attrs


def dataset_cosmology(attrs: dict) -> dict:
    """The ``cosmology`` attribute as a dict (``ns`` is null when patches have several ns)."""
    return json.loads(attrs["cosmology"])


def parse_split(text) -> tuple:
    """Parse ``"0.7,0.15,0.15"`` into three non-negative fractions summing to 1."""
    try:
        parts = tuple(float(p) for p in str(text).split(","))
    except ValueError:
        raise InputError(f"--split: expected three comma-separated fractions, got {text!r}") from None
    check_fractions(parts, "--split")
    return parts


def check_fractions(fractions, source="fractions"):
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3:
        raise InputError(f"{source}: need 3 fractions (train, val, test), got {len(fractions)}")
    if any(not math.isfinite(f) or f < 0 for f in fractions):
        raise InputError(f"{source}: fractions must be >= 0, got {fractions}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise InputError(f"{source}: fractions must sum to 1, got {sum(fractions):.6g}")
    return fractions


def split_counts(n, fractions=(0.7, 0.15, 0.15)) -> tuple:
    """Split ``n`` items into (train, val, test) counts by largest remainder.

    .. math:: n_i = \\lfloor n f_i \\rfloor + [\\text{i among the largest remainders}],
              \\qquad \\sum_i n_i = n
    """
    if int(n) != n or int(n) < 0:
        raise InputError(f"n: must be a non-negative integer, got {n!r}")
    n = int(n)
    fractions = check_fractions(fractions)
    exact = [n * f for f in fractions]
    counts = [int(math.floor(e + 1e-9)) for e in exact]
    remainders = sorted(range(3), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in remainders[: n - sum(counts)]:
        counts[i] += 1
    return tuple(counts)


__all__ = [
    "REQUIRED_ATTRS",
    "SPLITS",
    "write_dataset",
    "read_dataset",
    "read_header",
    "sky_attrs",
    "dataset_cosmology",
    "split_counts",
    "parse_split",
    "init_h5",
    "prepare_attrs",
]
