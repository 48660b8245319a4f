"""Sphere-native local Wiener fill and constrained realisations (combine.sphere)."""

import healpy as hp
import numpy as np
import pytest

from combine.errors import InputError
from combine.sky import Sky
from combine.sky.healpix import simulate_healpix_map
from combine.sky.spectra import healpix_pixel_window
from combine.sphere import fill_holes, gcr_fill_sphere, hole_groups, wiener_fill_sphere

NSIDE = 64
BEAM = 150.0  # arcmin: smooth at Nside 64 (55' pixels), so l <= 3 Nside - 1 holds all the power
NOISE = 30.0  # uK arcmin: (30/55)^2 = 0.3 uK^2 per pixel, far above the 1e-8 xi(0) ridge
LMAX = 3 * NSIDE - 1


@pytest.fixture(scope="module")
def sky():
    return Sky.planck18(beam_fwhm_arcmin=BEAM, noise_uk_arcmin=NOISE)


@pytest.fixture(scope="module")
def sim(sky):
    return simulate_healpix_map(NSIDE, cl_uk2=sky.cl_tt, beam_fwhm_arcmin=BEAM, noise_uk_arcmin=NOISE,
                                seed=1, lmax=LMAX).astype(np.float64)


def _valid(nside, holes):
    valid = np.ones(hp.nside2npix(nside), bool)
    for lon, lat, r_deg in holes:
        valid[hp.query_disc(nside, hp.ang2vec(lon, lat, lonlat=True), np.radians(r_deg))] = False
    return valid


def _dense_xi(sky, nside, pixels, lmax=LMAX):
    """xi at the exact separations (direct Legendre sum through Sky, no table)."""
    v = np.array(hp.pix2vec(nside, pixels)).T
    theta = 2 * np.arcsin(np.sqrt(np.clip(np.sum((v[:, None] - v[None]) ** 2, -1), 0, 4)) / 2)
    w = healpix_pixel_window(nside, lmax)
    cl = sky.beamed_cl_uk2("tt", w)[: lmax + 1]
    return np.asarray(hp.bl2beam(cl, theta.ravel())).reshape(theta.shape)


def _dense_conditional(sky, nside, hmap, holes, context, noise_var, lmax=LMAX):
    """Exact conditional mean and covariance of the holes given the context, by numpy.linalg."""
    allp = np.concatenate([holes, context])
    xi = _dense_xi(sky, nside, allp, lmax)
    nh = holes.size
    c_oo = xi[nh:, nh:] + np.diag(noise_var[context])
    c_ho = xi[:nh, nh:]
    mean = c_ho @ np.linalg.solve(c_oo, hmap[context])
    cov = xi[:nh, :nh] + np.diag(noise_var[holes]) - c_ho @ np.linalg.solve(c_oo, c_ho.T)
    return mean, cov


def _white(sky, nside):
    return np.full(hp.nside2npix(nside), (sky.noise_uk_arcmin / hp.nside2resol(nside, arcmin=True)) ** 2)


def test_fill_matches_dense_exact_solve(sky, sim):
    """Each group's fill equals the conditional mean from a dense numpy solve over the same pixels
    with xi from the direct Legendre sum. Tolerance 1e-3 of the fill's rms: the d^2 table
    (cubic, interpolation error < 1e-11 of xi(0)) amplified by condition numbers ~1e6;
    a wrong pixel window (1.6 % of xi(0) here) or noise level moves it by > 1e-2."""
    valid = _valid(NSIDE, [(10, 20, 3), (40, -30, 2), (40.5, -25, 2), (200, 70, 4)])
    res = fill_holes(sim, valid, sky=sky, margin_px=4, lmax=LMAX)
    g = res.groups
    assert len(g) == 3 and g.n_holes == 4  # the two holes 5 deg apart share a context
    for k in range(len(g)):
        mean, _ = _dense_conditional(sky, NSIDE, sim, g.holes(k), g.context(k), _white(sky, NSIDE))
        got = res.mean_uk[g.hole_start[k]:g.hole_start[k + 1]]
        rms = np.sqrt(np.mean(mean ** 2))
        assert np.max(np.abs(got - mean)) < 1e-3 * rms, (k, np.max(np.abs(got - mean)), rms)
    out = wiener_fill_sphere(sim, valid, sky=sky, margin_px=4, lmax=LMAX)
    assert np.array_equal(out[valid], sim[valid])


def test_large_margin_is_the_global_conditional_mean():
    """With a margin covering the sphere, the context is every valid pixel: the fill is the exact
    global conditional mean (dense solve over all 768 pixels of Nside 8)."""
    nside, lmax = 8, 23
    sky = Sky.planck18(beam_fwhm_arcmin=600.0, noise_uk_arcmin=400.0)
    hmap = simulate_healpix_map(nside, cl_uk2=sky.cl_tt, beam_fwhm_arcmin=600.0, noise_uk_arcmin=400.0,
                                seed=2, lmax=lmax).astype(np.float64)
    valid = _valid(nside, [(30, 10, 20)])
    res = fill_holes(hmap, valid, sky=sky, margin_px=200, lmax=lmax)
    assert res.groups.context(0).size == valid.sum()
    mean, _ = _dense_conditional(sky, nside, hmap, np.flatnonzero(~valid), np.flatnonzero(valid),
                                 _white(sky, nside), lmax)
    np.testing.assert_allclose(res.mean_uk, mean, atol=1e-3 * np.sqrt(np.mean(mean ** 2)))


def test_gcr_residual_covariance_is_the_conditional_covariance(sky, sim):
    """3000 constrained draws of a 21-pixel hole: whitened by the exact conditional covariance
    (dense solve), the residuals draw - mean are N(0, I). Checked: mean square 1 within
    4 sigma = 4 sqrt(2 / (3000 * 21)); every whitened covariance entry within 5/sqrt(3000) of I;
    and the conditional mean itself within 1e-3 rms of the dense one."""
    valid = _valid(NSIDE, [(100, -10, 2.3)])
    R = 3000
    res = fill_holes(sim, valid, sky=sky, margin_px=4, lmax=LMAX, realisations=R, seed=7)
    g = res.groups
    mean, cov = _dense_conditional(sky, NSIDE, sim, g.holes(0), g.context(0), _white(sky, NSIDE))
    assert g.holes(0).size == 21
    L = np.linalg.cholesky(cov)
    white = np.linalg.solve(L, (res.draws_uk - res.mean_uk).T)  # (n, R)
    n = white.shape[0]
    assert abs(np.mean(white ** 2) - 1) < 4 * np.sqrt(2 / (R * n))
    emp = white @ white.T / R
    assert np.max(np.abs(emp - np.eye(n))) < 5 / np.sqrt(R)
    assert np.max(np.abs(res.mean_uk - mean)) < 1e-3 * np.sqrt(np.mean(mean ** 2))


def test_gcr_reproducible_and_independent_of_threads(sky, sim):
    valid = _valid(NSIDE, [(10, 20, 3), (200, 70, 4), (300, -60, 2)])
    a = gcr_fill_sphere(sim, valid, sky=sky, seed=5, lmax=LMAX, threads=1)
    b = gcr_fill_sphere(sim, valid, sky=sky, seed=5, lmax=LMAX, threads=2)
    c = gcr_fill_sphere(sim, valid, sky=sky, seed=6, lmax=LMAX, threads=2)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    assert np.array_equal(a[valid], sim[valid])
    assert np.sqrt(np.mean((a - c)[~valid] ** 2)) > 1.0  # another seed, another draw (uK)


def test_noise_map_enters_the_fill(sky, sim):
    """A noise map 1e4 times the white level around one hole: the fill equals the dense solve with
    that noise map, and it differs from the white-noise fill (it trusts the noisy pixels less)."""
    valid = _valid(NSIDE, [(10, 20, 3)])
    noise = _white(sky, NSIDE)
    noisy = hp.query_disc(NSIDE, hp.ang2vec(10, 20, lonlat=True), np.radians(8))
    noise[noisy] *= 1e4
    res = fill_holes(sim, valid, sky=sky, margin_px=4, lmax=LMAX, noise_var_map=noise)
    white = fill_holes(sim, valid, sky=sky, margin_px=4, lmax=LMAX)
    mean, _ = _dense_conditional(sky, NSIDE, sim, res.groups.holes(0), res.groups.context(0), noise)
    rms = np.sqrt(np.mean(mean ** 2))
    assert np.max(np.abs(res.mean_uk - mean)) < 1e-3 * rms
    assert np.sqrt(np.mean((res.mean_uk - white.mean_uk) ** 2)) > 0.05 * rms
    with pytest.raises(InputError, match="noise map"):
        fill_holes(sim, valid, sky=sky, noise_var_map=noise[:-12])


def test_hole_groups_contexts():
    """Context = valid pixels within r_h + m of the hole centre; overlapping contexts merge."""
    nside = 512
    valid = _valid(nside, [(0, 0, 0.5), (1.6, 0, 0.5), (90, 0, 0.5)])
    margin = np.radians(0.4)
    g = hole_groups(valid, nside, margin_rad=margin)
    assert len(g) == 2 and g.n_holes == 3  # 1.6 deg apart < 2 (0.5 deg + pixrad) + 2 * 0.4 deg
    for k in range(len(g)):
        assert valid[g.context(k)].all() and not valid[g.holes(k)].any()
    far = g.context(1)
    centre = hp.ang2vec(90, 0, lonlat=True)
    dist = np.degrees(np.arccos(np.clip(np.array(hp.pix2vec(nside, far)).T @ centre, -1, 1)))
    r_h = 0.5 + np.degrees(hp.max_pixrad(nside))
    assert dist.max() <= r_h + 0.4 + 1e-6 and dist.max() > r_h + 0.4 - np.degrees(hp.nside2resol(nside))
    g_small = hole_groups(valid, nside, margin_rad=np.radians(0.1))
    assert len(g_small) == 3  # 1.6 > 2 (0.5 + pixrad) + 2 * 0.1
    with pytest.raises(InputError, match="too large"):
        hole_groups(valid, nside, margin_rad=margin, max_group_pixels=100)


def test_scaled_chords_keep_the_precision_of_small_separations():
    """d² of neighbouring Nside-8192 pixels (d² ~ 2e-8) from the centred product: within 1e-11 of
    the long-double |a - b|², where 2 - 2 a·b loses ~1e-8 of it (the cancellation it replaces)."""
    import torch

    from combine.sphere.covariance import scaled_chords

    nside = 8192
    pix = hp.query_disc(nside, hp.ang2vec(37, 41, lonlat=True), 4 * hp.nside2resol(nside))
    v = np.stack(hp.pix2vec(nside, pix), 1)
    exact = ((v[:, None].astype(np.longdouble) - v[None]) ** 2).sum(-1).astype(np.float64)
    off = ~np.eye(v.shape[0], dtype=bool)
    t = torch.from_numpy(v)
    got = scaled_chords(t[:20], t, 3.0, torch.empty(20, v.shape[0], dtype=torch.float64)).numpy() / 3.0
    assert np.max(np.abs(got - exact[:20])[off[:20]] / exact[:20][off[:20]]) < 1e-11
    assert np.max(np.abs(np.diag(got[:, :20]))) < 1e-20
    naive = 2.0 - 2.0 * v @ v.T
    assert np.max(np.abs(naive - exact)[off] / exact[off]) > 1e-10


@pytest.mark.parametrize("lapack", [True, False])
def test_factor_in_place_and_its_ridge(lapack):
    """_factor (LAPACK in place, or torch's fallback): U (upper, zeros below) with UᵀU = A to rounding
    for a PD A; for a rank-5 A the smallest tenfold ridge from 1e-7·scale that makes it PD is added
    (UᵀU - A is r·I, 1e-7 <= r/scale <= 1e-3); an indefinite A is refused."""
    import torch

    from combine.sphere.wiener import _factor

    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 40))
    a = x @ x.T + 40 * np.eye(40)
    c = torch.from_numpy(np.triu(a) + np.tril(np.full((40, 40), np.nan), -1))  # nothing read below
    _factor(c, None, 1.0, lapack)
    u = c.numpy()
    assert np.array_equal(np.tril(u, -1), np.zeros((40, 40)))
    assert np.max(np.abs(u.T @ u - a)) < 1e-12 * np.abs(a).max()

    low = rng.standard_normal((40, 5))
    a = low @ low.T
    c = torch.empty(40, 40, dtype=torch.float64)
    scale = float(np.diag(a).mean())

    def refill():
        c.copy_(torch.from_numpy(np.triu(a)))

    refill()
    _factor(c, refill, scale, lapack)
    u = c.numpy()
    ridge = (u.T @ u - a) / scale
    r = float(np.mean(np.diag(ridge)))
    assert 1e-7 * 0.99 <= r <= 1e-3 and np.max(np.abs(ridge - r * np.eye(40))) < 1e-9
    c.copy_(torch.from_numpy(np.triu(-np.eye(40))))
    with pytest.raises(RuntimeError, match="not positive definite"):
        _factor(c, lambda: c.copy_(torch.from_numpy(-np.eye(40))), 1.0, lapack)


def test_gcr_mean_from_the_joint_factor_is_the_wiener_mean(sky, sim):
    """The realisations' mean L21 L11⁻¹ d (one factor of the joint [context, holes] covariance)
    equals the Wiener path's C_ho (C_oo + N)⁻¹ d to 1e-9 of its rms (Nside 64, well conditioned)."""
    valid = _valid(NSIDE, [(10, 20, 3), (40, -30, 2), (40.5, -25, 2)])
    w = fill_holes(sim, valid, sky=sky, margin_px=4, lmax=LMAX)
    g = fill_holes(sim, valid, sky=sky, margin_px=4, lmax=LMAX, realisations=2, seed=3)
    rms = np.sqrt(np.mean(w.mean_uk ** 2))
    assert np.max(np.abs(g.mean_uk - w.mean_uk)) < 1e-9 * rms
    noise_rms = NOISE / hp.nside2resol(NSIDE, arcmin=True)  # N_h enters the draw: at least this scatter
    assert np.sqrt(np.mean((g.draws_uk - g.mean_uk) ** 2)) > 0.8 * noise_rms


def test_table_end_row_is_the_last_grid_value(sky):
    """The look-up at the table's last grid point (x = points - 1, no index clamping) uses the end
    row of with_end_row: it returns the tabulated value there (a copy of the last interval's row
    would return the value one grid step earlier, ~1e-4 of xi(0) away at this grid)."""
    import torch

    from combine.sphere.covariance import CorrelationTable

    table = CorrelationTable(sky, NSIDE, 0.3, lmax=LMAX)
    last = float(table.values_uk2[-1])
    assert abs(last - float(table.values_uk2[-2])) > 1e-6 * table.xi0_uk2  # the test can tell them apart
    got = table(torch.tensor([table.d2_max, table.d2_max * (1 - 1e-14)], dtype=torch.float64))
    assert np.all(np.abs(got.numpy() - last) < 1e-9 * table.xi0_uk2)
