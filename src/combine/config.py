"""Training configuration: a typed dataclass of every knob, read from TOML, written back resolved.

Precedence (later wins): built-in defaults < stage defaults < the TOML file < command-line
overrides. Knobs whose default depends on the stage (``lr``, ``epochs``, ``steps_per_epoch``,
``freeze_encoder_bn``, ``single_image``) default to ``None`` in the dataclass and are filled by
:meth:`TrainConfig.resolve` from :data:`STAGE_DEFAULTS`:

* stage 0, the original CoMBInE's warm start: Adam lr 1e-4 on one image (fresh masks and
  symmetries every step), 3 short epochs of 50 steps, batch norm active;
* stage 1: Adam lr 1e-4, batch norm active everywhere;
* stage 2: Adam lr 5e-5, encoder batch norm frozen (``PConvUNet.freeze_encoder_bn``), started
  from a stage-1 model (``--init``).

File layout (every table and key optional)::

    stage = 1
    seed = 0
    [data]   source, fields, size, noise_uk_arcmin, ns, mask_mix = {random = 0.5, circle = 0.5},
             augment, hole_fill_uk, target ("truth" | "wiener"), wiener_max_hole_px, num_workers, sim_chunk
    [train]  epochs, steps_per_epoch, val_steps, batch_size, lr, betas, weight_decay,
             grad_clip, freeze_encoder_bn, single_image, log_every_steps, image_every_steps,
             precision, tensorboard, keep_checkpoints, device
    [model]  preset, in_channels, levels, kernels, channels, stem_channels, stem_kernel,
             decoder_kernel, input_scale_uk, input_offset_uk, prefill, prefill_sweeps (PConvUNet arguments),
             prefill_coeffs, first_guess_margin_px, first_guess_max_window_px (its first guess)
    [loss]   preset, vgg_weights, unit_uk, [loss.weights] term = weight    (build_loss arguments)

An unknown table or key, or a value of the wrong type, raises :class:`InputError` naming the
file and the key (``run.toml: [train] epochs: expected an integer, got "ten"``).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import InputError

SIMULATE_PREFIX = "simulate:"
STAGES = (0, 1, 2)

#: Stage-dependent defaults (the original CoMBInE's two Adam stages, plus its warm start).
STAGE_DEFAULTS: dict[int, dict[str, Any]] = {
    0: dict(lr=1e-4, epochs=3, steps_per_epoch=50, freeze_encoder_bn=False, single_image=True),
    1: dict(lr=1e-4, epochs=50, steps_per_epoch=1000, freeze_encoder_bn=False, single_image=False),
    2: dict(lr=5e-5, epochs=50, steps_per_epoch=1000, freeze_encoder_bn=True, single_image=False),
}


@dataclass
class DataConfig:
    """Where patches come from, how they are masked and augmented."""

    #: dataset directory (``train.h5`` [+ ``val.h5``]), an ``.h5`` file, or ``simulate:planck18``
    source: str = "simulate:planck18"
    #: patch side in pixels for ``simulate:`` (datasets carry their own size)
    size: int = 128
    #: fields of simulated patches: "T" or "TQU" (T, Q, U with TE; Q/U noise √2 × noise_uk_arcmin)
    fields: str = "T"
    #: white noise of simulated patches, μK·arcmin
    noise_uk_arcmin: float = 0.0
    #: spectral index of simulated patches (None: Planck 2018)
    ns: Optional[float] = None
    #: mask kinds and their probabilities (combine.masks.MaskSampler)
    mask_mix: dict[str, float] = field(default_factory=lambda: {"random": 0.5, "circle": 0.5})
    #: random element of the 8 symmetries of the square per sample
    augment: bool = True
    #: value written into holes of the network input (the partial convolution ignores it)
    hole_fill_uk: float = 0.0
    #: training target in the holes: "truth" (the patch) or "wiener" (its exact Wiener fill,
    #: the conditional mean the MSE losses converge to, without the truth's scatter about it;
    #: for holes of at most wiener_max_hole_px pixels, larger ones keep the truth)
    target: str = "truth"
    wiener_max_hole_px: int = 1500
    #: DataLoader worker processes (0: load in the training process)
    num_workers: int = 0
    #: simulated patches generated together (one FFT grid of (8·size)² holds 64 patches);
    #: the sample stream depends on it
    sim_chunk: int = 64


@dataclass
class TrainLoopConfig:
    """Optimisation and logging."""

    epochs: Optional[int] = None
    steps_per_epoch: Optional[int] = None
    val_steps: int = 10
    #: global batch (split evenly across DDP ranks)
    batch_size: int = 16
    lr: Optional[float] = None
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    #: gradient-norm clip (0: none)
    grad_clip: float = 0.0
    freeze_encoder_bn: Optional[bool] = None
    single_image: Optional[bool] = None
    log_every_steps: int = 10
    image_every_steps: int = 500
    #: "float32" (training) or "float64" (verification: reduction-order rounding, which Adam
    #: amplifies on parameters whose gradient is ~0, drops out of comparisons between runs)
    precision: str = "float32"
    #: write TensorBoard events under RUN_DIR/tensorboard
    tensorboard: bool = True
    #: per-epoch checkpoints kept (0: all); last/ and best/ are always kept
    keep_checkpoints: int = 0
    #: "auto", "cpu", "cuda" or "cuda:N"
    device: str = "auto"


@dataclass
class ModelConfig:
    """:class:`combine.nn.PConvUNet` arguments; ``None`` means "the preset's value"."""

    preset: str = "t128"
    #: map channels (1 = T, 3 = T, Q, U); None: the preset's (1 for the t* presets, 3 for tqu128-lw)
    in_channels: Optional[int] = None
    levels: Optional[int] = None
    kernels: Optional[list[int]] = None
    channels: Optional[list[int]] = None
    stem_channels: Optional[int] = None
    stem_kernel: int = 5
    decoder_kernel: int = 3
    #: network units (μK): one number, or one per channel; None: the preset's (100 μK; T, Q, U 100, 5, 5)
    input_scale_uk: Optional[typing.Union[float, list[float]]] = None
    input_offset_uk: typing.Union[float, list[float]] = 0.0
    #: classical first guess the network corrects: "none", "harmonic", "biharmonic", "gmrf", "lwiener",
    #: "lwiener-tqu" (the joint T, Q, U local Wiener fill)
    prefill: Optional[str] = None
    prefill_sweeps: int = 24
    #: GMRF precision coefficients a_0..a_K (prefill = "gmrf", or "lwiener" for its large holes; default the planck18 fit)
    prefill_coeffs: Optional[list[float]] = None
    #: local Wiener first guess: window margin and cap (px); default the combine.baselines.local_wiener defaults
    first_guess_margin_px: Optional[int] = None
    first_guess_max_window_px: Optional[int] = None

    #: keys that configure the first guess (combine.first_guess.FirstGuess), not the network
    FIRST_GUESS_KEYS = ("prefill_coeffs", "first_guess_margin_px", "first_guess_max_window_px")

    def unet_kwargs(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k not in self.FIRST_GUESS_KEYS}

    def first_guess(self, size: int, prefill: str, sky=None):
        """The :class:`combine.first_guess.FirstGuess` of a network with ``prefill`` (None for
        "none"/"harmonic"), for ``sky`` (default planck18 at 1 μK·arcmin) on ``size`` patches."""
        from .first_guess import KINDS, FirstGuess

        if prefill not in KINDS:
            return None
        return FirstGuess.for_sky(prefill, sky, size=size, gmrf_coeffs=self.prefill_coeffs,
                                  margin_px=self.first_guess_margin_px, max_window_px=self.first_guess_max_window_px)


@dataclass
class LossConfig:
    """:func:`combine.nn.losses.build_loss` arguments."""

    preset: str = "pixel"
    #: per-term weight overrides (0 removes a term)
    weights: dict[str, float] = field(default_factory=dict)
    #: VGG16 weights file (.pth or .h5) for the "paper" preset
    vgg_weights: Optional[str] = None
    #: image unit of the loss terms (μK): one number, or one per channel (T, Q, U: the Q/U
    #: errors are ~25× smaller than T's and would not count in a common unit)
    unit_uk: typing.Union[float, list[float]] = 1000.0


@dataclass
class TrainConfig:
    """Every knob of ``combine train`` (see the module docstring for the TOML layout)."""

    stage: int = 1
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    # ------------------------------------------------------------------ resolution
    def resolve(self, source: str = "config") -> "TrainConfig":
        """Fill stage defaults and check values; returns ``self``."""
        if self.stage not in STAGES:
            raise InputError(f"{source}: stage: must be 0, 1 or 2, got {self.stage}")
        for key, value in STAGE_DEFAULTS[self.stage].items():
            if getattr(self.train, key) is None:
                setattr(self.train, key, value)
        self.validate(source)
        return self

    def validate(self, source: str = "config") -> None:
        t, d = self.train, self.data

        def bad(key, problem):
            raise InputError(f"{source}: {key}: {problem}")

        for key in ("epochs", "steps_per_epoch", "batch_size", "log_every_steps", "image_every_steps"):
            if getattr(t, key) is not None and getattr(t, key) < 1:
                bad(f"[train] {key}", f"must be >= 1, got {getattr(t, key)}")
        if t.val_steps < 0 or t.keep_checkpoints < 0:
            bad("[train] val_steps/keep_checkpoints", "must be >= 0")
        if t.lr is not None and not (t.lr > 0 and math.isfinite(t.lr)):
            bad("[train] lr", f"must be a positive number, got {t.lr}")
        if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas):
            bad("[train] betas", f"must be two numbers in [0, 1), got {t.betas}")
        if t.weight_decay < 0 or t.grad_clip < 0:
            bad("[train] weight_decay/grad_clip", "must be >= 0")
        if not (t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:")):
            bad("[train] device", f"must be auto, cpu, cuda or cuda:N, got {t.device!r}")
        if t.precision not in ("float32", "float64"):
            bad("[train] precision", f"must be float32 or float64, got {t.precision!r}")
        if d.fields not in ("T", "TQU"):
            bad("[data] fields", f"must be \"T\" or \"TQU\", got {d.fields!r}")
        if d.size < 1 or d.num_workers < 0 or d.sim_chunk < 1:
            bad("[data] size/num_workers/sim_chunk", "must be positive")
        if d.noise_uk_arcmin < 0 or not math.isfinite(d.noise_uk_arcmin):
            bad("[data] noise_uk_arcmin", f"must be >= 0, got {d.noise_uk_arcmin}")
        if d.target not in ("truth", "wiener"):
            bad("[data] target", f"must be \"truth\" or \"wiener\", got {d.target!r}")
        if d.wiener_max_hole_px < 1:
            bad("[data] wiener_max_hole_px", f"must be >= 1, got {d.wiener_max_hole_px}")
        if not math.isfinite(d.hole_fill_uk):
            bad("[data] hole_fill_uk", "must be finite")
        if not d.mask_mix or any(v < 0 for v in d.mask_mix.values()) or sum(d.mask_mix.values()) <= 0:
            bad("[data] mask_mix", f"needs non-negative probabilities with a positive sum, got {d.mask_mix}")
        if d.source.startswith("python:"):
            pass  # in-memory sources given to train() directly
        elif d.source.startswith(SIMULATE_PREFIX) and d.source != "simulate:planck18":
            bad("[data] source", f"unknown simulation {d.source!r} (known: simulate:planck18)")

    def lr(self) -> float:
        return float(self.train.lr if self.train.lr is not None else STAGE_DEFAULTS[self.stage]["lr"])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------- reading
def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args)
    plural = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
    if origin is list:
        return f"a list of {plural[typing.get_args(tp)[0]]}"
    if origin is dict:
        return f"a table of {plural[typing.get_args(tp)[1]]}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _coerce(value, tp, where: str):
    """Check ``value`` (from TOML or the command line) against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        for option in inner[:-1]:  # e.g. float | list[float]: the first that fits
            try:
                return _coerce(value, option, where)
            except InputError:
                pass
        return _coerce(value, inner[-1], where)
    if origin is list:
        if not isinstance(value, list):
            raise InputError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return [_coerce(v, typing.get_args(tp)[0], where) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return {str(k): _coerce(v, typing.get_args(tp)[1], f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise InputError(f"{where}: expected {_type_name(tp)}, got {value!r}")


_SECTIONS = {"data": DataConfig, "train": TrainLoopConfig, "model": ModelConfig, "loss": LossConfig}


def _apply(cfg: TrainConfig, table: dict, source: str) -> None:
    hints_top = typing.get_type_hints(TrainConfig)
    for key, value in table.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise InputError(f"{source}: [{key}] must be a table")
            section = getattr(cfg, key)
            hints = typing.get_type_hints(type(section))
            names = {f.name for f in dataclasses.fields(section)}
            for sub, sub_value in value.items():
                if sub not in names:
                    raise InputError(f"{source}: unknown key {sub!r} in [{key}] "
                                     f"(known: {', '.join(sorted(names))})")
                setattr(section, sub, _coerce(sub_value, hints[sub], f"{source}: [{key}] {sub}"))
        elif key in ("stage", "seed"):
            setattr(cfg, key, _coerce(value, hints_top[key], f"{source}: {key}"))
        else:
            known = ", ".join(["stage", "seed"] + [f"[{s}]" for s in _SECTIONS])
            raise InputError(f"{source}: unknown key {key!r} (known: {known})")


def config_from_dict(table: dict, source: str = "config", base: TrainConfig | None = None) -> TrainConfig:
    """Apply a nested dict (TOML layout) on top of ``base`` (or the defaults); not resolved."""
    cfg = copy_config(base) if base is not None else TrainConfig()
    _apply(cfg, table, source)
    return cfg


def load_config(path, base: TrainConfig | None = None) -> TrainConfig:
    """Read a TOML config file (unresolved: call :meth:`TrainConfig.resolve` after overrides)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid TOML (not UTF-8 text: {exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read config file ({exc.strerror})") from None
    return config_from_dict(table, str(path), base)


def copy_config(cfg: TrainConfig) -> TrainConfig:
    return config_from_dict(_strip_none(cfg.to_dict()), "config")


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any], source: str = "command line") -> TrainConfig:
    """Set dotted keys (``"train.lr"``, ``"stage"``); ``None`` values are skipped."""
    table: dict = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        parts = dotted.split(".")
        node = table
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    _apply(cfg, table, source)
    return cfg


# ---------------------------------------------------------------------------- writing
def _strip_none(d):
    if isinstance(d, dict):
        return {k: _strip_none(v) for k, v in d.items() if v is not None}
    return d


def _toml_key(key: str) -> str:
    if key and all(c.isalnum() or c in "_-" for c in key):
        return key
    return _toml_value(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # shortest round-trip repr, always with '.' or 'e'
    if isinstance(value, str):
        out = ['"']
        for c in value:
            if c in '"\\':
                out.append("\\" + c)
            elif ord(c) < 0x20 or ord(c) == 0x7F:
                out.append(f"\\u{ord(c):04x}")
            else:
                out.append(c)
        return "".join(out) + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def config_to_toml(cfg: TrainConfig, header: str = "") -> str:
    """TOML text of ``cfg`` (``None`` values omitted: they mean "default")."""
    d = _strip_none(cfg.to_dict())
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    for key in ("stage", "seed"):
        lines.append(f"{key} = {_toml_value(d[key])}")
    for section in _SECTIONS:
        lines.append("")
        lines.append(f"[{section}]")
        for key, value in d[section].items():
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def write_config(cfg: TrainConfig, path, header: str = "") -> None:
    """Write ``cfg`` as TOML, atomically."""
    from .atomic import atomic_path

    text = config_to_toml(cfg, header)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
