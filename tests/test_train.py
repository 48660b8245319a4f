"""Training loop: learning, determinism, exact resume, stage 2, hole-fill independence, config, CLI errors.

Tiny UNets (3 levels, 8-32 channels) on 32² crops of Planck18 flat-sky patches keep this file
to a few tens of seconds.
"""

import csv
import json
import shutil
import tomllib

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from combine.cli import main
from combine.config import (STAGE_DEFAULTS, TrainConfig, apply_overrides, config_from_dict, config_to_toml,
                            load_config)
from combine.errors import InputError
from combine.train import train
from combine.training_data import ArrayPatches, InpaintingSamples

TINY_MODEL = {"levels": 3, "channels": [8, 16, 16], "kernels": [5, 3, 3]}
QUIET = dict(log=lambda msg: None)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def crops():
    """(train, val) sources: 32² crops of 64² Planck18 patches (one FFT grid each)."""
    from combine.sky.flat import simulate_flat_patches

    def cut(maps):
        n = maps.shape[0]
        return maps.reshape(n, 2, 32, 2, 32).transpose(0, 1, 3, 2, 4).reshape(4 * n, 32, 32)

    return (ArrayPatches(cut(simulate_flat_patches(64, 64, seed=11)), "train"),
            ArrayPatches(cut(simulate_flat_patches(16, 64, seed=12)), "val"))


def tiny(stage=1, seed=0, model=None, data=None, **train_kw):
    table = {"stage": stage, "seed": seed, "model": model or TINY_MODEL, "data": data or {},
             "train": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 4, "val_steps": 1,
                       "tensorboard": False, **train_kw}}
    return config_from_dict(table, "test").resolve()


def weights(run_dir, which="last"):
    return load_file(str(run_dir / which / "weights.safetensors"))


def max_diff(a, b):
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


# ---------------------------------------------------------------------------- config
def test_config_stage_defaults_and_precedence(tmp_path):
    cfg = TrainConfig(stage=2).resolve()
    assert cfg.train.lr == 5e-5 and cfg.train.freeze_encoder_bn is True
    assert TrainConfig(stage=0).resolve().train.single_image is True
    assert TrainConfig(stage=1).resolve().train.lr == STAGE_DEFAULTS[1]["lr"] == 1e-4
    path = tmp_path / "c.toml"
    path.write_text('stage = 2\n[train]\nlr = 3e-5\nepochs = 7\n[loss]\npreset = "mse"\n[loss.weights]\nhole_mse = 9\n')
    cfg = load_config(path)
    apply_overrides(cfg, {"train.epochs": 4, "train.batch_size": None})
    cfg.resolve()
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.batch_size) == (3e-5, 4, 16)  # file, option, default
    assert cfg.loss.weights == {"hole_mse": 9.0} and isinstance(cfg.loss.weights["hole_mse"], float)
    # the written TOML reads back to the same configuration
    again = config_from_dict(tomllib.loads(config_to_toml(cfg)), "again").resolve()
    assert again == cfg


@pytest.mark.parametrize("text, message", [
    ("[train]\nepochz = 3\n", "c.toml: unknown key 'epochz' in [train]"),
    ("[training]\nepochs = 3\n", "c.toml: unknown key 'training'"),
    ('[train]\nepochs = "ten"\n', "c.toml: [train] epochs: expected an integer"),
    ("[data]\naugment = 1\n", "c.toml: [data] augment: expected true or false"),
    ('[data]\nmask_mix = {circle = "a"}\n', "c.toml: [data] mask_mix.circle: expected a number"),
    ("[model]\nchannels = 8\n", "c.toml: [model] channels: expected a list of integers"),
    ("stage = 3\n", "c.toml: stage: must be 0, 1 or 2"),
    ('[data]\ntarget = "median"\n', 'c.toml: [data] target: must be "truth" or "wiener"'),
    ("[data]\nwiener_max_hole_px = 0\n", "c.toml: [data] wiener_max_hole_px: must be >= 1"),
    ("[train\n", "c.toml: not valid TOML"),
])
def test_config_errors_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_config(path).resolve(str(path))
    assert message in str(err.value) and str(path) in str(err.value)


# ---------------------------------------------------------------------------- learning
def _hole_errors(unet, samples, n):
    """Mean |error| in the holes (μK) of ``unet`` and of a per-patch mean fill, over ``n`` samples."""
    x, m, t = (torch.stack(a) for a in zip(*[samples[i] for i in range(n)]))
    unet.eval()
    with torch.no_grad():
        pred = unet(x, m)
    hole = m.expand_as(t) < 0.5
    mean_fill = (t * m).sum(dim=(-2, -1), keepdim=True) / m.sum(dim=(-2, -1), keepdim=True)
    return float((pred - t).abs()[hole].mean()), float((mean_fill - t).abs().expand_as(t)[hole].mean())


def test_tiny_run_learns_to_fill_holes_better_than_the_mean(tmp_path, crops):
    from combine.nn import PConvUNet

    cfg = tiny(seed=3, model={"levels": 3, "channels": [16, 32, 32], "kernels": [5, 3, 3]},
               epochs=2, steps_per_epoch=150, batch_size=8, lr=3e-3, val_steps=4)
    torch.manual_seed(cfg.seed)
    untrained = PConvUNet(**cfg.model.unet_kwargs())  # the run's initial weights (same seed)
    summary = train(cfg, tmp_path / "run", sources=crops, **QUIET)
    assert summary["global_step"] == 300
    trained = PConvUNet(**cfg.model.unet_kwargs())
    trained.load_state_dict(weights(tmp_path / "run"))
    held_out = InpaintingSamples(crops[1], mask_mix={"random": 0.5, "circle": 0.5}, seed_key=(99, 1, 1),
                                 augment=False)
    before, mean_fill = _hole_errors(untrained, held_out, 64)
    after, _ = _hole_errors(trained, held_out, 64)
    # 300 steps: hole error falls > 3x from the random start and beats mean filling by > 1.3x
    assert after < before / 3, (before, after)
    assert after < mean_fill / 1.3, (after, mean_fill)
    hist = summary["history"]
    assert hist[-1]["val_hole_rmse_uk"] < hist[-1]["val_meanfill_rmse_uk"]


# ---------------------------------------------------------------------------- reproducibility
def test_same_seed_same_weights_other_seed_other_weights(tmp_path, crops):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        train(tiny(seed=seed, epochs=1, steps_per_epoch=4), tmp_path / name, sources=crops, **QUIET)
    assert max_diff(weights(tmp_path / "a"), weights(tmp_path / "b")) == 0.0
    assert max_diff(weights(tmp_path / "a"), weights(tmp_path / "c")) > 1e-4


def test_resume_equals_uninterrupted_run(tmp_path, crops):
    train(tiny(epochs=3), tmp_path / "full", sources=crops, **QUIET)
    train(tiny(epochs=2), tmp_path / "part", sources=crops, **QUIET)
    # a kill between the two renames of last/ leaves no last/: resume falls back to checkpoints/
    shutil.rmtree(tmp_path / "part" / "last")
    summary = train(tiny(epochs=3), tmp_path / "part", resume=True, sources=crops, **QUIET)
    assert summary["global_step"] == 9
    full, part = tmp_path / "full" / "last", tmp_path / "part" / "last"
    assert max_diff(weights(tmp_path / "full"), weights(tmp_path / "part")) <= 1e-6
    opt_full, opt_part = (load_file(str(d / "training_state.safetensors")) for d in (full, part))
    assert max_diff({k: v for k, v in opt_full.items() if k.startswith("optimizer.")},
                    {k: v for k, v in opt_part.items() if k.startswith("optimizer.")}) <= 1e-6
    rows = list(csv.DictReader(open(tmp_path / "part" / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    state = json.loads((part / "training_state.json").read_text())
    assert (state["epoch"], state["global_step"]) == (3, 9)


def test_result_does_not_depend_on_the_hole_fill_constant(tmp_path, crops):
    train(tiny(epochs=1, data={"hole_fill_uk": 0.0}), tmp_path / "zero", sources=crops, **QUIET)
    train(tiny(epochs=1, data={"hole_fill_uk": 1e4}), tmp_path / "big", sources=crops, **QUIET)
    assert max_diff(weights(tmp_path / "zero"), weights(tmp_path / "big")) <= 1e-6


def test_stage2_keeps_encoder_bn_statistics_and_trains_the_rest(tmp_path, crops):
    train(tiny(epochs=1), tmp_path / "s1", sources=crops, **QUIET)
    summary = train(tiny(stage=2, epochs=1, steps_per_epoch=4, lr=1e-3), tmp_path / "s2", init=tmp_path / "s1" / "last",
                    sources=crops, **QUIET)
    assert summary["global_step"] == 4
    w1, w2 = weights(tmp_path / "s1"), weights(tmp_path / "s2")
    enc_stats = [k for k in w1 if k.startswith("encoder.") and (".bn.running_" in k or "num_batches" in k)]
    dec_stats = [k for k in w1 if k.startswith("decoder.") and ".bn.running_" in k]
    assert enc_stats and dec_stats
    for k in enc_stats:
        assert torch.equal(w1[k], w2[k]), k
    assert all(float((w1[k] - w2[k]).abs().max()) > 0 for k in dec_stats)
    for k in ("encoder.0.conv.weight", "encoder.1.bn.weight", "decoder.0.conv.weight"):
        assert float((w1[k] - w2[k]).abs().max()) > 1e-4, k  # weights (encoder BN affine too) train
    cfg = json.loads((tmp_path / "s2" / "last" / "config.json").read_text())
    assert "stage" in json.dumps(cfg)


# ---------------------------------------------------------------------------- command line
def _dataset(path, rng, size=64, n=6, **drop):
    from combine.data import write_dataset

    attrs = dict(pixel_arcmin=1.7177, beam_fwhm_arcmin=5.0, noise_uk_arcmin=0.0, size=size, method="flat",
                 seed=1, cosmology={"H0": 67.36}, combine_version="0.1.0")
    path.mkdir(parents=True, exist_ok=True)
    write_dataset(path / "train.h5", rng.normal(0, 100, (n, size, size)).astype(np.float32), attrs=attrs)
    write_dataset(path / "val.h5", rng.normal(0, 100, (n, size, size)).astype(np.float32), attrs=attrs)
    return path


TINY_TOML = """seed = 1
[model]
levels = 3
channels = [8, 16, 16]
kernels = [5, 3, 3]
[train]
epochs = 1
steps_per_epoch = 2
batch_size = 2
val_steps = 1
image_every_steps = 1
log_every_steps = 1
"""


def test_cli_run_directory_contents(tmp_path, rng, capsys):
    data = _dataset(tmp_path / "data", rng)
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    run = tmp_path / "run"
    code = main(["train", "--data", str(data), "--out", str(run), "--config", str(tmp_path / "tiny.toml"),
                 "--epochs", "2", "--lr", "2e-4", "--quiet"])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    # the summary line (issue 15): the last line on stdout, with --quiet too, naming the model and the seed
    last = out.splitlines()[-1]
    assert last.startswith("combine train: 2 epoch(s), 4 steps, "), out
    # --quiet: no header, no per-epoch lines, only the summary
    assert not [line for line in out.splitlines()[:-1] if line.startswith(("epoch ", "combine train: stage"))], out
    seed = load_config(run / "config.toml").resolve().seed
    assert "samples/s" in last and f"; seed {seed};" in last and f"model: {run / 'best'}" in last
    resolved = load_config(run / "config.toml").resolve()
    assert (resolved.train.epochs, resolved.train.lr, resolved.model.channels) == (2, 2e-4, [8, 16, 16])
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[0]["val_total"]) > 0
    for d in ("last", "best", "checkpoints/epoch-0001", "checkpoints/epoch-0002"):
        assert (run / d / "weights.safetensors").is_file() and (run / d / "config.json").is_file()
    assert (run / "loss_curves.png").stat().st_size > 1000
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert not [p for p in run.rglob(".*") if p.name.endswith((".tmp", ".old"))]  # no leftovers
    from combine.models import load_model

    model = load_model(str(run / "best"))
    maps = rng.normal(0, 100, (2, 64, 64)).astype(np.float32)
    mask = np.ones((64, 64), np.float32)
    mask[20:30, 20:30] = 0
    filled = model.inpaint(maps, mask)
    np.testing.assert_array_equal(filled[:, mask > 0], maps[:, mask > 0])


def _err(capsys, argv):
    code = main(argv)
    return code, capsys.readouterr().err


def test_cli_bad_inputs_exit_2(tmp_path, rng, capsys):
    data = _dataset(tmp_path / "data", rng)
    tiny_toml = tmp_path / "tiny.toml"
    tiny_toml.write_text(TINY_TOML)
    out = tmp_path / "out"

    # 64² patches cannot feed the 7-level t128 model (needs multiples of 128)
    code, err = _err(capsys, ["train", "--data", str(data), "--out", str(out), "--quiet"])
    assert code == 2 and "train.h5: patch size 64x64 does not fit" in err and not out.exists()

    # dataset without the expected attributes
    import h5py

    bare = tmp_path / "bare"
    bare.mkdir()
    with h5py.File(bare / "train.h5", "w") as f:
        f["maps"] = np.zeros((2, 64, 64), np.float32)
    code, err = _err(capsys, ["train", "--data", str(bare), "--out", str(out), "--config", str(tiny_toml)])
    assert code == 2 and "missing attribute" in err and not out.exists()

    # config: unknown key, wrong type
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nbatchsize = 4\n")
    code, err = _err(capsys, ["train", "--data", str(data), "--out", str(out), "--config", str(bad)])
    assert code == 2 and f"{bad}: unknown key 'batchsize' in [train]" in err
    bad.write_text("[train]\nlr = \"fast\"\n")
    code, err = _err(capsys, ["train", "--data", str(data), "--out", str(out), "--config", str(bad)])
    assert code == 2 and f"{bad}: [train] lr: expected a number" in err

    # paper loss: no VGG file given / a missing file
    code, err = _err(capsys, ["train", "--data", str(data), "--out", str(out), "--config", str(tiny_toml),
                              "--loss", "paper"])
    assert code == 2 and "--vgg-weights" in err and not out.exists()
    code, err = _err(capsys, ["train", "--data", str(data), "--out", str(out), "--config", str(tiny_toml),
                              "--loss", "paper", "--vgg-weights", str(tmp_path / "vgg16.pth")])
    assert code == 2 and "vgg16.pth: no such VGG16 weights file" in err

    # stage 2 needs a model to start from
    code, err = _err(capsys, ["train", "--data", str(data), "--out", str(out), "--config", str(tiny_toml),
                              "--stage", "2"])
    assert code == 2 and "--init" in err and not out.exists()

    # a finished run; then --resume with another architecture, and reuse without --resume
    assert main(["train", "--data", str(data), "--out", str(out), "--config", str(tiny_toml), "--quiet"]) == 0
    capsys.readouterr()
    other = tmp_path / "other.toml"
    other.write_text(TINY_TOML.replace("channels = [8, 16, 16]", "channels = [8, 16, 32]"))
    code, err = _err(capsys, ["train", "--resume", str(out), "--config", str(other), "--epochs", "2"])
    assert code == 2 and "architecture differs" in err and "channels" in err
    code, err = _err(capsys, ["train", "--data", str(data), "--out", str(out), "--config", str(tiny_toml)])
    assert code == 2 and "already holds a training run" in err
    # the failed attempts left the run as it was
    assert [r["epoch"] for r in csv.DictReader(open(out / "history.csv"))] == ["1"]


def test_first_guess_network_trains_on_the_data_pipelines_first_guess(tmp_path, crops, monkeypatch):
    """A t128-lw network (local Wiener first guess, margin 4 px) trains with its first guess
    computed in the data pipeline; every checkpoint stores the first guess (correlation table,
    margin), the stage-2 run started from it keeps it, and the saved model then runs with CAMB
    unimportable and an empty cache: its prediction is the network's output on the default-sky
    local Wiener fill of the same window (to float32 rounding)."""
    import sys

    from combine.baselines.local_wiener import local_wiener_fill
    from combine.masks import generate_masks
    from combine.models import load_model

    model = {**TINY_MODEL, "stem_channels": 4, "prefill": "lwiener", "first_guess_margin_px": 4}
    train(tiny(epochs=1, steps_per_epoch=2, model=model), tmp_path / "s1", sources=crops, **QUIET)
    cfg = json.loads((tmp_path / "s1" / "last" / "config.json").read_text())
    assert cfg["first_guess"]["kind"] == "lwiener" and cfg["first_guess"]["margin_px"] == 4
    assert (tmp_path / "s1" / "last" / "first_guess.safetensors").is_file()
    train(tiny(stage=2, epochs=1, steps_per_epoch=2), tmp_path / "s2", init=tmp_path / "s1" / "last",
          sources=crops, **QUIET)
    cfg2 = json.loads((tmp_path / "s2" / "last" / "config.json").read_text())
    assert cfg2["first_guess"] == cfg["first_guess"]

    x = crops[1].maps[:3]
    m = generate_masks("points", 3, 32, seed=4)[:, None].astype(np.float32)
    fg = local_wiener_fill(x, m, margin_px=4).astype(np.float32)  # CAMB (cache) path
    monkeypatch.setitem(sys.modules, "camb", None)
    monkeypatch.setenv("COMBINE_CACHE_DIR", str(tmp_path / "empty-cache"))
    loaded = load_model(tmp_path / "s2" / "last")
    with torch.no_grad():
        ref = loaded.unet(torch.from_numpy(x * m), torch.from_numpy(m), first_guess=torch.from_numpy(fg)).numpy()
    np.testing.assert_allclose(loaded.predict(x, m), ref, atol=1e-3, rtol=0)
    assert not (tmp_path / "empty-cache").exists()


def test_batch_size_one_is_refused_before_anything_is_written(tmp_path, rng, capsys):
    """Batch norm over one value per channel (batch 1 at the 1×1 bottom of a 64² 6-level net) is
    exit 2 with one line and no run directory; batch 1 is fine when every BN level keeps > 1 value
    (3 levels on 64²: the bottom is 8×8), or with the encoder BN frozen and the decoder's 2×2."""
    from combine.nn import PConvUNet
    from combine.train import check_batch_norm_batch

    data = _dataset(tmp_path / "data", rng)
    toml = tmp_path / "deep.toml"
    toml.write_text(TINY_TOML.replace("levels = 3\nchannels = [8, 16, 16]\nkernels = [5, 3, 3]",
                                      "levels = 6\nchannels = [4]\nkernels = [3]"))
    out = tmp_path / "out"
    code, err = _err(capsys, ["train", "--data", str(data), "--out", str(out), "--config", str(toml),
                              "--batch-size", "1"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--batch-size: 1 sample" in err
    assert not out.exists()
    check_batch_norm_batch(PConvUNet("t128", levels=3), 64, 64, 1)  # 8x8 bottom: allowed
    deep = PConvUNet("t128", levels=6, channels=[4], kernels=[3])
    with pytest.raises(InputError, match="batch-size"):
        check_batch_norm_batch(deep, 64, 64, 1)
    check_batch_norm_batch(deep, 64, 64, 2)
    check_batch_norm_batch(deep.freeze_encoder_bn(), 64, 64, 1)  # decoder BN at >= 2x2


def test_run_killed_before_its_first_checkpoint_can_be_restarted(tmp_path, crops, capsys):
    """A run directory with a config.toml but no complete checkpoint (killed during epoch 1) is
    neither a reason to refuse a fresh start nor to refuse --resume: both start from step 0 and
    end with the weights of an uninterrupted run."""
    train(tiny(epochs=1), tmp_path / "ref", sources=crops, **QUIET)
    for name, resume in (("fresh", False), ("resumed", True)):
        run = tmp_path / name
        run.mkdir()
        shutil.copy(tmp_path / "ref" / "config.toml", run / "config.toml")
        (run / "checkpoints" / "epoch-0001.combine-tmp").mkdir(parents=True)  # a half-written one
        (run / "history.csv").write_text("epoch\n")
        logs = []
        summary = train(tiny(epochs=1), run, resume=resume, sources=crops, log=logs.append)
        assert summary["global_step"] == 3
        assert max_diff(weights(tmp_path / "ref"), weights(run)) == 0.0
        assert any("no complete checkpoint" in line for line in logs) == resume
        assert [r["epoch"] for r in csv.DictReader(open(run / "history.csv"))] == ["1"]


def test_read_only_output_directory_is_one_clear_line(tmp_path, rng, capsys, monkeypatch):
    """An --out under a directory this process may not write into: exit 2, one line naming it
    (simulated with os.access, since the tests may run as root)."""
    import combine.atomic as atomic

    data = _dataset(tmp_path / "data", rng)
    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY_TOML)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = atomic.os.access
    monkeypatch.setattr(atomic.os, "access", lambda p, mode: False if str(p).startswith(str(locked)) else real_access(p, mode))
    code, err = _err(capsys, ["train", "--data", str(data), "--out", str(locked / "run"), "--config", str(toml)])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not writable" in err and str(locked) in err
    assert not (locked / "run").exists()
