"""Flat and HEALPix T, Q, U simulation, the flat E/B convention and the HEALPix → patch Q/U rotation."""

import healpy as hp
import numpy as np
import pytest

from combine.errors import InputError
from combine.metrics import default_ell_bins, ell_grid
from combine.metrics_pol import flat_spectra_tqu
from combine.sky import Sky
from combine.sky.polarisation import (
    eb_to_qu_flat,
    patch_frame_angle_rad,
    pure_e_sky,
    qu_to_eb_flat,
    rotate_qu,
    simulate_flat_tqu,
    simulate_healpix_tqu,
    tqu_patch_from_healpix,
)
from combine.sky.projection import _tangent_basis, gnomonic_pixel_centres


@pytest.fixture(scope="module")
def sky():
    return Sky.planck18(lmax=3000)


def test_plane_waves_follow_the_design_convention():
    """E = cos(k·r) with k along x (columns) is pure Q; k at 45° from x towards y (rows) is pure U."""
    n = 32
    rows, cols = np.mgrid[0:n, 0:n]
    zero = np.zeros((n, n))
    e_x = np.cos(2 * np.pi * 3 * cols / n)
    q, u = eb_to_qu_flat(e_x, zero)
    np.testing.assert_allclose(q, e_x, atol=1e-12)
    np.testing.assert_allclose(u, 0.0, atol=1e-12)
    e_diag = np.cos(2 * np.pi * 3 * (cols + rows) / n)
    q, u = eb_to_qu_flat(e_diag, zero)
    np.testing.assert_allclose(q, 0.0, atol=1e-12)
    np.testing.assert_allclose(u, e_diag, atol=1e-12)
    # B with k along x: Q = -B sin 0 = 0, U = B cos 0 = B
    q, u = eb_to_qu_flat(zero, e_x)
    np.testing.assert_allclose(q, 0.0, atol=1e-12)
    np.testing.assert_allclose(u, e_x, atol=1e-12)


def test_eb_round_trip(rng):
    n = 33  # odd: no Nyquist mode, so the transform pair is exact for any real field
    e, b = rng.standard_normal((2, 4, n, n))
    e2, b2 = qu_to_eb_flat(*eb_to_qu_flat(e, b))
    np.testing.assert_allclose(e2, e, atol=1e-12)
    np.testing.assert_allclose(b2, b, atol=1e-12)


def test_pure_e_flat_sky_has_no_b(sky):
    pe = pure_e_sky(sky)
    patches = simulate_flat_tqu(3, 64, sky=pe, seed=4, grid_px=64, min_size=2)  # each patch a whole periodic grid
    for p in patches:
        e, b = qu_to_eb_flat(p[1], p[2])
        assert np.std(e) > 1.0  # μK: there is signal
        assert np.std(b) < 1e-6 * np.std(e)  # float32 round-off only


def test_flat_spectra_match_input_within_sampling_error(sky):
    """Unapodised spectra of periodic grids against C(|k| - 1/2) B², per bin, with the exact
    sampling error (χ² of 2 degrees of freedom per complex mode)."""
    g = 48
    patches = simulate_flat_tqu(150, g, sky=sky, seed=2, grid_px=g, min_size=2)
    s = flat_spectra_tqu(patches, sky.pixel_arcmin, apodization=None)
    ell = ell_grid((g, g), sky.pixel_arcmin).ravel()
    edges = default_ell_bins((g, g), sky.pixel_arcmin)
    which = np.digitize(ell, edges) - 1
    inside = (which >= 0) & (which < edges.size - 1)
    counts = np.bincount(which[inside], minlength=edges.size - 1)
    theory = {}
    for name in ("tt", "ee", "bb", "te"):
        cl = sky.beamed_cl_uk2(name)
        vals = np.interp(ell[inside] - 0.5, np.arange(cl.size), cl, right=0.0)
        theory[name] = np.bincount(which[inside], weights=vals, minlength=edges.size - 1) / counts
    n = s["n_modes"] * len(patches)
    z_all = []
    for name in ("tt", "ee", "bb", "te"):
        mean = s[name].mean(axis=0)
        if name == "te":
            err = np.sqrt((theory["tt"] * theory["ee"] + theory["te"] ** 2) / n)
        else:
            err = theory[name] * np.sqrt(2.0 / n)
        keep = edges[1:] < sky.lmax  # the spectra end at lmax
        z_all.append((mean[keep] - theory[name][keep]) / err[keep])
    z = np.concatenate(z_all)
    assert np.abs(z).max() < 4.5, z
    assert abs(z.mean()) < 4.0 / np.sqrt(z.size)


def test_flat_noise_levels_and_polarisation_default():
    zeros = np.zeros(100)
    sky = Sky(cl_tt_uk2=zeros, beam_fwhm_arcmin=0.0, pixel_arcmin=2.0, noise_uk_arcmin=10.0)
    p = simulate_flat_tqu(8, 64, sky=sky, seed=1)
    var_t = 25.0  # (10 μK·arcmin / 2')²
    n = p[:, 0].size
    tol = 5 * np.sqrt(2.0 / n)
    assert abs(p[:, 0].var() / var_t - 1) < tol
    assert abs(p[:, 1].var() / (2 * var_t) - 1) < tol  # Q, U: √2 × the T level
    assert abs(p[:, 2].var() / (2 * var_t) - 1) < tol
    p = simulate_flat_tqu(8, 64, sky=sky.replace(noise_pol_uk_arcmin=4.0), seed=1)
    assert abs(p[:, 1].var() / 4.0 - 1) < tol


def test_simulators_reject_bad_input(sky):
    with pytest.raises(InputError, match="n_patches"):
        simulate_flat_tqu(0, 64, sky=sky)
    with pytest.raises(InputError, match="sky"):
        simulate_flat_tqu(1, 64, sky={"tt": 1})
    with pytest.raises(InputError, match="size"):
        simulate_flat_tqu(1, 16, sky=sky)
    with pytest.raises(InputError, match="nside"):
        simulate_healpix_tqu(30, sky=sky)


def test_healpix_tqu_spectra_match_input(sky):
    """anafast of 4 Nside-64 skies against the input, in bands of 10 multipoles (cosmic variance)."""
    nside, lmax = 64, 150
    small = sky.replace(beam_fwhm_arcmin=60.0)
    cls = []
    rng = np.random.default_rng(7)
    for _ in range(4):
        m = simulate_healpix_tqu(nside, sky=small, pixwin=False, lmax=lmax, rng=rng)
        cls.append(hp.anafast(m.astype(np.float64), lmax=lmax, pol=True, iter=3)[:4])
    cls = np.mean(cls, axis=0)  # (4, lmax+1): TT EE BB TE
    th = {k: small.beamed_cl_uk2(k)[: lmax + 1] for k in ("tt", "ee", "bb", "te")}
    ell = np.arange(lmax + 1)
    z = []
    for lo in range(20, 150, 10):
        band = slice(lo, lo + 10)
        nmodes = 4 * np.sum(2 * ell[band] + 1)
        for i, name in enumerate(("tt", "ee", "bb", "te")):
            t = th[name][band].mean()
            if name == "te":
                err = np.sqrt(np.mean(th["tt"][band] * th["ee"][band] + th["te"][band] ** 2) / nmodes)
            else:
                err = t * np.sqrt(2.0 / nmodes)
            z.append((cls[i][band].mean() - t) / err)
    z = np.array(z)
    assert np.abs(z).max() < 4.5, z


@pytest.mark.parametrize("lon, lat", [(0.0, 0.0), (37.0, 62.0), (200.0, -75.0), (123.0, 88.0)])
def test_rotation_matches_direct_projection_of_the_polarisation_vector(lon, lat):
    """Uniform Q_h, U_h (healpy frame): the patch's Q, U must be those of the polarisation vector
    :math:`\\cos\\psi_h \\hat e_\\theta + \\sin\\psi_h \\hat e_\\varphi` projected on the patch's
    column and row directions (computed here from the row direction, independently of the x
    direction the module uses)."""
    nside, size, pix = 64, 24, 20.0
    q0, u0 = 0.6, 0.8  # ψ_h = atan2(U, Q)/2
    maps = np.stack([np.zeros(hp.nside2npix(nside)), np.full(hp.nside2npix(nside), q0), np.full(hp.nside2npix(nside), u0)])
    patch = tqu_patch_from_healpix(maps, lon, lat, size, pix)
    psi_h = 0.5 * np.arctan2(u0, q0)
    theta, phi = gnomonic_pixel_centres(lon, lat, size, pix)
    st, ct, sp, cp = np.sin(theta), np.cos(theta), np.sin(phi), np.cos(phi)
    uvec = np.stack([st * cp, st * sp, ct])
    e_theta = np.stack([ct * cp, ct * sp, -st])
    e_phi = np.stack([-sp, cp, np.zeros_like(sp)])
    pol = np.cos(psi_h) * e_theta + np.sin(psi_h) * e_phi
    _, east, north = _tangent_basis(lon, lat)
    gx = east[:, None, None] - np.tensordot(east, uvec, axes=1) * uvec
    gy = -(north[:, None, None] - np.tensordot(north, uvec, axes=1) * uvec)  # increasing row
    gx /= np.linalg.norm(gx, axis=0)
    gy /= np.linalg.norm(gy, axis=0)
    psi_p = np.arctan2(np.sum(pol * gy, axis=0), np.sum(pol * gx, axis=0))
    p = np.hypot(q0, u0)
    # gnomonic axes are orthogonal to second order in the offset from the centre (< 4e-3 rad here)
    np.testing.assert_allclose(patch[1], p * np.cos(2 * psi_p), atol=1e-2)
    np.testing.assert_allclose(patch[2], p * np.sin(2 * psi_p), atol=1e-2)
    centre = patch_frame_angle_rad(lon, lat, 2, 0.01)
    np.testing.assert_allclose(np.cos(2 * centre), -1.0, atol=1e-4)  # x = east at the centre: α ≈ 90°


def test_rotate_qu_is_an_involution(rng):
    q, u, a = rng.standard_normal((3, 50))
    q2, u2 = rotate_qu(*rotate_qu(q, u, a), a)
    np.testing.assert_allclose(q2, q, atol=1e-12)
    np.testing.assert_allclose(u2, u, atol=1e-12)


def _bb_over_ee(patches, pix, ell_max):
    s = flat_spectra_tqu(patches, pix)
    keep = (s["ell"] > 200) & (s["ell"] < ell_max)
    return s["bb"].mean(axis=0)[keep].sum() / s["ee"].mean(axis=0)[keep].sum()


def test_pure_e_healpix_sky_cut_into_patches_has_no_extra_b(sky):
    """A pure-E Nside-256 sky cut into gnomonic patches (high latitudes, where the frame rotates
    across the patch): B/E of the apodised flat estimator equals the floor that the same estimator
    leaves on pure-E flat patches, to within 30 %; reversing the frame's rotation across the patch
    (α → 2α_centre − α) raises it several times. TE keeps its sign (E is not flipped)."""
    nside, size = 256, 32
    pix = hp.nside2resol(nside, arcmin=True)
    pe = pure_e_sky(sky.replace(beam_fwhm_arcmin=25.0, pixel_arcmin=pix, lmax=1000))
    ell_max = 1.6 * nside
    rng = np.random.default_rng(3)
    good, wrong = [], []
    for _ in range(2):
        m = simulate_healpix_tqu(nside, sky=pe, pixwin=False, rng=rng)
        for lat in (-80.0, -65.0, 65.0, 80.0):
            for lon in (0.0, 90.0, 180.0, 270.0):
                p = tqu_patch_from_healpix(m, lon, lat, size, pix)
                good.append(p)
                a = patch_frame_angle_rad(lon, lat, size, pix)
                c = a[size // 2, size // 2]
                q_h, u_h = rotate_qu(p[1], p[2], a)  # back to the healpy frame
                wrong.append(np.stack([p[0], *rotate_qu(q_h, u_h, 2 * c - a)]))
    flat = simulate_flat_tqu(64, size, sky=pe, seed=5, min_size=2)
    floor = _bb_over_ee(flat, pix, ell_max)
    r_good = _bb_over_ee(np.array(good), pix, ell_max)
    r_wrong = _bb_over_ee(np.array(wrong), pix, ell_max)
    assert r_good < 1.3 * floor, (r_good, floor)
    assert r_wrong > 2.0 * r_good, (r_wrong, r_good)
    s_hp = flat_spectra_tqu(np.array(good), pix)
    s_flat = flat_spectra_tqu(flat, pix)
    low = (s_hp["ell"] > 200) & (s_hp["ell"] < 500)  # TE < 0 ... > 0 pattern: compare its sign
    assert np.sum(s_hp["te"].mean(0)[low] * s_flat["te"].mean(0)[low]) > 0
