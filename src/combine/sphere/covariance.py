"""Pixel covariance of a HEALPix temperature map at the true angular separations of pixel centres.

.. math::

    C_{pq} = \\xi(\\theta_{pq}) + N_p\\,\\delta_{pq}, \\qquad
    \\xi(\\theta) = \\sum_\\ell \\frac{2\\ell+1}{4\\pi} C_\\ell B_\\ell^2 W_\\ell^2 P_\\ell(\\cos\\theta)

with :math:`\\xi` from :meth:`combine.sky.Sky.correlation_uk2` and :math:`N_p` the noise variance
of pixel :math:`p` (μK²).

**Pixel window.** :math:`W_\\ell` (:func:`combine.sky.spectra.healpix_pixel_window`, computed here,
no download) is included: a HEALPix map's pixel holds the average of the sky over the pixel (as
Planck's maps and :func:`combine.sky.healpix.simulate_healpix_map` do), and the covariance of two
pixel averages is, to the accuracy of the azimuthally averaged window, :math:`\\xi` with
:math:`W_\\ell^2`. At Nside 2048 with a 5′ beam leaving it out raises :math:`\\xi(0)` by about 3 %
(measured in ``tests/test_sphere_covariance.py``), a mismatch the fill would pass on to its holes.

**Tabulation.** :math:`\\xi` is a polynomial in :math:`\\cos\\theta`, hence a smooth function of the
squared chord :math:`d^2 = \\lVert\\hat n_p - \\hat n_q\\rVert^2 = 2(1 - \\cos\\theta)`. It is
evaluated once (Legendre sum) on a uniform grid of :math:`d^2` and interpolated (cubic Lagrange
through the 4 nearest grid points, error :math:`O(h^4)`) at the
pairs' :math:`d^2`, computed from the unit vectors in float64 after centring them on the block
(:func:`scaled_chords`; no ``arccos``, which loses precision at small angles, and no
:math:`2 - 2\\,a\\cdot b`, which loses it too). The grid starts at 2¹² points and is refined by powers of two (up to 2²¹; the error falls as the
step⁴, which predicts the size needed) until the
interpolation error at 256 random separations, against the direct sum (``numpy.polynomial.legendre.legval``,
Clenshaw's recurrence), is below
:data:`TABLE_TOLERANCE` :math:`\\xi(0)`. That accuracy matters: :math:`C_{oo} + N` has condition
numbers up to ~1e7 at Nside 2048 (1 μK·arcmin noise), and a linear interpolation's 1e-8 error
(periodic in :math:`d^2`, so at high ℓ where the signal is below the noise) moved the fill of a
dense test by 2e-3 of its rms; the cubic one leaves 2e-5.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError

#: Smallest and largest number of points of the d² grid, and the interpolation tolerance (× ξ(0)).
TABLE_POINTS = 1 << 12
TABLE_MAX_POINTS = 1 << 21
TABLE_TOLERANCE = 1e-10


class CorrelationTable:
    """:math:`\\xi(d^2)` tabulated on a uniform grid of squared chord length (module docstring).

    Parameters
    ----------
    sky : combine.sky.Sky
    nside : int
        HEALPix resolution, for the pixel window (``None``: no pixel window, point samples).
    max_theta_rad : float
        Largest separation looked up; larger ones are clamped (callers never exceed it).
    lmax : int, optional
        Largest multipole of the sum (default: the sky's spectra).
    """

    def __init__(self, sky, nside: int | None, max_theta_rad: float, *, lmax: int | None = None,
                 points: int = TABLE_POINTS):
        from ..sky.spectra import healpix_pixel_window

        if not (math.isfinite(max_theta_rad) and 0 < max_theta_rad <= math.pi):
            raise InputError(f"max_theta_rad: must lie in (0, pi], got {max_theta_rad!r}")
        lmax = sky.cl_tt.size - 1 if lmax is None else int(lmax)
        window = None if nside is None else healpix_pixel_window(int(nside), lmax)

        self.d2_max = 2.0 - 2.0 * math.cos(max_theta_rad)
        cl = sky.beamed_cl_uk2("tt", window)[: lmax + 1]
        # drop the tail that cannot matter: |P_l| <= 1, so leaving out sum_{l > L} (2l+1) C_l/4pi
        # changes xi by at most that (< 1e-13 xi(0)); a 60' beam at Nside 128 keeps l < ~900 of 6500
        weight = (2.0 * np.arange(cl.size) + 1.0) * np.abs(cl)
        tail = np.cumsum(weight[::-1])[::-1]
        keep = np.flatnonzero(tail > 1e-13 * tail[0])
        cl = cl[: max(3, int(keep[-1]) + 1 if keep.size else 3)]
        self.lmax = cl.size - 1

        from numpy.polynomial.legendre import legval

        weights = (2.0 * np.arange(cl.size) + 1.0) / (4.0 * np.pi) * cl

        def xi_at(d2):  # Clenshaw sum of the Legendre series at cos θ = 1 - d²/2 (2x healpy.bl2beam's speed)
            return np.asarray(legval(1.0 - 0.5 * np.clip(d2, 0.0, 4.0), weights), dtype=np.float64)

        probe = np.random.default_rng(0).uniform(0.0, self.d2_max, 256)
        exact = torch.from_numpy(xi_at(probe))
        points = int(points)
        while True:
            self.step = self.d2_max / (points - 1)
            self._set_values(xi_at(np.linspace(0.0, self.d2_max, points)))
            self.xi0_uk2 = float(self.values_uk2[0])
            self.error_rel = float((self(torch.from_numpy(probe.copy())) - exact).abs().max()) / abs(self.xi0_uk2)
            if self.error_rel < TABLE_TOLERANCE or points >= TABLE_MAX_POINTS:
                break
            # the error falls as step^4: go straight to the power of two that should reach the tolerance
            factor = math.ceil(math.log2((self.error_rel / TABLE_TOLERANCE) ** 0.25))
            points = min(TABLE_MAX_POINTS, points << max(1, factor))
        self.points = points

    def _set_values(self, xi: np.ndarray) -> None:
        v = np.asarray(xi, dtype=np.float64)
        self.values_uk2 = torch.from_numpy(v)
        #: (points, 4) coefficients of each interval, interleaved: one gather of 32 bytes per
        #: look-up (``torch.index_select``) instead of four (measured 35 % less assembly time; planes
        #: gathered by one ``index_select`` along dim 1: 2x slower); the last row serves x = points - 1
        self._coeffs = torch.from_numpy(with_end_row(cubic_coefficients(v[None])))

    def _horner(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """:math:`\\xi` at grid coordinates ``x`` = d²/step (already clamped to the table; overwritten),
        written to ``out`` (may be ``x``)."""
        i = x.to(torch.int32)  # <= points - 1: the table's end row covers it
        t = x.sub_(i)
        c = torch.index_select(self._coeffs, 0, i.view(-1)).view(*i.shape, 4)
        r = torch.addcmul(c[..., 2], c[..., 3], t)
        r = torch.addcmul(c[..., 1], r, t)
        return torch.addcmul(c[..., 0], r, t, out=out)

    def __call__(self, d2: torch.Tensor) -> torch.Tensor:
        """:math:`\\xi` (μK², float64) at squared chords ``d2`` (any shape; overwritten): cubic
        Lagrange interpolation through the 4 nearest grid points, evaluated in Horner form."""
        x = d2.clamp_(0.0, self.d2_max).mul_(1.0 / self.step)
        return self._horner(x, x)

    def between(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`\\xi(\\hat n_a, \\hat n_b)` for unit vectors ``a`` (n, 3), ``b`` (m, 3), written into
        ``out`` (an (n, m) view, e.g. a block of a larger matrix) if given (:meth:`between_embedded`)."""
        centre = b.mean(dim=0)
        return self.between_embedded(self.embed(a, centre), self.embed(b, centre), out)

    def embed(self, v: torch.Tensor, centre: torch.Tensor | None = None) -> torch.Tensor:
        """(n, 10) rows :math:`(a', \\lVert a'\\rVert^2, 1,\\; h^{-1}(-2a', 1, \\lVert a'\\rVert^2))` of the unit
        vectors ``v`` centred on ``centre`` (default their mean), :math:`h` the grid step: the factors of
        :func:`scaled_chords` computed once for a set of pixels, whose row blocks
        :meth:`between_embedded` pairs (the vectors of one call must share the centre)."""
        left, right = chord_factors(v, 1.0 / self.step, v.mean(dim=0) if centre is None else centre)
        return torch.cat([left, right], dim=1)

    def between_embedded(self, ea: torch.Tensor, eb: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`\\xi` between the pixels embedded (:meth:`embed`) as ``ea`` (n, 10) and ``eb`` (m, 10).

        The grid coordinate :math:`d^2/h` is one product of the factors, then clamping and the
        interpolation in place: element-wise and memory-bound, so callers pass one cache-sized block
        at a time."""
        if out is None:
            out = torch.empty(ea.shape[0], eb.shape[0], dtype=torch.float64)
        x = torch.mm(ea[:, :5], eb[:, 5:].T, out=out).clamp_(0.0, self.points - 1)
        return self._horner(x, out)


def with_end_row(coeffs: np.ndarray) -> np.ndarray:
    """``coeffs`` (P - 1, 4 k) of :func:`cubic_coefficients` with one more row: the last interval's
    cubic re-expanded about its right end, :math:`p(s + 1)`, so that the grid's last point x = P - 1
    looks up row P - 1 with t = 0 (no clamping of the index, one pass less per look-up)."""
    c = np.asarray(coeffs, dtype=np.float64)
    a0, a1, a2, a3 = (c[-1, j::4] for j in range(4))
    end = np.empty(c.shape[1])
    end[0::4], end[1::4], end[2::4], end[3::4] = a0 + a1 + a2 + a3, a1 + 2 * a2 + 3 * a3, a2 + 3 * a3, a3
    return np.ascontiguousarray(np.vstack([c, end]))


def chord_factors(v: torch.Tensor, scale: float, centre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 5) factors ``left`` = :math:`(v', \\lVert v'\\rVert^2, 1)` and ``right`` =
    :math:`s(-2v', 1, \\lVert v'\\rVert^2)` of :math:`v' = v - c`: ``left[i] · right[j]`` =
    :math:`s \\lVert v_i - v_j\\rVert^2` (:func:`scaled_chords`)."""
    vc = v - centre
    sq = (vc * vc).sum(dim=1, keepdim=True)
    one = torch.ones_like(sq)
    return torch.cat([vc, sq, one], dim=1), torch.cat([-2.0 * vc, one, sq], dim=1).mul_(scale)


def scaled_chords(a: torch.Tensor, b: torch.Tensor, scale: float, out: torch.Tensor) -> torch.Tensor:
    """``out`` = :math:`s\\,\\lVert a_i - b_j\\rVert^2` for unit vectors, in one matrix product,

    .. math::

        \\lVert a - b\\rVert^2 = \\lVert a'\\rVert^2 + \\lVert b'\\rVert^2 - 2\\,a'\\cdot b', \\qquad
        a' = a - c,\\; b' = b - c,

    with :math:`c` the mean of ``b``: the rows :math:`(a', \\lVert a'\\rVert^2, 1)` times the columns
    :math:`s(-2b', 1, \\lVert b'\\rVert^2)` (:func:`chord_factors`). Centring removes the cancellation of
    :math:`2 - 2a\\cdot b` (absolute error ~2e-16, 1e-9 of a neighbour's :math:`d^2` at Nside 2048,
    enough to move the conditional mean of an ill-conditioned system by ~1e-7 of its rms, and to
    depend on the block shape the BLAS kernel sees): the error becomes ~1e-16 of the set's squared extent."""
    c = b.mean(dim=0)
    return torch.mm(chord_factors(a, scale, c)[0], chord_factors(b, scale, c)[1].T, out=out)


def cubic_coefficients(values: np.ndarray) -> np.ndarray:
    """Per-interval cubic coefficients of the Lagrange interpolant through grid points i-1..i+2, for
    ``k`` functions sampled on the same grid (``values`` (k, P)): an array (P - 1, 4 k), row i holding
    (c0, c1, c2, c3) of each function in turn, so that on interval i, with t = x - i in [0, 1),
    f(x) = c0 + t (c1 + t (c2 + t c3)). The first and last intervals reuse their neighbour's cubic."""
    v = np.asarray(values, dtype=np.float64)
    k, n = v.shape
    vm, v0, v1, v2 = v[:, :-3], v[:, 1:-2], v[:, 2:-1], v[:, 3:]  # interval i = 1 .. n-3
    c = np.empty((k, 4, n - 1))
    c[:, 0, 1:-1] = v0
    c[:, 1, 1:-1] = -vm / 3.0 - v0 / 2.0 + v1 - v2 / 6.0
    c[:, 2, 1:-1] = vm / 2.0 - v0 + v1 / 2.0
    c[:, 3, 1:-1] = (-vm + 3.0 * v0 - 3.0 * v1 + v2) / 6.0
    a0, a1, a2, a3 = (c[:, j, 1] for j in range(4))  # interval 0: p_1(s - 1)
    c[:, 0, 0], c[:, 1, 0], c[:, 2, 0], c[:, 3, 0] = a0 - a1 + a2 - a3, a1 - 2 * a2 + 3 * a3, a2 - 3 * a3, a3
    b0, b1, b2, b3 = (c[:, j, -2] for j in range(4))  # last interval: p_{n-3}(s + 1)
    c[:, 0, -1], c[:, 1, -1], c[:, 2, -1], c[:, 3, -1] = b0 + b1 + b2 + b3, b1 + 2 * b2 + 3 * b3, b2 + 3 * b3, b3
    return np.ascontiguousarray(c.transpose(2, 0, 1).reshape(n - 1, 4 * k))


def squared_chord(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """:math:`\\lVert a_i - b_j\\rVert^2 = 2 - 2\\,a_i\\cdot b_j` for unit vectors (float64)."""
    return torch.clamp(2.0 - 2.0 * (a @ b.transpose(-1, -2)), min=0.0)


def noise_variance_uk2(sky, nside: int, noise_var_map=None):
    """Per-pixel noise variance (μK²): ``noise_var_map`` (array of 12 Nside² pixels, e.g. a
    Planck II_COV column in μK²) if given, else ``sky.noise_var_uk2`` if it is a HEALPix map, else
    the white level :math:`(\\sigma / \\Delta_{pix})^2` with :math:`\\Delta_{pix}` =
    ``healpy.nside2resol(nside)`` (a float)."""
    import healpy as hp

    npix = hp.nside2npix(nside)
    var = noise_var_map if noise_var_map is not None else sky.noise_var_uk2
    if var is not None:
        var = np.asarray(var)
        if var.shape != (npix,):
            raise InputError(f"noise map: has {var.size} pixels, the map has {npix} (Nside {nside})")
        return var
    return (sky.noise_uk_arcmin / hp.nside2resol(nside, arcmin=True)) ** 2


__all__ = ["CorrelationTable", "cubic_coefficients", "with_end_row", "chord_factors", "scaled_chords", "squared_chord", "noise_variance_uk2", "TABLE_POINTS"]
