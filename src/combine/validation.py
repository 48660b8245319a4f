"""Checks at the boundary: maps and masks as docs/DESIGN.md defines them.

Masks are binary (1 = observed, 0 = hole) and broadcast over channels; a mask with no valid
pixel is an error; a valid pixel holding NaN, inf or ``healpy.UNSEEN`` is an error. Every
failure raises :class:`combine.errors.InputError` with the source (file name or argument)
first, so the command line can print it as one line.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

#: healpy.UNSEEN, repeated here so that checking a patch does not import healpy.
UNSEEN = -1.6375e30


def as_binary_mask(mask, source: str = "mask") -> np.ndarray:
    """Return ``mask`` as float32 0/1, or raise if any value is not exactly 0 or 1.

    Booleans are accepted. NaN, fractions and any other value are an error.
    """
    arr = np.asarray(mask)
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{source}: mask has non-numeric dtype {arr.dtype}")
    bad = ~((arr == 0) | (arr == 1))
    if bad.any():
        example = arr[bad].flat[0]
        raise InputError(
            f"{source}: mask is not binary ({int(bad.sum())} values other than 0 and 1, e.g. {example!r})"
        )
    return arr.astype(np.float32)


def broadcast_mask(mask: np.ndarray, maps_shape: tuple, source: str = "mask") -> np.ndarray:
    """Broadcast a mask of shape (H, W), (N, H, W) or (N, C, H, W) to ``maps_shape``.

    ``maps_shape`` is (H, W), (N, H, W) or (N, C, H, W); a mask with one channel broadcasts
    over the channels. Anything else is a shape error naming both shapes.
    """
    mask = np.asarray(mask)
    try:
        if mask.ndim == len(maps_shape) + 1 and len(maps_shape) == 3 and mask.shape[1] == 1:
            mask = mask[:, 0]
        if len(maps_shape) == 4 and mask.ndim == 3:
            if mask.shape[0] == maps_shape[0] and mask.shape[1:] == maps_shape[2:]:
                mask = mask[:, None]
        return np.broadcast_to(mask, maps_shape)
    except ValueError:
        raise InputError(
            f"{source}: mask shape {tuple(mask.shape)} does not match map shape {tuple(maps_shape)}"
        ) from None


def check_maps_and_masks(maps, masks, map_source: str = "maps", mask_source: str = "mask"):
    """Validate a map array and its mask together; return (maps float32, masks float32 broadcast).

    Raises if the mask is not binary, does not fit the maps, leaves any map (or channel) with
    no valid pixel, or if a valid pixel is NaN, infinite or ``UNSEEN``. Hole pixels may hold
    anything (NaN and UNSEEN included).
    """
    maps = np.asarray(maps)
    if maps.ndim not in (2, 3, 4):
        raise InputError(f"{map_source}: expected maps of shape (H, W), (N, H, W) or (N, C, H, W), got {maps.shape}")
    if not np.issubdtype(maps.dtype, np.number):
        raise InputError(f"{map_source}: maps have non-numeric dtype {maps.dtype}")
    masks = broadcast_mask(as_binary_mask(masks, mask_source), maps.shape, mask_source)
    valid = masks > 0
    spatial_axes = (-2, -1)
    if (~valid.any(axis=spatial_axes)).any():
        raise InputError(f"{mask_source}: mask has no valid (=1) pixel in at least one map")
    bad = valid & (~np.isfinite(maps) | (maps <= UNSEEN * 0.99))
    if bad.any():
        raise InputError(
            f"{map_source}: {int(bad.sum())} valid (mask = 1) pixels hold NaN, inf or UNSEEN"
        )
    return maps.astype(np.float32, copy=False), np.ascontiguousarray(masks, dtype=np.float32)


def available_memory_bytes() -> int | None:
    """Memory a new allocation can still get without swapping: ``MemAvailable`` of
    ``/proc/meminfo`` (Linux), else ``os.sysconf`` free pages; None if neither is known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import os

    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_free_memory(nbytes: int, what: str, source: str) -> None:
    """Raise :class:`InputError` if ``what`` would need more than the available memory.

    ``source`` names the option or file that asked for it, e.g. ``check_free_memory(n * 4,
    "a Nside 8192 map", "--nside")`` gives ``"--nside: a Nside 8192 map needs 3 GiB of memory
    but only 1.2 GiB is available"``.
    """
    from .atomic import format_bytes

    available = available_memory_bytes()
    if available is not None and int(nbytes) > available:
        raise InputError(f"{source}: {what} needs {format_bytes(nbytes)} of memory but only "
                         f"{format_bytes(available)} is available")
