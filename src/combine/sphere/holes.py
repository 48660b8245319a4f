"""Holes of a HEALPix mask and the observed pixels around them (the context of a local fill).

Independent of what is filled (temperature here; T, Q, U for polarisation): a fill on the sphere
takes :func:`hole_groups` and builds its own covariance over each group's pixels.

* A **hole** is a connected set of masked pixels, two masked pixels being connected when they are
  among each other's 8 HEALPix neighbours (``healpy.get_all_neighbours``,
  ``scipy.sparse.csgraph.connected_components``). Its centre and radius are

  .. math::

      \\hat c_h = \\frac{\\sum_{p \\in h} \\hat n_p}{\\lVert \\sum_{p \\in h} \\hat n_p \\rVert},
      \\qquad r_h = \\max_{p \\in h} \\arccos(\\hat n_p \\cdot \\hat c_h) + \\rho_{pix},

  with :math:`\\rho_{pix}` the largest pixel-centre-to-corner distance (``healpy.max_pixrad``).
* The **context** of a hole is every valid pixel whose centre lies within :math:`r_h + m` of
  :math:`\\hat c_h` (``healpy.query_disc``), :math:`m` the margin: the observed ring of width at
  least :math:`m` around it.
* Holes whose context discs overlap, :math:`\\angle(\\hat c_a, \\hat c_b) < r_a + r_b + 2m`, form
  one **group** (transitively) and are solved together, so that no observed pixel that informs
  two holes is used for one and ignored for the other.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..errors import InputError

#: Neighbour look-ups per chunk while finding holes (8 x int64 each: 64 MB).
NEIGHBOUR_CHUNK = 1_000_000


def find_holes(hole_pixels, nside: int, *, nest: bool = False):
    """Connected groups of masked pixels (8-neighbour connectivity).

    Parameters
    ----------
    hole_pixels : ndarray of int, sorted ascending
        Indices of the masked pixels.
    nside, nest
        HEALPix resolution and ordering.

    Returns
    -------
    n_holes : int
    labels : ndarray of int, shape of ``hole_pixels``
        Hole index (0 .. n_holes-1) of each masked pixel.
    """
    import healpy as hp
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pix = np.asarray(hole_pixels, dtype=np.int64)
    n = pix.size
    if n == 0:
        return 0, np.zeros(0, dtype=np.int64)
    src, dst = [], []
    for start in range(0, n, NEIGHBOUR_CHUNK):
        chunk = pix[start:start + NEIGHBOUR_CHUNK]
        nb = hp.get_all_neighbours(nside, chunk, nest=nest)  # (8, k), -1 where there is none
        idx = np.minimum(np.searchsorted(pix, nb), n - 1)
        is_hole = (nb >= 0) & (pix[idx] == nb)
        k, j = np.nonzero(is_hole)
        src.append(start + j)
        dst.append(idx[k, j])
        del nb, idx, is_hole
    src, dst = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(n, n)).tocsr()
    n_holes, labels = connected_components(graph, directed=False)
    return int(n_holes), labels.astype(np.int64)


def hole_geometry(hole_pixels, labels, n_holes: int, nside: int, *, nest: bool = False):
    """Centre unit vectors (n_holes, 3), radii (rad) and pixel counts of the holes.

    .. math::

        \\hat c_h \\propto \\sum_{p \\in h} \\hat n_p, \\qquad
        r_h = \\max_{p \\in h} \\arccos(\\hat n_p\\cdot\\hat c_h) + \\rho_{pix}
    """
    import healpy as hp

    vec = np.stack(hp.pix2vec(nside, hole_pixels, nest=nest), axis=1)  # (n, 3)
    centre = np.stack([np.bincount(labels, weights=vec[:, k], minlength=n_holes) for k in range(3)], axis=1)
    norm = np.linalg.norm(centre, axis=1, keepdims=True)
    centre = centre / np.where(norm > 0, norm, 1.0)
    ang = np.arccos(np.clip(np.einsum("ij,ij->i", vec, centre[labels]), -1.0, 1.0))
    radius = np.zeros(n_holes)
    np.maximum.at(radius, labels, ang)
    radius[norm[:, 0] < 1e-9] = math.pi  # a hole round the whole sphere
    counts = np.bincount(labels, minlength=n_holes)
    return centre, radius + hp.max_pixrad(nside), counts


@dataclasses.dataclass(frozen=True)
class HoleGroups:
    """Groups of holes with their context pixels (module docstring), in a fixed order.

    Group ``g`` has hole pixels ``hole_pixels[hole_start[g]:hole_start[g+1]]`` and context pixels
    ``context_pixels[context_start[g]:context_start[g+1]]`` (both sorted ascending). Groups are
    ordered by their smallest hole pixel, so a group's index does not depend on how the work is
    later batched or threaded.
    """

    nside: int
    nest: bool
    margin_rad: float
    hole_pixels: np.ndarray
    hole_start: np.ndarray
    context_pixels: np.ndarray
    context_start: np.ndarray
    n_holes: int
    #: Number of holes in each group (None for a HoleGroups built by hand).
    group_hole_counts: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.hole_start) - 1

    def holes(self, g: int) -> np.ndarray:
        return self.hole_pixels[self.hole_start[g]:self.hole_start[g + 1]]

    def context(self, g: int) -> np.ndarray:
        return self.context_pixels[self.context_start[g]:self.context_start[g + 1]]

    @property
    def hole_sizes(self) -> np.ndarray:
        return np.diff(self.hole_start)

    @property
    def context_sizes(self) -> np.ndarray:
        return np.diff(self.context_start)


def link_holes(centres, radii, margin_rad: float) -> tuple[int, np.ndarray]:
    """Group index of each hole: holes with :math:`\\angle(\\hat c_a, \\hat c_b) < r_a + r_b + 2m`
    are linked, groups are the connected components (numbered by their first hole)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(radii)
    if n <= 1:
        return n, np.zeros(n, dtype=np.int64)
    reach = 2.0 * float(np.max(radii)) + 2.0 * margin_rad
    chord = 2.0 * math.sin(min(reach, math.pi) / 2.0)
    pairs = cKDTree(centres).query_pairs(chord, output_type="ndarray")
    if pairs.size:
        ang = np.arccos(np.clip(np.einsum("ij,ij->i", centres[pairs[:, 0]], centres[pairs[:, 1]]), -1.0, 1.0))
        pairs = pairs[ang < radii[pairs[:, 0]] + radii[pairs[:, 1]] + 2.0 * margin_rad]
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    n_groups, labels = connected_components(graph, directed=False)
    # renumber by first hole so that group order is the order of the holes
    first = np.full(n_groups, n, dtype=np.int64)
    np.minimum.at(first, labels, np.arange(n))
    rank = np.empty(n_groups, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(n_groups)
    return int(n_groups), rank[labels]


def hole_groups(valid, nside: int, *, nest: bool = False, margin_rad: float,
                max_group_pixels: int | None = None, mask_source: str = "mask") -> HoleGroups:
    """Holes of ``valid`` (bool, True = observed), grouped, with their contexts (module docstring).

    Parameters
    ----------
    valid : ndarray of bool (12 Nside²,)
    margin_rad : float
        Context margin :math:`m` (radians).
    max_group_pixels : int, optional
        Refuse (InputError naming the hole's position and size) a group with more hole plus
        context pixels than this: its dense covariance would not fit in memory.
    """
    import healpy as hp

    valid = np.asarray(valid, dtype=bool)
    hole_pixels = np.flatnonzero(~valid)
    empty = np.zeros(1, dtype=np.int64)
    if hole_pixels.size == 0:
        return HoleGroups(nside, nest, margin_rad, hole_pixels, empty, hole_pixels, empty, 0, np.zeros(0, np.int64))
    n_holes, labels = find_holes(hole_pixels, nside, nest=nest)
    centres, radii, counts = hole_geometry(hole_pixels, labels, n_holes, nside, nest=nest)
    n_groups, group_of_hole = link_holes(centres, radii, margin_rad)

    pixel_group = group_of_hole[labels]
    order = np.argsort(pixel_group, kind="stable")  # hole_pixels ascending within each group
    hole_pixels = hole_pixels[order]
    hole_start = np.searchsorted(pixel_group[order], np.arange(n_groups + 1))
    holes_of_group = np.argsort(group_of_hole, kind="stable")
    hole_bounds = np.searchsorted(group_of_hole[holes_of_group], np.arange(n_groups + 1))

    contexts, context_start = [], [0]
    for g in range(n_groups):
        members = holes_of_group[hole_bounds[g]:hole_bounds[g + 1]]
        discs = [hp.query_disc(nside, centres[h], float(radii[h]) + margin_rad, nest=nest) for h in members]
        disc = discs[0] if len(discs) == 1 else np.unique(np.concatenate(discs))
        if len(discs) == 1:
            disc = np.sort(disc)
        ctx = disc[valid[disc]]
        n_total = ctx.size + hole_start[g + 1] - hole_start[g]
        if max_group_pixels is not None and n_total > max_group_pixels:
            h = members[np.argmax(counts[members])]
            lon, lat = hp.vec2ang(centres[h], lonlat=True)
            raise InputError(
                f"{mask_source}: the hole at lon {float(lon[0]):.2f}, lat {float(lat[0]):.2f} deg "
                f"({int(counts[members].sum())} masked pixels in {members.size} hole(s) solved together, "
                f"{ctx.size} context pixels) is too large for the sphere-native fill (at most "
                f"{max_group_pixels} pixels per group); fill large regions by another method")
        contexts.append(ctx)
        context_start.append(context_start[-1] + ctx.size)
    return HoleGroups(nside=int(nside), nest=bool(nest), margin_rad=float(margin_rad), hole_pixels=hole_pixels,
                      hole_start=np.asarray(hole_start, dtype=np.int64),
                      context_pixels=np.concatenate(contexts).astype(np.int64),
                      context_start=np.asarray(context_start, dtype=np.int64), n_holes=int(n_holes),
                      group_hole_counts=np.bincount(group_of_hole, minlength=n_groups).astype(np.int64))


__all__ = ["find_holes", "hole_geometry", "link_holes", "hole_groups", "HoleGroups", "NEIGHBOUR_CHUNK"]
