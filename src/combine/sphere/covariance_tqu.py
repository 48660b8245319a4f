"""T, Q, U pixel covariance of a HEALPix map, spin-2 correct, assembled fast for the batched fill.

The same covariance as :class:`combine.baselines.covariance_pol.SphereTQUCovariance` (its module
docstring has the equations; healpy's Q/U frame): with :math:`\\xi^{TT}, \\xi_\\pm, \\xi_\\times` of
the beam- and pixel-window-convolved spectra, :math:`A = (\\xi_+ + \\xi_-)/2`,
:math:`B = (\\xi_+ - \\xi_-)/2` and, at each pixel, :math:`c = \\cos 2\\alpha`, :math:`s = \\sin 2\\alpha`
of the direction of the great circle to the other pixel (from :math:`\\hat e_\\theta` towards
:math:`\\hat e_\\varphi`),

.. math::

    \\langle T_iT_j\\rangle = \\xi^{TT},\\quad \\langle T_iQ_j\\rangle = c_j\\xi_\\times,\\quad
    \\langle T_iU_j\\rangle = s_j\\xi_\\times,\\quad
    \\langle Q_iQ_j\\rangle = c_ic_jA + s_is_jB,\\quad \\langle Q_iU_j\\rangle = c_is_jA - s_ic_jB,

    \\langle U_iQ_j\\rangle = s_ic_jA - c_is_jB,\\quad \\langle U_iU_j\\rangle = s_is_jA + c_ic_jB .

Differences from ``SphereTQUCovariance`` (which stays the reference the tests compare with):

* the four functions are tabulated on a uniform grid of the squared chord :math:`d^2` and
  interpolated with the cubic Lagrange scheme of :class:`combine.sphere.covariance.CorrelationTable`
  (no ``arccos``, one gather of 16 coefficients per pixel pair), the grid refined until the error at
  256 random separations is below :data:`TQU_TABLE_TOLERANCE` (or stops falling) of each
  function's scale (:math:`\\xi^{TT}(0)`, :math:`A(0)`, :math:`\\sqrt{\\xi^{TT}(0) A(0)}` for
  :math:`\\xi_\\times`);
* :math:`\\alpha` is never formed: with :math:`x = \\hat n_j\\cdot\\hat e_\\theta(i)`,
  :math:`y = \\hat n_j\\cdot\\hat e_\\varphi(i)` (the tangent direction to *j* at *i*, two matrix
  products), :math:`c = (x^2 - y^2)/(x^2 + y^2)`, :math:`s = 2xy/(x^2 + y^2)`; a pixel with itself
  (:math:`x = y = 0`) takes :math:`c = 1, s = 0` (there :math:`A = B`, :math:`\\xi_\\times = 0`, so
  any frame gives the same entries);
* the matrix is **pixel-major**: pixel *p* of a set owns rows :math:`3p, 3p+1, 3p+2` (T, Q, U), so
  that a block of pixels is a block of the matrix (the batched solver fills lower triangles by
  row blocks of pixels).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError
from . import covariance as _cov

#: Interpolation tolerance (× each function's scale). It matters on noiseless skies: at Nside 64
#: (lmax 191) a table good to 2e-9 left the Wiener-filled pure-E map's BB 56 % above anafast's
#: floor, 5e-11 left it 7 % above, 8e-12 on it (tests/test_evaluate_tqu.py). The refinement stops
#: earlier when a refinement no longer halves the error (CAMB's Wigner-d sums are accurate to
#: ~1e-9 at high ℓ and small separations) or when points × lmax would exceed
#: :data:`TQU_TABLE_WORK` (each point costs a Wigner-d sum over ℓ): at Nside 2048 (lmax 6200) that
#: is 16384 points, error ~1e-9, 2-3 s; the 1 μK·arcmin noise there keeps that harmless.
TQU_TABLE_TOLERANCE = 1e-11
TQU_TABLE_WORK = 1 << 27

#: Names of the tabulated functions, in the order of the coefficient columns.
FUNCTIONS = ("tt", "a", "b", "cross")


def _frames(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vectors :math:`\\hat e_\\theta, \\hat e_\\varphi` (n, 3) at positions ``v`` (n, 3) (healpy's frame)."""
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    rho = torch.sqrt(torch.clamp(x * x + y * y, min=0.0))
    safe = rho > 1e-12
    cphi = torch.where(safe, x / torch.where(safe, rho, torch.ones_like(rho)), torch.ones_like(rho))
    sphi = torch.where(safe, y / torch.where(safe, rho, torch.ones_like(rho)), torch.zeros_like(rho))
    e_theta = torch.stack([z * cphi, z * sphi, -rho], dim=1)
    e_phi = torch.stack([-sphi, cphi, torch.zeros_like(z)], dim=1)
    return e_theta, e_phi


def _cos_sin_2alpha(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:math:`\\cos 2\\alpha, \\sin 2\\alpha` of :math:`\\alpha = \\mathrm{atan2}(y, x)`; (1, 0) where x = y = 0."""
    r2 = x * x + y * y
    tiny = r2 < 1e-24  # the same pixel: |x|, |y| ~ 1e-17, while neighbours at Nside 8192 give r2 ~ 1e-15
    inv = 1.0 / torch.where(tiny, torch.ones_like(r2), r2)
    c = torch.where(tiny, torch.ones_like(r2), (x * x - y * y) * inv)
    s = torch.where(tiny, torch.zeros_like(r2), 2.0 * x * y * inv)
    return c, s


def write_qu_blocks(o: torch.Tensor, a: torch.Tensor, b: torch.Tensor, fa: torch.Tensor, fb: torch.Tensor):
    """Write the Q, U blocks of the pixel pairs (``a`` (n, 3), ``b`` (m, 3) unit vectors) into ``o``
    (n, 2, m, 2: [Q or U of a_i, Q or U of b_j]) from :math:`A`, :math:`B` (n, m), the equations of
    the module docstring; returns :math:`c_i, s_i, c_j, s_j` (n, m) for the T–Q/U blocks."""
    et_a, ep_a = _frames(a)
    et_b, ep_b = _frames(b)
    ci, si = _cos_sin_2alpha(et_a @ b.T, ep_a @ b.T)  # at a_i, towards b_j
    cj, sj = _cos_sin_2alpha(a @ et_b.T, a @ ep_b.T)  # at b_j, towards a_i
    cc, ss, cs, sc = ci * cj, si * sj, ci * sj, si * cj
    o[:, 0, :, 0] = cc * fa + ss * fb
    o[:, 0, :, 1] = cs * fa - sc * fb
    o[:, 1, :, 0] = sc * fa - cs * fb
    o[:, 1, :, 1] = ss * fa + cc * fb
    return ci, si, cj, sj


class TQUCorrelationTable:
    """:math:`\\xi^{TT}, A, B, \\xi_\\times` of ``sky`` tabulated in :math:`d^2` (module docstring).

    Parameters
    ----------
    sky : combine.sky.Sky
        Spectra TT, EE, BB, TE and beam.
    nside : int or None
        HEALPix resolution for the pixel window (the temperature window for all fields, as
        ``SphereTQUCovariance`` and ``simulate_healpix_tqu(pixwin=True)``); ``None``: none.
    max_theta_rad : float
        Largest separation looked up.
    """

    fields = 3

    def __init__(self, sky, nside: int | None, max_theta_rad: float, *, lmax: int | None = None,
                 points: int = _cov.TABLE_POINTS):
        from ..baselines.covariance_pol import correlations_uk2
        from ..sky.spectra import healpix_pixel_window

        if not (math.isfinite(max_theta_rad) and 0 < max_theta_rad <= math.pi):
            raise InputError(f"max_theta_rad: must lie in (0, pi], got {max_theta_rad!r}")
        spectra = sky.spectra_uk2()
        lmax = spectra["tt"].size - 1 if lmax is None else min(int(lmax), spectra["tt"].size - 1)
        window = np.ones(lmax + 1) if nside is None else healpix_pixel_window(int(nside), lmax)[: lmax + 1]
        # drop the multipoles the beam has killed (as CorrelationTable: tail < 1e-13 of the total)
        weight = (2.0 * np.arange(lmax + 1) + 1.0) * sum(np.abs(sky.beamed_cl_uk2(k, window))
                                                         for k in ("tt", "ee", "bb"))
        tail = np.cumsum(weight[::-1])[::-1]
        keep = np.flatnonzero(tail > 1e-13 * tail[0])
        window = window[: max(3, int(keep[-1]) + 1 if keep.size else 3)]
        self.lmax = window.size - 1
        self.d2_max = 2.0 - 2.0 * math.cos(max_theta_rad)

        def values_at(d2):
            # CAMB's spin-2 sums divide by 1 + cos θ: stop just short of the antipode (where the
            # frame of a pixel pair is undefined anyway)
            theta = np.minimum(2.0 * np.arcsin(np.sqrt(np.clip(d2, 0.0, 4.0)) / 2.0), math.pi - 1e-6)
            xi = correlations_uk2(theta, sky, window)
            a = 0.5 * (xi["plus"] + xi["minus"])
            b = 0.5 * (xi["plus"] - xi["minus"])
            return np.stack([xi["tt"], a, b, xi["cross"]])

        probe = np.random.default_rng(0).uniform(0.0, self.d2_max, 256)
        exact = values_at(probe)
        points = int(points)
        previous = math.inf
        while True:
            self.step = self.d2_max / (points - 1)
            values = values_at(np.linspace(0.0, self.d2_max, points))
            self._coeffs = torch.from_numpy(_cov.with_end_row(_cov.cubic_coefficients(values)))
            self.xi0_uk2 = float(values[0, 0])  # ξ^TT(0): the scale of the solver's ridge
            self.scale_uk2 = np.array([values[0, 0], values[1, 0], values[1, 0],
                                       math.sqrt(values[0, 0] * values[1, 0])])
            got = self(torch.from_numpy(probe.copy())).numpy().T
            self.error_rel = float(np.max(np.abs(got - exact).max(axis=1) / self.scale_uk2))
            most = max(_cov.TABLE_POINTS, min(_cov.TABLE_MAX_POINTS, 1 << int(math.log2(TQU_TABLE_WORK / self.lmax))))
            if self.error_rel < TQU_TABLE_TOLERANCE or points >= most or \
                    self.error_rel > 0.5 * previous:  # the CAMB sums' own accuracy: no gain from more points
                break
            previous = self.error_rel
            points = min(most, points << max(1, math.ceil(math.log2((self.error_rel / TQU_TABLE_TOLERANCE) ** 0.25))))
        self.points = points

    def field_scales_uk2(self) -> np.ndarray:
        """Variance scale of T, Q, U: :math:`\\xi^{TT}(0), A(0), A(0)` (for relative ridges)."""
        return self.scale_uk2[:3].copy()

    def _interp(self, x: torch.Tensor) -> torch.Tensor:
        """The four functions at grid coordinates ``x`` = d²/step (clamped): shape (..., 4)."""
        i = x.to(torch.int32)  # <= points - 1: the table's end row covers it
        t = x.sub_(i).unsqueeze(-1)
        c = torch.index_select(self._coeffs, 0, i.view(-1)).view(*i.shape, 4, 4)
        r = torch.addcmul(c[..., 2], c[..., 3], t)
        r = torch.addcmul(c[..., 1], r, t)
        return torch.addcmul(c[..., 0], r, t)

    def __call__(self, d2: torch.Tensor) -> torch.Tensor:
        """(..., 4): :math:`\\xi^{TT}, A, B, \\xi_\\times` (μK²) at squared chords ``d2`` (overwritten)."""
        return self._interp(d2.clamp_(0.0, self.d2_max).mul_(1.0 / self.step))

    def embed(self, v: torch.Tensor, centre=None) -> torch.Tensor:
        """The pixels as :meth:`between_embedded` takes them: the unit vectors themselves (the interface
        of :meth:`combine.sphere.covariance.CorrelationTable.embed`)."""
        return v

    def between_embedded(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`between` of pixels given by :meth:`embed`."""
        return self.between(a, b, out)

    def between(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(3n, 3m) pixel-major covariance (no noise) of unit vectors ``a`` (n, 3) and ``b`` (m, 3),
        written into ``out`` (e.g. a block of a larger matrix) if given."""
        n, m = a.shape[0], b.shape[0]
        if out is None:
            out = torch.empty(3 * n, 3 * m, dtype=torch.float64)
        x = _cov.scaled_chords(a, b, 1.0 / self.step, torch.empty(n, m, dtype=torch.float64))
        f = self._interp(x.clamp_(0.0, self.points - 1))  # d²/step, centred (no 2 - 2 a·b cancellation)
        tt, fa, fb, fx = f[..., 0], f[..., 1], f[..., 2], f[..., 3]
        o = out.view(n, 3, m, 3)
        ci, si, cj, sj = write_qu_blocks(o[:, 1:, :, 1:], a, b, fa, fb)
        o[:, 0, :, 0] = tt
        torch.mul(cj, fx, out=o[:, 0, :, 1])
        torch.mul(sj, fx, out=o[:, 0, :, 2])
        torch.mul(ci, fx, out=o[:, 1, :, 0])
        torch.mul(si, fx, out=o[:, 2, :, 0])
        return out


#: Tables kept by :func:`tqu_table` (CAMB's spin-2 sums cost seconds: a GCR with several
#: realisations, or repeated calls on one sky, build the table once).
_CACHE: dict = {}
_CACHE_SIZE = 4


def tqu_table(sky, nside: int | None, max_theta_rad: float, *, lmax: int | None = None) -> TQUCorrelationTable:
    """:class:`TQUCorrelationTable` for ``max_theta_rad`` rounded up to a power of :math:`2^{1/4}`
    times 1 arcmin (at most 19 % more), cached in-process by the beamed spectra, ``nside`` and
    ``lmax``: the table a call gets depends on its arguments only, never on earlier calls."""
    import hashlib

    from ..sky.defaults import ARCMIN_RAD

    theta = min(math.pi, ARCMIN_RAD * 2.0 ** (math.ceil(4.0 * math.log2(max(max_theta_rad / ARCMIN_RAD, 1.0))) / 4.0))
    h = hashlib.sha256()
    for k in ("tt", "ee", "bb", "te"):
        h.update(np.ascontiguousarray(sky.beamed_cl_uk2(k), dtype=np.float64).tobytes())
    key = (h.hexdigest(), nside, lmax, theta)
    table = _CACHE.get(key)
    if table is None:
        table = TQUCorrelationTable(sky, nside, theta, lmax=lmax)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = table
    return table


__all__ = ["TQUCorrelationTable", "tqu_table", "FUNCTIONS", "TQU_TABLE_TOLERANCE", "TQU_TABLE_WORK"]
