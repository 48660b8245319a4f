"""`Sky`: the one description of a sky that every simulator, fill, model and evaluator receives.

A :class:`Sky` holds what a fill or a simulation needs to know about the maps it works on:

* the theory spectra :math:`C_\\ell` in μK² (TT; EE, BB, TE for polarisation), either given
  explicitly or computed by CAMB from ``cosmology`` (lensed scalar spectra, plus primordial
  tensors when ``r > 0``) on first use;
* the Gaussian beam FWHM and the pixel size, in arcmin;
* the noise: white, in μK·arcmin (``noise_uk_arcmin`` for T; Q and U get
  ``noise_pol_uk_arcmin``, by default √2 times the T level), or a per-pixel noise variance map in
  μK² (``noise_var_uk2``, a HEALPix map or an (H, W) patch array);
* the cosmology (CAMB ``set_params`` keywords, ns included).

It is frozen: change one with :meth:`Sky.replace`. Two skies compare equal when they describe
the same sky (:meth:`Sky.fingerprint` covers every field and the spectra's bytes).

JSON form (:meth:`Sky.to_json` / :meth:`Sky.from_json`), written into every dataset (attribute
``sky``), model config (key ``sky``) and evaluation record::

    {"format": "combine-sky/1", "preset": "planck18", "cosmology": {...}, "r": 0.0,
     "beam_fwhm_arcmin": 5.0, "pixel_arcmin": 1.7177, "noise_uk_arcmin": 1.0,
     "noise_pol_uk_arcmin": null, "lmax": 6500, "spectra": "camb" | {"tt": [...], ...},
     "noise_var_map": false}

Spectra computed by CAMB are recorded by their parameters (``"spectra": "camb"``); explicit
spectra are written out in full. A per-pixel noise map is not embedded in JSON (it can be
~200 MB): ``noise_var_map`` only says one was used; the file that held it is recorded by the
caller.

Spectrum convention: raw :math:`C_\\ell` (not :math:`D_\\ell`) for ℓ = 0..lmax, with
:math:`C_0 = C_1 = 0`, CMB thermodynamic μK², *without* beam or pixel window: those are applied
by :meth:`Sky.beamed_cl_uk2` and :meth:`Sky.correlation_uk2`, the one place where the
beam-convolved spectrum and :math:`\\xi(\\theta)` are computed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from typing import Any, Mapping

import numpy as np

from ..errors import InputError
from .defaults import ARCMIN_RAD, BEAM_FWHM_ARCMIN, EVAL_NOISE_UK_ARCMIN, PIXEL_ARCMIN, PLANCK18_COSMOLOGY  # noqa: F401

SKY_FORMAT = "combine-sky/1"

#: Largest multipole of CAMB spectra by default (beyond it a 5' beam leaves < 1e-7 of the power).
DEFAULT_LMAX = 6500

#: Spectrum names, in the order of CAMB's ``total`` / ``lensed_scalar`` columns.
SPECTRA = ("tt", "ee", "bb", "te")

def _number(value, name: str, *, allow_zero: bool = True, lower=0.0, upper=math.inf) -> float:
    """``value`` as a finite float in ``[lower, upper]`` (``> lower`` unless ``allow_zero``), else InputError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < lower or (v == lower and not allow_zero) or v > upper:
        bound = ">=" if allow_zero else ">"
        extra = f" and <= {upper:g}" if math.isfinite(upper) else ""
        raise InputError(f"{name}: must be {bound} {lower:g}{extra}, got {value!r}")
    return v


def _spectrum(value, name: str) -> np.ndarray:
    cl = np.array(value, dtype=np.float64)  # copy: the Sky owns it
    if cl.ndim != 1 or cl.size < 3:
        raise InputError(f"{name}: expected a 1-D spectrum C_ell (ell = 0..lmax, lmax >= 2), got shape {cl.shape}")
    if not np.all(np.isfinite(cl)):
        raise InputError(f"{name}: spectrum must be finite")
    if name != "cl_te_uk2" and (cl < 0).any():
        raise InputError(f"{name}: auto-spectrum must be non-negative")
    cl.setflags(write=False)
    return cl


#: Ranges accepted for the cosmological parameters before CAMB is called (CAMB's own errors are
#: a traceback of its Fortran state, not a message a user can act on).
COSMOLOGY_RANGES = {
    "H0": (20.0, 120.0),
    "ombh2": (0.005, 0.1),
    "omch2": (0.001, 0.99),
    "tau": (0.01, 0.8),
    "As": (1e-11, 1e-7),
    "ns": (0.1, 3.0),
}


def check_cosmology(cosmology: Mapping | None = None, ns=None) -> dict:
    """Planck 2018 parameters updated by ``cosmology`` then ``ns``, each checked against
    :data:`COSMOLOGY_RANGES` (InputError naming the parameter otherwise)."""
    params = dict(PLANCK18_COSMOLOGY)
    if cosmology is not None:
        if not isinstance(cosmology, Mapping):
            raise InputError(f"cosmology: expected a mapping of CAMB parameters, got {type(cosmology).__name__}")
        params.update(cosmology)
    if ns is not None:
        params["ns"] = ns
    out = {}
    for key, value in params.items():
        if key in COSMOLOGY_RANGES:
            lo, hi = COSMOLOGY_RANGES[key]
            label = "ns" if key == "ns" else f"cosmology.{key}"
            v = _number(value, label)
            if not lo <= v <= hi:
                raise InputError(f"{label}: {value!r} is outside the range CAMB is run for here, [{lo:g}, {hi:g}]")
            out[key] = v
        else:
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(float(value)):
                raise InputError(f"cosmology.{key}: must be a finite number, got {value!r}")
            out[key] = float(value)
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class Sky:
    """One sky: spectra, beam, pixel, noise and cosmology (module docstring).

    Parameters
    ----------
    cosmology : mapping, optional
        CAMB parameters updating the Planck 2018 best fit (``ns`` included).
    beam_fwhm_arcmin, pixel_arcmin : float
        Gaussian beam FWHM (0 = no beam) and pixel side.
    noise_uk_arcmin : float
        White temperature noise level, μK·arcmin.
    noise_pol_uk_arcmin : float, optional
        White Q/U noise level; default ``√2 · noise_uk_arcmin``.
    noise_var_uk2 : ndarray, optional
        Per-pixel noise variance (μK²) of T; overrides the white level where given.
    r : float
        Tensor-to-scalar ratio for CAMB's primordial B modes (default 0).
    lmax : int
        Largest multipole of the CAMB spectra.
    cl_tt_uk2, cl_ee_uk2, cl_bb_uk2, cl_te_uk2 : array_like, optional
        Explicit spectra (μK², no beam); when ``cl_tt_uk2`` is given CAMB is never called, and
        polarisation spectra not given are zero.
    preset : str, optional
        Name of the preset this sky was made from (informational).

    Examples
    --------
    >>> sky = Sky.planck18(noise_uk_arcmin=1.0)               # doctest: +SKIP
    >>> sky.replace(cosmology={"ns": 0.5}).ns                  # doctest: +SKIP
    0.5
    """

    cosmology: Mapping = dataclasses.field(default_factory=lambda: dict(PLANCK18_COSMOLOGY))
    beam_fwhm_arcmin: float = BEAM_FWHM_ARCMIN
    pixel_arcmin: float = PIXEL_ARCMIN
    noise_uk_arcmin: float = 0.0
    noise_pol_uk_arcmin: float | None = None
    noise_var_uk2: np.ndarray | None = None
    r: float = 0.0
    lmax: int = DEFAULT_LMAX
    cl_tt_uk2: np.ndarray | None = None
    cl_ee_uk2: np.ndarray | None = None
    cl_bb_uk2: np.ndarray | None = None
    cl_te_uk2: np.ndarray | None = None
    preset: str | None = None

    def __post_init__(self):
        set_ = functools.partial(object.__setattr__, self)
        set_("cosmology", check_cosmology(self.cosmology))
        set_("beam_fwhm_arcmin", _number(self.beam_fwhm_arcmin, "beam_fwhm_arcmin", upper=600.0))
        set_("pixel_arcmin", _number(self.pixel_arcmin, "pixel_arcmin", allow_zero=False, upper=600.0))
        set_("noise_uk_arcmin", _number(self.noise_uk_arcmin, "noise_uk_arcmin", upper=1e6))
        if self.noise_pol_uk_arcmin is not None:
            set_("noise_pol_uk_arcmin", _number(self.noise_pol_uk_arcmin, "noise_pol_uk_arcmin", upper=1e6))
        set_("r", _number(self.r, "r", upper=10.0))
        if int(self.lmax) != self.lmax or not 2 <= int(self.lmax) <= 40000:
            raise InputError(f"lmax: must be an integer in [2, 40000], got {self.lmax!r}")
        set_("lmax", int(self.lmax))
        if self.noise_var_uk2 is not None:
            var = np.array(self.noise_var_uk2, dtype=np.float64)
            if var.ndim not in (1, 2) or not np.all(np.isfinite(var)) or (var < 0).any():
                raise InputError("noise_var_uk2: expected a 1-D HEALPix or 2-D patch array of finite, "
                                 "non-negative variances (μK²)")
            var.setflags(write=False)
            set_("noise_var_uk2", var)
        for name in ("tt", "ee", "bb", "te"):
            field = f"cl_{name}_uk2"
            if getattr(self, field) is not None:
                if self.cl_tt_uk2 is None:
                    raise InputError(f"{field}: polarisation spectra need cl_tt_uk2 too")
                set_(field, _spectrum(getattr(self, field), field))

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def planck18(cls, **changes) -> "Sky":
        """The default sky of docs/DESIGN.md: Planck 2018 CAMB spectra, 5′ beam, 1.7177′ pixels, no noise."""
        return cls(**{"preset": "planck18", **changes})

    @classmethod
    def preset_named(cls, name: str, **changes) -> "Sky":
        """A named preset (:data:`PRESETS`), with ``changes`` applied."""
        try:
            factory = PRESETS[name]
        except KeyError:
            raise InputError(f"sky: unknown preset {name!r} (known: {', '.join(PRESETS)})") from None
        return factory(**changes)

    def replace(self, **changes) -> "Sky":
        """A copy with ``changes``; ``cosmology`` given as a mapping updates the current one."""
        if "cosmology" in changes and changes["cosmology"] is not None:
            changes["cosmology"] = {**self.cosmology, **changes["cosmology"]}
        return dataclasses.replace(self, **changes)

    def with_ns(self, ns) -> "Sky":
        """A copy with spectral index ``ns`` (CAMB spectra; explicit spectra cannot change ns)."""
        if self.cl_tt_uk2 is not None:
            raise InputError("ns: this sky has explicit spectra; give either ns or a spectrum, not both")
        return self.replace(cosmology={"ns": ns})

    # -- derived quantities ----------------------------------------------------------------
    @property
    def ns(self) -> float:
        return float(self.cosmology["ns"])

    @property
    def noise_qu_uk_arcmin(self) -> float:
        """Q/U white noise level: ``noise_pol_uk_arcmin``, or √2 × the temperature level."""
        if self.noise_pol_uk_arcmin is not None:
            return float(self.noise_pol_uk_arcmin)
        return math.sqrt(2.0) * self.noise_uk_arcmin

    @property
    def noise_var_pix_uk2(self) -> float:
        """White temperature noise variance per pixel, :math:`(\\text{noise}/\\Delta_{pix})^2` μK²."""
        return (self.noise_uk_arcmin / self.pixel_arcmin) ** 2

    def spectra_uk2(self) -> dict[str, np.ndarray]:
        """``{"tt", "ee", "bb", "te"}`` raw C_ℓ in μK² (ℓ = 0..lmax), from CAMB on first use."""
        cached = self.__dict__.get("_spectra")
        if cached is None:
            if self.cl_tt_uk2 is not None:
                n = self.cl_tt_uk2.size
                cached = {}
                for name in SPECTRA:
                    cl = getattr(self, f"cl_{name}_uk2")
                    if cl is None:
                        cl = np.zeros(n)
                    elif cl.size != n:
                        raise InputError(f"cl_{name}_uk2: has {cl.size} multipoles, cl_tt_uk2 has {n}")
                    cached[name] = cl
            else:
                from .spectra import camb_spectra_uk2

                cached = camb_spectra_uk2(self.cosmology, lmax=self.lmax, r=self.r)
            object.__setattr__(self, "_spectra", cached)
        return cached

    @property
    def cl_tt(self) -> np.ndarray:
        """Temperature C_ℓ (μK², no beam)."""
        return self.spectra_uk2()["tt"]

    def beam_bl(self, lmax: int | None = None) -> np.ndarray:
        """Gaussian beam transfer :math:`B_\\ell` up to ``lmax`` (default the spectra's)."""
        from .spectra import gaussian_beam_bl

        return gaussian_beam_bl(self.beam_fwhm_arcmin, self.cl_tt.size - 1 if lmax is None else lmax)

    def beamed_cl_uk2(self, which: str = "tt", pixel_window=None) -> np.ndarray:
        """:math:`C_\\ell B_\\ell^2 [W_\\ell^2]` (μK²) of spectrum ``which``: the one place it is computed.

        ``pixel_window`` (array, ℓ = 0..) multiplies in :math:`W_\\ell^2` (e.g. the HEALPix pixel
        window of :func:`combine.sky.spectra.healpix_pixel_window`); flat patches are point
        samples and take none.
        """
        cl = self.spectra_uk2()[which]
        out = cl * self.beam_bl(cl.size - 1) ** 2
        if pixel_window is not None:
            w = np.asarray(pixel_window, dtype=np.float64)
            n = min(w.size, out.size)
            out = out[:n] * w[:n] ** 2
        return out

    def correlation_uk2(self, theta_rad, pixel_window=None) -> np.ndarray:
        """Beam-convolved temperature correlation function (the one place ξ(θ) is computed).

        .. math:: \\xi(\\theta) = \\sum_\\ell \\frac{2\\ell+1}{4\\pi} C_\\ell B_\\ell^2 [W_\\ell^2] P_\\ell(\\cos\\theta)

        evaluated by ``healpy.bl2beam`` (the same Legendre sum). ``theta_rad`` any shape.
        """
        import healpy as hp

        theta = np.asarray(theta_rad, dtype=np.float64)
        flat = np.atleast_1d(theta).ravel()
        xi = np.asarray(hp.bl2beam(self.beamed_cl_uk2("tt", pixel_window), flat), dtype=np.float64)
        return xi.reshape(theta.shape)

    # -- identity and JSON -----------------------------------------------------------------
    def fingerprint(self) -> str:
        """Hex digest over every field but the informational ``preset`` (spectra and noise map by
        their bytes): equal for two skies that describe the same sky."""
        scalars = {k: v for k, v in self._scalar_json().items() if k != "preset"}
        h = hashlib.sha256(json.dumps(scalars, sort_keys=True).encode())
        for name in ("cl_tt_uk2", "cl_ee_uk2", "cl_bb_uk2", "cl_te_uk2", "noise_var_uk2"):
            arr = getattr(self, name)
            h.update(name.encode())
            if arr is not None:
                h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:32]

    def __eq__(self, other):
        return isinstance(other, Sky) and self.fingerprint() == other.fingerprint()

    def __hash__(self):
        return hash(self.fingerprint())

    def _scalar_json(self) -> dict:
        return {
            "format": SKY_FORMAT,
            "preset": self.preset,
            "cosmology": dict(self.cosmology),
            "r": self.r,
            "beam_fwhm_arcmin": self.beam_fwhm_arcmin,
            "pixel_arcmin": self.pixel_arcmin,
            "noise_uk_arcmin": self.noise_uk_arcmin,
            "noise_pol_uk_arcmin": self.noise_pol_uk_arcmin,
            "lmax": self.lmax,
        }

    def to_json(self) -> dict:
        """JSON-able dict (module docstring); :meth:`from_json` reads it back to an equal Sky
        (a per-pixel noise map is not included)."""
        out = self._scalar_json()
        if self.cl_tt_uk2 is None:
            out["spectra"] = "camb"
        else:
            out["spectra"] = {name: getattr(self, f"cl_{name}_uk2").tolist() for name in SPECTRA
                              if getattr(self, f"cl_{name}_uk2") is not None}
        out["noise_var_map"] = self.noise_var_uk2 is not None
        return out

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    @classmethod
    def from_json(cls, data, source: str = "sky") -> "Sky":
        """A Sky from :meth:`to_json`'s dict (or its text); InputError naming ``source`` if invalid."""
        if isinstance(data, (str, bytes)):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise InputError(f"{source}: sky description is not JSON ({exc})") from None
        if not isinstance(data, Mapping):
            raise InputError(f"{source}: sky description must be a JSON object")
        fmt = data.get("format", SKY_FORMAT)
        if fmt != SKY_FORMAT:
            raise InputError(f"{source}: unsupported sky format {fmt!r} (expected {SKY_FORMAT!r})")
        kwargs: dict[str, Any] = {}
        for key in ("cosmology", "r", "beam_fwhm_arcmin", "pixel_arcmin", "noise_uk_arcmin",
                    "noise_pol_uk_arcmin", "lmax", "preset"):
            if key in data:
                kwargs[key] = data[key]
        spectra = data.get("spectra", "camb")
        if isinstance(spectra, Mapping):
            for name, values in spectra.items():
                if name not in SPECTRA:
                    raise InputError(f"{source}: unknown spectrum {name!r} (known: {', '.join(SPECTRA)})")
                kwargs[f"cl_{name}_uk2"] = values
        elif spectra != "camb":
            raise InputError(f"{source}: 'spectra' must be \"camb\" or a table of spectra")
        try:
            return cls(**kwargs)
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise InputError(f"{source}: invalid sky description ({exc})") from None

    @classmethod
    def from_legacy_attrs(cls, attrs: Mapping, source: str = "attrs") -> "Sky":
        """A Sky from the loose attributes of files written before ``Sky`` existed
        (``pixel_arcmin``, ``beam_fwhm_arcmin``, ``noise_uk_arcmin``, ``cosmology`` JSON text)."""
        if "sky" in attrs:
            return cls.from_json(attrs["sky"], source)
        cosmology = attrs.get("cosmology")
        if isinstance(cosmology, (str, bytes)):
            try:
                cosmology = json.loads(cosmology)
            except json.JSONDecodeError:
                raise InputError(f"{source}: attribute 'cosmology' is not JSON") from None
        if isinstance(cosmology, Mapping) and cosmology.get("ns", 0.0) is None:
            # several spectral-index classes: the sky of the shared parameters (Planck ns)
            cosmology = {k: v for k, v in cosmology.items() if k != "ns"}
        kwargs = {k: attrs[k] for k in ("pixel_arcmin", "beam_fwhm_arcmin", "noise_uk_arcmin") if k in attrs}
        try:
            return cls(cosmology=cosmology, **kwargs)
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None

    @classmethod
    def from_dataset(cls, path, ns=None) -> "Sky":
        """The sky of a dataset file (its ``sky`` attribute, or for older files the loose
        attributes; :func:`combine.data.read_header`), with spectral index ``ns`` if given
        (the class to use from a dataset with several)."""
        from ..data import read_header  # the one HDF5 reader (data sits above sky; imported late)

        sky = read_header(path)[2]
        return sky if ns is None else sky.with_ns(ns)

    @classmethod
    def from_model_dir(cls, directory) -> "Sky":
        """The Sky a model directory was trained for: the ``sky`` table of its ``config.json``
        (:meth:`to_json` form; older configs' loose ``pixel_arcmin`` / ``beam_fwhm_arcmin`` /
        ``noise_uk_arcmin`` / ``cosmology`` keys are read the same way). Reads no weights, runs
        no CAMB. InputError naming the file if it is missing or has no ``sky`` table."""
        from pathlib import Path

        path = Path(directory) / "config.json"
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: no such model config") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: unreadable model config ({exc})") from None
        if not isinstance(config, Mapping) or not isinstance(config.get("sky"), Mapping):
            raise InputError(f"{path}: model config has no 'sky' table")
        return cls.from_json(config["sky"], source=f"{path}: sky")

    def describe(self) -> str:
        """One line for logs and headers."""
        name = self.preset or ("explicit spectra" if self.cl_tt_uk2 is not None else "CAMB")
        noise = "noise map" if self.noise_var_uk2 is not None else f"{self.noise_uk_arcmin:g} μK·arcmin"
        return (f"{name} (ns {self.ns:g}), beam {self.beam_fwhm_arcmin:g}′, pixel {self.pixel_arcmin:g}′, "
                f"noise {noise}")

    def __repr__(self):
        return f"Sky({self.describe()})"


#: The loose sky keywords of the first API, accepted by :func:`sky_from_keywords`.
LEGACY_KEYWORDS = ("pixel_arcmin", "beam_fwhm_arcmin", "noise_uk_arcmin", "cl_uk2", "ns", "cosmology")


def sky_from_keywords(sky: "Sky | None" = None, *, default_noise_uk_arcmin: float = 0.0, **legacy) -> "Sky":
    """``sky``, or the :class:`Sky` of the loose keywords of the first API (``pixel_arcmin``,
    ``beam_fwhm_arcmin``, ``noise_uk_arcmin``, ``cl_uk2``, ``ns``, ``cosmology``; None = default).

    For callers not yet converted to ``sky=``: missing keywords take the planck18 defaults
    (noise ``default_noise_uk_arcmin``); ``cl_uk2`` becomes the explicit TT spectrum
    (exclusive with ``ns``). Giving ``sky`` and any keyword is an :class:`InputError`.
    """
    unknown = set(legacy) - set(LEGACY_KEYWORDS)
    if unknown:
        raise TypeError(f"unexpected sky keyword(s): {', '.join(sorted(unknown))}")
    given = {k: v for k, v in legacy.items() if v is not None}
    if sky is not None:
        if not isinstance(sky, Sky):
            raise InputError(f"sky: expected a combine.sky.Sky, got {type(sky).__name__}")
        if given:
            raise InputError(f"sky: give either sky or the loose keywords ({', '.join(sorted(given))}), not both")
        return sky
    kwargs = {"pixel_arcmin": given.get("pixel_arcmin", PIXEL_ARCMIN),
              "beam_fwhm_arcmin": given.get("beam_fwhm_arcmin", BEAM_FWHM_ARCMIN),
              "noise_uk_arcmin": given.get("noise_uk_arcmin", default_noise_uk_arcmin)}
    if "cl_uk2" in given:
        if "ns" in given:
            raise InputError("ns: give either ns or cl_uk2, not both")
        cl = np.asarray(given["cl_uk2"], dtype=np.float64)
        if cl.ndim != 1 or cl.size < 3 or not np.all(np.isfinite(cl)) or (cl < 0).any():
            raise InputError("cl_uk2: need a 1-D array of finite, non-negative C_ℓ (ℓ = 0..lmax, lmax >= 2)")
        return Sky(cl_tt_uk2=cl, **kwargs)
    cosmology = dict(given.get("cosmology") or {})
    if "ns" in given:
        cosmology["ns"] = given["ns"]
    return Sky(cosmology=cosmology, preset=None if cosmology else "planck18", **kwargs)


#: Named presets: ``planck18`` (no noise, the simulation default) and ``planck18-eval``
#: (1 μK·arcmin, the evaluation sets' noise).
PRESETS = {
    "planck18": Sky.planck18,
    "planck18-eval": lambda **kw: Sky.planck18(**{"noise_uk_arcmin": EVAL_NOISE_UK_ARCMIN,
                                                  "preset": "planck18-eval", **kw}),
}


__all__ = ["Sky", "PRESETS", "sky_from_keywords", "LEGACY_KEYWORDS", "SKY_FORMAT", "check_cosmology", "COSMOLOGY_RANGES", "DEFAULT_LMAX"]
