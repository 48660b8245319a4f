"""Guard of the shipped T, Q, U model planck18-tqu128 on a few fixed patches (kept small: 2 patches).

The full evaluation (24 patches, with standard errors) is ``benchmarks/bench_tqu_model.py``
(README "The T, Q, U model"); here the hole RMSE of the model over the T, Q, U local Wiener
fill's, per field, must stay within MARGIN of the value measured on these patches when the
model was shipped, and within the shipping criterion (1.10) on Q and U.
"""

import numpy as np
import pytest

import combine
from combine.baselines.wiener_pol import tqu_local_wiener_fill
from combine.masks import circle_mask, point_source_mask
from combine.sky import Sky

NAME = "planck18-tqu128"
SKY = Sky.planck18(noise_uk_arcmin=1.0)
#: nn / lwiener hole RMSE (T, Q, U) on these patches, measured when shipped
MEASURED = {"circle-r4": (1.0186, 1.0002, 0.9994), "circle-r8": (0.9992, 0.9998, 1.0001),
            "points": (1.0012, 1.0000, 1.0002)}
MARGIN = 0.01


@pytest.fixture(scope="module")
def case():
    from combine.sky.polarisation import simulate_flat_tqu

    model = combine.load_model(NAME)
    truth = simulate_flat_tqu(2, 128, sky=SKY, seed=4242)
    rng = np.random.default_rng(4243)
    masks = {"circle-r4": np.stack([circle_mask(128, 4)] * 2), "circle-r8": np.stack([circle_mask(128, 8)] * 2),
             "points": np.stack([point_source_mask(128, rng) for _ in range(2)])}
    return model, truth, masks


def _rmse(fill, truth, mask):
    hole = mask == 0
    return np.array([np.sqrt(((fill[:, f] - truth[:, f])[hole] ** 2).mean()) for f in range(3)])


def test_shipped_tqu_model_describes_itself(case):
    model, _, _ = case
    assert model.in_channels == 3 and model.patch_size == 128
    assert model.first_guess.kind == "lwiener-tqu" and model.first_guess.margin_px == 12
    assert Sky.from_json(model.config["first_guess"]["sky"]) == SKY
    assert model.config["shipped"]["reproduce"] == "bash scripts/train_planck18_tqu128.sh"


@pytest.mark.parametrize("kind", ["circle-r4", "circle-r8", "points"])
def test_shipped_tqu_model_against_the_local_wiener_fill(case, kind):
    model, truth, masks = case
    m = masks[kind].astype(np.float32)
    x = np.where(m[:, None] > 0, truth, 0.0).astype(np.float32)
    lw = tqu_local_wiener_fill(x, m, sky=SKY)
    if kind == "points":  # its own first guess is this fill (tests/test_nn_tqu.py): reuse it
        raw = model.predict(x, m[:, None], first_guess=lw)
        filled = np.where(m[:, None] > 0, x, raw)
    else:
        filled = model.inpaint(x, m)
    assert np.array_equal(filled[np.broadcast_to(m[:, None] > 0, x.shape)], x[np.broadcast_to(m[:, None] > 0, x.shape)])
    ratio = _rmse(filled, truth, m) / _rmse(lw, truth, m)
    print(kind, "nn / lwiener (T, Q, U):", np.round(ratio, 4))
    assert np.all(ratio <= np.array(MEASURED[kind]) + MARGIN), (kind, ratio)
    assert np.all(ratio[1:] <= 1.10), (kind, ratio)
