"""The classical first guess a network corrects, computed outside the network and stored with it.

A :class:`combine.nn.PConvUNet` with ``prefill`` ``"biharmonic"``, ``"gmrf"`` or ``"lwiener"``
predicts a correction to a classical fill :math:`T_{fg}` of the holes,
:math:`\\hat T = T_{fg} + f_\\theta(T_v, M)`. Those fills are numpy/scipy code, so they are not
part of ``forward``: a :class:`FirstGuess` computes them

* at inference, in :meth:`combine.models.InpaintingModel.predict` (unless the caller passes its
  own ``first_guess``, e.g. a sphere-native fill projected onto the patch);
* in training, in :class:`combine.training_data.InpaintingSamples` (DataLoader workers).

Everything a first guess needs is held here and stored in the model directory, so that running
a model needs no CAMB, no cache and no network:

* ``"lwiener"`` (:func:`combine.baselines.local_wiener.local_wiener_fill_table`): the signal
  correlation table ``xi_table_uk2[dy, dx] = ξ(Δ_pix √(dy² + dx²))`` (μK², float64, one entry per
  pixel offset of the model's patch), the noise variance per pixel ``noise_var_uk2`` (μK²), the
  window ``margin_px`` and its cap ``max_window_px``, and the GMRF coefficients of its fallback;
* ``"lwiener-tqu"`` (:mod:`combine.first_guess_tqu`, the joint T, Q, U fill of
  :func:`combine.baselines.wiener_pol.tqu_local_wiener_fill`): the four correlation tables
  ``xi_tt_uk2``, ``xi_plus_uk2``, ``xi_minus_uk2``, ``xi_cross_uk2`` by pixel offset (|dy|, |dx|)
  (μK², float64), the T and Q/U noise variances per pixel ``noise_var_uk2`` and
  ``noise_var_p_uk2`` (μK²), the window ``margin_px`` (default 12, the baseline's) and its cap;
  for (N, 3, H, W) maps with one mask for the three fields;
* ``"gmrf"`` (:func:`combine.baselines.gmrf.gmrf_fill_coeffs`): the coefficients :math:`a_k`;
* ``"biharmonic"`` (:func:`combine.baselines.biharmonic_fill`): nothing.

Model-directory form: ``config.json`` key ``first_guess`` (:meth:`FirstGuess.config`, with the
:class:`~combine.sky.Sky` JSON the tables were computed from) and the tensors in
``first_guess.safetensors`` (:data:`TENSORS_FILE`).

The fills are linear in the data and keep valid pixels bit-identical; maps without a valid pixel
(which the baselines reject) get the prior mean, 0.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from .errors import InputError

#: The ``prefill`` kinds computed here (the harmonic one is torch, inside the network).
KINDS = ("biharmonic", "gmrf", "lwiener", "lwiener-tqu")

#: Names of the T, Q, U correlation tables in ``first_guess.safetensors`` (kind ``lwiener-tqu``).
TQU_TABLES = {"tt": "xi_tt_uk2", "plus": "xi_plus_uk2", "minus": "xi_minus_uk2", "cross": "xi_cross_uk2"}

#: File of a model directory holding the first guess's tensors.
TENSORS_FILE = "first_guess.safetensors"


@dataclasses.dataclass(frozen=True, eq=False)
class FirstGuess:
    """A classical first guess with all its parameters (module docstring).

    Build one with :meth:`for_sky` (computes the tables from a :class:`~combine.sky.Sky`, CAMB
    on first use) or :meth:`load` (from a model directory, no CAMB).
    """

    kind: str
    gmrf_coeffs: tuple | None = None
    xi_table_uk2: np.ndarray | None = None
    noise_var_uk2: float = 0.0
    margin_px: int | None = None
    max_window_px: int | None = None
    sky: dict | None = None
    tqu_tables: dict | None = None
    noise_var_p_uk2: float = 0.0

    def __post_init__(self):
        from .baselines.gmrf import check_coeffs

        if self.kind not in KINDS:
            raise InputError(f"first_guess: unknown kind {self.kind!r} (known: {', '.join(KINDS)})")
        if self.kind in ("gmrf", "lwiener"):
            if self.gmrf_coeffs is None:
                raise InputError(f"first_guess: kind {self.kind!r} needs gmrf_coeffs")
            object.__setattr__(self, "gmrf_coeffs", check_coeffs(self.gmrf_coeffs))
        if self.kind == "lwiener":
            table = None if self.xi_table_uk2 is None else np.array(self.xi_table_uk2, dtype=np.float64)
            if table is None or table.ndim != 2 or not np.isfinite(table).all():
                raise InputError("first_guess: kind 'lwiener' needs a finite 2-D xi_table_uk2")
            table.setflags(write=False)
            object.__setattr__(self, "xi_table_uk2", table)
            noise = float(self.noise_var_uk2)
            if not (np.isfinite(noise) and noise >= 0):
                raise InputError(f"first_guess: noise_var_uk2 must be >= 0, got {self.noise_var_uk2!r}")
            object.__setattr__(self, "noise_var_uk2", noise)
            from .baselines.local_wiener import DEFAULT_MARGIN_PX, default_max_window_px

            margin = DEFAULT_MARGIN_PX if self.margin_px is None else int(self.margin_px)
            cap = default_max_window_px(margin) if self.max_window_px is None else int(self.max_window_px)
            if margin < 1 or cap < 1:
                raise InputError(f"first_guess: margin_px / max_window_px must be >= 1, got {margin}, {cap}")
            object.__setattr__(self, "margin_px", margin)
            object.__setattr__(self, "max_window_px", cap)
        object.__setattr__(self, "_tqu", None)
        if self.kind == "lwiener-tqu":
            self._init_tqu()

    def _init_tqu(self):
        from .baselines.local_wiener import default_max_window_px
        from .baselines.wiener_pol import DEFAULT_MARGIN_PX
        from .first_guess_tqu import StoredTQUCovariance, TQULocalWiener

        if not isinstance(self.tqu_tables, dict):
            raise InputError("first_guess: kind 'lwiener-tqu' needs the T, Q, U correlation tables (tqu_tables)")
        noise = (float(self.noise_var_uk2), float(self.noise_var_p_uk2))
        if not all(np.isfinite(v) and v >= 0 for v in noise):
            raise InputError(f"first_guess: noise variances must be >= 0, got {noise}")
        cov = StoredTQUCovariance(self.tqu_tables, *noise)
        for t in cov.tables.values():
            t.setflags(write=False)
        margin = DEFAULT_MARGIN_PX if self.margin_px is None else int(self.margin_px)
        cap = default_max_window_px(margin) if self.max_window_px is None else int(self.max_window_px)
        if margin < 1 or cap < 1:
            raise InputError(f"first_guess: margin_px / max_window_px must be >= 1, got {margin}, {cap}")
        for name, value in (("tqu_tables", dict(cov.tables)), ("noise_var_uk2", noise[0]),
                            ("noise_var_p_uk2", noise[1]), ("margin_px", margin), ("max_window_px", cap)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_tqu", TQULocalWiener(cov, margin, cap))

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_sky(cls, kind: str, sky=None, *, size: int, gmrf_coeffs=None, margin_px: int | None = None,
                max_window_px: int | None = None) -> "FirstGuess":
        """The first guess ``kind`` for ``sky`` (default planck18 at 1 μK·arcmin) on patches of
        side up to ``size``: the correlation table from :meth:`Sky.correlation_uk2`, the white
        noise variance, and the GMRF coefficients fitted to the sky (or ``gmrf_coeffs``)."""
        from .baselines.gmrf import coefficients_for_sky, resolve_sky

        if kind not in KINDS:
            raise InputError(f"first_guess: unknown kind {kind!r} (known: {', '.join(KINDS)})")
        if kind == "biharmonic":
            return cls(kind)
        sky = resolve_sky(sky)
        if kind == "lwiener-tqu":
            if sky.noise_var_uk2 is not None:
                raise InputError("first_guess: a per-pixel noise map cannot be stored in a model; give a white noise level")
            from .first_guess_tqu import tables_for_sky

            tables, var_t, var_p = tables_for_sky(sky, size)
            return cls(kind, tqu_tables=tables, noise_var_uk2=var_t, noise_var_p_uk2=var_p, margin_px=margin_px,
                       max_window_px=max_window_px, sky=sky.to_json())
        coeffs = coefficients_for_sky(sky) if gmrf_coeffs is None else gmrf_coeffs
        if kind == "gmrf":
            return cls(kind, gmrf_coeffs=coeffs, sky=sky.to_json())
        if sky.noise_var_uk2 is not None:
            raise InputError("first_guess: a per-pixel noise map cannot be stored in a model; give a white noise level")
        from .baselines.local_wiener import correlation_table_for_sky

        table = correlation_table_for_sky(sky, (int(size), int(size)))
        return cls(kind, gmrf_coeffs=coeffs, xi_table_uk2=table, noise_var_uk2=sky.noise_var_pix_uk2,
                   margin_px=margin_px, max_window_px=max_window_px, sky=sky.to_json())

    # ------------------------------------------------------------------ the fill
    def fill(self, maps_nchw, masks_nchw) -> np.ndarray:
        """First guess of ``maps_nchw`` (N, C, H, W) μK with masks (N, 1|C, H, W), 1 = valid:
        float32 (N, C, H, W), valid pixels as the input, holes filled; maps without a valid pixel
        get 0. Hole values of the input are never read."""
        x = np.asarray(maps_nchw)
        m = np.asarray(masks_nchw)
        if x.ndim != 4 or m.ndim != 4 or m.shape[0] != x.shape[0] or m.shape[2:] != x.shape[2:] \
                or m.shape[1] not in (1, x.shape[1]):
            raise InputError(f"first_guess: need (N, C, H, W) maps and (N, 1|C, H, W) masks, got {x.shape}, {m.shape}")
        if self.kind == "lwiener-tqu":
            return self._fill_tqu(x, m)
        valid = np.broadcast_to(m > 0, x.shape)
        data = np.where(valid, x, 0.0).astype(np.float64)
        out = np.zeros(x.shape, dtype=np.float64)
        some = valid.reshape(x.shape[0] * x.shape[1], -1).any(axis=1).reshape(x.shape[:2])
        if some.any():
            flat = data.reshape(-1, *x.shape[2:])[some.ravel()]
            flat_m = valid.reshape(-1, *x.shape[2:])[some.ravel()].astype(np.uint8)
            out.reshape(-1, *x.shape[2:])[some.ravel()] = self._fill(flat, flat_m)
        return out.astype(np.float32)

    def _fill_tqu(self, x, m) -> np.ndarray:
        """Joint T, Q, U fill of (N, 3, H, W) maps with one mask for the three fields."""
        if x.shape[1] != 3:
            raise InputError(f"first_guess: kind 'lwiener-tqu' fills T, Q, U maps (N, 3, H, W), got {x.shape}")
        valid = m > 0
        if valid.shape[1] == 3 and not (valid == valid[:, :1]).all():
            raise InputError("mask: the T, Q, U first guess needs the same mask for T, Q and U")
        valid = valid[:, 0]
        out = np.zeros(x.shape, dtype=np.float64)
        some = valid.reshape(x.shape[0], -1).any(axis=1)
        if some.any():
            data = np.where(valid[:, None], x, 0.0).astype(np.float64)[some]
            out[some] = self._tqu.fill(data, ~valid[some])
        return out.astype(np.float32)

    def _fill(self, maps, masks):
        if self.kind == "biharmonic":
            from .baselines import biharmonic_fill

            return biharmonic_fill(maps, masks)
        if self.kind == "gmrf":
            from .baselines.gmrf import gmrf_fill_coeffs

            return gmrf_fill_coeffs(maps, masks, self.gmrf_coeffs)
        from .baselines.local_wiener import local_wiener_fill_table

        h, w = maps.shape[-2:]
        if self.xi_table_uk2.shape[0] < h or self.xi_table_uk2.shape[1] < w:
            raise InputError(f"first_guess: the stored correlation table covers {self.xi_table_uk2.shape} "
                             f"pixel offsets, the maps are {h}x{w} (tile them to the model's patch size)")
        return local_wiener_fill_table(maps, masks, xi_table_uk2=self.xi_table_uk2, noise_var_uk2=self.noise_var_uk2,
                                       gmrf_coeffs=self.gmrf_coeffs, margin_px=self.margin_px,
                                       max_window_px=self.max_window_px)

    # ------------------------------------------------------------------ model-directory form
    def config(self) -> dict:
        """JSON part (``config.json`` key ``first_guess``)."""
        out = {"kind": self.kind}
        if self.gmrf_coeffs is not None:
            out["gmrf_coeffs"] = list(self.gmrf_coeffs)
        if self.kind == "lwiener":
            out.update(margin_px=self.margin_px, max_window_px=self.max_window_px, noise_var_uk2=self.noise_var_uk2,
                       tensors=TENSORS_FILE, xi_table_shape=list(self.xi_table_uk2.shape))
        if self.kind == "lwiener-tqu":
            out.update(margin_px=self.margin_px, max_window_px=self.max_window_px, noise_var_uk2=self.noise_var_uk2,
                       noise_var_p_uk2=self.noise_var_p_uk2, tensors=TENSORS_FILE,
                       xi_table_shape=list(self.tqu_tables["tt"].shape))
        if self.sky is not None:
            out["sky"] = self.sky
        return out

    def tensors(self) -> dict:
        """Tensor part (``first_guess.safetensors``): ``{"xi_table_uk2": float64}`` for ``lwiener``,
        the four :data:`TQU_TABLES` for ``lwiener-tqu``."""
        import torch

        if self.kind == "lwiener-tqu":
            return {name: torch.from_numpy(np.array(self.tqu_tables[k])) for k, name in TQU_TABLES.items()}
        return {} if self.xi_table_uk2 is None else {"xi_table_uk2": torch.from_numpy(np.array(self.xi_table_uk2))}

    def save(self, directory) -> None:
        """Write the tensor file into ``directory`` (the caller writes :meth:`config` into config.json)."""
        from safetensors.torch import save_file

        tensors = self.tensors()
        if tensors:
            save_file(tensors, os.fspath(Path(directory) / TENSORS_FILE), metadata={"format": "combine-first-guess/1"})

    @classmethod
    def load(cls, config: dict, directory) -> "FirstGuess":
        """From ``config.json``'s ``first_guess`` table and the directory's tensor file; no CAMB."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        source = Path(directory) / "config.json"
        if not isinstance(config, dict) or "kind" not in config:
            raise InputError(f"{source}: 'first_guess' must be a table with a 'kind'")
        table = tqu = None
        if config["kind"] in ("lwiener", "lwiener-tqu"):
            path = Path(directory) / str(config.get("tensors", TENSORS_FILE))
            try:
                tensors = load_file(os.fspath(path))
                if config["kind"] == "lwiener":
                    table = tensors["xi_table_uk2"].numpy()
                else:
                    tqu = {k: tensors[name].numpy() for k, name in TQU_TABLES.items()}
            except FileNotFoundError:
                raise InputError(f"{path}: missing (the model's first-guess tensors)") from None
            except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as exc:
                raise InputError(f"{path}: unreadable first-guess tensors ({exc})") from None
        try:
            return cls(config["kind"], gmrf_coeffs=config.get("gmrf_coeffs"), xi_table_uk2=table,
                       noise_var_uk2=config.get("noise_var_uk2", 0.0), margin_px=config.get("margin_px"),
                       max_window_px=config.get("max_window_px"), sky=config.get("sky"), tqu_tables=tqu,
                       noise_var_p_uk2=config.get("noise_var_p_uk2", 0.0))
        except (InputError, TypeError, ValueError) as exc:
            raise InputError(f"{source}: first_guess: {exc}") from None


__all__ = ["FirstGuess", "KINDS", "TENSORS_FILE", "TQU_TABLES"]
