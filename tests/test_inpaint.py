"""Tiled inpainting of images larger than the model's patch (combine.inpaint)."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from combine.baselines import diffusive_fill
from combine.errors import InputError
from combine.inpaint import inpaint_tiled, ramp_window, tile_starts


class DiffusiveTiles:
    """Deterministic smooth stand-in for a network: each tile's holes are filled diffusively.

    Diffusive filling of a tile treats the tile edge as a zero-flux boundary, so two tiles that
    cut one hole disagree along their common edge: a wrong blend shows as a seam. Refuses a tile
    without a valid pixel (as the network does).
    """

    patch_size = 32
    pixel_arcmin = 1.0

    def __init__(self):
        self.tiles_seen = 0

    def predict(self, x, m, batch_size=16):
        assert x.shape[-2:] == (32, 32) and m.shape[-2:] == (32, 32)
        assert (m.reshape(len(m), -1).max(axis=1) > 0).all(), "tile without a valid pixel"
        self.tiles_seen += len(x)
        return diffusive_fill(x, m)


class Constant:
    """Predicts the same value everywhere whatever the input: tests the blending weights alone."""

    patch_size = 32
    pixel_arcmin = 1.0

    def predict(self, x, m, batch_size=16):
        return np.full(x.shape, 7.0, np.float32)


def _smooth_field(seed, size=96, smoothing_px=4.0):
    rng = np.random.default_rng(seed)
    return (100 * gaussian_filter(rng.standard_normal((size, size)), smoothing_px, mode="wrap")).astype(np.float32)


def _max_kink(image, hole, edges):
    """Largest |second difference| across the given column/row indices inside the hole.

    At edge ``j`` the kink is :math:`|d_j - (d_{j-1} + d_{j+1})/2|` with :math:`d_j = f_j - f_{j-1}`:
    ~0 for a smooth fill, the size of the jump for a seam.
    """
    kinks = []
    for img, h in ((image, hole), (image.T, hole.T)):
        d = np.diff(img.astype(np.float64), axis=1)  # d[:, j-1] = f[:, j] - f[:, j-1]
        for j in edges:
            rows = np.flatnonzero(h[:, j - 2:j + 2].all(axis=1))
            if rows.size:
                kinks.append(np.abs(d[rows, j - 1] - 0.5 * (d[rows, j - 2] + d[rows, j])).max())
    assert kinks, "no tile edge crosses the hole"
    return max(kinks)


def test_tile_layout_and_window():
    starts = tile_starts(96, 32, 8)
    np.testing.assert_array_equal(starts, [0, 21, 43, 64])
    assert np.all(starts[:-1] + 32 - starts[1:] >= 8)  # overlap at least 8
    assert tile_starts(32, 32, 8).tolist() == [0]
    w = ramp_window(32, 8, rise=True, fall=False)
    # raised cosine: the rising ramp and the mirrored falling one sum to 1 across the overlap
    np.testing.assert_allclose(w[:8] + w[:8][::-1], 1.0, atol=1e-12)
    assert np.all(w > 0) and np.all(w[8:] == 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hole_across_tile_border_has_no_seam(seed):
    """A disk of radius 18 px centred on tile borders (32-px tiles, 8-px overlap).

    Tolerance: the kink across every tile edge inside the hole is < 0.5 x the rms
    pixel-to-pixel difference of the map. Negative control: abutting tiles without blending
    (overlap 0) give kinks > 3 x that (measured 6-9 x), so the test can see a seam.
    """
    image = _smooth_field(seed)
    yy, xx = np.mgrid[:96, :96]
    hole = (yy - 43) ** 2 + (xx - 43) ** 2 < 18 ** 2
    mask = (~hole).astype(np.float32)
    sigma = np.sqrt(np.mean(np.diff(image.astype(np.float64), axis=1) ** 2))
    kinks = {}
    for overlap in (0, 8):
        pred = inpaint_tiled(DiffusiveTiles(), image[None, None], mask[None, None], overlap_px=overlap)
        filled = np.where(mask > 0, image, pred[0, 0])
        starts = tile_starts(96, 32, overlap)
        edges = sorted({int(s) for s in starts if s > 0} | {int(s) + 32 for s in starts if s + 32 < 96})
        kinks[overlap] = _max_kink(filled, hole, edges) / sigma
    assert kinks[8] < 0.5, kinks
    assert kinks[0] > 3.0, kinks


def test_weights_are_a_partition_of_unity():
    """If every tile predicts the same value, the blend returns it exactly (any size, padding too)."""
    for shape in [(96, 96), (70, 45), (20, 33)]:
        x = np.zeros((2, 1) + shape, np.float32)
        m = np.ones((2, 1) + shape, np.float32)
        pred = inpaint_tiled(Constant(), x, m)
        assert pred.shape == x.shape and pred.dtype == np.float32
        np.testing.assert_allclose(pred, 7.0, rtol=1e-6)


def test_single_tile_equals_direct_prediction():
    image = _smooth_field(3, size=32)
    mask = np.ones((32, 32), np.float32)
    mask[10:20, 5:25] = 0
    model = DiffusiveTiles()
    np.testing.assert_allclose(inpaint_tiled(model, image[None, None], mask[None, None])[0, 0],
                               model.predict(image[None, None], mask[None, None])[0, 0], rtol=1e-6)


def test_hole_wider_than_a_tile_is_filled_from_its_edges():
    """A 60x60 hole in 96x96 with 32-px tiles: some tiles are all hole; they are never sent to
    the model in the first pass, and in the end every pixel is finite (no NaN) and the fill is
    continuous with the valid ring around the hole (within 3 rms pixel steps)."""
    image = _smooth_field(4)
    mask = np.ones((96, 96), np.float32)
    mask[18:78, 18:78] = 0
    image_in = image.copy()
    image_in[mask == 0] = np.nan
    model = DiffusiveTiles()
    pred = inpaint_tiled(model, image_in[None, None], mask[None, None], overlap_px=8)
    assert np.isfinite(pred).all()
    filled = np.where(mask > 0, image, pred[0, 0])
    sigma = np.sqrt(np.mean(np.diff(image.astype(np.float64), axis=1) ** 2))
    step = np.abs(filled[18:78, 18] - filled[18:78, 17]).max()  # across the hole's left edge
    assert step < 3 * sigma


def test_bad_arguments():
    x = np.zeros((1, 1, 40, 40), np.float32)
    m = np.ones_like(x)
    with pytest.raises(InputError, match="overlap_px"):
        inpaint_tiled(DiffusiveTiles(), x, m, overlap_px=32)
    with pytest.raises(InputError, match="no valid"):
        inpaint_tiled(DiffusiveTiles(), x, np.zeros_like(m))


# ------------------------------------------------------------------ a real (untrained) network
@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory):
    import torch

    from combine.models import load_model, save_model
    from combine.nn import PConvUNet

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("model") / "t128"
    save_model(PConvUNet("t128").eval(), d)
    return load_model(d)


@pytest.mark.parametrize("shape", [(2, 200, 300), (1, 1, 100, 70)])
def test_untrained_network_shapes_and_valid_pixels(untrained_model, shape):
    """Through InpaintingModel.inpaint: images larger than / not a multiple of 128 are tiled;
    the output has the input's shape, is finite, and valid pixels are bit-identical."""
    rng = np.random.default_rng(5)
    maps = (80 * rng.standard_normal(shape)).astype(np.float32)
    masks = np.ones(shape, np.float32)
    masks[..., 30:60, 40:95] = 0
    maps[masks == 0] = np.nan
    out = untrained_model.inpaint(maps, masks, batch_size=4)
    assert out.shape == maps.shape and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert np.array_equal(out[masks > 0], maps[masks > 0])
