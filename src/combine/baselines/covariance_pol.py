"""T, Q, U pixel covariance, spin-2 correct, on flat patches and on the sphere.

Correlation functions
---------------------
For an isotropic sky with beam-convolved spectra :math:`C^{XY}_\\ell` (TT, EE, BB, TE from
:meth:`combine.sky.Sky.beamed_cl_uk2`), let :math:`Q_r, U_r` be the Stokes parameters in the
frame whose first axis lies along the great circle joining the two pixels (separation θ). Then

.. math::

    \\xi^{TT}(\\theta) &= \\sum_\\ell \\tfrac{2\\ell+1}{4\\pi} C^{TT}_\\ell\\, d^\\ell_{00}(\\theta), \\\\
    \\xi_+(\\theta) = \\langle Q_rQ_r'\\rangle + \\langle U_rU_r'\\rangle &= \\sum_\\ell \\tfrac{2\\ell+1}{4\\pi} (C^{EE}_\\ell + C^{BB}_\\ell)\\, d^\\ell_{22}(\\theta), \\\\
    \\xi_-(\\theta) = \\langle Q_rQ_r'\\rangle - \\langle U_rU_r'\\rangle &= \\sum_\\ell \\tfrac{2\\ell+1}{4\\pi} (C^{EE}_\\ell - C^{BB}_\\ell)\\, d^\\ell_{2,-2}(\\theta), \\\\
    \\xi_\\times(\\theta) = \\langle T Q_r'\\rangle &= -\\sum_\\ell \\tfrac{2\\ell+1}{4\\pi} C^{TE}_\\ell\\, d^\\ell_{20}(\\theta)

with :math:`\\langle T U_r'\\rangle = \\langle Q_r U_r'\\rangle = 0` by parity. The Wigner-d sums are CAMB's
:func:`camb.correlations.cl2corr` (a library routine: its Wigner-d recursions are tested
against corr2cl round trips in CAMB); it returns :math:`\\xi_\\times` with the opposite sign
convention to the one here (Q_r > 0 along the separation), which :func:`correlations_uk2`
flips — the tests fix the sign against simulations. At θ = 0 (where cl2corr is undefined):
:math:`\\xi_+ = \\sum (2\\ell+1)/4\\pi\\,(C^{EE}+C^{BB})`, :math:`\\xi_- = \\xi_\\times = 0`.

Rotation to the pixels' frames
------------------------------
If pixel *i* sees the separation at angle :math:`\\alpha_i` in its own Q/U frame
(:math:`c_i = \\cos 2\\alpha_i`, :math:`s_i = \\sin 2\\alpha_i`), with :math:`A = (\\xi_+ + \\xi_-)/2` and
:math:`B = (\\xi_+ - \\xi_-)/2`,

.. math::

    \\langle Q_iQ_j\\rangle = c_ic_jA + s_is_jB,\\quad \\langle Q_iU_j\\rangle = c_is_jA - s_ic_jB,\\quad
    \\langle U_iU_j\\rangle = s_is_jA + c_ic_jB,\\quad
    \\langle T_iQ_j\\rangle = c_j\\xi_\\times,\\quad \\langle T_iU_j\\rangle = s_j\\xi_\\times .

*Flat patches* (DESIGN frame, x along columns, y along rows): :math:`\\alpha_i = \\alpha_j = \\varphi`,
the angle of the separation vector from x towards y; so :math:`\\langle QQ'\\rangle = (\\xi_+ + \\xi_-\\cos 4\\varphi)/2`,
:math:`\\langle QU'\\rangle = \\xi_-\\sin 4\\varphi/2`, :math:`\\langle TQ'\\rangle = \\xi_\\times\\cos 2\\varphi`, with
θ = Δ_pix |p − q|: the curved-sky functions at the flat distance, as the temperature covariance
of :mod:`combine.baselines.covariance` (flat-versus-curved corrections of order θ²).
*Sphere* (healpy frame): :math:`\\alpha_i` is the direction of the great circle towards *j* at
pixel *i*, from :math:`\\hat e_\\theta` towards :math:`\\hat e_\\varphi`:
:math:`\\alpha_i = \\mathrm{atan2}(\\mathbf t\\cdot\\hat e_\\varphi, \\mathbf t\\cdot\\hat e_\\theta)`,
:math:`\\mathbf t = \\hat r_j - (\\hat r_i\\cdot\\hat r_j)\\hat r_i`. Mirror-imaged frames (the flat one
is left-handed on the sky) leave A, B and ξ× unchanged.

Ordering: the covariance of pixels ``a`` (m) and ``b`` (n) is a (3m, 3n) matrix, field-major
(all T, then all Q, then all U). White noise adds :math:`\\sigma_T^2` to the T diagonal and
:math:`\\sigma_P^2` to the Q, U diagonals (:func:`noise_var_tqu_uk2`).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..sky.defaults import ARCMIN_RAD
from ..sky.model import Sky


#: Names of the four correlation functions returned by :func:`correlations_uk2`.
CORRELATIONS = ("tt", "plus", "minus", "cross")


def _check_sky(sky) -> Sky:
    if not isinstance(sky, Sky):
        raise InputError(f"sky: expected a combine.sky.Sky, got {type(sky).__name__}")
    return sky


def correlations_uk2(theta_rad, sky: Sky, pixel_window=None) -> dict[str, np.ndarray]:
    """ξ^TT, ξ₊, ξ₋, ξ× (μK², module docstring) at separations ``theta_rad`` (any shape).

    ``pixel_window`` (ℓ = 0..) multiplies the spectra by :math:`W_\\ell^2` (HEALPix); flat
    patches (point samples) take none. Evaluated by :func:`camb.correlations.cl2corr`.
    """
    from camb.correlations import cl2corr

    sky = _check_sky(sky)
    theta = np.asarray(theta_rad, dtype=np.float64)
    flat = np.atleast_1d(theta).ravel()
    cl = np.stack([sky.beamed_cl_uk2(k, pixel_window) for k in ("tt", "ee", "bb", "te")], axis=1)
    ell = np.arange(cl.shape[0], dtype=np.float64)
    dl = cl * (ell * (ell + 1) / (2 * np.pi))[:, None]  # cl2corr takes D_ℓ
    out = np.empty((flat.size, 4))
    at_zero = flat <= 0.0
    if (~at_zero).any():
        out[~at_zero] = cl2corr(dl, np.cos(flat[~at_zero]))
    if at_zero.any():
        w = (2 * ell + 1) / (4 * np.pi)
        out[at_zero] = [np.dot(w, cl[:, 0]), np.dot(w, cl[:, 1] + cl[:, 2]), 0.0, 0.0]
    out[:, 3] *= -1.0  # CAMB's cross term has Q_r > 0 perpendicular to the separation
    return {name: out[:, i].reshape(theta.shape) for i, name in enumerate(CORRELATIONS)}


def noise_var_tqu_uk2(sky: Sky, pixel_arcmin: float | None = None) -> tuple[float, float]:
    """White-noise variance per pixel of T and of Q/U, :math:`(\\text{noise}/\\Delta_{pix})^2`, μK²."""
    sky = _check_sky(sky)
    pix = sky.pixel_arcmin if pixel_arcmin is None else float(pixel_arcmin)
    return (sky.noise_uk_arcmin / pix) ** 2, (sky.noise_qu_uk_arcmin / pix) ** 2


def _assemble(xi: dict, ci, si, cj, sj) -> np.ndarray:
    """(3m, 3n) block matrix from correlations (m, n) and the pixels' frame angles (module docstring)."""
    a = 0.5 * (xi["plus"] + xi["minus"])
    b = 0.5 * (xi["plus"] - xi["minus"])
    x = xi["cross"]
    tt = xi["tt"]
    rows = [
        [tt, cj * x, sj * x],
        [ci * x, ci * cj * a + si * sj * b, ci * sj * a - si * cj * b],
        [si * x, si * cj * a - ci * sj * b, si * sj * a + ci * cj * b],
    ]
    return np.block(rows)


class FlatTQUCovariance:
    """T, Q, U covariance of flat patch pixels (module docstring), from tables by integer offset.

    Parameters
    ----------
    sky : Sky
        Spectra, beam, pixel size, noise.
    max_offset_px : int
        Largest |dy|, |dx| tabulated (the patch side minus one covers every pair of a patch).

    Examples
    --------
    >>> cov = FlatTQUCovariance(sky, 31)                       # doctest: +SKIP
    >>> c = cov.between(yx, yx, noise=True)                    # doctest: +SKIP
    """

    def __init__(self, sky: Sky, max_offset_px: int):
        self.sky = _check_sky(sky)
        n = int(max_offset_px)
        if n < 0:
            raise InputError(f"max_offset_px: need >= 0, got {max_offset_px!r}")
        self.max_offset_px = n
        r2 = np.add.outer(np.arange(n + 1) ** 2, np.arange(n + 1) ** 2)
        unique_r2, inverse = np.unique(r2, return_inverse=True)
        xi = correlations_uk2(np.sqrt(unique_r2) * sky.pixel_arcmin * ARCMIN_RAD, sky)
        self.tables = {k: v[inverse].reshape(n + 1, n + 1) for k, v in xi.items()}  # by (|dy|, |dx|)
        self.noise_var_t_uk2, self.noise_var_p_uk2 = noise_var_tqu_uk2(sky)

    def between(self, a_yx, b_yx, *, noise: bool = False) -> np.ndarray:
        """(3m, 3n) covariance of pixels ``a_yx`` (m, 2) and ``b_yx`` (n, 2) (integer (row, col)).

        ``noise=True`` adds the white noise where a pixel of ``a`` equals one of ``b``.
        """
        a = np.asarray(a_yx, dtype=np.int64).reshape(-1, 2)
        b = np.asarray(b_yx, dtype=np.int64).reshape(-1, 2)
        dy = b[None, :, 0] - a[:, None, 0]
        dx = b[None, :, 1] - a[:, None, 1]
        ady, adx = np.abs(dy), np.abs(dx)
        if ady.size and max(ady.max(), adx.max()) > self.max_offset_px:
            raise InputError(f"pixels: offset beyond the tabulated {self.max_offset_px} px")
        xi = {k: t[ady, adx] for k, t in self.tables.items()}
        phi = np.arctan2(dy, dx)
        c, s = np.cos(2 * phi), np.sin(2 * phi)
        cov = _assemble(xi, c, s, c, s)
        if noise:
            same = (ady == 0) & (adx == 0)
            m, n = same.shape
            for f, var in enumerate((self.noise_var_t_uk2, self.noise_var_p_uk2, self.noise_var_p_uk2)):
                cov[f * m:(f + 1) * m, f * n:(f + 1) * n][same] += var
        return cov

    def patch(self, size, *, noise: bool = True) -> np.ndarray:
        """Covariance of every pixel of an (H, W) patch, (3HW, 3HW), fields T, Q, U, pixels row-major."""
        h, w = (size, size) if np.ndim(size) == 0 else size
        yx = np.argwhere(np.ones((int(h), int(w)), dtype=bool))
        return self.between(yx, yx, noise=noise)


class SphereTQUCovariance:
    """T, Q, U covariance of HEALPix pixels (module docstring), healpy's Q/U frame.

    ξ^TT, ξ₊, ξ₋, ξ× are tabulated on a uniform grid of θ up to ``theta_max_rad`` (step
    ``step_arcmin``) and interpolated with cubic splines (``scipy.interpolate.CubicSpline``):
    a pair of pixels costs no Wigner-d sum.

    Parameters
    ----------
    sky : Sky
    nside : int, optional
        If given, the spectra carry the HEALPix pixel window of this Nside
        (:func:`combine.sky.spectra.healpix_pixel_window`, the temperature window for all fields).
    theta_max_rad : float
        Largest separation of a pixel pair.
    step_arcmin : float
        Table step (default 1/20 of the beam FWHM or of the pixel, whichever is smaller, at least 0.05').
    """

    def __init__(self, sky: Sky, *, nside=None, theta_max_rad: float = 0.05, step_arcmin=None, pixel_window=None):
        from scipy.interpolate import CubicSpline

        self.sky = _check_sky(sky)
        if nside is not None and pixel_window is None:
            import healpy as hp

            from ..sky.spectra import healpix_pixel_window

            pixel_window = healpix_pixel_window(int(nside), self.sky.spectra_uk2()["tt"].size - 1)
            self.pixel_arcmin = hp.nside2resol(int(nside), arcmin=True)
        else:
            self.pixel_arcmin = self.sky.pixel_arcmin
        theta_max = float(theta_max_rad)
        if not 0 < theta_max <= np.pi:
            raise InputError(f"theta_max_rad: need 0 < θ <= π, got {theta_max_rad!r}")
        if step_arcmin is None:
            scale = min(x for x in (self.sky.beam_fwhm_arcmin, self.pixel_arcmin) if x > 0)
            step_arcmin = max(scale / 20.0, 0.05)
        step = float(step_arcmin) * ARCMIN_RAD
        n = int(np.ceil(theta_max / step)) + 2
        grid = np.arange(n) * step
        xi = correlations_uk2(grid, self.sky, pixel_window)
        self.theta_max_rad = grid[-1]
        self._splines = {k: CubicSpline(grid, v) for k, v in xi.items()}
        self.noise_var_t_uk2, self.noise_var_p_uk2 = noise_var_tqu_uk2(self.sky, self.pixel_arcmin)

    def correlations(self, theta_rad) -> dict[str, np.ndarray]:
        """Interpolated ξ^TT, ξ₊, ξ₋, ξ× at ``theta_rad``."""
        theta = np.asarray(theta_rad, dtype=np.float64)
        if theta.size and theta.max() > self.theta_max_rad:
            raise InputError(f"pixels: separation {theta.max():.4g} rad beyond the table's {self.theta_max_rad:.4g}")
        return {k: s(theta) for k, s in self._splines.items()}

    def between(self, a_vec, b_vec, *, noise: bool = False) -> np.ndarray:
        """(3m, 3n) covariance of unit vectors ``a_vec`` (m, 3) and ``b_vec`` (n, 3) (healpy frame).

        ``noise=True`` adds white noise (per pixel of the ``nside`` given, else of ``sky.pixel_arcmin``)
        where a pixel of ``a`` coincides with one of ``b``.
        """
        a = np.asarray(a_vec, dtype=np.float64).reshape(-1, 3)
        b = np.asarray(b_vec, dtype=np.float64).reshape(-1, 3)
        dot = np.clip(a @ b.T, -1.0, 1.0)
        # the chord keeps precision at small separations: θ = 2 asin(|a - b| / 2)
        chord = np.sqrt(np.maximum(np.sum(a * a, 1)[:, None] + np.sum(b * b, 1)[None] - 2 * (a @ b.T), 0.0))
        theta = 2 * np.arcsin(np.clip(chord / 2, 0.0, 1.0))
        xi = self.correlations(theta)
        ci, si = _frame_angles(a, b, dot, towards=True)
        cj, sj = _frame_angles(b, a, dot.T, towards=True)
        cov = _assemble(xi, ci, si, cj.T, sj.T)
        if noise:
            same = chord < 1e-6  # the same pixel (round-off leaves chords of ~1e-8 between equal vectors)
            m, n = same.shape
            for f, var in enumerate((self.noise_var_t_uk2, self.noise_var_p_uk2, self.noise_var_p_uk2)):
                cov[f * m:(f + 1) * m, f * n:(f + 1) * n][same] += var
        return cov


def _frame_angles(a, b, dot, towards=True):
    """cos 2α, sin 2α (m, n): direction at each ``a`` of the great circle to each ``b``, healpy frame."""
    z = a[:, 2]
    rho = np.sqrt(np.maximum(a[:, 0] ** 2 + a[:, 1] ** 2, 0.0))
    safe = rho > 1e-12
    cphi = np.where(safe, a[:, 0] / np.where(safe, rho, 1.0), 1.0)
    sphi = np.where(safe, a[:, 1] / np.where(safe, rho, 1.0), 0.0)
    e_theta = np.stack([z * cphi, z * sphi, -rho], axis=1)
    e_phi = np.stack([-sphi, cphi, np.zeros_like(z)], axis=1)
    t_theta = b @ e_theta.T  # (n, m): b·e_θ(a); the a-component of t is orthogonal to e_θ, e_φ
    t_phi = b @ e_phi.T
    alpha = np.arctan2(t_phi.T, t_theta.T)
    return np.cos(2 * alpha), np.sin(2 * alpha)


__all__ = ["correlations_uk2", "noise_var_tqu_uk2", "FlatTQUCovariance", "SphereTQUCovariance", "CORRELATIONS"]
