"""Polarised skies: T, Q, U on flat patches and on HEALPix, and the flat E/B ↔ Q/U transforms.

Conventions (docs/DESIGN.md, "Polarisation")
---------------------------------------
Patches are ``P[field, row, col]`` with fields T, Q, U in μK. On a flat patch **x runs along
increasing column and y along increasing row**; with :math:`\\varphi` the angle of the
wavevector :math:`(\\ell_x, \\ell_y)` from x towards y,

.. math::

    Q(\\boldsymbol\\ell) = E(\\boldsymbol\\ell)\\cos 2\\varphi - B(\\boldsymbol\\ell)\\sin 2\\varphi, \\qquad
    U(\\boldsymbol\\ell) = E(\\boldsymbol\\ell)\\sin 2\\varphi + B(\\boldsymbol\\ell)\\cos 2\\varphi ,

and the inverse :math:`E = Q\\cos 2\\varphi + U\\sin 2\\varphi`, :math:`B = -Q\\sin 2\\varphi + U\\cos 2\\varphi`.
Equivalently Q, U are the Stokes parameters in the basis :math:`(\\hat e_x, \\hat e_y)`: a
polarisation direction at angle :math:`\\psi` from x towards y has :math:`Q + iU = P e^{2i\\psi}`.

HEALPix maps follow healpy (and Planck): Q, U in the basis :math:`(\\hat e_\\theta, \\hat e_\\varphi)`
(south, east), angle measured from :math:`\\hat e_\\theta` towards :math:`\\hat e_\\varphi` (the "COSMO"
convention, U of opposite sign to IAU). A gnomonic patch (:mod:`combine.sky.projection`: column
east, row south) has, at each pixel, its x direction at an angle :math:`\\alpha` from
:math:`\\hat e_\\theta` towards :math:`\\hat e_\\varphi` (:math:`\\alpha = 90°` at the centre of the
patch: x = east), and y = x rotated towards south, i.e. towards *decreasing* healpy angle. So
:math:`\\psi_{patch} = \\alpha - \\psi_{healpy}` and

.. math::

    Q_p + iU_p = e^{2i\\alpha}\\,(Q_h - iU_h) \\qquad(\\text{its own inverse}).

At the patch centre this is :math:`Q_p = -Q_h`, :math:`U_p = U_h`; elsewhere :math:`\\alpha` differs
from 90° by the convergence of meridians across the patch. The patch frame is the mirror image
of healpy's (it is left-handed seen from outside the sphere, like the map view of the
projection), which maps E to E and B to −B: spectra EE, BB, TE are unchanged.

Flat simulation
---------------
As :mod:`combine.sky.flat`: on a periodic grid of ``G`` pixels (default ``>= 8 × size``) with
:math:`C_\\ell` taken at :math:`\\ell = |\\mathbf k| - 1/2`,

.. math::

    T = a\\sqrt{C^{TT}}, \\quad
    E = a\\,\\frac{C^{TE}}{\\sqrt{C^{TT}}} + b\\sqrt{C^{EE} - (C^{TE})^2/C^{TT}}, \\quad
    B = c\\sqrt{C^{BB}}

(beam-convolved spectra, :math:`a, b, c` the FFTs of independent unit white noise, over
:math:`\\Delta`), then Q, U by the relation above. The Nyquist row and column of the grid are
set to zero in all fields (their wavevector angle has no Hermitian-symmetric value; a 5' beam
leaves < 1e-6 of the power there), so that the E/B transforms of the periodic grid are exact.
White noise: :math:`\\sigma_T` = ``noise_uk_arcmin / pixel_arcmin`` on T and
:math:`\\sigma_P` = ``noise_qu_uk_arcmin / pixel_arcmin`` (√2 σ_T unless set) on Q and U.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from ..errors import InputError
from .defaults import MIN_PATCH_SIZE
from .flat import ARCMIN_RAD, grid_side_px
from .model import Sky

FIELDS = ("T", "Q", "U")


# -- flat E/B <-> Q/U -------------------------------------------------------------------------
def wavevector_angle_rad(shape) -> tuple[np.ndarray, np.ndarray]:
    """``(cos 2φ, sin 2φ)`` of the FFT wavevectors of an (H, W) grid (numpy ``fft2`` layout).

    :math:`\\varphi = \\mathrm{atan2}(k_y, k_x)` with :math:`k_x` along columns (axis −1) and
    :math:`k_y` along rows (axis −2); the zero mode gets φ = 0.
    """
    h, w = int(shape[-2]), int(shape[-1])
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.fftfreq(w)[None, :]
    phi = np.arctan2(ky, kx)
    return np.cos(2 * phi), np.sin(2 * phi)


def _check_pair(a, b, names):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim < 2:
        raise InputError(f"{names}: need two arrays of the same shape (..., H, W), got {a.shape} and {b.shape}")
    return a, b


def qu_to_eb_flat(q, u) -> tuple[np.ndarray, np.ndarray]:
    """Flat-sky E and B maps of periodic Q, U maps (..., H, W):
    :math:`E = \\mathcal F^{-1}[\\hat Q\\cos 2\\varphi + \\hat U\\sin 2\\varphi]`,
    :math:`B = \\mathcal F^{-1}[-\\hat Q\\sin 2\\varphi + \\hat U\\cos 2\\varphi]` (float64).

    The patch is treated as periodic: on a cut (non-periodic) patch, apodise first
    (:func:`combine.metrics_pol.flat_spectra_tqu`).
    """
    q, u = _check_pair(q, u, "q, u")
    c, s = wavevector_angle_rad(q.shape)
    qf, uf = np.fft.fft2(q), np.fft.fft2(u)
    e = np.fft.ifft2(qf * c + uf * s).real
    b = np.fft.ifft2(-qf * s + uf * c).real
    return e, b


def eb_to_qu_flat(e, b) -> tuple[np.ndarray, np.ndarray]:
    """Q, U maps of flat E, B maps (..., H, W): the DESIGN relation
    :math:`\\hat Q = \\hat E\\cos 2\\varphi - \\hat B\\sin 2\\varphi`, :math:`\\hat U = \\hat E\\sin 2\\varphi + \\hat B\\cos 2\\varphi`."""
    e, b = _check_pair(e, b, "e, b")
    c, s = wavevector_angle_rad(e.shape)
    ef, bf = np.fft.fft2(e), np.fft.fft2(b)
    q = np.fft.ifft2(ef * c - bf * s).real
    u = np.fft.ifft2(ef * s + bf * c).real
    return q, u


# -- spectra helpers --------------------------------------------------------------------------
def pure_e_sky(sky: Sky) -> Sky:
    """``sky`` with its spectra made explicit and :math:`C^{BB}_\\ell = 0` (a pure-E sky)."""
    spectra = sky.spectra_uk2()
    return sky.replace(cl_tt_uk2=spectra["tt"], cl_ee_uk2=spectra["ee"], cl_te_uk2=spectra["te"],
                       cl_bb_uk2=np.zeros_like(spectra["bb"]), preset=None)


def beamed_spectra_uk2(sky: Sky, pixel_window=None) -> dict[str, np.ndarray]:
    """``{"tt", "ee", "bb", "te"}``: :math:`C_\\ell B_\\ell^2 [W_\\ell^2]` from :meth:`Sky.beamed_cl_uk2`."""
    return {name: sky.beamed_cl_uk2(name, pixel_window) for name in ("tt", "ee", "bb", "te")}


def _cholesky_amplitudes(tt, ee, bb, te):
    """Lower-triangular factor of the (T, E) covariance per mode, and √BB (arrays broadcast).

    .. math:: L = \\begin{pmatrix}\\sqrt{TT} & 0\\\\ TE/\\sqrt{TT} & \\sqrt{EE - TE^2/TT}\\end{pmatrix}

    Where TT = 0 the T–E coupling is dropped (E alone).
    """
    tt = np.clip(tt, 0.0, None)
    a_tt = np.sqrt(tt)
    with np.errstate(divide="ignore", invalid="ignore"):
        a_te = np.where(tt > 0, te / np.where(tt > 0, a_tt, 1.0), 0.0)
    a_ee = np.sqrt(np.clip(ee - a_te**2, 0.0, None))
    return a_tt, a_te, a_ee, np.sqrt(np.clip(bb, 0.0, None))


# -- flat TQU simulation ----------------------------------------------------------------------
def _grid_amplitudes(sky: Sky, grid_px: int):
    """Per-mode amplitudes (rfft2 half plane) and (cos 2φ, sin 2φ), with Nyquist modes zeroed."""
    delta = sky.pixel_arcmin * ARCMIN_RAD
    ky = 2 * np.pi * np.fft.fftfreq(grid_px, d=delta)[:, None]
    kx = 2 * np.pi * np.fft.rfftfreq(grid_px, d=delta)[None, :]
    ell = np.sqrt(ky**2 + kx**2)
    spectra = beamed_spectra_uk2(sky)
    lgrid = np.arange(spectra["tt"].size)
    power = {k: np.interp(ell - 0.5, lgrid, v, right=0.0) / delta**2 for k, v in spectra.items()}
    amps = _cholesky_amplitudes(power["tt"], power["ee"], power["bb"], power["te"])
    zero = np.zeros_like(ell, dtype=bool)
    zero[0, 0] = True
    if grid_px % 2 == 0:
        zero[grid_px // 2, :] = True
        zero[:, -1] = True
    for a in amps:
        a[zero] = 0.0
    phi = np.arctan2(ky, kx) * np.ones_like(ell)
    return amps, np.cos(2 * phi), np.sin(2 * phi)


def _check_sim_args(n_patches, size, seed, rng):
    if int(n_patches) != n_patches or int(n_patches) < 1:
        raise InputError(f"n_patches: must be a positive integer, got {n_patches!r}")
    if int(size) != size or int(size) < 2:
        raise InputError(f"size: patch side must be an integer >= 2, got {size!r}")
    if seed is not None and rng is not None:
        raise InputError("seed: give either seed or rng, not both")
    return int(n_patches), int(size), (np.random.default_rng(seed) if rng is None else rng)


def simulate_flat_tqu(n_patches, size=128, *, sky: Sky, seed=None, rng=None, grid_px=None,
                      min_size=MIN_PATCH_SIZE) -> np.ndarray:
    """Gaussian T, Q, U patches (μK) on the flat sky, with the TE correlation (module docstring).

    Parameters
    ----------
    n_patches, size : int
        Number of patches and their side (>= ``min_size``, 64 by default; tests pass smaller).
    sky : Sky
        Spectra (TT, EE, BB, TE), beam, pixel size and white noise (T; Q/U from
        :attr:`Sky.noise_qu_uk_arcmin`). A per-pixel noise map is not supported here.
    seed, rng
        Seed or numpy Generator (not both).
    grid_px : int, optional
        Side of the periodic grid (default ``grid_side_px(size)``, >= 8 × size). With
        ``grid_px == size`` each patch is a whole periodic grid (its E/B transform is exact).

    Returns
    -------
    ndarray, float32, (n_patches, 3, size, size): T, Q, U.
    """
    n_patches, size, rng = _check_sim_args(n_patches, size, seed, rng)
    if size < int(min_size):
        raise InputError(f"size: patch side must be >= {int(min_size)}, got {size}")
    if not isinstance(sky, Sky):
        raise InputError(f"sky: expected a combine.sky.Sky, got {type(sky).__name__}")
    if sky.noise_var_uk2 is not None:
        raise InputError("sky: per-pixel noise maps are not supported by the flat TQU simulator")
    grid_px = grid_side_px(size) if grid_px is None else int(grid_px)
    if grid_px < size:
        raise InputError(f"grid_px: must be >= size ({size}), got {grid_px}")
    per_side = grid_px // size
    (a_tt, a_te, a_ee, a_bb), c2, s2 = _grid_amplitudes(sky, grid_px)
    sigma_t = sky.noise_uk_arcmin / sky.pixel_arcmin
    sigma_p = sky.noise_qu_uk_arcmin / sky.pixel_arcmin
    out = np.empty((n_patches, 3, size, size), dtype=np.float32)
    made = 0
    while made < n_patches:
        white = rng.standard_normal((3, grid_px, grid_px))
        f1, f2, f3 = scipy.fft.rfft2(white, workers=2)
        t_f = f1 * a_tt
        e_f = f1 * a_te + f2 * a_ee
        b_f = f3 * a_bb
        fields = np.stack([t_f, e_f * c2 - b_f * s2, e_f * s2 + b_f * c2])
        grid = scipy.fft.irfft2(fields, s=(grid_px, grid_px), workers=2)
        take = min(per_side * per_side, n_patches - made)
        blocks = grid[:, : per_side * size, : per_side * size].reshape(3, per_side, size, per_side, size)
        blocks = blocks.transpose(1, 3, 0, 2, 4).reshape(per_side * per_side, 3, size, size)
        out[made:made + take] = blocks[:take]
        if sigma_t > 0 or sigma_p > 0:
            noise = rng.standard_normal((take, 3, size, size))
            noise[:, 0] *= sigma_t
            noise[:, 1:] *= sigma_p
            out[made:made + take] += noise.astype(np.float32)
        made += take
    return out


# -- HEALPix TQU ------------------------------------------------------------------------------
def simulate_healpix_tqu(nside, *, sky: Sky, pixwin: bool = True, lmax=None, seed=None, rng=None) -> np.ndarray:
    """A full-sky T, Q, U map (μK, RING, float32, shape (3, 12 Nside²)) in healpy's convention.

    :math:`a^T, a^E, a^B` are drawn with the Cholesky factor of :func:`_cholesky_amplitudes`
    from three independent sets of unit :math:`a_{\\ell m}` (:func:`combine.sky.healpix.synthesize_alm`,
    seeded; numpy's global state untouched), multiplied by the beam and, if ``pixwin``, by the
    temperature pixel window of :func:`combine.sky.spectra.healpix_pixel_window` (used for Q, U
    too: the polarisation window differs from it by < 1 % below ℓ = 2 Nside), and synthesised
    with ``healpy.alm2map(..., pol=True)``. White noise: ``sky.noise_uk_arcmin`` on T and
    ``sky.noise_qu_uk_arcmin`` on Q, U, per pixel of side :math:`\\sqrt{4\\pi/N_{pix}}`.
    """
    import healpy as hp

    from .healpix import _check_nside, synthesize_alm
    from .spectra import healpix_pixel_window

    nside = _check_nside(nside)
    _, _, rng = _check_sim_args(1, 2, seed, rng)
    spectra = sky.spectra_uk2()
    n_ell = spectra["tt"].size
    lmax = min(3 * nside - 1, n_ell - 1) if lmax is None else int(lmax)
    if not 2 <= lmax <= n_ell - 1:
        raise InputError(f"lmax: must lie in [2, {n_ell - 1}], got {lmax}")
    window = healpix_pixel_window(nside, lmax) if pixwin else None
    beamed = {k: v[: lmax + 1] for k, v in beamed_spectra_uk2(sky, window).items()}
    a_tt, a_te, a_ee, a_bb = _cholesky_amplitudes(beamed["tt"], beamed["ee"], beamed["bb"], beamed["te"])
    ones = np.ones(lmax + 1)
    g = [synthesize_alm(ones, lmax, rng) for _ in range(3)]
    alm_t = hp.almxfl(g[0], a_tt)
    alm_e = hp.almxfl(g[0], a_te) + hp.almxfl(g[1], a_ee)
    alm_b = hp.almxfl(g[2], a_bb)
    tqu = np.array(hp.alm2map([alm_t, alm_e, alm_b], nside, lmax=lmax, pol=True), dtype=np.float32)
    if sky.noise_uk_arcmin > 0 or sky.noise_qu_uk_arcmin > 0:
        res = hp.nside2resol(nside, arcmin=True)
        sig = np.array([sky.noise_uk_arcmin, sky.noise_qu_uk_arcmin, sky.noise_qu_uk_arcmin]) / res
        tqu += (sig[:, None] * rng.standard_normal(tqu.shape)).astype(np.float32)
    return tqu


def patch_frame_angle_rad(lon_deg, lat_deg, size, pixel_arcmin) -> np.ndarray:
    """Angle α (radians, (size, size)) of each patch pixel's x direction (increasing column) in
    healpy's basis, from :math:`\\hat e_\\theta` towards :math:`\\hat e_\\varphi`.

    The x direction at sky position :math:`\\hat u` is :math:`\\partial\\hat u/\\partial x \\propto
    \\hat e - (\\hat u\\cdot\\hat e)\\hat u` (:math:`\\hat u \\propto \\hat n_0 + x\\hat e + y\\hat n`);
    :math:`\\alpha = \\mathrm{atan2}(g\\cdot\\hat e_\\varphi, g\\cdot\\hat e_\\theta)`.
    """
    from .projection import _check_geometry, _tangent_basis, gnomonic_pixel_centres

    lon, lat, size, pix = _check_geometry(lon_deg, lat_deg, size, pixel_arcmin)
    _, east, _ = _tangent_basis(lon, lat)
    theta, phi = gnomonic_pixel_centres(lon, lat, size, pix)
    st, ct, sp, cp = np.sin(theta), np.cos(theta), np.sin(phi), np.cos(phi)
    u = np.stack([st * cp, st * sp, ct])
    e_theta = np.stack([ct * cp, ct * sp, -st])
    e_phi = np.stack([-sp, cp, np.zeros_like(sp)])
    g = east[:, None, None] - np.tensordot(east, u, axes=1)[None] * u
    return np.arctan2(np.sum(g * e_phi, axis=0), np.sum(g * e_theta, axis=0))


def rotate_qu(q, u, alpha_rad) -> tuple[np.ndarray, np.ndarray]:
    """:math:`Q' + iU' = e^{2i\\alpha}(Q - iU)`: healpy frame → patch frame, and back (an involution).

    .. math:: Q' = Q\\cos 2\\alpha + U\\sin 2\\alpha, \\qquad U' = Q\\sin 2\\alpha - U\\cos 2\\alpha
    """
    c, s = np.cos(2 * alpha_rad), np.sin(2 * alpha_rad)
    return q * c + u * s, q * s - u * c


def tqu_patch_from_healpix(tqu_map, lon_deg, lat_deg, size, pixel_arcmin, nest=False) -> np.ndarray:
    """Gnomonic T, Q, U patch (3, size, size), float64, with Q/U rotated into the patch frame.

    Each field is interpolated by :func:`combine.sky.projection.patch_from_healpix` (bilinear,
    healpy frame), then :func:`rotate_qu` with :func:`patch_frame_angle_rad`. (Interpolating the
    components in the healpy frame of each neighbour ignores the basis rotation between
    neighbouring pixel centres, an error of order the pixel size over the distance to the pole.)
    """
    from .projection import patch_from_healpix

    tqu_map = np.asarray(tqu_map)
    if tqu_map.ndim != 2 or tqu_map.shape[0] != 3:
        raise InputError(f"map: expected T, Q, U maps of shape (3, Npix), got {tqu_map.shape}")
    t, q, u = (patch_from_healpix(m, lon_deg, lat_deg, size, pixel_arcmin, nest=nest) for m in tqu_map)
    qp, up = rotate_qu(q, u, patch_frame_angle_rad(lon_deg, lat_deg, size, pixel_arcmin))
    return np.stack([t, qp, up])


__all__ = [
    "FIELDS",
    "qu_to_eb_flat",
    "eb_to_qu_flat",
    "wavevector_angle_rad",
    "pure_e_sky",
    "beamed_spectra_uk2",
    "simulate_flat_tqu",
    "simulate_healpix_tqu",
    "patch_frame_angle_rad",
    "rotate_qu",
    "tqu_patch_from_healpix",
]
