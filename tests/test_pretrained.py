"""The shipped model ``planck18-t128``: loadable by name, documented config, and a regression
guard on its weights (hole RMSE against mean fill and diffusive fill on fixed patches)."""

import numpy as np
import pytest

import combine
from combine.baselines import diffusive_fill, local_wiener_fill, mean_fill
from combine.baselines.gmrf import PLANCK18_GMRF_COEFFS
from combine.masks import circle_mask, generate_masks
from combine.models import PRETRAINED_DIR, list_pretrained
from combine.sky.flat import simulate_flat_patches

NAME = "planck18-t128"

# Regression margins, from the shipped weights on these patches (nn / mean, nn / diffusive,
# nn / its own local Wiener first guess): circle-r4 0.036 / 0.13 / 1.000, circle-r8
# 0.22 / 0.40 / 0.999, points 0.12 / 0.44 / 1.000 (measured 2026-11-26). The margins leave room
# for retraining noise; broken weights (NaN, a wrong architecture, a correction that spoils the
# first guess by more than 5 %) fail them. An untrained t128-lw equals its first guess and would
# pass: this guards the weights against damage, it does not prove that training helped (README
# "Training").
MARGIN_MEAN = 0.3
MARGIN_DIFFUSIVE = {"circle-r4": 0.2, "circle-r8": 0.55, "points": 0.6}
MARGIN_FIRST_GUESS = 1.05


@pytest.fixture(scope="module")
def model():
    return combine.load_model(NAME)


@pytest.fixture(scope="module")
def patches():
    # fixed set: 12 planck18 patches with the evaluation noise level
    return simulate_flat_patches(12, size=128, noise_uk_arcmin=1.0, seed=20261125)


def _rmse_hole(filled, truth, mask):
    hole = np.broadcast_to(mask < 0.5, truth.shape)
    return float(np.sqrt(np.mean((filled[hole] - truth[hole]) ** 2)))


def test_shipped_model_is_listed_and_small():
    assert NAME in list_pretrained()
    size_mb = sum(p.stat().st_size for p in (PRETRAINED_DIR / NAME).iterdir()) / 2 ** 20
    assert size_mb < 20


def test_config_records_data_masks_loss_stages_and_evaluation(model):
    cfg = model.config
    assert cfg["architecture"]["preset"] == "t128-lw" and cfg["architecture"]["prefill"] == "lwiener"
    assert cfg["architecture"]["prefill_coeffs"] == list(PLANCK18_GMRF_COEFFS)
    assert model.patch_size == 128 and model.pixel_arcmin == pytest.approx(1.7177)
    assert cfg["loss"]["preset"] == "pixel"
    assert cfg["sky"]["beam_fwhm_arcmin"] == pytest.approx(5.0)
    assert set(cfg["training"]["mask_mix"]) == {"random", "circle", "points"}
    stages = cfg["shipped"]["stages"]
    assert stages[0]["stage"] == 1 and stages[-1]["stage"] == 2
    assert stages[-1]["encoder_bn_frozen"] and not stages[0]["encoder_bn_frozen"]
    assert all(s["steps"] > 0 for s in stages)
    assert cfg["encoder_bn_frozen"] is True  # the last stage froze the encoder batch norm
    ev = cfg["shipped"]["evaluation"]
    assert {"circle-r4", "circle-r8", "circle-r16", "circle-r32"} <= set(ev["rmse_hole_uk"]["nn"])


@pytest.mark.parametrize("kind", ["circle-r4", "circle-r8", "points"])
def test_beats_mean_and_diffusive_fill(model, patches, kind):
    """Regression guard: hole RMSE at most MARGIN × the mean fill's and the diffusive fill's."""
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
    # the learned correction must not spoil the model's own first guess
    assert nn < MARGIN_FIRST_GUESS * first_guess, (nn, first_guess)


def test_valid_pixels_untouched_and_hole_values_irrelevant(model, patches):
    masks = generate_masks("random", 4, 128, seed=3)
    a = model.inpaint(patches[:4], masks)
    poisoned = np.where(masks > 0, patches[:4], np.nan).astype(np.float32)
    b = model.inpaint(poisoned, masks)
    assert np.array_equal(a[masks > 0], patches[:4][masks > 0])
    np.testing.assert_allclose(a, b, atol=1e-3)
