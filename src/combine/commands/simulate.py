"""``combine simulate``: simulated CMB patches (μK) into DIR/{train,val,test}.h5."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..sky.defaults import (
    BEAM_FWHM_ARCMIN,
    MIN_PATCH_SIZE,
    NS_CLASSES,
    NSIDE_DEFAULT,
    PATCH_SIZE,
    PIXEL_ARCMIN,
)

#: Patches generated and written per step (bounds memory: 1024 × 128² float32 = 64 MB).
CHUNK_PATCHES = 1024

DESCRIPTION = f"""\
Simulate Gaussian CMB temperature patches (μK, lensed Planck 2018 TT from CAMB, Gaussian beam,
white noise in μK·arcmin) and write DIR/train.h5, DIR/val.h5, DIR/test.h5.

flat     FFT realisations on a periodic grid 8x the patch side, cut into non-overlapping
         patches (point samples, no pixel window). 10,000 128² patches take about 10-20 s.
healpix  full-sky maps (healpy, beam + pixel window), --patches-per-map gnomonic patches cut
         from each at non-overlapping centres in the central band |b| <= 30 deg. Nside 2048
         needs about 2 GB of RAM and a minute or more per map.

Several --ns values make labelled classes (the original CoMBInE's are
{', '.join(str(v) for v in NS_CLASSES)}): patches are divided evenly among them, grouped by
class in the order given, and each file gets a per-patch `ns` dataset.
Each file records its sky (attribute `sky`, the JSON of combine.sky.Sky) next to the loose
attributes pixel_arcmin, beam_fwhm_arcmin, noise_uk_arcmin and cosmology.
--fields TQU writes maps (N, 3, H, W) = T, Q, U in μK with the TE correlation and the DESIGN E/B
convention: flat (combine.sky.polarisation.simulate_flat_tqu) or cut from full-sky T, Q, U maps
with Q/U rotated from healpy's frame into the patch frame (--method healpix,
combine.sky.healpix.simulate_healpix_tqu_patches); Q/U noise is √2 × --noise.

--out FILE.fits (with --method healpix, no --n-patches) writes one full-sky HEALPix map at
--nside instead of a dataset: column I_STOKES (--fields T) or I_STOKES, Q_STOKES, U_STOKES
(--fields TQU: combine.sky.polarisation.simulate_healpix_tqu, healpy's polarisation convention,
POLCCONV = 'COSMO'), TUNIT uK_CMB, ORDERING RING, beam and HEALPix pixel window applied, white
noise per pixel (Q/U √2 ×). The header records the sky (COMBSKY, the JSON of combine.sky.Sky)
and the seed (COMBSEED). An existing file is replaced only with --overwrite.
The same --seed gives the same files."""


def register(subparsers, common):
    p = subparsers.add_parser(
        "simulate",
        parents=[common],
        help="simulate CMB patches (μK) into train/val/test HDF5 files",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR|FILE.fits",
                   help="output directory (created if missing), or a .fits file for one full-sky map")
    p.add_argument("--n-patches", type=int, default=None, metavar="N",
                   help="total number of patches (required for a dataset directory)")
    p.add_argument("--size", type=int, default=PATCH_SIZE, help=f"patch side in pixels, >= {MIN_PATCH_SIZE} (default %(default)s)")
    p.add_argument("--method", choices=("flat", "healpix"), default=None,
                   help="flat-sky FFT or full-sky HEALPix (default flat; healpix for --out FILE.fits)")
    p.add_argument("--ns", type=float, nargs="+", metavar="V", help="spectral index (one or several classes; default Planck 0.9649)")
    p.add_argument("--noise", type=float, default=0.0, metavar="UK_ARCMIN", help="white noise, μK·arcmin (default 0)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: fresh, recorded in the files)")
    p.add_argument("--split", default="0.7,0.15,0.15", metavar="F,F,F", help="train,val,test fractions (default %(default)s)")
    p.add_argument("--pixel-arcmin", type=float, default=PIXEL_ARCMIN, help="pixel side, arcmin (default %(default)s)")
    p.add_argument("--beam-fwhm", type=float, default=BEAM_FWHM_ARCMIN, metavar="ARCMIN", help="Gaussian beam FWHM, arcmin (default %(default)s)")
    p.add_argument("--nside", type=int, default=NSIDE_DEFAULT, help="HEALPix Nside for --method healpix (default %(default)s; 2048 needs ~2 GB RAM)")
    p.add_argument("--patches-per-map", type=int, default=10, help="patches cut from each full-sky map (default %(default)s)")
    p.add_argument("--fields", choices=("T", "TQU"), default="T",
                   help="T (maps (N, H, W)) or T, Q, U (maps (N, 3, H, W); a 3-column full-sky map with "
                        "--out FILE.fits) (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out FILE.fits")
    p.set_defaults(run=run)


def _check_args(args):
    from ..data import parse_split
    from ..image_io import FITS_SUFFIXES
    from ..sky.spectra import validate_ns

    args.full_sky = str(args.out).lower().endswith(FITS_SUFFIXES)
    if args.full_sky:
        if args.method == "flat":
            raise InputError(f"--out {args.out}: a full-sky map is simulated with --method healpix, not flat")
        args.method = "healpix"
        if args.n_patches is not None:
            raise InputError(f"--n-patches: --out {args.out} writes one full-sky map, not patches")
        if Path(args.out).exists() and not args.overwrite:
            raise InputError(f"{args.out}: already exists (pass --overwrite to replace it)")
        if Path(args.out).is_dir():
            raise InputError(f"{args.out}: is a directory")
    else:
        args.method = args.method or "flat"
        if args.n_patches is None:
            raise InputError("--n-patches: required (the number of patches to write into DIR); "
                             "or --out FILE.fits for one full-sky map")
        if args.n_patches < 1:
            raise InputError(f"--n-patches: must be >= 1, got {args.n_patches}")
    if args.size < MIN_PATCH_SIZE:
        raise InputError(f"--size: patch side must be >= {MIN_PATCH_SIZE}, got {args.size}")
    fractions = parse_split(args.split)
    ns_values = [validate_ns(v, "--ns") for v in (args.ns or [])]
    if len(set(ns_values)) != len(ns_values):
        raise InputError(f"--ns: repeated value in {args.ns}")
    if not (math.isfinite(args.noise) and args.noise >= 0):
        raise InputError(f"--noise: must be >= 0 μK·arcmin, got {args.noise}")
    if not (math.isfinite(args.pixel_arcmin) and args.pixel_arcmin > 0):
        raise InputError(f"--pixel-arcmin: must be > 0, got {args.pixel_arcmin}")
    if not (math.isfinite(args.beam_fwhm) and args.beam_fwhm >= 0):
        raise InputError(f"--beam-fwhm: must be >= 0, got {args.beam_fwhm}")
    if args.method == "healpix":
        import healpy as hp

        if args.nside < 1 or not hp.isnsideok(args.nside, nest=True):
            raise InputError(f"--nside: must be a power of 2, got {args.nside}")
        if args.patches_per_map < 1:
            raise InputError(f"--patches-per-map: must be >= 1, got {args.patches_per_map}")
    if args.full_sky and len(ns_values) > 1:
        raise InputError(f"--ns: a full-sky map has one spectral index, got {len(ns_values)}")
    if args.seed is not None and args.seed < 0:
        raise InputError(f"--seed: must be >= 0, got {args.seed}")
    return fractions, ns_values


def _check_out_dir(out: Path) -> bool:
    """Create ``out`` if needed (returns True if created) and check that it is writable."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create output directory ({exc.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"{out}: output directory is not writable")
    return created


def class_counts(n, n_classes):
    """Divide ``n`` patches evenly among classes (the first ``n mod k`` get one more)."""
    return [n // n_classes + (1 if i < n % n_classes else 0) for i in range(n_classes)]


def dataset_bytes(args, several: bool) -> int:
    """Bytes the three files' datasets take: N × C × H × W × 4 (float32 maps) plus N × 8
    (float64 ``ns``) when there are several classes (HDF5 headers and attributes not counted)."""
    channels = 3 if getattr(args, "fields", "T") == "TQU" else 1
    n = int(args.n_patches)
    return n * channels * int(args.size) ** 2 * 4 + (n * 8 if several else 0)


def _check_space(args, out: Path, several: bool) -> None:
    """Refuse, before anything is created, a simulation larger than the free disk at ``out``."""
    from ..atomic import check_free_space

    channels = "3×" if getattr(args, "fields", "T") == "TQU" else ""
    check_free_space(out, dataset_bytes(args, several),
                     f"--n-patches {args.n_patches}: {args.n_patches} patches of {channels}{args.size}² float32")


def run(args):
    fractions, ns_values = _check_args(args)
    if args.full_sky:
        return _simulate_full_sky(args, ns_values[0] if ns_values else None)
    out = Path(args.out)
    _check_space(args, out, len(ns_values) > 1)
    created = _check_out_dir(out)
    try:
        return _simulate(args, out, fractions, ns_values)
    except BaseException:
        if created:  # leave nothing behind, not even the empty directory we made
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def _simulate(args, out, fractions, ns_values):
    import h5py

    from ..atomic import atomic_path, format_bytes
    from ..data import SPLITS, init_h5, split_counts
    from ..progress import progress
    from ..sky.flat import grid_side_px, simulate_flat_patches
    from ..sky import Sky
    from ..sky.healpix import simulate_healpix_patches, simulate_healpix_tqu_patches
    from ..sky.polarisation import simulate_flat_tqu

    tqu = getattr(args, "fields", "T") == "TQU"

    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % (2**63))
    counts = split_counts(args.n_patches, fractions)

    several = len(ns_values) > 1
    classes = ns_values or [None]
    # the one description of the data's sky; one Sky per ns class (CAMB once per class, cached)
    base = Sky.planck18(pixel_arcmin=args.pixel_arcmin, beam_fwhm_arcmin=args.beam_fwhm, noise_uk_arcmin=args.noise)
    skies = {ns: base if ns is None else base.with_ns(ns) for ns in classes}
    for sky in skies.values():
        sky.spectra_uk2()
    file_sky = base if several else skies[classes[0]]
    cosmology = dict(file_sky.cosmology)
    if several:
        cosmology["ns"] = None
    attrs = {
        "sky": file_sky.to_json_text(),
        "pixel_arcmin": float(args.pixel_arcmin),
        "beam_fwhm_arcmin": float(args.beam_fwhm),
        "noise_uk_arcmin": float(args.noise),
        "size": int(args.size),
        "method": args.method,
        "seed": int(seed),
        "cosmology": json.dumps(cosmology, sort_keys=True),
        "units": "uK (CMB thermodynamic temperature anisotropy)",
        "spectrum": ("CAMB lensed scalar TT, EE, BB, TE" if tqu else "CAMB lensed scalar TT")
        + ", lens_potential_accuracy=1",
        "fields": "TQU" if tqu else "T",
        "ns_classes": json.dumps([float(v) for v in ns_values] if several else []),
    }
    if args.method == "flat":
        attrs["grid_px"] = int(grid_side_px(args.size))
        attrs["pixel_window"] = "none (point samples)"
    else:
        attrs["nside"] = int(args.nside)
        attrs["patches_per_map"] = int(args.patches_per_map)
        attrs["region"] = "central (|b| <= 30 deg)"
        attrs["pixel_window"] = "HEALPix (map) + bilinear interpolation"

    if args.method == "flat":
        chunk_patches = CHUNK_PATCHES
    else:  # whole maps per chunk
        chunk_patches = args.patches_per_map * max(1, CHUNK_PATCHES // args.patches_per_map)
    streams = np.random.SeedSequence(seed).spawn(len(SPLITS))
    bar = progress(total=args.n_patches, desc="simulate", unit="patch")
    try:
        with contextlib.ExitStack() as stack:
            # all three files go to temporary names and are renamed only when all are complete
            tmp_paths = [stack.enter_context(atomic_path(out / f"{name}.h5")) for name in SPLITS]
            for name, n_split, stream, tmp in zip(SPLITS, counts, streams, tmp_paths):
                rng = np.random.default_rng(stream)
                with h5py.File(tmp, "w") as handle:
                    maps_ds, ns_ds = init_h5(
                        handle, n_split, ((3,) if tqu else ()) + (args.size, args.size), with_ns=several,
                        attrs=dict(attrs, split=name)
                    )
                    start = 0
                    for ns, n_class in zip(classes, class_counts(n_split, len(classes))):
                        done = 0
                        while done < n_class:
                            take = min(chunk_patches, n_class - done)
                            common = dict(sky=skies[ns], rng=rng, progress_callback=bar.update)
                            if tqu and args.method == "flat":
                                chunk = simulate_flat_tqu(take, args.size, sky=skies[ns], rng=rng)
                                bar.update(take)
                            elif tqu:
                                chunk = simulate_healpix_tqu_patches(
                                    take, args.size, nside=args.nside, patches_per_map=args.patches_per_map, **common
                                )
                            elif args.method == "flat":
                                chunk = simulate_flat_patches(take, args.size, **common)
                            else:
                                chunk = simulate_healpix_patches(
                                    take, args.size, nside=args.nside, patches_per_map=args.patches_per_map, **common
                                )
                            maps_ds[start : start + take] = chunk
                            if ns_ds is not None:
                                ns_ds[start : start + take] = ns
                            start += take
                            done += take
    finally:
        bar.close()
    from ..progress import summary

    shape = "×".join(str(v) for v in ((3,) if tqu else ()) + (args.size, args.size))
    per_split = ", ".join(f"{name} {n}" for name, n in zip(SPLITS, counts))
    ns_text = "" if not ns_values else f"; ns {', '.join(f'{v:g}' for v in ns_values)}"
    summary(f"wrote {args.n_patches} {args.method} patches ({shape} μK, {format_bytes(dataset_bytes(args, several))}) "
            f"to {out}/{{{','.join(SPLITS)}}}.h5 ({per_split}){ns_text}; seed {seed}")
    return 0


def _simulate_full_sky(args, ns):
    """One full-sky HEALPix map (T, or T, Q, U) into --out FILE.fits (module DESCRIPTION)."""
    import healpy as hp

    from ..atomic import check_free_space, format_bytes
    from ..image_io import HealpixTable, write_healpix_table
    from ..progress import summary
    from ..sky import Sky
    from ..sky.healpix import simulate_healpix_map
    from ..sky.polarisation import simulate_healpix_tqu

    tqu = args.fields == "TQU"
    nside = int(args.nside)
    n_fields = 3 if tqu else 1
    nbytes = n_fields * hp.nside2npix(nside) * 4
    out = Path(args.out)
    check_free_space(out.parent if str(out.parent) else Path("."), nbytes,
                     f"--nside {nside}: {n_fields} full-sky float32 map{'s' if tqu else ''}")
    if not out.parent.is_dir():
        raise InputError(f"{out}: directory {out.parent} does not exist")
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % (2**63))
    sky = Sky.planck18(pixel_arcmin=hp.nside2resol(nside, arcmin=True), beam_fwhm_arcmin=args.beam_fwhm,
                       noise_uk_arcmin=args.noise)
    if ns is not None:
        sky = sky.with_ns(ns)
    if tqu:
        maps = simulate_healpix_tqu(nside, sky=sky, seed=seed)
        names = ["I_STOKES", "Q_STOKES", "U_STOKES"]
    else:
        maps = simulate_healpix_map(nside, sky=sky, seed=seed)[None]
        names = ["I_STOKES"]
    table = HealpixTable(names=names, arrays=[np.asarray(m, dtype=np.float32) for m in maps],
                         units=["uK_CMB"] * n_fields, formats=["E"] * n_fields, nside=nside, nest=False,
                         ordering_in_header=True, header=None, primary_header=None)
    cards = [("COMBSKY", sky.to_json_text(), "sky simulated (combine-sky JSON)"),
             ("COMBSEED", int(seed), "seed of the simulation"),
             ("PIXWIN", True, "HEALPix pixel window applied"),
             ("BEAMFWHM", float(args.beam_fwhm), "Gaussian beam FWHM, arcmin")]
    if tqu:
        cards.insert(0, ("POLCCONV", "COSMO", "healpy's polarisation convention"))
    write_healpix_table(out, table, header_cards=cards,
                        history=f"combine simulate: planck18 {'T, Q, U' if tqu else 'T'} full sky, seed {seed}")
    summary(f"wrote a full-sky {'T, Q, U' if tqu else 'T'} map (Nside {nside}, RING, uK_CMB, "
            f"{format_bytes(nbytes)}) to {out}; seed {seed}")
    return 0
