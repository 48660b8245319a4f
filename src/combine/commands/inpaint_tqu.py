"""``combine inpaint --fields TQU`` on HEALPix maps: T, Q, U FITS tables (or a (3, Npix) ``.npy``).

What is read (columns by name, POLCCONV, per-column units): :mod:`combine.tqu_fits`.

- ``--method wiener`` / ``lwiener``: the joint T, Q, U conditional mean of every hole on the sphere
  (:func:`combine.baselines.sphere_wiener_pol.sphere_tqu_fill`; ``lwiener`` is the same fill, as
  for T maps, where both are the sphere-native local solve); ``--method gcr``: that mean plus a
  seeded draw from the exact conditional covariance. One mask for the three fields.
  ``--tqu-solve split``: T filled alone (the T map's fill, margin ``--margin``) and Q, U jointly from
  Q, U alone (:mod:`combine.sphere.split`, margin ``--margin-qu``, TE ignored); recorded in the
  COMBTQUS (and COMBMGQU: the Q/U margin) header cards.
- any other ``--method`` (diffusive, biharmonic, gmrf, ...): the scalar fill of each field on its
  own through gnomonic patches (:func:`combine.healpix_inpaint.inpaint_healpix`), Q and U as
  scalars in healpy's frame: a baseline of what a fill ignorant of spin 2 leaks. A 3-column mask
  gives each field its own mask.
- ``--model`` of a 3-channel network: T, Q, U through gnomonic patches with Q/U rotated into each
  patch's frame and back (:func:`combine.healpix_inpaint_tqu.inpaint_healpix_tqu`); a network
  with a first-guess input corrects the joint sphere fill (``sphere_tqu_fill``, as for T maps).
  A 1-channel model is refused.

``--realisations N``: the N draws of one :func:`combine.sphere.wiener.fill_holes` call on the
(3, Npix) map (mean computed once); draw k of hole group g comes from
``numpy.random.default_rng([S, k, g])``, so realisation k is the same whatever N, and realisation
0 is ``sphere_tqu_fill(..., gcr=True, seed=S)``.

``--noise-map FILE``: per-pixel T, Q, U noise variances (:func:`read_tqu_noise_map`: Planck's
II_COV, QQ_COV, UU_COV columns) for the sphere fills and a network's sphere first guess.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..tqu_fits import FIELDS, TQU_OUTPUT_NAMES

#: Methods filled jointly on the sphere, and whether they draw a realisation.
SPHERE_TQU_METHODS = {"wiener": False, "lwiener": False, "gcr": True}


def check_tqu_args(args) -> None:
    """Options that a T, Q, U HEALPix fill cannot honour: one line each."""
    if args.spectrum is not None:
        raise InputError("--spectrum: gives TT only; T, Q, U maps need the CAMB TT, EE, BB, TE spectra")
    if args.column is not None:
        raise InputError("--column: --fields TQU reads the T, Q, U columns by name (I_STOKES, Q_STOKES, U_STOKES, ...)")
    if args.tqu_solve != "joint" and args.method not in SPHERE_TQU_METHODS:
        how = f"--model {args.model}" if args.model is not None else f"--method {args.method}"
        raise InputError(f"--tqu-solve {args.tqu_solve}: applies to --method {', '.join(SPHERE_TQU_METHODS)} "
                         f"(the sphere fills), not to {how}")


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def _read_tqu_map(args, kind):
    """(tqu TQUTable or None, raw (3 arrays), nest, factors to μK (None: no unit))."""
    from ..image_io import read_npy, unit_to_uk
    from ..tqu_fits import read_tqu_table

    if kind == "fits":
        tq = read_tqu_table(args.input, args.unit)
        nest = tq.table.nest
        if not tq.table.ordering_in_header:
            nest = bool(args.nest)
        elif args.nest and not tq.table.nest:
            raise InputError(f"--nest: {args.input} says ORDERING = RING")
        return tq, [tq.raw(k) for k in range(3)], nest, tq.factors_to_uk
    if kind == "npy":
        arr = read_npy(args.input, ndims=(1, 2))
        if arr.ndim == 1 or arr.shape[0] != 3:
            n = 1 if arr.ndim == 1 else arr.shape[0]
            raise InputError(f"{args.input}: --fields TQU needs T, Q, U maps of shape (3, 12 Nside^2); "
                             f"got {n} field{'s' if n != 1 else ''} (shape {arr.shape})")
        factor = None if args.unit is None else unit_to_uk(args.unit, "--unit")
        return None, list(arr), bool(args.nest), [factor] * 3
    raise InputError(f"{args.input}: a HEALPix T, Q, U map must be .fits/.fits.gz or a (3, Npix) .npy, not .{kind}")


def _read_tqu_mask(args, kind, nest, npix) -> np.ndarray:
    """(1 or 3, Npix) mask values in the map's ordering: one mask for T, Q, U or one per field."""
    import healpy as hp

    from ..image_io import read_healpix_table, read_npy

    if kind == "fits":
        table = read_healpix_table(args.mask)
        values = np.stack(table.arrays) if len(table.arrays) in (1, 3) else None
        if values is None:
            raise InputError(f"{args.mask}: mask has {len(table.arrays)} columns ({', '.join(table.names)}); "
                             "--fields TQU takes one mask for T, Q and U, or three (T, Q, U)")
        mask_nest = table.nest if table.ordering_in_header else None
    elif kind == "npy":
        values = read_npy(args.mask, ndims=(1, 2))
        values = values[None] if values.ndim == 1 else values
        if values.shape[0] not in (1, 3):
            raise InputError(f"{args.mask}: mask has {values.shape[0]} fields (shape {values.shape}); --fields TQU "
                             "takes one mask (Npix,) for T, Q and U, or three (3, Npix)")
        mask_nest = None
    else:
        raise InputError(f"{args.mask}: a HEALPix mask must be .fits/.fits.gz or a .npy, not .{kind}")
    from .inpaint import check_mask_pixels

    check_mask_pixels(args.mask, args.input, values.shape[1], npix)
    if mask_nest is not None and mask_nest != nest:
        bad = ~((values == 0) | (values == 1))
        if bad.any():
            raise InputError(f"{args.mask}: mask is not binary ({int(bad.sum())} pixels other than 0 and 1)")
        values = np.stack([hp.reorder(v, n2r=True) if mask_nest else hp.reorder(v, r2n=True) for v in values])
    return values


def _check_fields(args, raw, mask_values, names):
    """Validate each field against its mask; return (valid (3, Npix) bool, nside)."""
    from ..healpix_inpaint import check_healpix_inputs

    valid = []
    nside = None
    for k in range(3):
        m = mask_values[k if mask_values.shape[0] == 3 else 0]
        mask_source = str(args.mask) if mask_values.shape[0] == 1 else f"{args.mask}: {FIELDS[k]} mask"
        _, v, nside = check_healpix_inputs(raw[k], m, f"{args.input}: {names[k]}", mask_source)
        valid.append(v)
    return np.stack(valid), nside


#: Columns of a Planck-format T, Q, U noise map (diagonal of the per-pixel noise covariance).
NOISE_COLUMNS = ("II_COV", "QQ_COV", "UU_COV")


def read_tqu_noise_map(path, nest, npix, valid, factors) -> np.ndarray:
    """(3, Npix) T, Q, U noise variance in μK² for ``--noise-map``: the columns II_COV, QQ_COV,
    UU_COV of a HEALPix FITS file (Planck's; each converted from its TUNIT, e.g. K_CMB^2, or the
    map's unit squared), or a (3, Npix) ``.npy`` in the map's units squared. The off-diagonal
    IQ/IU/QU_COV are not used (the fill's noise is diagonal). Valid pixels must hold finite
    variances >= 0; in holes an unusable value becomes the median over the valid pixels."""
    import healpy as hp

    from ..image_io import file_kind, read_healpix_table, read_npy, variance_unit_to_uk2

    kind = file_kind(path)
    if kind == "fits":
        table = read_healpix_table(path)
        names = [n.strip().upper() for n in table.names]
        missing = [n for n in NOISE_COLUMNS if n not in names]
        if missing:
            raise InputError(f"{path}: a T, Q, U noise map needs the columns {', '.join(NOISE_COLUMNS)}; no "
                             f"{', '.join(missing)} (columns: {', '.join(table.names)})")
        cols = [names.index(n) for n in NOISE_COLUMNS]
        var = np.stack([np.asarray(table.arrays[c], dtype=np.float64) for c in cols])
        scale = [variance_unit_to_uk2(table.units[c], f"{path}: TUNIT{c + 1}") if table.units[c]
                 else (factors[k] or 1.0) ** 2 for k, c in enumerate(cols)]
        var_nest = table.nest if table.ordering_in_header else nest
    elif kind == "npy":
        var = np.asarray(read_npy(path, ndims=(2,)), dtype=np.float64)
        if var.shape[0] != 3:
            raise InputError(f"{path}: a T, Q, U noise map is (3, Npix), got shape {var.shape}")
        scale, var_nest = [(f or 1.0) ** 2 for f in factors], nest
    else:
        raise InputError(f"{path}: a noise map must be a HEALPix .fits or a (3, Npix) .npy")
    if var.shape[1] != npix:
        nside = hp.npix2nside(var.shape[1]) if hp.isnpixok(var.shape[1]) else f"? ({var.shape[1]} pixels)"
        raise InputError(f"{path}: noise map has Nside {nside}, the map has Nside {hp.npix2nside(npix)}")
    if var_nest != nest:
        var = np.stack([hp.reorder(v, n2r=True) if var_nest else hp.reorder(v, r2n=True) for v in var])
    for k in range(3):
        used = var[k, valid]
        if not np.isfinite(used).all() or (used < 0).any():
            n_bad = int((~np.isfinite(used) | (used < 0)).sum())
            raise InputError(f"{path}: {NOISE_COLUMNS[k]} noise variance must be finite and >= 0 at valid pixels "
                             f"({n_bad} are not)")
        usable = np.isfinite(var[k]) & (var[k] >= 0)
        var[k] = np.where(valid | usable, var[k], np.median(used)) * scale[k]
    return var


# --------------------------------------------------------------------------------------------
# the fill
# --------------------------------------------------------------------------------------------
def run_tqu_healpix(args, kinds, seed, *, sky_of, sky_cards, patch_method, output_paths, model=None) -> str:
    """Fill a T, Q, U HEALPix map (module docstring); returns the summary's description."""
    import healpy as hp

    from ..image_io import looks_like_kelvin, write_healpix_table, write_npy

    check_tqu_args(args)
    if model is not None and int(getattr(model, "in_channels", 1)) != 3:
        raise InputError(f"--model {args.model}: takes {model.in_channels} channel(s); T, Q, U maps need a "
                         "3-channel model (or --method)")
    if kinds["output"] not in ("fits", "npy"):
        raise InputError(f"{args.output}: a HEALPix map is written as .fits/.fits.gz or .npy, not .{kinds['output']}")
    tq, raw, nest, factors = _read_tqu_map(args, kinds["input"])
    npix = raw[0].size
    if any(r.size != npix for r in raw):
        raise InputError(f"{args.input}: T, Q, U maps of different lengths ({', '.join(str(r.size) for r in raw)})")
    names = tq.names if tq is not None else [f"{f} (row {k})" for k, f in enumerate(FIELDS)]
    mask_values = _read_tqu_mask(args, kinds["mask"], nest, npix)
    valid, nside = _check_fields(args, raw, mask_values, names)
    del mask_values
    if factors[0] is None:  # no unit anywhere and no --unit
        t_valid = raw[0][valid[0]]
        if looks_like_kelvin(t_valid):
            raise InputError(f"{args.input}: map has no unit and a T rms of {np.sqrt(np.mean(t_valid.astype(float) ** 2)):.2g}: "
                             "it looks like kelvin; pass --unit K (or --unit uK if it really is in μK)")
        factors = [1.0] * 3
    if tq is not None:
        tqu_uk = tq.to_uk(factors)
    else:
        tqu_uk = np.stack(raw).astype(np.float64 if raw[0].dtype == np.float64 else np.float32)
        if factors[0] != 1.0:
            with np.errstate(over="ignore", invalid="ignore"):
                tqu_uk = (tqu_uk.astype(np.float64) * factors[0]).astype(tqu_uk.dtype)
    sky = sky_of(args).replace(pixel_arcmin=hp.nside2resol(nside, arcmin=True))
    outs = output_paths(args)
    shared = bool((valid == valid[:1]).all())
    how = f"--model {args.model}" if model is not None else f"--method {args.method}"
    if (model is not None or args.method in SPHERE_TQU_METHODS) and not shared:
        raise InputError(f"{args.mask}: T, Q and U masks differ; {how} fills T, Q, U jointly "
                         "with one mask (give one mask, or fill per field with e.g. --method diffusive)")
    prefill = model is not None and getattr(getattr(model, "unet", None), "prefill", "none") != "none"
    noise_var = None
    if args.noise_map is not None:
        if not (prefill or args.method in SPHERE_TQU_METHODS):
            raise InputError(f"--noise-map: {how} takes no noise map (the sphere fills wiener, lwiener, gcr do)")
        noise_var = read_tqu_noise_map(args.noise_map, nest, npix, valid[0], factors)
    if model is not None:
        holes = [np.flatnonzero(~valid[0])] * 3
        fills, what = _model_fills(args, model, tqu_uk, valid[0], sky, nest, prefill, noise_var)
    elif args.method in SPHERE_TQU_METHODS:
        fills, hole_px, what = _sphere_fills(args, tqu_uk, valid[0], sky, seed, nest, len(outs), nside, noise_var)
        holes = [hole_px] * 3
    else:
        fills, what = _per_field_fills(args, tqu_uk, valid, patch_method(args.method, sky, seed, False), nest)
        holes = [np.flatnonzero(~valid[k]) for k in range(3)]
    n_masked = sum(h.size for h in holes)
    cards = sky_cards(sky, args, seed) if (model is None or prefill) else [("COMBMETH", f"model {args.model}", "")]
    cards = cards + [("COMBFLDS", "TQU", "T, Q, U filled (POLCCONV of the file)")]
    if model is None and args.method in SPHERE_TQU_METHODS:
        cards.append(("COMBTQUS", args.tqu_solve, "T,Q,U solve: joint, or split (no TE)"))
        if args.tqu_solve == "split":
            cards.append(("COMBMGQU", float(qu_margin_px(args)), "Q/U context margin (map pixels) of the split"))
    history = f"combine inpaint: {n_masked} masked T, Q, U pixels filled ({args.method or 'model ' + str(args.model)})"
    for r, (out, fill) in enumerate(zip(outs, fills)):
        extra = list(cards) + ([("COMBREAL", r, "realisation index")] if len(outs) > 1 else [])
        if tq is not None and kinds["output"] == "fits":
            columns = {tq.columns[k]: tq.set_holes(k, holes[k], fill[k], factors[k]) for k in range(3)}
            write_healpix_table(out, tq.table, columns, header_cards=extra, history=history)
            continue
        stored = [tq.raw(k) for k in range(3)] if tq is not None else raw
        dtype = np.float64 if any(s.dtype == np.float64 for s in stored) else np.float32
        arr = np.stack(stored).astype(dtype)
        for k in range(3):
            sign = -1.0 if (tq is not None and tq.iau and k == 2) else 1.0
            arr[k, holes[k]] = fill[k] * (sign / factors[k])
        if kinds["output"] == "fits":
            from ..image_io import HealpixTable

            unit = args.unit or "uK"
            t = HealpixTable(names=list(TQU_OUTPUT_NAMES), arrays=list(arr), units=[unit] * 3,
                             formats=["D" if dtype == np.float64 else "E"] * 3, nside=nside, nest=nest,
                             ordering_in_header=True, header=None, primary_header=None)
            write_healpix_table(out, t, header_cards=extra + [("POLCCONV", "COSMO", "healpy's convention")],
                                history=history)
        else:
            write_npy(out, arr)
    conv = "IAU" if (tq is not None and tq.iau) else "COSMO"
    return (f"filled {n_masked} masked T, Q, U pixels in {what} (Nside {nside}, {'NESTED' if nest else 'RING'}, "
            f"POLCCONV {conv})")


def _advancer(bar):
    """``progress(done)`` callback of ``sphere_tqu_fill`` (holes done so far) moving ``bar``."""
    state = {"done": 0}

    def advance(done):
        bar.update(int(done) - state["done"])
        state["done"] = int(done)

    return advance


def default_margin_px(sky, nside: int) -> float:
    """The context margin of :func:`combine.baselines.sphere_wiener_pol.sphere_tqu_fill`:
    ``max(2 × FWHM, 4 pixels)`` in map pixels (its default, restated so that realisations can be
    drawn in one call of :func:`combine.sphere.wiener.fill_holes`)."""
    import healpy as hp

    return max(2.0 * sky.beam_fwhm_arcmin / hp.nside2resol(nside, arcmin=True), 4.0)


def qu_margin_px(args) -> float:
    """Q/U margin of ``--tqu-solve split``: ``--margin-qu`` or :data:`combine.sphere.split.DEFAULT_MARGIN_QU_PX`."""
    from ..sphere.split import DEFAULT_MARGIN_QU_PX

    return DEFAULT_MARGIN_QU_PX if args.margin_qu is None else float(args.margin_qu)


def _sphere_fills(args, tqu_uk, valid, sky, seed, nest, n_out, nside, noise_var):
    """Joint (or ``--tqu-solve split``) T, Q, U sphere fill, or ``n_out`` GCR realisations in one
    call: (list of (3, n) values in μK, one per output; the n hole pixels; description)."""
    from ..sphere.wiener import fill_holes

    gcr = SPHERE_TQU_METHODS[args.method]
    margin = default_margin_px(sky, nside) if args.margin is None else float(args.margin)
    split = {"tqu_solve": "split", "margin_qu_px": qu_margin_px(args)} if args.tqu_solve == "split" else {}
    result = fill_holes(tqu_uk, valid, sky=sky, nest=nest, noise_var_map=noise_var, realisations=n_out if gcr else 0,
                        seed=seed if gcr else None, progress=True, margin_px=margin, mask_source=str(args.mask), **split)
    fills = list(result.draws_uk) if gcr else [result.mean_uk]
    how = (f"split: T alone at {margin:.3g} px, Q, U from Q, U alone at {qu_margin_px(args):.3g} px" if split
           else "joint T, Q, U")
    what = f"{result.groups.n_holes} holes ({len(result.groups)} groups) on the sphere with {args.method} ({how})"
    return fills, np.asarray(result.groups.hole_pixels), what


def _model_fills(args, model, tqu_uk, valid, sky, nest, prefill, noise_var=None):
    """A 3-channel network through patches, correcting the joint sphere fill if it takes a first guess."""
    from ..healpix_inpaint_tqu import inpaint_healpix_tqu

    first = None
    if prefill:
        from ..baselines.sphere_wiener_pol import sphere_tqu_fill
        from ..progress import progress as progress_bar

        bar = progress_bar(total=None, desc="sphere first guess", unit="hole")
        try:
            first = np.asarray(sphere_tqu_fill(tqu_uk, valid.astype(np.uint8), sky=sky, nest=nest, noise_var_map=noise_var,
                                               progress=_advancer(bar)), dtype=np.float64)
        finally:
            bar.close()
    filled = inpaint_healpix_tqu(model, tqu_uk, valid, nest=nest, batch_size=args.batch_size, progress=True,
                                 cluster_radius_px=args.cluster_radius, first_guess_map=first,
                                 map_source=str(args.input), mask_source=str(args.mask))
    holes = np.flatnonzero(~valid)
    what = f"holes through T, Q, U patches with model {args.model}"
    if prefill:
        what += " correcting the joint sphere fill"
    return [filled[:, holes].astype(np.float64)], what


def _per_field_fills(args, tqu_uk, valid, filler, nest):
    """A scalar fill of each field through patches: one list of three hole-value arrays (μK)."""
    from ..healpix_inpaint import inpaint_healpix

    fill = []
    for k in range(3):
        filled = inpaint_healpix(filler, tqu_uk[k], valid[k], nest=nest, batch_size=args.batch_size, progress=True,
                                 cluster_radius_px=args.cluster_radius, map_source=f"{args.input}: {FIELDS[k]}",
                                 mask_source=str(args.mask))
        fill.append(np.asarray(filled[~valid[k]], dtype=np.float64))
    return [fill], f"holes through patches with {args.method} per field (T, Q, U as scalars)"


__all__ = ["run_tqu_healpix", "check_tqu_args", "read_tqu_noise_map", "default_margin_px", "qu_margin_px",
           "SPHERE_TQU_METHODS"]
