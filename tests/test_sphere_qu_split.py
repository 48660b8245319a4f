"""Split T | Q, U sphere fill (combine.sphere.split, covariance_qu): Q/U covariance against the
reference, dense exact agreement of both parts, GCR calibration and independence of the parts."""

import healpy as hp
import numpy as np
import pytest

from combine.baselines.covariance_pol import SphereTQUCovariance
from combine.errors import InputError
from combine.sky import Sky
from combine.sky.polarisation import simulate_healpix_tqu
from combine.sky.spectra import healpix_pixel_window
from combine.sphere import fill_holes
from combine.sphere.holes import hole_groups
from combine.sphere.wiener import RIDGE_REL


def _sky():
    return Sky.planck18(beam_fwhm_arcmin=240.0, noise_uk_arcmin=20.0, lmax=200)


def test_qu_covariance_matches_the_reference_q_u_block():
    """QUCorrelationTable (the A, B columns of the d² table, pixel-major Q, U) against the Q/U block
    of SphereTQUCovariance (θ-spline, arctan2 frames, field-major) on two nearby discs at Nside 32
    (pairs at every orientation, up to ~25°): agreement to 1e-6 of A(0); a sign or frame error in a
    2×2 block moves entries by O(A(0)). (The sky and separation are those of the fills below, so
    that they reuse the cached table.)"""
    import torch

    from combine.sphere.covariance_qu import QUCorrelationTable
    from combine.sphere.covariance_tqu import tqu_table

    nside = 32
    sky = _sky()
    pix = np.concatenate([hp.query_disc(nside, hp.ang2vec(0.4, 1.0), np.radians(10.0)),
                          hp.query_disc(nside, hp.ang2vec(0.5, 1.3), np.radians(6.0))])
    v = np.array(hp.pix2vec(nside, pix)).T
    n = pix.size
    ref = SphereTQUCovariance(sky, theta_max_rad=0.6, pixel_window=healpix_pixel_window(nside, 200)).between(v, v)
    ref_qu = ref[n:, n:]  # field-major Q, U block
    table = QUCorrelationTable(tqu_table(sky, nside, 0.45))
    assert table.fields == 2
    got = table.between(torch.from_numpy(v), torch.from_numpy(v)).numpy()
    got = got.reshape(n, 2, n, 2).transpose(1, 0, 3, 2).reshape(2 * n, 2 * n)  # pixel- to field-major
    scale = ref_qu[0, 0]
    assert abs(table.xi0_uk2 - scale) < 1e-6 * scale
    assert np.abs(got - ref_qu).max() < 1e-6 * scale
    assert np.abs(ref_qu[:n, n:]).max() > 0.05 * scale  # Q-U correlations are not trivially 0
    # a rectangular block written into a larger matrix (as the solver does) is the same numbers
    out = torch.zeros(2 * n + 4, 2 * 7, dtype=torch.float64)
    table.between(torch.from_numpy(v), torch.from_numpy(v[:7]), out=out[: 2 * n, :])
    np.testing.assert_allclose(out[: 2 * n].numpy(), table.between(torch.from_numpy(v), torch.from_numpy(v[:7])).numpy(),
                               rtol=0, atol=1e-12 * scale)


def _case(nside=32):
    sky = _sky()
    m = simulate_healpix_tqu(nside, sky=sky, pixwin=True, seed=3).astype(np.float64)
    mask = np.ones(hp.nside2npix(nside))
    # two close holes (one group at the T margin, two at the Q/U margin) and two far apart
    for lon, lat, r in ((10, 10, 4.0), (28, 12, 3.0), (100, -30, 5.0), (200, 60, 4.0)):
        mask[hp.query_disc(nside, hp.ang2vec(lon, lat, lonlat=True), np.radians(r))] = 0
    return sky, m, mask == 1


def _dense(sky, nside, m, valid, margin_px, fields):
    """Dense conditional mean of each group of the ``fields`` ("T" or "QU") problem alone, with
    SphereTQUCovariance's field-major blocks and the fill's documented ridge (1e-8 of the field's
    variance: at this noise level it moves T by 1e-5): {hole pixel: values}."""
    sky = sky.replace(pixel_arcmin=hp.nside2resol(nside, arcmin=True))
    cov = SphereTQUCovariance(sky, theta_max_rad=1.0, pixel_window=healpix_pixel_window(nside, 200), step_arcmin=1.0)
    groups = hole_groups(valid, nside, margin_rad=margin_px * hp.nside2resol(nside))
    rows = [0] if fields == "T" else [1, 2]
    out = {}
    for g in range(len(groups)):
        hole, ctx = groups.holes(g), groups.context(g)
        v_h, v_o = (np.array(hp.pix2vec(nside, p)).T for p in (hole, ctx))
        ih = np.concatenate([np.arange(f * hole.size, (f + 1) * hole.size) for f in rows])
        io = np.concatenate([np.arange(f * ctx.size, (f + 1) * ctx.size) for f in rows])
        c_ho = cov.between(v_h, v_o)[np.ix_(ih, io)]
        c_oo = cov.between(v_o, v_o, noise=True)[np.ix_(io, io)]
        c_oo[np.diag_indices_from(c_oo)] += RIDGE_REL * cov.between(v_o[:1], v_o[:1])[rows[0], rows[0]]  # the fill's ridge
        mean = c_ho @ np.linalg.solve(c_oo, m[rows][:, ctx].ravel())
        for k, p in enumerate(hole):
            out[int(p)] = mean.reshape(len(rows), hole.size)[:, k]
    return groups, out


def test_split_fill_equals_dense_solves_of_the_t_only_and_q_u_only_problems():
    """Nside 32: T at a 4 px margin (two close holes share a group), Q, U at 1.5 px (they do not):
    each part equals its own dense exact solve (reference covariance) to 1e-6 of the fill, whatever
    the different group orders of the two parts; valid pixels untouched."""
    nside = 32
    sky, m, valid = _case(nside)
    res = fill_holes(m, valid, sky=sky, margin_px=4.0, tqu_solve="split", margin_qu_px=1.5)
    g_t, ref_t = _dense(sky, nside, m, valid, 4.0, "T")
    g_p, ref_p = _dense(sky, nside, m, valid, 1.5, "QU")
    assert len(g_t) == 3 and len(g_p) == 4  # the parts really use different groups
    hp_ = res.groups.hole_pixels
    np.testing.assert_array_equal(np.sort(hp_), np.flatnonzero(~valid))
    want_t = np.array([ref_t[int(p)][0] for p in hp_])
    want_p = np.array([ref_p[int(p)] for p in hp_]).T
    np.testing.assert_allclose(res.mean_uk[0], want_t, rtol=0, atol=1e-6 * np.abs(want_t).max())
    np.testing.assert_allclose(res.mean_uk[1:], want_p, rtol=0, atol=1e-6 * np.abs(want_p).max())
    out = res.apply(m)
    np.testing.assert_array_equal(out[:, valid], m[:, valid])


def test_split_gcr_t_part_is_the_t_only_draw_and_q_u_draws_are_independent_of_it():
    """Nside 32: the split GCR's T is the T-only GCR of the same seed bit for bit; its Q/U draws use
    another stream, so over 40 realisations the T and Q residual draws are uncorrelated
    (|corr| < 4/sqrt(N·groups)), whereas reusing T's stream would make them correlated; the means
    are the Wiener split fill."""
    nside = 32
    sky, m, valid = _case(nside)
    R = 40
    res = fill_holes(m, valid, sky=sky, margin_px=4.0, tqu_solve="split", margin_qu_px=1.5, realisations=R, seed=9)
    t_only = fill_holes(m[0], valid, sky=sky, margin_px=4.0, realisations=R, seed=9)
    np.testing.assert_array_equal(res.draws_uk[:, 0], t_only.draws_uk)
    wf = fill_holes(m, valid, sky=sky, margin_px=4.0, tqu_solve="split", margin_qu_px=1.5)
    np.testing.assert_allclose(res.mean_uk, wf.mean_uk, rtol=0, atol=1e-9 * np.abs(wf.mean_uk).max())
    dt = (res.draws_uk[:, 0] - res.mean_uk[0]).ravel()
    dq = (res.draws_uk[:, 1] - res.mean_uk[1]).ravel()
    corr = np.corrcoef(dt, dq)[0, 1]
    # residual draws of one group are correlated across its pixels: effective samples ~ R x groups
    assert abs(corr) < 4 / np.sqrt(R * 3), corr


def test_split_gcr_error_is_twice_the_split_wiener_error(single_openmp_thread):
    """Nside 64 sky (200' beam), 150 small holes, 3 realisations from one factorisation: pooled
    E|gcr − truth|² / E|wiener − truth|² = 2 for T, Q and U within 4 block standard errors."""
    nside = 64
    sky = Sky.planck18(beam_fwhm_arcmin=200.0, noise_uk_arcmin=20.0, lmax=400)
    rng = np.random.default_rng(8)
    truth = simulate_healpix_tqu(nside, sky=sky, rng=rng).astype(np.float64)
    valid = np.ones(hp.nside2npix(nside), dtype=bool)
    for _ in range(150):
        z, lon = rng.uniform(-1, 1), rng.uniform(0, 2 * np.pi)
        vec = [np.sqrt(1 - z * z) * np.cos(lon), np.sqrt(1 - z * z) * np.sin(lon), z]
        valid[hp.query_disc(nside, vec, np.radians(1.5))] = False
    res = fill_holes(truth, valid, sky=sky, margin_px=2.0, tqu_solve="split", margin_qu_px=1.5, realisations=3, seed=4)
    x = truth[:, res.groups.hole_pixels]
    err_w = (res.mean_uk - x) ** 2
    err_g = ((res.draws_uk - x) ** 2).mean(axis=0)
    for f in range(3):
        ratio = err_g[f].mean() / err_w[f].mean()
        n_blocks = err_g.shape[1] // 40
        blocks = np.array([err_g[f, i::n_blocks].mean() / err_w[f, i::n_blocks].mean() for i in range(n_blocks)])
        se = blocks.std(ddof=1) / np.sqrt(n_blocks)
        assert abs(ratio - 2.0) < 4 * se + 0.05, (f, ratio, se)


def test_split_options_reject_bad_values():
    nside = 4
    sky = Sky.planck18(lmax=40)
    m = np.zeros((3, hp.nside2npix(nside)))
    valid = np.ones(hp.nside2npix(nside), dtype=bool)
    valid[0] = False
    with pytest.raises(InputError, match="tqu_solve"):
        fill_holes(m, valid, sky=sky, tqu_solve="both")
    with pytest.raises(InputError, match="margin_qu_px"):
        fill_holes(m, valid, sky=sky, tqu_solve="split", margin_qu_px=0.0)
    with pytest.raises(InputError, match="margin_qu_px"):
        fill_holes(m, valid, sky=sky, margin_qu_px=2.0)  # joint: no Q/U margin
    with pytest.raises(InputError, match="noise map"):
        fill_holes(m, valid, sky=sky, tqu_solve="split", noise_var_map=np.ones((2, m.shape[1])))
    with pytest.raises(InputError, match="pixels of T, of Q, U"):
        fill_holes(np.zeros((4, m.shape[1])), valid, sky=sky)
