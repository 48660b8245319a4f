"""Training samples: clean patches, a mask per sample, symmetries, and a reproducible order.

Sample stream. Every training sample has a *global sample number* ``n`` (0, 1, 2, ... over the
whole run: global step ``s`` of global batch ``B`` holds ``n = s·B ... s·B + B − 1``). Sample
``n`` is a pure function of ``(seed, stage, stream, n)``:

* its clean patch: for a dataset, pass ``p = n // N_patches`` visits the patches in the order of
  a permutation seeded by ``(seed, stage, stream, p)``; for ``simulate:planck18``, patches are
  simulated ``sim_chunk`` at a time (one FFT grid) with a generator seeded by
  ``(seed, stage, stream, n // sim_chunk)``;
* its mask (``combine.masks.MaskSampler`` over the configured mix) and its symmetry (one of
  the 8 elements of the dihedral group of the square: ``k`` quarter turns, then an optional
  left-right flip; exact symmetries of an isotropic sky) from a generator seeded by
  ``(seed, stage, stream, n)``.

So two runs with the same seed see the same samples, whatever the number of DataLoader workers
or DDP ranks (rank ``r`` of ``R`` takes ``n = s·B + r·B/R ... s·B + (r+1)·B/R − 1``), and a
resumed run sees exactly the samples of an uninterrupted one. Workers additionally seed the
global numpy / ``random`` / torch generators from ``(seed, epoch, rank, worker)`` for any
library code that draws from them (nothing here does).

Network input: ``x = M ⊙ T + (1 − M) · hole_fill_uk`` (holes hold a constant, which the
partial convolution ignores); target ``T``; mask ``M`` (1 = valid). For networks that correct a
classical first guess (``prefill`` ``"biharmonic"``, ``"gmrf"``, ``"lwiener"``) the sample also
holds that first guess of ``x`` (:class:`combine.first_guess.FirstGuess`), computed here, in the
DataLoader workers, so that the network's ``forward`` is torch only.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .errors import InputError

STREAM_TRAIN, STREAM_VAL = 0, 1
_KIND_SAMPLE, _KIND_ORDER, _KIND_SIM = 0, 1, 2


# ---------------------------------------------------------------------------- symmetries
def apply_symmetry(a: np.ndarray, k: int) -> np.ndarray:
    """Element ``k`` (0-7) of the dihedral group D4 acting on the last two axes of ``a``.

    ``k % 4`` quarter turns (``np.rot90``), then a left-right flip if ``k >= 4``.
    """
    out = np.rot90(a, k % 4, axes=(-2, -1))
    if k >= 4:
        out = out[..., :, ::-1]
    return np.ascontiguousarray(out)


def apply_symmetry_tqu(a: np.ndarray, k: int) -> np.ndarray:
    """Element ``k`` of D4 acting on T, Q, U maps (3, H, W): :func:`apply_symmetry` of each
    field, with Q and U transformed as a spin-2 field in the DESIGN frame.

    Turning the map by 90° turns the polarisation direction ψ by 90° too: (Q, U) = P(cos 2ψ,
    sin 2ψ) changes sign, so ``k % 4`` quarter turns multiply Q and U by :math:`(-1)^k`; the
    left-right flip (x → −x) sends ψ to π − ψ: U changes sign. E stays E and B (a pseudo-scalar)
    changes sign under the flip, so TE keeps its sign (``tests/test_training_data.py``)."""
    if a.shape[-3] != 3:
        raise InputError(f"symmetry: expected T, Q, U maps (3, H, W), got {a.shape}")
    out = apply_symmetry(a, k)
    sign_q = -1.0 if (k % 4) % 2 else 1.0
    sign_u = sign_q * (-1.0 if k >= 4 else 1.0)
    out[..., 1, :, :] *= sign_q
    out[..., 2, :, :] *= sign_u
    return out


# ---------------------------------------------------------------------------- patch sources
class ArrayPatches:
    """Clean patches held in memory, (N, C, H, W) float32 μK (tests, small datasets)."""

    def __init__(self, maps: np.ndarray, name: str = "maps", attrs: dict | None = None, sky=None):
        from .sky import Sky

        maps = np.asarray(maps, dtype=np.float32)
        if maps.ndim == 3:
            maps = maps[:, None]
        if maps.ndim != 4 or maps.shape[0] < 1:
            raise InputError(f"{name}: expected patches (N, H, W) or (N, C, H, W), got {maps.shape}")
        if not np.isfinite(maps).all():
            raise InputError(f"{name}: patches hold NaN or inf")
        self.maps, self.name, self.attrs = maps, name, dict(attrs or {})
        self.sky = sky if sky is not None else Sky.from_legacy_attrs(self.attrs, source=name)

    def __len__(self):
        return self.maps.shape[0]

    @property
    def shape(self):
        return self.maps.shape[1:]

    def get(self, i: int) -> np.ndarray:
        return self.maps[i]


class H5Patches:
    """Patches of a ``combine.data`` HDF5 dataset, read one at a time.

    The header (layout, required attributes, the Sky) is checked on construction by
    :func:`combine.data.read_header`, the one dataset reader; the file is opened lazily in each
    process that reads (h5py handles do not survive ``fork``). ``sky`` is the dataset's
    :class:`~combine.sky.Sky`; ``attrs`` its attributes (``cosmology`` decoded from JSON).
    """

    def __init__(self, path):
        import json

        from .data import read_header

        self.path = Path(path)
        self.name = str(self.path)
        self._file = None
        self._pid = None
        shape, attrs, self.sky = read_header(self.path)
        if shape[-1] != shape[-2]:
            raise InputError(f"{self.path}: patches must be square, got {shape[-2]}x{shape[-1]}")
        attrs = dict(attrs, cosmology=json.loads(attrs["cosmology"]))
        self._shape = shape if len(shape) == 4 else (shape[0], 1) + tuple(shape[1:])
        self.attrs = attrs

    def __len__(self):
        return self._shape[0]

    @property
    def shape(self):
        return self._shape[1:]

    def _maps(self):
        if self._file is None or self._pid != os.getpid():
            import h5py

            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file["maps"]

    def get(self, i: int) -> np.ndarray:
        patch = np.asarray(self._maps()[i], dtype=np.float32)
        return patch[None] if patch.ndim == 2 else patch

    def __getstate__(self):  # never pickle an open handle into a worker
        state = dict(self.__dict__)
        state["_file"] = None
        return state


class SimulatedPatches:
    """Unlimited fresh flat-sky patches (``simulate:planck18``), ``chunk`` per FFT grid.

    Patch ``i`` is patch ``i % chunk`` of chunk ``i // chunk``, simulated by
    ``combine.sky.flat.simulate_flat_patches(chunk, size, ...)`` with a generator seeded by
    ``(*seed_key, i // chunk)``; the last chunk is cached, so consecutive indices cost one
    simulation per chunk.
    """

    def __init__(self, size: int, *, seed_key, chunk: int = 64, noise_uk_arcmin: float = 0.0,
                 ns: float | None = None, cl_uk2: np.ndarray | None = None,
                 pixel_arcmin: float | None = None, beam_fwhm_arcmin: float | None = None):
        from .sky import defaults

        self.size, self.chunk = int(size), int(chunk)
        self.seed_key = tuple(int(s) for s in seed_key)
        self.noise_uk_arcmin, self.ns = float(noise_uk_arcmin), ns
        self.pixel_arcmin = defaults.PIXEL_ARCMIN if pixel_arcmin is None else float(pixel_arcmin)
        self.beam_fwhm_arcmin = defaults.BEAM_FWHM_ARCMIN if beam_fwhm_arcmin is None else float(beam_fwhm_arcmin)
        if cl_uk2 is None:
            from .sky.spectra import lensed_tt_cl_uk2

            cl_uk2 = lensed_tt_cl_uk2(ns=ns)
        self.cl_uk2 = np.asarray(cl_uk2, dtype=np.float64)
        self.name = "simulate:planck18"
        from .sky import Sky

        self.sky = Sky.planck18(pixel_arcmin=self.pixel_arcmin, beam_fwhm_arcmin=self.beam_fwhm_arcmin,
                                noise_uk_arcmin=self.noise_uk_arcmin)
        if ns is not None:
            self.sky = self.sky.with_ns(ns)
        self.attrs = {"pixel_arcmin": self.pixel_arcmin, "beam_fwhm_arcmin": self.beam_fwhm_arcmin,
                      "noise_uk_arcmin": self.noise_uk_arcmin, "size": self.size, "method": "flat",
                      "ns": ns}
        self._cache = (None, None)

    def __len__(self):  # unlimited; a large number for samplers that ask
        return 2 ** 62

    @property
    def shape(self):
        return (1, self.size, self.size)

    def _chunk(self, c: int) -> np.ndarray:
        if self._cache[0] != c:
            from .sky.flat import simulate_flat_patches

            rng = np.random.default_rng([*self.seed_key, _KIND_SIM, c])
            maps = simulate_flat_patches(self.chunk, self.size, pixel_arcmin=self.pixel_arcmin,
                                         beam_fwhm_arcmin=self.beam_fwhm_arcmin,
                                         noise_uk_arcmin=self.noise_uk_arcmin, cl_uk2=self.cl_uk2,
                                         rng=rng)
            self._cache = (c, np.asarray(maps, dtype=np.float32))
        return self._cache[1]

    def get(self, i: int) -> np.ndarray:
        return self._chunk(i // self.chunk)[i % self.chunk][None]


class SimulatedTQUPatches(SimulatedPatches):
    """Unlimited fresh flat-sky T, Q, U patches (``simulate:planck18`` with ``fields = "TQU"``):
    :func:`combine.sky.polarisation.simulate_flat_tqu` of ``sky`` (TT, EE, BB, TE with their
    correlation; white noise on T, √2 × on Q/U), ``chunk`` per FFT grid, seeded as
    :class:`SimulatedPatches`."""

    def __init__(self, size: int, *, seed_key, sky, chunk: int = 64):
        self.size, self.chunk = int(size), int(chunk)
        self.seed_key = tuple(int(s) for s in seed_key)
        self.sky = sky
        self.noise_uk_arcmin, self.ns = float(sky.noise_uk_arcmin), sky.ns
        self.pixel_arcmin, self.beam_fwhm_arcmin = float(sky.pixel_arcmin), float(sky.beam_fwhm_arcmin)
        self.name = "simulate:planck18 (T, Q, U)"
        self.attrs = {"pixel_arcmin": self.pixel_arcmin, "beam_fwhm_arcmin": self.beam_fwhm_arcmin,
                      "noise_uk_arcmin": self.noise_uk_arcmin, "size": self.size, "method": "flat",
                      "ns": sky.ns, "fields": "TQU", "sky": sky.to_json()}
        self._cache = (None, None)

    @property
    def shape(self):
        return (3, self.size, self.size)

    def _chunk(self, c: int) -> np.ndarray:
        if self._cache[0] != c:
            from .sky.polarisation import simulate_flat_tqu

            rng = np.random.default_rng([*self.seed_key, _KIND_SIM, c])
            self._cache = (c, simulate_flat_tqu(self.chunk, self.size, sky=self.sky, rng=rng, min_size=2))
        return self._cache[1]

    def get(self, i: int) -> np.ndarray:
        return self._chunk(i // self.chunk)[i % self.chunk]


# ---------------------------------------------------------------------------- masks
#: Disc radii (px) of the ``disc-set`` masks and of the ``point-set`` sources.
DISC_SET_RADII_PX = (2, 3, 4, 6, 8, 12, 16)
POINT_SET_RADII_PX = (1, 1.5, 2, 2.5, 3, 4)
#: Sources per ``point-set`` mask (uniform integer, at most as many as fit).
POINT_SET_COUNT = (2, 10)
#: Clearance (px) kept between two holes of a ``*-set`` mask and between a hole and the patch
#: edge: twice the T, Q, U first guess's 12 px window plus 2, so every hole has the window of an
#: isolated hole.
SET_CLEARANCE_PX = 26

#: Mask kinds drawn here rather than by :class:`combine.masks.MaskSampler`.
SET_KINDS = ("disc-set", "point-set")


def set_mask(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A mask whose holes repeat exactly from mask to mask (1 = valid), for first guesses that
    factorise once per hole shape (:mod:`combine.first_guess_tqu`).

    * ``disc-set``: one disc (:func:`combine.masks.circle_mask`) of a radius drawn from
      :data:`DISC_SET_RADII_PX` at an integer centre;
    * ``point-set``: 2–10 discs of radii from :data:`POINT_SET_RADII_PX` at integer centres.

    Centres keep :data:`SET_CLEARANCE_PX` / 2 from the edge and two discs keep
    :data:`SET_CLEARANCE_PX` between their rims, so each hole, with its window, is a translate of
    one of a few shapes. A hole shape drawn by the 8 symmetries of the square is another shape.
    """
    from .masks import circle_mask

    edge = SET_CLEARANCE_PX // 2 + 1
    if kind == "disc-set":
        radii = [float(DISC_SET_RADII_PX[int(rng.integers(len(DISC_SET_RADII_PX)))])]
    elif kind == "point-set":
        n = int(rng.integers(POINT_SET_COUNT[0], POINT_SET_COUNT[1] + 1))
        radii = [float(POINT_SET_RADII_PX[int(i)]) for i in rng.integers(len(POINT_SET_RADII_PX), size=n)]
    else:
        raise InputError(f"unknown mask kind {kind!r} (expected one of {', '.join(SET_KINDS)})")
    mask = np.ones((size, size), np.float32)
    placed: list[tuple[int, int, float]] = []
    for r in radii:
        lo, hi = int(np.ceil(r)) + edge, size - 1 - int(np.ceil(r)) - edge
        if hi < lo:
            continue
        for _ in range(50):
            cx, cy = (int(v) for v in rng.integers(lo, hi + 1, size=2))
            if all(np.hypot(cx - x, cy - y) >= r + q + 2 + SET_CLEARANCE_PX for x, y, q in placed):
                placed.append((cx, cy, r))
                mask *= circle_mask(size, r, center=(cx, cy))
                break
    return mask


class _Masks:
    """A mask per sample from ``MaskSampler(mix, size, rng)`` driven by the sample's generator
    (or :func:`set_mask` for the kinds :data:`SET_KINDS`)."""

    def __init__(self, mix: dict, size: int):
        self.mix, self.size = dict(mix), int(size)
        self._set = {k: float(v) for k, v in self.mix.items() if k in SET_KINDS}
        self._other = {k: float(v) for k, v in self.mix.items() if k not in SET_KINDS}
        total = sum(self._set.values()) + sum(self._other.values())
        if any(not np.isfinite(v) or v < 0 for v in self._set.values()) or not total > 0:
            raise InputError(f"[data] mask_mix: {self.mix} needs non-negative probabilities with a positive sum")
        self._p_set = sum(self._set.values()) / total
        self._check()

    def _check(self):
        from .masks import MaskSampler

        if not self._other or sum(self._other.values()) <= 0:
            return
        try:
            MaskSampler(self._other, self.size, np.random.default_rng(0))
        except InputError as exc:
            raise InputError(f"[data] mask_mix: {exc}") from None
        except (ValueError, KeyError) as exc:
            raise InputError(f"[data] mask_mix: {self.mix} rejected ({exc})") from None

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        from .masks import MaskSampler

        if self._set:  # one extra draw decides between the set kinds and MaskSampler's
            u = float(rng.random())
            if u < self._p_set:
                kinds = list(self._set)
                p = np.array([self._set[k] for k in kinds])
                kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))] if len(kinds) > 1 else kinds[0]
                mask = set_mask(kind, self.size, rng)
                return self._keep_one(mask, rng)
        mask = np.asarray(MaskSampler(self._other, self.size, rng).sample(), dtype=np.float32)
        return self._keep_one(mask, rng)

    def _keep_one(self, mask, rng):
        mask = np.asarray(mask, dtype=np.float32)
        if mask.shape != (self.size, self.size):
            raise RuntimeError(f"MaskSampler returned shape {mask.shape}, expected {(self.size,) * 2}")
        if not (mask > 0).any():  # a mask must keep at least one valid pixel
            mask = mask.copy()
            mask[rng.integers(self.size), rng.integers(self.size)] = 1.0
        return mask


# ---------------------------------------------------------------------------- targets
class WienerTargets:
    """Training target = the exact Wiener fill of the sample (distillation of the optimum).

    For a Gaussian sky the minimiser of any mean-squared hole loss is the conditional mean
    :math:`\\mu_h = -Q_{hh}^{-1}Q_{hv}T_v` (:class:`combine.baselines.WienerFilter`). Training on
    the truth reaches it only through the average over the truth's scatter about it (the Wiener
    error, 3–60 μK per hole pixel: most of each sample's gradient is noise); training on
    :math:`\\mu_h` itself has the same optimum and no such noise. Holes larger than
    ``max_hole_px`` pixels keep the truth as target (their Cholesky costs seconds).

    ``__call__(clean (C, H, W), mask (1, H, W))`` returns the target (C, H, W) float32 or None.
    Picklable: the filter (and its 2 GB precision matrix at 128², read from the disk cache) is
    built lazily in the process that calls it.
    """

    def __init__(self, *, size: int, pixel_arcmin: float, beam_fwhm_arcmin: float, noise_uk_arcmin: float,
                 cl_uk2=None, ns=None, max_hole_px: int = 1500):
        self.kw = dict(pixel_arcmin=float(pixel_arcmin), beam_fwhm_arcmin=float(beam_fwhm_arcmin),
                       noise_uk_arcmin=float(noise_uk_arcmin), ns=ns,
                       cl_uk2=None if cl_uk2 is None else np.asarray(cl_uk2, dtype=np.float64))
        self.size, self.max_hole_px = int(size), int(max_hole_px)
        self._filter = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_filter"] = None
        return state

    def __call__(self, clean: np.ndarray, mask: np.ndarray):
        n_hole = int((mask[0] <= 0).sum())
        if n_hole == 0 or n_hole > self.max_hole_px:
            return None
        if self._filter is None:
            from .baselines.wiener import WienerFilter

            self._filter = WienerFilter(self.size, geometry_cache_bytes=int(2e8), **self.kw)
        return self._filter.fill(clean[None].astype(np.float64), mask[None])[0].astype(np.float32)


# ---------------------------------------------------------------------------- dataset
class InpaintingSamples(Dataset):
    """Map-style dataset: ``ds[n]`` is global sample ``n`` -> ``(x_in, mask, target)``.

    ``x_in`` and ``target`` are (C, H, W) float32 μK, ``mask`` (1, H, W) float32 0/1.

    Parameters
    ----------
    source : ArrayPatches | H5Patches | SimulatedPatches
        Clean patches.
    mask_mix : dict
        ``MaskSampler`` mix, e.g. ``{"random": 0.5, "circle": 0.5}``.
    seed_key : tuple of int
        ``(seed, stage, stream)``.
    augment : bool
        Apply a random element of D4 (map and mask alike).
    hole_fill_uk : float
        Constant written into the holes of ``x_in``.
    single_image : bool
        Every sample uses patch 0 (stage 0: the warm start on one image).
    target_fn : callable, optional
        ``target_fn(clean, mask)`` -> target or None (None: the clean patch), e.g. :class:`WienerTargets`.
    first_guess : combine.first_guess.FirstGuess, optional
        When given, ``ds[n]`` is ``(x_in, mask, target, first_guess)``, the last (C, H, W)
        float32 μK: the first guess of ``x_in`` (its valid pixels equal ``x_in``'s).
    """

    def __init__(self, source, *, mask_mix: dict, seed_key, augment: bool = True,
                 hole_fill_uk: float = 0.0, single_image: bool = False, target_fn=None, first_guess=None):
        self.source = source
        c, h, w = source.shape
        if h != w:
            raise InputError(f"{source.name}: patches must be square, got {h}x{w}")
        self.masks = _Masks(mask_mix, h)
        self.seed_key = tuple(int(s) for s in seed_key)
        self.augment, self.hole_fill_uk = bool(augment), float(hole_fill_uk)
        self.single_image = bool(single_image)
        self.target_fn = target_fn
        self.first_guess = first_guess
        #: three-channel patches are T, Q, U: symmetries turn Q/U as a spin-2 field
        self.spin2 = c == 3
        self._order = (None, None)

    def __len__(self):
        return len(self.source)

    def patch_index(self, n: int) -> int:
        """Patch of sample ``n``: 0 for ``single_image``, else pass ``n // N`` of a seeded permutation."""
        if self.single_image:
            return 0
        if isinstance(self.source, SimulatedPatches):
            return n
        count = len(self.source)
        p = n // count
        if self._order[0] != p:
            perm = np.random.default_rng([*self.seed_key, _KIND_ORDER, p]).permutation(count)
            self._order = (p, perm)
        return int(self._order[1][n % count])

    def __getitem__(self, n: int):
        n = int(n)
        clean = self.source.get(self.patch_index(n))
        rng = np.random.default_rng([*self.seed_key, _KIND_SAMPLE, n])
        mask = self.masks.draw(rng)
        if self.augment:
            k = int(rng.integers(8))
            turn = apply_symmetry_tqu if clean.shape[0] == 3 and self.spin2 else apply_symmetry
            clean, mask = turn(clean, k), apply_symmetry(mask, k)
        mask = mask[None]
        x_in = np.where(mask > 0, clean, np.float32(self.hole_fill_uk)).astype(np.float32)
        target = self.target_fn(clean, mask) if self.target_fn is not None else None
        target = clean if target is None else target
        sample = (torch.from_numpy(x_in), torch.from_numpy(np.ascontiguousarray(mask)),
                  torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32)))
        if self.first_guess is None:
            return sample
        return sample + (torch.from_numpy(self.first_guess.fill(x_in[None], mask[None])[0]),)


class StepBatches(Sampler):
    """Batches of global sample numbers for one rank: steps ``start_step .. end_step − 1``.

    Step ``s`` of global batch ``B`` on rank ``r`` of ``R`` holds
    ``n = s·B + r·B/R + j``, ``j = 0 .. B/R − 1``.
    """

    def __init__(self, start_step: int, end_step: int, global_batch: int, rank: int = 0, world: int = 1):
        if global_batch % world:
            raise InputError(f"--batch-size: global batch {global_batch} is not divisible by "
                             f"the {world} processes")
        self.start, self.end = int(start_step), int(end_step)
        self.global_batch, self.local_batch = int(global_batch), int(global_batch) // world
        self.rank = int(rank)

    def __len__(self):
        return max(0, self.end - self.start)

    def __iter__(self):
        for s in range(self.start, self.end):
            base = s * self.global_batch + self.rank * self.local_batch
            yield list(range(base, base + self.local_batch))


def worker_init(seed: int, epoch: int, rank: int):
    """``worker_init_fn`` factory: one thread per worker, globals seeded by (seed, epoch, rank, worker)."""
    return _WorkerInit(seed, epoch, rank)


class _WorkerInit:
    def __init__(self, seed, epoch, rank):
        self.key = (int(seed), int(epoch), int(rank))

    def __call__(self, worker_id: int):
        torch.set_num_threads(1)
        ss = np.random.SeedSequence([*self.key, int(worker_id)])
        s32 = ss.generate_state(2)
        np.random.seed(int(s32[0]))
        random.seed(int(s32[1]))
        torch.manual_seed(int(ss.generate_state(1, np.uint64)[0] >> 1))


def make_loader(dataset: InpaintingSamples, sampler: StepBatches, *, num_workers: int, seed: int,
                epoch: int, rank: int, pin_memory: bool = False):
    """A DataLoader over ``sampler``'s batches (order preserved whatever ``num_workers``)."""
    from torch.utils.data import DataLoader

    kwargs = {}
    if num_workers > 0:
        kwargs = dict(worker_init_fn=worker_init(seed, epoch, rank), prefetch_factor=2,
                      multiprocessing_context="fork" if os.name == "posix" else None)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
                      **kwargs)


# ---------------------------------------------------------------------------- opening sources
def open_sources(source: str, *, size: int, seed: int, stage: int, noise_uk_arcmin: float = 0.0,
                 ns: float | None = None, sim_chunk: int = 64, cl_uk2=None, fields: str = "T"):
    """``(train_source, val_source | None)`` for ``--data`` (a directory, an ``.h5`` file or
    ``simulate:planck18``; ``fields`` ``"TQU"`` simulates T, Q, U patches)."""
    if source.startswith("simulate:"):
        if source != "simulate:planck18":
            raise InputError(f"--data: unknown simulation {source!r} (known: simulate:planck18)")
        if fields == "TQU":
            from .sky import Sky

            sky = Sky.planck18(noise_uk_arcmin=noise_uk_arcmin)
            sky = sky if ns is None else sky.with_ns(ns)
            return (SimulatedTQUPatches(size, seed_key=(seed, stage, STREAM_TRAIN), sky=sky, chunk=sim_chunk),
                    SimulatedTQUPatches(size, seed_key=(seed, stage, STREAM_VAL), sky=sky, chunk=sim_chunk))
        if fields != "T":
            raise InputError(f"[data] fields: must be \"T\" or \"TQU\", got {fields!r}")
        if cl_uk2 is None:
            from .sky.spectra import lensed_tt_cl_uk2

            cl_uk2 = lensed_tt_cl_uk2(ns=ns)
        kw = dict(chunk=sim_chunk, noise_uk_arcmin=noise_uk_arcmin, ns=ns, cl_uk2=cl_uk2)
        return (SimulatedPatches(size, seed_key=(seed, stage, STREAM_TRAIN), **kw),
                SimulatedPatches(size, seed_key=(seed, stage, STREAM_VAL), **kw))
    path = Path(source)
    if path.is_dir():
        train = path / "train.h5"
        if not train.is_file():
            raise InputError(f"{path}: no train.h5 in this directory (expected a `combine simulate` output)")
        val = path / "val.h5"
        return H5Patches(train), (H5Patches(val) if val.is_file() else None)
    if path.is_file():
        return H5Patches(path), None
    raise InputError(f"{source}: no such dataset directory or file")
