"""Training samples: symmetries, hole filling, reproducible order across workers, ranks and resume."""

import pickle

import numpy as np
import pytest
import torch

from combine.errors import InputError
from combine.training_data import (ArrayPatches, H5Patches, InpaintingSamples, SimulatedPatches, StepBatches,
                                   apply_symmetry, make_loader, open_sources)

SIZE = 32


@pytest.fixture
def patches(rng):
    return ArrayPatches(rng.normal(0, 100, (12, SIZE, SIZE)).astype(np.float32), "patches")


def _samples(source, **kw):
    kw.setdefault("mask_mix", {"random": 0.5, "circle": 0.5})
    kw.setdefault("seed_key", (7, 1, 0))
    return InpaintingSamples(source, **kw)


def test_symmetries_are_the_eight_distinct_elements_of_d4(rng):
    a = rng.normal(size=(1, 6, 6))
    images = [apply_symmetry(a, k) for k in range(8)]
    flat = {im.tobytes() for im in images}
    assert len(flat) == 8  # all distinct for a generic image
    # closed under composition: applying any element to any image stays in the set
    for k in range(8):
        for im in images:
            assert apply_symmetry(im, k).tobytes() in flat
    # k=1 is a quarter turn: pixel (i, j) -> (n-1-j, i)
    np.testing.assert_array_equal(images[1][0], np.array([[a[0, j, 5 - i] for j in range(6)] for i in range(6)]))
    # values are only permuted
    for im in images:
        np.testing.assert_array_equal(np.sort(im.ravel()), np.sort(a.ravel()))


def test_sample_input_holds_fill_constant_in_holes_and_truth_elsewhere(patches):
    ds = _samples(patches, hole_fill_uk=-123.0)
    for n in range(6):
        x_in, mask, target = ds[n]
        assert x_in.shape == target.shape == (1, SIZE, SIZE) and mask.shape == (1, SIZE, SIZE)
        m = mask.numpy()
        assert set(np.unique(m)) <= {0.0, 1.0} and m.sum() > 0
        assert (m == 0).any(), "every training mask should have a hole"
        np.testing.assert_array_equal(x_in.numpy()[m == 0], -123.0)
        np.testing.assert_array_equal(x_in.numpy()[m == 1], target.numpy()[m == 1])


def test_target_is_a_symmetry_of_a_source_patch(patches):
    ds = _samples(patches)
    seen_k = set()
    for n in range(24):
        _, _, target = ds[n]
        src = patches.get(ds.patch_index(n))
        matches = [k for k in range(8) if np.array_equal(apply_symmetry(src, k), target.numpy())]
        assert len(matches) == 1
        seen_k.add(matches[0])
    assert len(seen_k) >= 6  # 24 draws of 8 equiprobable elements: P(< 6 distinct) ~ 1e-3


def test_each_pass_visits_every_patch_once(patches):
    ds = _samples(patches)
    n = len(patches)
    first, second = [ds.patch_index(i) for i in range(n)], [ds.patch_index(i) for i in range(n, 2 * n)]
    assert sorted(first) == sorted(second) == list(range(n))
    assert first != second  # a fresh permutation per pass


def test_samples_are_a_pure_function_of_seed_and_index(patches):
    a, b = _samples(patches), _samples(patches)
    for n in (0, 5, 40):
        for u, v in zip(a[n], b[n]):
            np.testing.assert_array_equal(u.numpy(), v.numpy())
    other = _samples(patches, seed_key=(8, 1, 0))
    assert not np.array_equal(a[3][1].numpy(), other[3][1].numpy())  # masks differ with the seed


def test_rank_shards_concatenate_to_the_single_process_batches():
    one = list(StepBatches(3, 6, 8, rank=0, world=1))
    two = [list(StepBatches(3, 6, 8, rank=r, world=2)) for r in range(2)]
    assert [a + b for a, b in zip(*two)] == one
    assert one[0] == list(range(24, 32))
    with pytest.raises(InputError):
        StepBatches(0, 1, 7, rank=0, world=2)


def test_batches_do_not_depend_on_the_number_of_workers(patches):
    ds = _samples(patches)
    kw = dict(seed=7, epoch=0, rank=0)
    b0 = list(make_loader(ds, StepBatches(0, 3, 4), num_workers=0, **kw))
    b2 = list(make_loader(ds, StepBatches(0, 3, 4), num_workers=2, **kw))
    assert len(b0) == len(b2) == 3
    for x, y in zip(b0, b2):
        for u, v in zip(x, y):
            assert torch.equal(u, v)


def test_single_image_always_uses_patch_zero(patches):
    ds = _samples(patches, single_image=True)
    assert {ds.patch_index(n) for n in range(30)} == {0}


def _write(path, maps, **attrs):
    from combine.data import write_dataset

    base = dict(pixel_arcmin=1.7177, beam_fwhm_arcmin=5.0, noise_uk_arcmin=0.0, size=maps.shape[-1],
                method="flat", seed=1, cosmology={"H0": 67.36}, combine_version="0.1.0")
    base.update(attrs)
    write_dataset(path, maps, attrs=base)


def test_h5_patches_read_lazily_and_survive_pickling(tmp_path, rng):
    maps = rng.normal(0, 100, (5, 64, 64)).astype(np.float32)
    _write(tmp_path / "train.h5", maps)
    src = H5Patches(tmp_path / "train.h5")
    assert len(src) == 5 and src.shape == (1, 64, 64)
    np.testing.assert_array_equal(src.get(3)[0], maps[3])
    clone = pickle.loads(pickle.dumps(src))  # what a DataLoader worker receives
    np.testing.assert_array_equal(clone.get(4)[0], maps[4])
    train, val = open_sources(str(tmp_path), size=64, seed=0, stage=1)
    assert isinstance(train, H5Patches) and val is None


def test_h5_without_required_attribute_is_an_input_error(tmp_path, rng):
    import h5py

    path = tmp_path / "bare.h5"
    with h5py.File(path, "w") as f:
        f["maps"] = rng.normal(size=(2, 64, 64)).astype(np.float32)
        f.attrs["size"] = 64
    with pytest.raises(InputError, match="bare.h5: missing attribute"):
        H5Patches(path)  # combine.data.read_header, the one dataset reader
    with pytest.raises(InputError, match="no such dataset"):
        open_sources(str(tmp_path / "nope"), size=64, seed=0, stage=1)


def test_simulated_patches_are_reproducible_cmb_like():
    from combine.sky.spectra import lensed_tt_cl_uk2

    cl = lensed_tt_cl_uk2()
    a = SimulatedPatches(64, seed_key=(1, 1, 0), cl_uk2=cl, chunk=64)
    b = SimulatedPatches(64, seed_key=(1, 1, 0), cl_uk2=cl, chunk=64)
    c = SimulatedPatches(64, seed_key=(2, 1, 0), cl_uk2=cl, chunk=64)
    np.testing.assert_array_equal(a.get(70), b.get(70))
    assert not np.array_equal(a.get(70), c.get(70))
    stack = np.stack([a.get(i)[0] for i in range(64)])
    # Planck18 lensed TT with a 5' beam: pixel rms ~ 100 μK (about the patch mean: lower)
    rms_uk = float(np.sqrt(((stack - stack.mean(axis=(1, 2), keepdims=True)) ** 2).mean()))
    assert 40 < rms_uk < 160


def test_wiener_targets_replace_the_truth_in_small_holes_only():
    """target = "wiener": the target's hole is the exact Wiener fill of the sample (valid pixels
    untouched); holes above max_hole_px keep the truth; the callable survives pickling (workers)."""
    from combine.baselines import wiener_fill
    from combine.masks import circle_mask
    from combine.sky.spectra import lensed_tt_cl_uk2
    from combine.training_data import WienerTargets

    cl = lensed_tt_cl_uk2()
    src = SimulatedPatches(64, seed_key=(3, 1, 0), cl_uk2=cl, chunk=8, noise_uk_arcmin=1.0)
    targets = pickle.loads(pickle.dumps(WienerTargets(size=64, pixel_arcmin=src.pixel_arcmin,
                                                      beam_fwhm_arcmin=src.beam_fwhm_arcmin,
                                                      noise_uk_arcmin=1.0, cl_uk2=cl, max_hole_px=100)))
    clean = src.get(0)
    small, big = circle_mask(64, 3.0)[None], circle_mask(64, 8.0)[None]
    target = targets(clean, small)
    expected = wiener_fill(clean[None].astype(np.float64), small[None], noise_uk_arcmin=1.0, cl_uk2=cl)[0]
    np.testing.assert_allclose(target, expected, rtol=0, atol=1e-3)
    assert np.array_equal(target[small > 0], clean[small > 0])
    hole_err = np.abs(target - clean)[small < 0.5]
    assert 0.1 < hole_err.mean() < 100  # the Wiener fill is not the truth, but close to it (μK)
    assert targets(clean, big) is None  # 197 hole pixels > 100

    ds = InpaintingSamples(src, mask_mix={"circle": 1.0}, seed_key=(3, 1, 0), target_fn=targets)
    x_in, mask, tgt = ds[1]
    assert np.array_equal(tgt.numpy()[mask.numpy() > 0], x_in.numpy()[mask.numpy() > 0])
