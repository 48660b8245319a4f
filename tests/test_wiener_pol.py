"""Joint T, Q, U Wiener filter and constrained realisations on flat patches."""

import numpy as np
import pytest

from combine.baselines.covariance_pol import FlatTQUCovariance
from combine.baselines.wiener_pol import (
    DenseTQUWiener,
    get_tqu_baseline,
    tqu_gcr_fill,
    tqu_local_wiener_fill,
    tqu_wiener_fill,
)
from combine.errors import InputError
from combine.masks import circle_mask
from combine.sky import Sky
from combine.sky.polarisation import simulate_flat_tqu


@pytest.fixture(scope="module")
def sky():
    """planck18 spectra tapered below ℓ ≈ 150 (modes the flat simulation grid lacks), 2 μK·arcmin."""
    sp = Sky.planck18().spectra_uk2()
    ell = np.arange(sp["tt"].size)
    taper = 1.0 - np.exp(-((ell / 150.0) ** 4))
    return Sky(cl_tt_uk2=sp["tt"] * taper, cl_ee_uk2=sp["ee"] * taper, cl_bb_uk2=sp["bb"] * taper,
               cl_te_uk2=sp["te"] * taper, noise_uk_arcmin=2.0)


def _reference_mean(sky, patch, hole):
    """Independent dense solve :math:`C_{hv} C_{vv}^{-1} d_v` (numpy, covariance form)."""
    c = FlatTQUCovariance(sky, max(patch.shape[-2:]) - 1).patch(patch.shape[-2:], noise=True)
    h = hole.ravel()
    d = patch.astype(np.float64).ravel()
    return c[np.ix_(h, ~h)] @ np.linalg.solve(c[np.ix_(~h, ~h)], d[~h])


@pytest.mark.parametrize("radius", [2, 4, 6])
def test_dense_fill_equals_independent_dense_solve(sky, radius):
    size = 16
    patches = simulate_flat_tqu(3, size, sky=sky, seed=radius, min_size=2).astype(np.float64)
    mask = circle_mask(size, radius)
    hole = np.broadcast_to(mask == 0, (3, size, size))
    filled = tqu_wiener_fill(patches, mask, sky=sky, method="dense")
    for p, f in zip(patches, filled):
        ref = _reference_mean(sky, p, hole)
        got = f[hole]
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
        np.testing.assert_array_equal(f[~hole], p[~hole])  # valid pixels untouched


def test_local_fill_with_a_window_covering_the_patch_equals_dense(sky):
    size = 16
    patches = simulate_flat_tqu(2, size, sky=sky, seed=9, min_size=2).astype(np.float64)
    mask = circle_mask(size, 4)
    dense = tqu_wiener_fill(patches, mask, sky=sky, method="dense")
    local = tqu_local_wiener_fill(patches, mask, sky=sky, margin_px=2 * size)
    np.testing.assert_allclose(local, dense, rtol=0, atol=1e-6 * np.abs(dense).max())


def test_hole_values_are_ignored_and_per_field_masks_work(sky):
    size = 16
    p = simulate_flat_tqu(1, size, sky=sky, seed=3, min_size=2)[0]
    mask = circle_mask(size, 3)
    spoilt = p.copy()
    spoilt[:, mask == 0] = np.nan
    a = tqu_wiener_fill(p, mask, sky=sky)
    b = tqu_wiener_fill(spoilt, mask, sky=sky)
    np.testing.assert_array_equal(a, b)
    per_field = np.stack([np.ones((size, size)), mask, mask])  # T fully observed
    c = tqu_wiener_fill(p[None], per_field[None], sky=sky)[0]
    np.testing.assert_array_equal(c[0], p[0])
    assert not np.allclose(c[1:], a[1:])  # observed T in the hole changes the Q/U fill (TE)


def test_temperature_informs_polarisation_through_te(sky):
    """Conditioning on T in the hole lowers the expected Q/U error only when C^TE ≠ 0 (by 0.7 %
    for an r = 5 px hole at 0.2 μK·arcmin: the hole's Q/U are mostly predicted by the Q/U around it)."""
    size = 16
    sky = sky.replace(noise_uk_arcmin=0.2)
    mask = circle_mask(size, 5) == 0
    only_qu = np.stack([np.zeros_like(mask), mask, mask])
    all_three = np.stack([mask, mask, mask])
    joint = DenseTQUWiener((size, size), sky)
    mse_t_known = joint.expected_mse(only_qu)
    mse_t_missing = joint.expected_mse(all_three)
    assert np.all(mse_t_known[1:] < 0.997 * mse_t_missing[1:])
    no_te = DenseTQUWiener((size, size), sky.replace(cl_te_uk2=np.zeros_like(sky.cl_te_uk2)))
    np.testing.assert_allclose(no_te.expected_mse(only_qu)[1:], no_te.expected_mse(all_three)[1:], rtol=1e-8)


def test_wiener_calibration_and_gcr_twice_the_wiener_error(sky):
    """On 768 simulated 16² patches with a centred r = 3 hole: the realised Wiener MSE per field
    matches the posterior's expected MSE, and E|gcr − truth|² = 2 E|wiener − truth|² for Q and U,
    both within 4 standard errors (from the scatter between patches)."""
    size = 16
    truth = simulate_flat_tqu(768, size, sky=sky, seed=21, grid_px=256, min_size=2).astype(np.float64)
    mask = circle_mask(size, 3)
    hole = mask == 0
    wf = tqu_wiener_fill(truth, mask, sky=sky)
    gcr = tqu_gcr_fill(truth, mask, sky=sky, seed=1)
    err_w = ((wf - truth)[:, :, hole] ** 2).mean(-1)  # (N, 3)
    err_g = ((gcr - truth)[:, :, hole] ** 2).mean(-1)
    expected = DenseTQUWiener((size, size), sky).expected_mse(np.broadcast_to(hole, (3, size, size)))
    n = len(truth)
    for f in range(3):
        se = err_w[:, f].std(ddof=1) / np.sqrt(n)
        assert abs(err_w[:, f].mean() - expected[f]) < 4 * se, (f, err_w[:, f].mean(), expected[f], se)
    for f in (1, 2):
        ratio = err_g[:, f].mean() / err_w[:, f].mean()
        # delta method on the two means
        rel = np.sqrt(np.var(err_g[:, f] / err_g[:, f].mean() - err_w[:, f] / err_w[:, f].mean(), ddof=1) / n)
        assert rel < 0.1
        assert abs(ratio - 2.0) < 4 * rel * ratio, (f, ratio, rel)


def test_local_gcr_is_seeded_and_differs_from_the_mean(sky):
    size = 16
    p = simulate_flat_tqu(1, size, sky=sky, seed=4, min_size=2)
    mask = circle_mask(size, 3)
    a = tqu_gcr_fill(p, mask, sky=sky, seed=7, method="local", margin_px=6)
    b = tqu_gcr_fill(p, mask, sky=sky, seed=7, method="local", margin_px=6)
    m = tqu_wiener_fill(p, mask, sky=sky, method="local", margin_px=6)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - m).max() > 0.1


def test_bad_tqu_input_is_an_input_error(sky):
    p = np.zeros((1, 3, 16, 16), dtype=np.float32)
    mask = np.ones((16, 16))
    mask[5, 5] = 0
    with pytest.raises(InputError, match="T, Q, U"):
        tqu_wiener_fill(np.zeros((1, 2, 16, 16)), mask, sky=sky)
    with pytest.raises(InputError, match="fields"):
        tqu_wiener_fill(p, np.ones((1, 2, 16, 16)), sky=sky)
    bad = p.copy()
    bad[0, 1, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        tqu_wiener_fill(bad, mask, sky=sky)
    with pytest.raises(InputError, match="same mask"):
        tqu_wiener_fill(p, np.stack([np.ones((16, 16)), mask, mask])[None], sky=sky, method="local")
    with pytest.raises(InputError, match="method"):
        tqu_wiener_fill(p, mask, sky=sky, method="magic")
    with pytest.raises(InputError, match="no T, Q, U version"):
        get_tqu_baseline("biharmonic")
    assert get_tqu_baseline("gcr") is tqu_gcr_fill


def test_gcr_of_a_noiseless_smooth_sky_does_not_fail(sky):
    """Regression: without noise a hole's posterior covariance has eigenvalues below the Schur
    complement's round-off (Cholesky failed); the draw uses the clipped eigen-decomposition."""
    smooth = sky.replace(noise_uk_arcmin=0.0, beam_fwhm_arcmin=20.0)
    p = simulate_flat_tqu(2, 16, sky=smooth, seed=3, min_size=2)
    mask = circle_mask(16, 4)
    g = tqu_gcr_fill(p, mask, sky=smooth, seed=2, method="local", margin_px=6)
    w = tqu_wiener_fill(p, mask, sky=smooth, method="local", margin_px=6)
    assert np.all(np.isfinite(g))
    hole = mask == 0
    # the draw is at the scale of the (tiny) posterior spread, far below the field's
    assert 0 < np.abs(g - w)[:, :, hole].max() < 0.2 * np.abs(p[:, :, hole]).max()


def test_psd_sqrt_clips_round_off_negative_eigenvalues(rng):
    import torch

    from combine.baselines.wiener_pol import psd_sqrt

    a = rng.standard_normal((30, 5))
    sigma = a @ a.T  # rank 5
    sigma[np.diag_indices(30)] -= 1e-9  # round-off below zero
    s = psd_sqrt(torch.from_numpy(sigma)).numpy()
    np.testing.assert_allclose(s @ s.T, a @ a.T, atol=1e-7)


def test_noiseless_dense_fill_escalates_its_floor_and_stays_accurate(sky):
    """A noiseless sky makes the whole-patch T, Q, U covariance singular to round-off; the dense
    filter raises its diagonal floor until it factorises (it used to stop with "not positive
    definite"). The fill must still be a good conditional mean: its hole error below 1.5x the
    error the same filter predicts for itself (``expected_mse``; a floor too large to matter
    would not meet this, nor would a fill of zeros), valid pixels untouched."""
    import dataclasses

    quiet = dataclasses.replace(sky, noise_uk_arcmin=0.0, noise_pol_uk_arcmin=0.0)
    truth = simulate_flat_tqu(24, 32, sky=quiet, seed=3, min_size=2).astype(np.float64)
    mask = circle_mask(32, 4)
    filled = tqu_wiener_fill(truth, mask, sky=quiet, method="dense")
    hole = mask == 0
    err2 = ((filled - truth)[:, :, hole] ** 2).mean(axis=(0, 2))
    pred = DenseTQUWiener((32, 32), quiet).expected_mse(np.broadcast_to(hole, (3, 32, 32)))
    assert np.all(np.isfinite(filled))
    np.testing.assert_array_equal(filled[:, :, ~hole], truth[:, :, ~hole])
    assert np.all(err2 < 1.5 * pred), (err2, pred)
    assert np.all(err2 < 0.2 * (truth[:, :, hole] ** 2).mean(axis=(0, 2)))


def test_local_fill_refuses_a_hole_over_its_size_limit(sky):
    """A hole whose hole + window exceeds MAX_LOCAL_PIXELS per field is refused with an
    InputError naming the limit, before any large matrix is built."""
    from combine.baselines.wiener_pol import MAX_LOCAL_PIXELS

    patch = np.zeros((3, 128, 128), dtype=np.float32)
    with pytest.raises(InputError, match=f"limit of {MAX_LOCAL_PIXELS} pixels"):
        tqu_wiener_fill(patch, circle_mask(128, 32), sky=sky, method="local")
