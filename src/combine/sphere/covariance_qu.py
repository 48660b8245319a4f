"""Q, U pixel covariance of a HEALPix map alone (spin-2, TE ignored), for the split T | Q, U fill.

The Q/U block of :mod:`combine.sphere.covariance_tqu` (healpy's frame): with
:math:`A = (\\xi_+ + \\xi_-)/2`, :math:`B = (\\xi_+ - \\xi_-)/2` of the beam- and pixel-window-convolved
EE and BB spectra and, at each pixel, :math:`c = \\cos 2\\alpha`, :math:`s = \\sin 2\\alpha` of the
direction of the great circle to the other pixel,

.. math::

    \\langle Q_iQ_j\\rangle = c_ic_jA + s_is_jB,\\quad \\langle Q_iU_j\\rangle = c_is_jA - s_ic_jB,\\quad
    \\langle U_iQ_j\\rangle = s_ic_jA - c_is_jB,\\quad \\langle U_iU_j\\rangle = s_is_jA + c_ic_jB .

Nothing is recomputed: :math:`A` and :math:`B` are the cubic-interpolation coefficients that a
:class:`~combine.sphere.covariance_tqu.TQUCorrelationTable` already holds (columns 4-11 of its
coefficient array, one gather of 8 instead of 16 per pixel pair), the frames those of its
``between`` (:func:`~combine.sphere.covariance_tqu.write_qu_blocks`).
The matrix is **pixel-major**: pixel *p* owns rows :math:`2p, 2p+1` (Q, U), as the batched solver
of :mod:`combine.sphere.wiener` expects for ``fields = 2``.

Leaving T out drops the TE cross-covariance: a Q/U fill from Q/U alone is the exact conditional mean
of the Q/U-only problem, not of the joint T, Q, U one (``benchmarks/bench_sphere_pol.py --te`` measured
what that costs: 0.3 % of the Q/U hole RMSE on planck18 at Nside 2048).
"""

from __future__ import annotations

import torch

from . import covariance as _cov
from .covariance_tqu import TQUCorrelationTable, tqu_table, write_qu_blocks


class QUCorrelationTable:
    """Q, U covariance (no noise) from the :math:`A, B` columns of ``tqu`` (module docstring).

    Attributes used by :class:`combine.sphere.wiener._Problem`: ``fields = 2``, ``xi0_uk2``
    (:math:`A(0)`, the variance of Q or U: the scale of the Cholesky ridge) and
    :meth:`field_scales_uk2`.
    """

    fields = 2

    def __init__(self, tqu: TQUCorrelationTable):
        self.tqu = tqu
        self.lmax, self.d2_max, self.step, self.points = tqu.lmax, tqu.d2_max, tqu.step, tqu.points
        self._coeffs = tqu._coeffs[:, 4:12].contiguous()  # (c0..c3) of A, then of B
        self.xi0_uk2 = float(tqu.scale_uk2[1])  # A(0)
        self.error_rel = float(tqu.error_rel)

    def field_scales_uk2(self):
        """Variance scale of Q and U: :math:`A(0), A(0)`."""
        return self.tqu.scale_uk2[1:3].copy()

    def __call__(self, d2: torch.Tensor) -> torch.Tensor:
        """(..., 2): :math:`A, B` (μK²) at squared chords ``d2`` (overwritten); cubic Lagrange, Horner form."""
        return self._interp(d2.clamp_(0.0, self.d2_max).mul_(1.0 / self.step))

    def _interp(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`A, B` at grid coordinates ``x`` = d²/step (already clamped; overwritten): shape (..., 2)."""
        i = x.to(torch.int32)  # <= points - 1: the T, Q, U table's end row covers it
        t = x.sub_(i).unsqueeze(-1)
        c = torch.index_select(self._coeffs, 0, i.view(-1)).view(*i.shape, 2, 4)
        r = torch.addcmul(c[..., 2], c[..., 3], t)
        r = torch.addcmul(c[..., 1], r, t)
        return torch.addcmul(c[..., 0], r, t)

    # the interface of CorrelationTable.embed / between_embedded (unit vectors as they are)
    embed = TQUCorrelationTable.embed
    between_embedded = TQUCorrelationTable.between_embedded

    def between(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(2n, 2m) pixel-major Q, U covariance (no noise) of unit vectors ``a`` (n, 3) and ``b`` (m, 3),
        written into ``out`` (e.g. a block of a larger matrix) if given; d² as in
        :meth:`~combine.sphere.covariance_tqu.TQUCorrelationTable.between` (centred chords)."""
        n, m = a.shape[0], b.shape[0]
        if out is None:
            out = torch.empty(2 * n, 2 * m, dtype=torch.float64)
        x = _cov.scaled_chords(a, b, 1.0 / self.step, torch.empty(n, m, dtype=torch.float64))
        f = self._interp(x.clamp_(0.0, self.points - 1))
        write_qu_blocks(out.view(n, 2, m, 2), a, b, f[..., 0], f[..., 1])
        return out


def qu_table(sky, nside: int | None, max_theta_rad: float, *, lmax: int | None = None) -> QUCorrelationTable:
    """:class:`QUCorrelationTable` over the cached :func:`~combine.sphere.covariance_tqu.tqu_table`
    of the same arguments (its CAMB sums are the costly part; a T, Q, U joint fill of the same sky
    reuses them)."""
    return QUCorrelationTable(tqu_table(sky, nside, max_theta_rad, lmax=lmax))


__all__ = ["QUCorrelationTable", "qu_table"]
