"""Full-sky T, Q, U HEALPix maps filled by a 3-channel network through gnomonic patches.

The pipeline of :mod:`combine.healpix_inpaint` (holes, clusters, bilinear patches, write-back)
with the spin-2 frame handled both ways:

1. **Patches.** T, Q and U are each interpolated onto the cluster's patch as T is
   (:func:`combine.healpix_inpaint._cut_patch`, one validity mask for the three), then Q, U are
   rotated from healpy's frame into the patch frame of docs/DESIGN.md by the angle
   :math:`\\alpha` of the patch's x direction at each pixel
   (:func:`combine.sky.polarisation.patch_frame_angle_rad`, :func:`~combine.sky.polarisation.rotate_qu`).
2. **Fill.** ``model.predict`` on (B, 3, S, S); the composite is the input where the patch mask is
   1 and the prediction in the holes.
3. **Write back.** Each masked HEALPix pixel takes the bilinear interpolation of the composite's
   T, Q', U' at its patch coordinates, and Q', U' are rotated back into healpy's frame by
   :math:`\\alpha` evaluated at that pixel's own centre (:func:`frame_angle_at`):
   :math:`Q + iU = e^{2i\\alpha}(Q' - iU')` (``rotate_qu`` is an involution).

With ``first_guess_map`` (a T, Q, U fill of every hole computed on the sphere, healpy's frame)
its rotated projection is the network's first guess and only the correction
:math:`\\mathrm{NN}(d, F) - F`, interpolated and rotated back, is added to it, as for T.
Valid pixels are never written.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .healpix_inpaint import _cut_patch, _lonlat_deg, check_healpix_inputs, plan_clusters


def frame_angle_at(theta, phi, lon_deg, lat_deg) -> np.ndarray:
    """Angle α (radians) of the x direction of the gnomonic patch centred on (lon, lat) at the
    sky positions (θ, φ), in healpy's basis from :math:`\\hat e_\\theta` towards :math:`\\hat e_\\varphi`.

    The formula of :func:`combine.sky.polarisation.patch_frame_angle_rad` at arbitrary points:
    :math:`g = \\hat e - (\\hat u\\cdot\\hat e)\\hat u` with :math:`\\hat e` the patch's east vector,
    :math:`\\alpha = \\mathrm{atan2}(g\\cdot\\hat e_\\varphi, g\\cdot\\hat e_\\theta)`.
    """
    from .sky.projection import _tangent_basis

    _, east, _ = _tangent_basis(float(lon_deg), float(lat_deg))
    theta, phi = np.asarray(theta, dtype=np.float64), np.asarray(phi, dtype=np.float64)
    st, ct, sp, cp = np.sin(theta), np.cos(theta), np.sin(phi), np.cos(phi)
    u = np.stack([st * cp, st * sp, ct])
    e_theta = np.stack([ct * cp, ct * sp, -st])
    e_phi = np.stack([-sp, cp, np.zeros_like(sp)])
    g = east.reshape(3, *([1] * theta.ndim)) - np.tensordot(east, u, axes=1)[None] * u
    return np.arctan2(np.sum(g * e_phi, axis=0), np.sum(g * e_theta, axis=0))


def _cut_tqu(tqu, valid, nside, nest, lon, lat, size, pix):
    """(3, S, S) T, Q', U' patch (patch frame, 0 in holes) and its (S, S) mask."""
    from .sky.polarisation import patch_frame_angle_rad, rotate_qu

    cuts = [_cut_patch(tqu[k], valid, nside, nest, lon, lat, size, pix) for k in range(3)]
    q, u = rotate_qu(cuts[1][0].astype(np.float64), cuts[2][0].astype(np.float64),
                     patch_frame_angle_rad(lon, lat, size, pix))
    return np.stack([cuts[0][0], q.astype(np.float32), u.astype(np.float32)]), cuts[0][1]


def inpaint_healpix_tqu(model, tqu_map, hmask, *, nest: bool = False, batch_size: int = 16, progress: bool = True,
                        cluster_radius_px: float | None = None, margin_px: int | None = None, first_guess_map=None,
                        map_source: str = "map", mask_source: str = "mask") -> np.ndarray:
    """Fill the holes of a (3, Npix) T, Q, U map (μK, healpy's convention) with a 3-channel
    :class:`combine.models.InpaintingModel` through gnomonic patches (module docstring).

    ``hmask`` (Npix,) applies to the three fields. ``first_guess_map`` (3, Npix): a sphere fill
    the network corrects (for networks with a first-guess input). Returns the map's shape and
    dtype (float32 for integer maps), valid pixels bit-identical.
    """
    import healpy as hp
    from scipy.ndimage import map_coordinates

    from .inpaint import tile_size
    from .progress import progress as progress_bar
    from .sky.projection import healpix_to_patch_coords
    from .sky.polarisation import rotate_qu

    if not (hasattr(model, "predict") and hasattr(model, "patch_size")):
        raise InputError(f"model: expected an InpaintingModel, got {type(model).__name__}")
    if int(getattr(model, "in_channels", 1)) != 3:
        raise InputError(f"{getattr(model, 'name', 'model')}: model takes {getattr(model, 'in_channels', 1)} "
                         "channel(s); T, Q, U maps need a 3-channel model")
    tqu = np.asarray(tqu_map)
    if tqu.ndim != 2 or tqu.shape[0] != 3:
        raise InputError(f"{map_source}: expected T, Q, U maps of shape (3, Npix), got {tqu.shape}")
    valid = None
    for k, name in enumerate("TQU"):
        _, valid, nside = check_healpix_inputs(tqu[k], hmask, f"{map_source} ({name})", mask_source)
    if int(batch_size) < 1:
        raise InputError(f"batch_size: must be >= 1, got {batch_size!r}")
    if first_guess_map is not None:
        first_guess_map = np.asarray(first_guess_map, dtype=np.float64)
        if first_guess_map.shape != tqu.shape or not np.isfinite(first_guess_map).all():
            raise InputError("first_guess_map: must be a finite (3, Npix) map of the input's shape")
        full = np.ones(tqu.shape[1], dtype=bool)
    out = np.array(tqu, dtype=tqu.dtype if np.issubdtype(tqu.dtype, np.floating) else np.float32, copy=True)
    hole_pixels = np.flatnonzero(~valid)
    if hole_pixels.size == 0:
        return out
    pix, size = float(model.pixel_arcmin), tile_size(model)
    plan = plan_clusters(hole_pixels, nside, bool(nest), size, pix, margin_px, cluster_radius_px, mask_source)
    bar = progress_bar(total=plan.n_holes, desc="holes", unit="hole") if progress else None
    try:
        for b0 in range(0, len(plan.seeds), int(batch_size)):
            batch = range(b0, min(b0 + int(batch_size), len(plan.seeds)))
            geo = [_lonlat_deg(plan.centres[plan.seeds[c]]) for c in batch]
            cut = [_cut_tqu(tqu, valid, nside, nest, lon, lat, size, pix) for lon, lat in geo]
            maps = np.stack([p for p, _ in cut])
            masks = np.stack([m for _, m in cut])[:, None]
            empty = np.flatnonzero(masks.reshape(len(cut), -1).max(axis=1) == 0)
            if empty.size:
                lon, lat = geo[empty[0]]
                raise InputError(f"{mask_source}: the {size}-px patch around lon {lon:.2f}, lat {lat:.2f} deg "
                                 "has no valid pixel (mask too dense there)")
            fg = None
            if first_guess_map is not None:
                fg = np.stack([_cut_tqu(first_guess_map, full, nside, nest, lon, lat, size, pix)[0]
                               for lon, lat in geo])
            pred = np.asarray(model.predict(maps, masks, first_guess=fg, batch_size=int(batch_size)))
            filled = np.where(masks > 0, maps, pred) if fg is None else pred - fg  # the correction
            for k, c in enumerate(batch):
                px = plan.hole_pixels[plan.bounds[c]:plan.bounds[c + 1]]
                lon, lat = geo[k]
                row, col = healpix_to_patch_coords(nside, px, lon, lat, size, pix, nest=nest)
                t, qp, up = (map_coordinates(filled[k, f].astype(np.float64), [row, col], order=1, mode="nearest")
                             for f in range(3))
                q, u = rotate_qu(qp, up, frame_angle_at(*hp.pix2ang(nside, px, nest=nest), lon, lat))
                values = np.stack([t, q, u])
                out[:, px] = values if first_guess_map is None else first_guess_map[:, px] + values
            if bar is not None:
                bar.update(int(plan.holes_per_cluster[b0:b0 + len(batch)].sum()))
    finally:
        if bar is not None:
            bar.close()
    if not np.isfinite(out[:, hole_pixels]).all():
        raise RuntimeError("inpaint_healpix_tqu: the fill produced non-finite values")
    return out


__all__ = ["inpaint_healpix_tqu", "frame_angle_at"]
