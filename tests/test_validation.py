import numpy as np
import pytest

from combine.errors import InputError
from combine.validation import UNSEEN, as_binary_mask, broadcast_mask, check_maps_and_masks


def test_binary_mask_accepts_bool_and_01():
    assert as_binary_mask(np.array([[True, False]])).tolist() == [[1.0, 0.0]]
    assert as_binary_mask(np.array([[1, 0]], dtype=np.uint8)).dtype == np.float32


@pytest.mark.parametrize("bad", [0.5, 2.0, np.nan, -1.0])
def test_non_binary_mask_rejected(bad):
    m = np.ones((4, 4))
    m[1, 1] = bad
    with pytest.raises(InputError, match="m.npy: mask is not binary"):
        as_binary_mask(m, "m.npy")


def test_broadcast_over_channels_and_shape_error():
    assert broadcast_mask(np.ones((2, 8, 8)), (2, 3, 8, 8)).shape == (2, 3, 8, 8)
    assert broadcast_mask(np.ones((8, 8)), (5, 8, 8)).shape == (5, 8, 8)
    with pytest.raises(InputError, match="does not match map shape"):
        broadcast_mask(np.ones((7, 8)), (5, 8, 8))


def test_holes_may_hold_nan_but_valid_pixels_may_not():
    maps = np.zeros((2, 8, 8), np.float32)
    mask = np.ones((2, 8, 8), np.float32)
    mask[:, 2:4, 2:4] = 0
    maps[:, 2, 2] = np.nan
    maps[:, 3, 3] = UNSEEN
    out, m = check_maps_and_masks(maps, mask)
    assert m.shape == maps.shape
    maps[0, 0, 0] = UNSEEN
    with pytest.raises(InputError, match="valid"):
        check_maps_and_masks(maps, mask)


def test_all_hole_mask_is_an_error():
    with pytest.raises(InputError, match="no valid"):
        check_maps_and_masks(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)))


def test_check_free_memory_names_option_and_sizes():
    from combine.atomic import format_bytes
    from combine.validation import available_memory_bytes, check_free_memory

    avail = available_memory_bytes()
    assert avail is not None and avail > 0
    check_free_memory(1024, "a small array", "--n")
    with pytest.raises(InputError) as info:
        check_free_memory(avail * 8, "1e11 patches", "--n-patches")
    msg = str(info.value)
    assert msg.startswith("--n-patches: 1e11 patches needs ") and format_bytes(avail * 8) in msg
    assert "of memory but only" in msg
