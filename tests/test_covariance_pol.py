"""T, Q, U covariance against the empirical covariance of simulated pixel pairs (flat and sphere)."""

import healpy as hp
import numpy as np
import pytest

from combine.baselines.covariance_pol import FlatTQUCovariance, SphereTQUCovariance, correlations_uk2
from combine.errors import InputError
from combine.sky import Sky
from combine.sky.polarisation import simulate_flat_tqu, simulate_healpix_tqu

#: (dy, dx) offsets: several separations and orientations (rows, columns, diagonals, oblique).
OFFSETS = [(0, 0), (0, 1), (1, 0), (1, 1), (1, -1), (2, -1), (0, 3), (3, 3), (-2, 4), (5, 1), (8, 3), (-6, 12),
           (15, 10), (0, 20), (20, 0), (14, -14)]


@pytest.fixture(scope="module")
def highpass_sky():
    """planck18 spectra tapered below ℓ ≈ 150 (the flat periodic grid lacks those modes), BB
    raised to EE/3 so that ξ₋ differs from ξ₊ and B enters the test."""
    sp = Sky.planck18().spectra_uk2()
    ell = np.arange(sp["tt"].size)
    taper = 1.0 - np.exp(-((ell / 150.0) ** 4))
    return Sky(cl_tt_uk2=sp["tt"] * taper, cl_ee_uk2=sp["ee"] * taper, cl_bb_uk2=sp["ee"] * taper / 3,
               cl_te_uk2=sp["te"] * taper, noise_uk_arcmin=2.0)


def test_flat_covariance_matches_simulated_pixel_pairs(highpass_sky):
    """Translation-averaged products over 24 independent periodic 256² grids; error from the
    scatter between grids; every T/Q/U pair at every offset within 4.5σ, and the spin-2 terms
    (ξ₋, ξ×) measured with significance, so that a wrong sign or angle would fail."""
    sky = highpass_sky
    g, n_grids = 256, 24
    cov = FlatTQUCovariance(sky, 20)
    rng = np.random.default_rng(11)
    est = np.zeros((n_grids, len(OFFSETS), 3, 3))
    for k in range(n_grids):
        f = simulate_flat_tqu(1, g, sky=sky, rng=rng, grid_px=g, min_size=2)[0].astype(np.float64)
        for o, (dy, dx) in enumerate(OFFSETS):
            shifted = np.roll(f, (-dy, -dx), axis=(1, 2))  # shifted[:, y, x] = f[:, y + dy, x + dx]
            est[k, o] = np.einsum("ayx,byx->ab", f, shifted) / (g * g)
    mean = est.mean(0)
    err = est.std(0, ddof=1) / np.sqrt(n_grids)
    theory = np.stack([cov.between([[0, 0]], [[dy, dx]], noise=True) for dy, dx in OFFSETS])
    z = (mean - theory) / err
    assert np.abs(z).max() < 4.5, np.round(z, 1)
    # the spin-2 terms are measured, not only consistent: ⟨QU'⟩ ∝ ξ₋ sin 4φ, ⟨TQ'⟩, ⟨TU'⟩ ∝ ξ×
    signif = np.abs(theory) / err
    print(np.round(signif.max(0), 1))
    assert signif[:, 1, 2].max() > 6 and signif[:, 0, 1].max() > 6 and signif[:, 0, 2].max() > 6


def test_correlations_at_zero_and_symmetry(highpass_sky):
    xi = correlations_uk2(np.array([0.0, 1e-6]), highpass_sky)
    np.testing.assert_allclose(xi["tt"][0], xi["tt"][1], rtol=1e-6)
    np.testing.assert_allclose(xi["plus"][0], xi["plus"][1], rtol=1e-6)
    assert xi["minus"][0] == 0 and xi["cross"][0] == 0
    far = correlations_uk2(np.array([1e-3]), highpass_sky)
    assert abs(xi["minus"][1]) < 1e-5 * abs(far["minus"][0]) and abs(xi["cross"][1]) < 1e-3 * abs(far["cross"][0])
    cov = FlatTQUCovariance(highpass_sky, 4)
    yx = np.argwhere(np.ones((4, 4), dtype=bool))
    c = cov.patch(4)
    np.testing.assert_allclose(c, c.T, atol=1e-12 * c.max())
    assert np.linalg.eigvalsh(c).min() > 0
    np.testing.assert_allclose(cov.between(yx[:3], yx[5:]), c[np.ix_([0, 1, 2, 16, 17, 18, 32, 33, 34],
                                                                  [j + f * 16 for f in range(3) for j in range(5, 16)])])


@pytest.fixture(scope="module")
def sphere_sky():
    """Band-limited to ℓ ≤ 47 = 3 Nside - 1 at Nside 16, so alm2map is exact: the pixel values are
    the band-limited field at the pixel centres, whose covariance is the finite Wigner-d sum."""
    sp = Sky.planck18().spectra_uk2()
    n = 48
    return Sky(cl_tt_uk2=sp["tt"][:n], cl_ee_uk2=sp["ee"][:n] * 50, cl_bb_uk2=sp["ee"][:n] * 20,
               cl_te_uk2=sp["te"][:n] * 7, beam_fwhm_arcmin=0.0, pixel_arcmin=220.0)


def test_sphere_covariance_matches_simulated_pixel_pairs(sphere_sky, single_openmp_thread):
    """Pixel pairs near the equator, at mid latitude and next to the pole, neighbours and pairs
    a few pixels apart, from 2000 Nside-16 skies; sampling error (C_aa C_bb + C_ab²)/N."""
    nside, n_maps = 16, 2000
    rng = np.random.default_rng(5)
    maps = np.stack([simulate_healpix_tqu(nside, sky=sphere_sky, pixwin=False, lmax=47, rng=rng).astype(np.float64)
                     for _ in range(n_maps)])  # (N, 3, npix)
    centres = [hp.ang2pix(nside, np.radians(t), np.radians(p)) for t, p in ((90, 10), (50, 100), (8, 200), (150, 300))]
    pairs = []
    for i in centres:
        neigh = [j for j in hp.get_all_neighbours(nside, i) if j >= 0]
        far = hp.query_disc(nside, hp.pix2vec(nside, i), np.radians(12.0))
        pairs += [(i, i)] + [(i, j) for j in neigh[::2]] + [(i, j) for j in far[::7] if j != i][:3]
    cov = SphereTQUCovariance(sphere_sky, theta_max_rad=0.5)
    z, signif = [], []
    for i, j in pairs:
        vi, vj = np.array(hp.pix2vec(nside, i)), np.array(hp.pix2vec(nside, j))
        th = cov.between(vi[None], vj[None])  # (3, 3)
        a, b = maps[:, :, i], maps[:, :, j]
        emp = a.T @ b / n_maps
        var_a = np.diag(cov.between(vi[None], vi[None]))
        var_b = np.diag(cov.between(vj[None], vj[None]))
        err = np.sqrt((np.outer(var_a, var_b) + th**2) / n_maps)
        z.append((emp - th) / err)
        signif.append(np.abs(th[1:, 1:]) / err[1:, 1:])
    z = np.array(z)
    assert np.abs(z).max() < 4.5, np.round(z, 1)
    assert np.max(signif) > 20  # Q/U cross terms are measured, not zero


def test_sphere_matches_flat_on_small_separations():
    """Near the equator a small separation along a meridian / parallel is the flat case."""
    sky = Sky.planck18(lmax=3000)
    sph = SphereTQUCovariance(sky, theta_max_rad=0.01)
    flat = FlatTQUCovariance(sky, 4)
    d = sky.pixel_arcmin * np.pi / (180 * 60)
    a = np.array([[1.0, 0.0, 0.0]])
    for dy, dx in ((0, 1), (1, 0), (2, 3)):
        # patch at (lon, lat) = (0, 0): column east (+y axis), row south (-z axis)
        b = np.array([[1.0, dx * d, -dy * d]])
        b /= np.linalg.norm(b)
        s = sph.between(a, b)
        f = flat.between([[0, 0]], [[dy, dx]])
        # healpy frame → patch frame at the equator: Q_p = -Q_h, U_p = U_h
        flip = np.diag([1.0, -1.0, 1.0])
        np.testing.assert_allclose(flip @ s @ flip, f, rtol=2e-3, atol=2e-3 * f[0, 0])


def test_sphere_noise_is_on_the_diagonal_of_equal_pixels():
    """Regression: equal unit vectors from pix2vec have a round-off chord of ~1e-8; the white
    noise must still be added on the diagonal (it was not, which ruined every sphere fill)."""
    sky = Sky.planck18(lmax=400, beam_fwhm_arcmin=30.0, noise_uk_arcmin=20.0)
    nside = 64
    cov = SphereTQUCovariance(sky.replace(pixel_arcmin=hp.nside2resol(nside, arcmin=True)), theta_max_rad=1.0)
    vec = np.array(hp.pix2vec(nside, np.arange(0, 800))).T
    with_noise = cov.between(vec, vec, noise=True)
    without = cov.between(vec, vec)
    n_t, n_p = cov.noise_var_t_uk2, cov.noise_var_p_uk2
    np.testing.assert_allclose(np.diag(with_noise - without), np.repeat([n_t, n_p, n_p], len(vec)), rtol=0, atol=1e-9 * without.max())


def test_covariance_rejects_bad_input(highpass_sky):
    with pytest.raises(InputError, match="sky"):
        FlatTQUCovariance("planck18", 4)
    cov = FlatTQUCovariance(highpass_sky, 2)
    with pytest.raises(InputError, match="offset"):
        cov.between([[0, 0]], [[0, 5]])
    with pytest.raises(InputError, match="theta_max"):
        SphereTQUCovariance(highpass_sky, theta_max_rad=-1)
