"""Training on T, Q, U patches: the configuration, spin-2 symmetries, repeating masks, per-field
loss units, and a small run end to end (32² patches)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from combine.config import config_from_dict, load_config
from combine.errors import InputError
from combine.sky import Sky

REPO = Path(__file__).resolve().parents[1]
SKY = Sky.planck18(noise_uk_arcmin=1.0)


def test_shipped_tqu_configs_parse_and_bad_fields_are_refused():
    cfg = load_config(REPO / "configs" / "planck18-tqu128.toml").resolve()
    assert cfg.data.fields == "TQU" and cfg.model.preset == "tqu128-lw"
    assert cfg.loss.unit_uk == [1000.0, 50.0, 50.0] and cfg.model.in_channels is None
    assert set(cfg.data.mask_mix) == {"disc-set", "point-set"}
    s2 = load_config(REPO / "configs" / "planck18-tqu128-stage2.toml").resolve()
    assert s2.stage == 2 and s2.train.freeze_encoder_bn
    with pytest.raises(InputError, match=r"\[data\] fields"):
        config_from_dict({"data": {"fields": "TQ"}}).resolve()
    assert config_from_dict({"model": {"input_scale_uk": 80}}).model.input_scale_uk == 80.0
    assert config_from_dict({"model": {"input_scale_uk": [80, 4, 4]}}).model.input_scale_uk == [80.0, 4.0, 4.0]
    with pytest.raises(InputError, match="input_scale_uk"):
        config_from_dict({"model": {"input_scale_uk": "big"}})


def test_loss_per_channel_units():
    """With units (u_T, u_Q, u_U) every pixel term is the mean over channels of each channel's
    term in its own unit: L = (1/3) Σ_c L(x_c / u_c)."""
    from combine.nn import build_loss

    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(2, 3, 16, 16, generator=g), torch.randn(2, 3, 16, 16, generator=g)
    mask = (torch.rand(2, 1, 16, 16, generator=g) > 0.3).float()
    units = [1000.0, 50.0, 20.0]
    total, terms = build_loss("pixel", unit_uk=units)(pred, target, mask)
    one = build_loss("pixel", unit_uk=1.0)
    parts = [one(pred[:, c:c + 1] / u, target[:, c:c + 1] / u, mask)[0] for c, u in enumerate(units)]
    torch.testing.assert_close(total, sum(parts) / 3)
    assert build_loss("pixel", unit_uk=units).config()["unit_uk"] == units
    with pytest.raises(InputError, match="3-channel"):
        build_loss("pixel", unit_uk=[1.0, 2.0])(pred, target, mask)


def test_spin2_symmetries_keep_e_as_e_and_flip_b_under_reflection():
    """For a periodic T, Q, U patch, E/B of the transformed patch are the transformed E/B maps
    (B, a pseudo-scalar, changes sign under the flips) for all 8 elements of D4; the scalar
    transform of Q/U instead turns E into −E under a quarter turn (TE changes sign)."""
    from combine.sky.polarisation import qu_to_eb_flat, simulate_flat_tqu
    from combine.training_data import apply_symmetry, apply_symmetry_tqu

    p = simulate_flat_tqu(1, 32, sky=Sky.planck18(), seed=3, grid_px=32, min_size=2)[0].astype(np.float64)
    e, b = qu_to_eb_flat(p[1], p[2])
    tol = 1e-3 * e.std()  # Nyquist modes (no rotation partner) carry ~nothing after the 5' beam
    for k in range(8):
        q = apply_symmetry_tqu(p, k)
        e2, b2 = qu_to_eb_flat(q[1], q[2])
        np.testing.assert_allclose(q[0], apply_symmetry(p[0], k))
        np.testing.assert_allclose(e2, apply_symmetry(e, k), atol=tol)
        np.testing.assert_allclose(b2, (-1 if k >= 4 else 1) * apply_symmetry(b, k), atol=tol)
    wrong = apply_symmetry(p, 1)
    np.testing.assert_allclose(qu_to_eb_flat(wrong[1], wrong[2])[0], -apply_symmetry(e, 1), atol=tol)


def test_set_masks_repeat_a_few_isolated_hole_shapes():
    """disc-set and point-set holes are translates of a few shapes, each with the window of an
    isolated hole (12 px, inside the patch): the T, Q, U first guess factorises once per shape."""
    from combine.baselines.local_wiener import hole_windows
    from combine.training_data import DISC_SET_RADII_PX, POINT_SET_RADII_PX, set_mask

    rng = np.random.default_rng(0)
    shapes, n_holes = set(), 0
    for kind in ("disc-set", "point-set") * 15:
        mask = set_mask(kind, 96, rng)
        assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}
        hole = mask == 0
        for hole_yx, win_yx in hole_windows(hole, 12):
            corner = hole_yx.min(axis=0)
            alone = np.zeros_like(hole)
            alone[hole_yx[:, 0], hole_yx[:, 1]] = True
            (_, win_alone), = hole_windows(alone, 12)
            assert np.array_equal(win_yx, win_alone)  # no other hole in the window
            assert win_yx.min() > 0 and win_yx.max() < 95  # not clipped by the edge
            shapes.add((hole_yx - corner).tobytes())
            n_holes += 1
    assert n_holes > 60
    assert len(shapes) <= len(set(DISC_SET_RADII_PX) | set(POINT_SET_RADII_PX))


def test_small_tqu_run_end_to_end(tmp_path):
    """Two steps on in-memory 32² T, Q, U patches: the checkpoint is a 3-channel model directory with
    the T, Q, U first guess (the configured window) whose validation RMSE per field is recorded."""
    import combine
    from combine.sky.polarisation import simulate_flat_tqu
    from combine.train import train
    from combine.training_data import ArrayPatches

    maps = simulate_flat_tqu(8, 32, sky=SKY, seed=11, min_size=2)
    src = ArrayPatches(maps[:6], name="tqu-train", sky=SKY)
    val = ArrayPatches(maps[6:], name="tqu-val", sky=SKY)
    cfg = config_from_dict({
        "stage": 1, "seed": 3,
        "data": {"mask_mix": {"points": 1.0}, "augment": True, "num_workers": 0},
        "train": {"epochs": 1, "steps_per_epoch": 2, "val_steps": 1, "batch_size": 4, "tensorboard": False},
        "model": {"preset": "tqu128-lw", "levels": 5, "channels": [8, 16, 16, 16, 16], "stem_channels": 8,
                  "first_guess_margin_px": 3},
        "loss": {"preset": "pixel", "unit_uk": [1000.0, 50.0, 50.0]},
    }).resolve()
    summary = train(cfg, tmp_path / "run", sources=(src, val), log=lambda _m: None)
    assert summary["global_step"] == 2
    row = summary["history"][-1]
    for c in range(3):
        assert np.isfinite(row[f"val_hole_rmse_uk_c{c}"]) and row[f"val_first_guess_rmse_uk_c{c}"] > 0
    assert row["val_first_guess_rmse_uk_c0"] > 5 * row["val_first_guess_rmse_uk_c1"]  # T ≫ Q in μK
    model = combine.load_model(tmp_path / "run" / "last")
    assert model.in_channels == 3 and model.first_guess.kind == "lwiener-tqu" and model.first_guess.margin_px == 3
    assert model.config["loss"]["unit_uk"] == [1000.0, 50.0, 50.0]
    out = model.inpaint(maps[6:], np.ones((2, 32, 32), np.float32) - np.pad(np.ones((2, 4, 4)), ((0, 0), (14, 14), (14, 14))))
    assert out.shape == (2, 3, 32, 32) and np.isfinite(out).all()
