"""The shipped model ``planck18-t128``: loadable by name, self-contained (no CAMB, no cache), the
same output as the code path it was trained with, and a regression guard on its weights.
"""

import sys

import numpy as np
import pytest
import scipy.ndimage as ndi

import combine
from combine.baselines.local_wiener import local_wiener_fill
from combine.masks import circle_mask, generate_masks
from combine.models import PRETRAINED_DIR, list_pretrained
from combine.sky import Sky
from combine.sky.flat import simulate_flat_patches

NAME = "planck18-t128"
SKY = Sky.planck18(noise_uk_arcmin=1.0)



@pytest.fixture(scope="module")
def model():
    return combine.load_model(NAME)


@pytest.fixture(scope="module")
def patches():
    # independent of the training stream (seed 18) and of the margin benchmark (seed 2026)
    return simulate_flat_patches(8, size=128, noise_uk_arcmin=SKY.noise_uk_arcmin, seed=20261201)


def _rmse_hole(filled, truth, mask):
    hole = np.broadcast_to(mask < 0.5, truth.shape)
    return float(np.sqrt(np.mean((filled[hole] - truth[hole]) ** 2)))


def test_shipped_model_is_listed_small_and_self_described(model):
    assert NAME in list_pretrained()
    size_mb = sum(p.stat().st_size for p in (PRETRAINED_DIR / NAME).iterdir()) / 2 ** 20
    assert size_mb < 20
    cfg = model.config
    assert cfg["architecture"]["preset"] == "t128-lw" and cfg["architecture"]["prefill"] == "lwiener"
    assert model.patch_size == 128 and model.pixel_arcmin == pytest.approx(1.7177)
    assert cfg["loss"]["preset"] == "pixel"
    import combine.nn.losses as losses  # its docstring names the shipped model's loss preset

    bullet = next(b for b in losses.__doc__.split("* ``")[1:] if b.startswith(f"{cfg['loss']['preset']}``"))
    assert "shipped" in bullet and sum("shipped" in b for b in losses.__doc__.split("* ``")[1:]) == 1
    assert Sky.from_model_dir(PRETRAINED_DIR / NAME).beam_fwhm_arcmin == 5.0
    fg = cfg["first_guess"]
    assert fg["kind"] == "lwiener" and Sky.from_json(fg["sky"]) == Sky.planck18(noise_uk_arcmin=1.0)
    assert (PRETRAINED_DIR / NAME / fg["tensors"]).is_file()
    stages = cfg["shipped"]["stages"]
    assert stages[0]["stage"] == 1 and stages[-1]["stage"] == 2 and cfg["encoder_bn_frozen"] is True


def _old_path_input():
    rng = np.random.default_rng(12)
    x = np.stack([ndi.gaussian_filter(rng.standard_normal((128, 128)), 2.0, mode="wrap") * 250.0
                  for _ in range(3)]).astype(np.float32)
    m = np.stack([circle_mask(128, 8.0), generate_masks("points", 1, 128, seed=3)[0],
                  circle_mask(128, 20.0, center=(40, 90))]).astype(np.float32)
    return x, m


#: The old code path's output on _old_path_input() (commit 362f94c, first guess computed inside
#: PConvUNet.forward by local_wiener_fill with the default sky from CAMB): per map the number of
#: hole pixels, the sum and sum of squares of the hole values (μK, μK²), and the first three.
OLD_PATH = [
    (201, 2773.302327543497, 129162.10038917678, (1.1693867445, 14.3145132065, 26.7901000977)),
    (648, 9030.918228462338, 755312.8375047939, (19.0429267883, 37.0755119324, 56.2096099854)),
    (1257, -30042.81033732742, 2260981.935409394, (20.9426498413, 7.2563142776, 12.034277916)),
]


def test_runs_without_camb_or_cache_and_matches_the_old_code_path(model, tmp_path, monkeypatch):
    """load_model + inpaint with CAMB unimportable and an empty cache directory: (a) with the
    8 px / 3000 px first guess the model was trained with, the output equals the old code path's
    (OLD_PATH, 1e-3 μK: float32 rounding); (b) with the stored first guess it equals the network
    on the default-sky local_wiener_fill of the stored window (the CAMB path) to 1e-3 μK."""
    from combine.baselines.local_wiener import local_wiener_fill_table

    x, m = _old_path_input()
    stored = model.config["first_guess"]
    ref_fg = local_wiener_fill(x, m, sky=SKY, margin_px=stored["margin_px"],
                               max_window_px=stored["max_window_px"]).astype(np.float32)
    monkeypatch.setitem(sys.modules, "camb", None)
    monkeypatch.setenv("COMBINE_CACHE_DIR", str(tmp_path / "empty"))
    fresh = combine.load_model(NAME)
    out = fresh.inpaint(x, m)
    fg = fresh.first_guess
    fg8 = local_wiener_fill_table(x, m, xi_table_uk2=fg.xi_table_uk2, noise_var_uk2=fg.noise_var_uk2,
                                  gmrf_coeffs=fg.gmrf_coeffs, margin_px=8, max_window_px=3000)
    old = np.where(m > 0, x, fresh.predict(x[:, None], m[:, None], first_guess=fg8[:, None])[:, 0])
    for i, (n_hole, total, sq, first) in enumerate(OLD_PATH):
        hole_vals = old[i][m[i] < 0.5].astype(np.float64)
        assert hole_vals.size == n_hole
        np.testing.assert_allclose(hole_vals[:3], first, atol=1e-3)
        assert abs(hole_vals.sum() - total) < 1e-3 * n_hole and abs((hole_vals ** 2).sum() - sq) < 1e-3 * sq
    want = np.where(m > 0, x, fresh.predict(x[:, None], m[:, None], first_guess=ref_fg[:, None])[:, 0])
    np.testing.assert_allclose(out, want, atol=1e-3, rtol=0)
    assert np.array_equal(out[m > 0], x[m > 0])
    assert not (tmp_path / "empty").exists()


# Regression margins, from the shipped weights on 12 fixed patches (nn / mean, nn / diffusive,
# nn / its own local Wiener first guess): circle-r4 0.036 / 0.13 / 1.000, circle-r8
# 0.22 / 0.40 / 0.999, points 0.12 / 0.44 / 1.000 (measured 2026-11-26).
MARGIN_MEAN = 0.3
MARGIN_DIFFUSIVE = {"circle-r4": 0.2, "circle-r8": 0.55, "points": 0.6}
MARGIN_FIRST_GUESS = 1.05


@pytest.mark.parametrize("kind", ["circle-r4", "circle-r8", "points"])
def test_beats_mean_and_diffusive_fill(model, kind):
    """Regression guard: hole RMSE at most MARGIN × the mean fill's and the diffusive fill's."""
    from combine.baselines import diffusive_fill, mean_fill

    patches = simulate_flat_patches(12, size=128, noise_uk_arcmin=1.0, seed=20261125)
    if kind == "points":
        masks = generate_masks("points", len(patches), 128, seed=11)
    else:
        masks = np.repeat(circle_mask(128, float(kind.split("-r")[1]))[None], len(patches), axis=0)
    nn = _rmse_hole(model.inpaint(patches, masks), patches, masks)
    mean = _rmse_hole(mean_fill(patches, masks), patches, masks)
    diffusive = _rmse_hole(diffusive_fill(patches, masks), patches, masks)
    first_guess = _rmse_hole(local_wiener_fill(patches, masks), patches, masks)
    assert nn < MARGIN_MEAN * mean, (nn, mean)
    assert nn < MARGIN_DIFFUSIVE[kind] * diffusive, (nn, diffusive)
    assert nn < MARGIN_FIRST_GUESS * first_guess, (nn, first_guess)


def test_valid_pixels_untouched_and_hole_values_irrelevant(model, patches):
    masks = generate_masks("random", 4, 128, seed=3)
    a = model.inpaint(patches[:4], masks)
    poisoned = np.where(masks > 0, patches[:4], np.nan).astype(np.float32)
    b = model.inpaint(poisoned, masks)
    assert np.array_equal(a[masks > 0], patches[:4][masks > 0])
    np.testing.assert_allclose(a, b, atol=1e-3)
