"""Model directories: save, load (by name or path) and inpaint numpy maps.

A model directory (docs/DESIGN.md) holds ``weights.safetensors`` and ``config.json``::

    {"format": "combine-model/1", "combine_version": "...",
     "architecture": PConvUNet.config(),      # includes the μK -> network-unit normalisation
     "patch_size": 128, "pixel_arcmin": 1.7177,
     "first_guess": FirstGuess.config(),      # networks with a classical first guess
     "sky": Sky.to_json(), "loss": {...}, "training": {...}, "evaluation": {...}}   # extras

and, for a local-Wiener first guess, ``first_guess.safetensors`` (its correlation table, see
:mod:`combine.first_guess`). Everything inference needs is in the directory: loading and
running a model imports no CAMB and reads no cache. (Directories written before the first guess
was stored rebuild it from the default sky on load, which does need CAMB or its cache.)

Nothing is unpickled: weights are safetensors, the rest is JSON, so loading a model cannot run
code. Shipped models live in ``combine/pretrained/<name>/`` and load by name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .atomic import atomic_dir
from .errors import InputError
from .validation import check_maps_and_masks

MODEL_FORMAT = "combine-model/1"
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"


def list_pretrained() -> list[str]:
    """Names of the models shipped inside the package."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / CONFIG_FILE).is_file())


def save_model(unet, directory, extra: dict | None = None, first_guess=None) -> Path:
    """Write ``unet`` (a :class:`combine.nn.PConvUNet`), its first guess and config to ``directory`` atomically.

    ``extra`` (JSON-able) is merged into ``config.json``; ``patch_size`` defaults to
    ``extra["sky"]["size"]`` or 128. ``first_guess`` (:class:`combine.first_guess.FirstGuess`) is
    stored for networks that need one (default: the network's kind for the default sky,
    ``FirstGuess.for_sky(unet.prefill, size=patch_size)``).
    """
    from safetensors.torch import save_file

    from . import __version__
    from .sky.defaults import PATCH_SIZE, PIXEL_ARCMIN

    extra = json.loads(json.dumps(extra or {}, default=float))
    sky = extra.get("sky") or {}
    config = {
        "format": MODEL_FORMAT,
        "combine_version": __version__,
        "architecture": unet.config(),
        "patch_size": int(extra.get("patch_size", sky.get("size", PATCH_SIZE))),
        "pixel_arcmin": float(extra.get("pixel_arcmin", sky.get("pixel_arcmin", PIXEL_ARCMIN))),
        "encoder_bn_frozen": bool(getattr(unet, "encoder_bn_frozen", False)),
    }
    if getattr(unet, "needs_first_guess", False):
        if first_guess is None:
            from .first_guess import FirstGuess

            first_guess = FirstGuess.for_sky(unet.prefill, size=config["patch_size"])
        if first_guess.kind != unet.prefill:
            raise InputError(f"first_guess: kind {first_guess.kind!r} does not match the network's prefill {unet.prefill!r}")
        config["first_guess"] = first_guess.config()
    elif first_guess is not None:
        raise InputError(f"first_guess: the network (prefill {unet.prefill!r}) takes no stored first guess")
    for key, value in extra.items():
        config.setdefault(key, value)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in unet.state_dict().items()}
    with atomic_dir(directory) as tmp:
        save_file(tensors, os.fspath(Path(tmp) / WEIGHTS_FILE), metadata={"format": MODEL_FORMAT})
        if first_guess is not None:
            first_guess.save(tmp)
        (Path(tmp) / CONFIG_FILE).write_text(json.dumps(config, indent=1), encoding="utf-8")
    return Path(directory)


def resolve_model_dir(name_or_dir) -> Path:
    """A shipped model name or a model directory -> its directory (InputError if neither)."""
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    shipped = PRETRAINED_DIR / str(name_or_dir)
    if "/" not in str(name_or_dir) and (shipped / CONFIG_FILE).is_file():
        return shipped
    known = ", ".join(list_pretrained()) or "none installed"
    raise InputError(f"{name_or_dir}: no such model directory, nor a shipped model in {PRETRAINED_DIR} "
                     f"(shipped: {known})")


def load_model(name_or_dir, device="cpu") -> "InpaintingModel":
    """Load a model directory or a shipped model by name; every failure is an InputError."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .nn import PConvUNet

    directory = resolve_model_dir(name_or_dir)
    cfg_path, w_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise InputError(f"{directory}: not a model directory (missing {p.name})")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{cfg_path}: unreadable model config ({exc})") from None
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), dict):
        raise InputError(f"{cfg_path}: model config has no 'architecture' table")
    if config.get("format", MODEL_FORMAT) != MODEL_FORMAT:
        raise InputError(f"{cfg_path}: unsupported model format {config.get('format')!r} (expected {MODEL_FORMAT!r})")
    architecture = dict(config["architecture"])
    legacy_coeffs = architecture.pop("prefill_coeffs", None)  # written before the first guess was stored
    try:
        unet = PConvUNet(**architecture)
    except (TypeError, ValueError, RuntimeError, InputError) as exc:
        raise InputError(f"{cfg_path}: invalid architecture ({exc})") from None
    try:
        state = load_file(os.fspath(w_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"{w_path}: corrupt or truncated weights ({exc})") from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise InputError(f"{w_path}: weights hold NaN or inf ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})")
    try:
        unet.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InputError(f"{w_path}: weights do not match the architecture in config.json "
                         f"({first[1].strip() if len(first) > 1 else first[0]})") from None
    if config.get("encoder_bn_frozen"):
        unet.freeze_encoder_bn(True)
    unet.eval().to(torch.device(device))
    first_guess = _load_first_guess(unet, config, directory, legacy_coeffs)
    try:
        return InpaintingModel(unet, config, directory, first_guess=first_guess)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{cfg_path}: invalid patch_size or pixel_arcmin ({exc})") from None


def _load_first_guess(unet, config: dict, directory: Path, legacy_coeffs=None):
    """The stored first guess of a model directory; None for networks without one. Directories
    from before it was stored get the default-sky first guess of their kind (CAMB or its cache:
    the 8 px window, 3000 px cap and ``prefill_coeffs`` of those versions)."""
    from .first_guess import FirstGuess

    if not unet.needs_first_guess:
        return None
    if "first_guess" in config:
        fg = FirstGuess.load(config["first_guess"], directory)
        if fg.kind != unet.prefill:
            raise InputError(f"{directory / CONFIG_FILE}: first_guess kind {fg.kind!r} does not match "
                             f"the architecture's prefill {unet.prefill!r}")
        return fg
    return FirstGuess.for_sky(unet.prefill, None, size=int(config.get("patch_size", 128)), gmrf_coeffs=legacy_coeffs,
                              margin_px=8, max_window_px=3000)


class InpaintingModel:
    """A trained PConvUNet with its config; :meth:`inpaint` fills numpy maps in μK.

    Attributes: ``unet`` (the network, eval mode), ``config`` (dict from ``config.json``),
    ``directory``, ``name``, ``patch_size`` (side it was trained on), ``pixel_arcmin``,
    ``in_channels``, ``first_guess`` (:class:`combine.first_guess.FirstGuess` or None).
    """

    def __init__(self, unet, config: dict, directory=None, first_guess=None):
        self.unet, self.config = unet, dict(config)
        if first_guess is None and getattr(unet, "needs_first_guess", False):
            raise ValueError(f"the network's prefill {unet.prefill!r} needs a first_guess")
        self.first_guess = first_guess
        self.directory = Path(directory) if directory is not None else None
        self.name = self.directory.name if self.directory is not None else "model"
        self.patch_size = int(self.config.get("patch_size", 128))
        self.pixel_arcmin = float(self.config.get("pixel_arcmin", 1.7177))
        self.in_channels = int(unet.in_channels)
        if self.patch_size < 1 or not (self.pixel_arcmin > 0):
            raise ValueError(f"patch_size {self.patch_size}, pixel_arcmin {self.pixel_arcmin} must be > 0")

    def __repr__(self):
        return f"InpaintingModel({self.name!r}, preset={self.unet.preset!r}, patch_size={self.patch_size})"

    def predict(self, maps_nchw: np.ndarray, masks_nchw: np.ndarray, first_guess: np.ndarray | None = None,
                batch_size: int = 16) -> np.ndarray:
        """Raw network output (N, C, H, W) μK for inputs whose holes may hold anything.

        Parameters
        ----------
        maps_nchw : ndarray (N, C, H, W)
            Maps in μK; H and W multiples of ``2**levels``; hole values are never used.
        masks_nchw : ndarray (N, 1, H, W) or (N, C, H, W)
            Binary masks, 1 = valid; every map needs a valid pixel.
        first_guess : ndarray (N, C, H, W), optional
            The classical fill the network corrects, in μK (only its hole pixels are used). By
            default the model's own (:attr:`first_guess`, computed from the stored tables); a
            caller may supply another, e.g. a fill computed on the sphere and projected onto the
            patch. Only for networks with a first-guess input (``unet.prefill != "none"``).
        batch_size : int
            Maps per network call.

        Runs under ``torch.inference_mode()`` in batches. Hole values are zeroed first (the
        partial convolutions ignore them, but NaN/UNSEEN would poison the arithmetic).

        Examples
        --------
        >>> fg = my_sphere_fill_projected(maps, masks)                 # doctest: +SKIP
        >>> raw = model.predict(maps, masks, first_guess=fg)           # doctest: +SKIP
        >>> filled = np.where(masks > 0, maps, raw)                    # doctest: +SKIP
        """
        import torch

        maps_nchw, masks_nchw = np.asarray(maps_nchw), np.asarray(masks_nchw)
        if maps_nchw.ndim != 4:
            raise InputError(f"{self.name}: predict takes (N, C, H, W) maps, got shape {maps_nchw.shape}")
        multiple = self.unet.input_size_multiple
        n, c, h, w = maps_nchw.shape
        if int(batch_size) < 1:
            raise InputError(f"batch_size: must be >= 1, got {batch_size}")
        batch_size = int(batch_size)
        if h % multiple or w % multiple:
            raise InputError(f"{self.name}: map side {h}×{w} is not a multiple of {multiple} px")
        if c != self.in_channels:
            raise InputError(f"{self.name}: model takes {self.in_channels} channel(s), maps have {c}")
        if first_guess is not None:
            first_guess = np.asarray(first_guess)
            if self.unet.prefill == "none":
                raise InputError(f"{self.name}: this network takes no first guess (prefill 'none')")
            if first_guess.shape != maps_nchw.shape:
                raise InputError(f"{self.name}: first_guess has shape {first_guess.shape}, the maps {maps_nchw.shape}")
        device = next(self.unet.parameters()).device
        out = np.empty((n, c, h, w), np.float32)
        with torch.inference_mode():
            for i in range(0, n, batch_size):
                sl = slice(i, i + batch_size)
                # writable (torch warns on read-only arrays, e.g. broadcast masks)
                m = torch.from_numpy(np.require(masks_nchw[sl], np.float32, ["C", "W"]))
                x = torch.from_numpy(np.ascontiguousarray(np.where(masks_nchw[sl] > 0, maps_nchw[sl], 0.0),
                                                          np.float32))
                mm = m if m.shape[1] == 1 or self.in_channels == m.shape[1] else m[:, :1]
                if self.unet.prefill == "lwiener-tqu" and mm.shape[1] > 1 and bool((mm == mm[:, :1]).all()):
                    mm = mm[:, :1]  # one mask for T, Q, U: the network's one-channel mask, as in training
                self.unet.check_inputs(x, mm)
                fg = None
                if first_guess is not None:
                    fg = torch.from_numpy(np.ascontiguousarray(first_guess[sl], np.float32)).to(device)
                elif self.first_guess is not None:
                    fg = torch.from_numpy(self.first_guess.fill(x.numpy(), m.numpy())).to(device)
                out[sl] = self.unet(x.to(device), mm.to(device), first_guess=fg).cpu().numpy()
        return out

    def inpaint(self, maps, masks, *, batch_size: int = 16) -> np.ndarray:
        """Fill the holes of ``maps`` (μK) where ``masks`` is 0; valid pixels are returned unchanged.

        ``maps`` is (H, W), (N, H, W) or (N, C, H, W); ``masks`` broadcasts to it (docs/DESIGN.md).
        Patches of the trained size (or any multiple of ``2**levels`` up to it) go straight
        through the network; larger images are tiled (:func:`combine.inpaint.inpaint_tiled`).
        The result has the input's shape and dtype float32 where the input is float32:
        ``out[valid] == maps[valid]`` bit for bit.
        """
        raw = np.asarray(maps)
        data, mask = check_maps_and_masks(raw, masks)  # mask broadcast to data.shape
        shape = data.shape
        lead = {2: (1, 1), 3: (shape[0], 1), 4: shape[:2]}[data.ndim]
        x4 = data.reshape(lead + shape[-2:])
        m4 = mask.reshape(lead + shape[-2:])
        h, w = shape[-2:]
        multiple = self.unet.input_size_multiple
        if h > self.patch_size or w > self.patch_size or h % multiple or w % multiple:
            from .inpaint import inpaint_tiled

            pred = inpaint_tiled(self, x4, m4, batch_size=batch_size)
        else:
            pred = self.predict(x4, m4, batch_size=batch_size)
        out_dtype = raw.dtype if np.issubdtype(raw.dtype, np.floating) else np.float32
        return np.where(mask > 0, raw, pred.reshape(shape).astype(out_dtype, copy=False)).astype(out_dtype, copy=False)
