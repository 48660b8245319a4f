"""T, Q, U Wiener filter and Gaussian constrained realisations (GCR) on flat patches.

The T, Q, U pixels of a patch are one Gaussian vector :math:`d` (field-major, 3·H·W) with the
spin-2 covariance :math:`C` of :class:`combine.baselines.covariance_pol.FlatTQUCovariance`
(signal + white noise, :math:`\\sigma_T^2` on T, :math:`\\sigma_P^2` on Q and U). With :math:`h` the
missing entries (a hole pixel of every masked field) and :math:`v` the observed ones,

.. math::

    \\mu_h = C_{hv} C_{vv}^{-1} d_v = -Q_{hh}^{-1} Q_{hv} d_v, \\qquad
    \\Sigma_h = C_{hh} - C_{hv} C_{vv}^{-1} C_{vh} = Q_{hh}^{-1}, \\qquad Q = C^{-1} .

The fill is **joint**: the T–Q and T–U blocks (ξ×, from :math:`C^{TE}`) let observed T inform
the E part of the Q/U hole and vice versa. A GCR is :math:`\\mu_h + x`, :math:`x \\sim N(0, \\Sigma_h)`:
the truth's statistics and, in expectation, twice the Wiener filter's squared error. As for
temperature (:mod:`combine.baselines.wiener`) the "truth" of a hole pixel includes its white
noise, and a diagonal floor :math:`10^{-8}` of each field's variance regularises noiseless skies.

What ``wiener`` means for TQU patches
-------------------------------------
* ``method="dense"``: the exact conditional mean above, through the dense precision matrix of
  the whole patch (float64 torch Cholesky + inverse, once per patch size and sky; 3·64² = 12288
  entries: 1.2 GB, the largest that fits comfortably here; 3·128² would be 19 GB). Masks may
  differ between fields.
* ``method="local"``: each hole (8-connected group of hole pixels, the same in all fields) is
  filled by the exact conditional mean given the **T, Q and U** values of the valid pixels within
  an L1 distance ``margin_px`` of it (:func:`combine.baselines.local_wiener.hole_windows`):
  :math:`\\mu_h = C_{ho}(C_{oo})^{-1}d_o`; a GCR draws from the window's
  :math:`\\Sigma_h = C_{hh} - C_{ho}C_{oo}^{-1}C_{oh}` (holes independent of each other).
* ``method="auto"`` (the default of :func:`tqu_wiener_fill`, ``combine inpaint --method wiener``
  on TQU input): dense for patches of at most 64² pixels, local otherwise (128²).

Measured against the dense optimum (``benchmarks/bench_polarisation.py dense``, 16 planck18-eval
64² patches, centred holes r = 4, 8, 16, 24 px; docs/polarisation.md): the dense fill agrees with
an independent Cholesky solve of :math:`C_{vv}` to ≤ 3e-10; the local filter's Q/U hole MSE is
within 9 % of the dense one's at the default margin 12 px (1.01, 1.01, 1.09, 1.04 for U), within
6 % at 16 px, and up to 18 % at 4 px.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch

from ..errors import InputError
from ..sky.model import Sky
from ..validation import check_maps_and_masks
from .covariance_pol import FlatTQUCovariance
from .local_wiener import hole_windows

#: Diagonal floor relative to each field's signal variance (regularises noiseless covariances).
REGULARISATION_REL = 1e-8

#: Largest patch (pixels per field) filled by the dense exact solve under ``method="auto"``.
DENSE_MAX_PIXELS = 64 * 64

#: Default window of the local filter: valid pixels within this L1 distance (pixels) of a hole.
DEFAULT_MARGIN_PX = 12

#: Largest hole + window (pixels per field) of one local solve: 3 · 4096 = 12288 unknowns, a
#: 1.2 GB float64 matrix, as large as the dense 64² precision (``circle_mask`` holes with the
#: 12 px window: r = 24 px has 1810 + 1896 = 3706 and is filled, r = 32 px has 3217 + 2472 = 5689
#: and is refused).
MAX_LOCAL_PIXELS = 4096


def _check_tqu(maps, masks):
    """(data float64 (N, 3, H, W) as given, hole bool (N, 3, H, W), out copy, squeeze flag)."""
    raw = np.asarray(maps)
    single = raw.ndim == 3
    if raw.ndim not in (3, 4) or raw.shape[-3] != 3:
        raise InputError(f"maps: expected T, Q, U patches of shape (N, 3, H, W) or (3, H, W), got {raw.shape}")
    arr = raw[None] if single else raw
    m = np.asarray(masks)
    if single and m.ndim == 3 and m.shape[0] == 3:
        m = m[None]
    if m.ndim == 4 and m.shape[1] not in (1, 3):
        raise InputError(f"mask: has {m.shape[1]} fields; a TQU mask has 1 or 3 (T, Q, U)")
    _, full = check_maps_and_masks(arr, m)
    out = np.array(arr, dtype=arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float32, copy=True)
    return arr.astype(np.float64), full == 0, out, single


def _floors(cov: FlatTQUCovariance, subtract_noise: bool = True) -> np.ndarray:
    """What to add to each field's diagonal so that it holds at least :data:`REGULARISATION_REL` of
    the field's variance (nothing when the white noise already does), or that fraction itself."""
    var = np.array([cov.tables["tt"][0, 0], 0.5 * cov.tables["plus"][0, 0], 0.5 * cov.tables["plus"][0, 0]])
    floor = REGULARISATION_REL * np.maximum(var, 1e-30)
    if not subtract_noise:
        return floor
    noise = np.array([cov.noise_var_t_uk2, cov.noise_var_p_uk2, cov.noise_var_p_uk2])
    return np.maximum(floor - noise, 0.0)


def cholesky_with_floor(c: torch.Tensor, floor: np.ndarray, what: str) -> torch.Tensor:
    """Lower Cholesky factor of ``c + diag(f)``: ``f = floor`` first, raised tenfold (up to 10⁶×)
    while the factorisation fails (a noiseless smooth sky makes window covariances singular to
    round-off). ``c`` is modified in place."""
    added = np.zeros_like(floor)
    for k in range(7):
        target = floor * 10.0**k
        c.diagonal().add_(torch.from_numpy(target - added))
        added = target
        chol, info = torch.linalg.cholesky_ex(c)
        if int(info) == 0:
            return chol
    raise InputError(f"sky: {what} is not positive definite (even with a diagonal floor)")


def psd_sqrt(sigma: torch.Tensor) -> torch.Tensor:
    """A square root :math:`S` with :math:`SS^T = \\Sigma` of a symmetric positive semi-definite
    matrix, by ``torch.linalg.eigh`` with negative eigenvalues set to zero.

    A noiseless smooth sky leaves a hole posterior :math:`\\Sigma_h` whose smallest eigenvalues are
    below the round-off of the Schur complement (measured: −1.0 μK² against a largest 9838 μK² for a
    36-pixel Nside-512 hole, 10' beam), where a Cholesky factorisation fails; clipping them changes
    the draw by that round-off only.
    """
    sym = 0.5 * (sigma + sigma.T)
    evals, evecs = torch.linalg.eigh(sym)
    return evecs * torch.sqrt(torch.clamp(evals, min=0.0))[None, :]


def _groups(holes: np.ndarray) -> list[list[int]]:
    groups: dict[bytes, list[int]] = {}
    for i, h in enumerate(holes):
        groups.setdefault(np.ascontiguousarray(h).tobytes(), []).append(i)
    return list(groups.values())


class DenseTQUWiener:
    """Exact joint T, Q, U Wiener filter / GCR of (H, W) patches of one sky (dense precision).

    Parameters
    ----------
    shape : (H, W)
    sky : Sky
    """

    def __init__(self, shape, sky: Sky):
        self.shape = (int(shape[0]), int(shape[1]))
        self.sky = sky
        self.cov = FlatTQUCovariance(sky, max(self.shape) - 1)
        self._q = None
        self._geometries: "OrderedDict[str, tuple]" = OrderedDict()

    @property
    def precision(self) -> torch.Tensor:
        """:math:`Q = C^{-1}` of the 3·H·W entries, float64 (Cholesky in place + ``cholesky_inverse``).

        The diagonal floor (:func:`_floors`) is raised tenfold, up to 10⁶×, while the factorisation
        fails, as :func:`cholesky_with_floor` does for windows: a noiseless smooth sky makes the
        whole-patch covariance singular to round-off (measured: 32² planck18 patches with no noise
        fail at the 1e-8 floor). The matrix is rebuilt for each try, since the in-place
        factorisation (which keeps the peak at one 3·H·W square matrix) overwrites it.
        """
        if self._q is None:
            n = self.shape[0] * self.shape[1]
            floor = np.repeat(_floors(self.cov), n)
            for k in range(7):
                c = torch.from_numpy(self.cov.patch(self.shape, noise=True))
                c.diagonal().add_(torch.from_numpy(floor * 10.0**k))
                _, info = torch.linalg.cholesky_ex(c, out=(c, torch.empty((), dtype=torch.int32)))
                if int(info) == 0:
                    break
                del c
            else:
                raise InputError("sky: T, Q, U pixel covariance is not positive definite (even with a diagonal floor)")
            self._q = torch.cholesky_inverse(c)
        return self._q

    def geometry(self, hole: np.ndarray):
        """(hole indices into the 3·H·W vector, Cholesky factor of :math:`Q_{hh}`) for a (3, H, W) hole map."""
        key = hashlib.sha1(np.ascontiguousarray(hole).tobytes()).hexdigest()
        if key in self._geometries:
            return self._geometries[key]
        idx = np.flatnonzero(hole.ravel())
        t = torch.from_numpy(idx)
        chol, info = torch.linalg.cholesky_ex(self.precision[t[:, None], t[None, :]])
        if int(info) != 0:
            raise InputError("mask: Q_hh of this hole is not positive definite (numerical problem)")
        self._geometries[key] = (idx, chol)
        while len(self._geometries) > 16:
            self._geometries.popitem(last=False)
        return idx, chol

    def posterior(self, data: np.ndarray, hole: np.ndarray):
        """:math:`\\mu_h` (k, n_h) for data (k, 3, H, W) sharing the (3, H, W) ``hole``, and the factor of :math:`Q_{hh}`."""
        idx, chol = self.geometry(hole)
        d = torch.from_numpy(data.reshape(data.shape[0], -1).copy())
        d[:, torch.from_numpy(idx)] = 0.0
        rhs = self.precision[torch.from_numpy(idx)] @ d.T
        return (-torch.cholesky_solve(rhs, chol)).T.numpy(), idx, chol

    def expected_mse(self, hole: np.ndarray) -> np.ndarray:
        """Expected hole MSE per field (T, Q, U), μK²: the mean diagonal of :math:`Q_{hh}^{-1}` per field."""
        idx, chol = self.geometry(hole)
        diag = torch.cholesky_inverse(chol).diagonal().numpy()
        field = idx // (self.shape[0] * self.shape[1])
        return np.array([diag[field == f].mean() if (field == f).any() else 0.0 for f in range(3)])


_DENSE: "OrderedDict[tuple, DenseTQUWiener]" = OrderedDict()


def get_dense_filter(shape, sky: Sky) -> DenseTQUWiener:
    """A cached :class:`DenseTQUWiener` (one at a time: a 64² precision matrix is 1.2 GB)."""
    key = (tuple(shape), sky.fingerprint())
    wf = _DENSE.get(key)
    if wf is None:
        _DENSE.clear()
        wf = _DENSE[key] = DenseTQUWiener(shape, sky)
    return wf


def _dense_fill(data, holes, out, sky, rng):
    wf = get_dense_filter(data.shape[-2:], sky)
    flat_out = out.reshape(out.shape[0], -1)
    for members in _groups(holes):
        hole = holes[members[0]]
        if not hole.any():
            continue
        mu, idx, chol = wf.posterior(data[members], hole)
        if rng is not None:
            z = torch.from_numpy(rng.standard_normal((idx.size, len(members))))
            mu = mu + torch.linalg.solve_triangular(chol.T, z, upper=True).T.numpy()
        for j, i in enumerate(members):
            flat_out[i, idx] = mu[j]


def _local_fill(data, holes, out, sky, rng, margin_px):
    if not np.all(holes == holes[:, :1]):
        raise InputError("mask: the local TQU Wiener filter needs the same mask for T, Q and U "
                         "(use method='dense' on patches up to 64², or one mask for all fields)")
    h, w = data.shape[-2:]
    cov = FlatTQUCovariance(sky, max(h, w) - 1)
    floors = _floors(cov)
    for members in _groups(holes[:, 0]):
        hole2d = holes[members[0], 0]
        block = data[members]  # (k, 3, H, W)
        for hole_yx, win_yx in hole_windows(hole2d, int(margin_px)):
            if len(win_yx) == 0:
                raise InputError("mask: a hole has no valid pixel within margin_px of it; nothing to condition on")
            if len(win_yx) + len(hole_yx) > MAX_LOCAL_PIXELS:
                raise InputError(f"mask: a hole of {len(hole_yx)} pixels with a {len(win_yx)}-pixel window is over the "
                                 f"local T, Q, U filter's limit of {MAX_LOCAL_PIXELS} pixels per field (a "
                                 "{0}² float64 solve); it is for point-source-sized holes: use method='dense' on "
                                 "patches up to 64², or split the mask".format(3 * MAX_LOCAL_PIXELS))
            chol = cholesky_with_floor(torch.from_numpy(cov.between(win_yx, win_yx, noise=True)),
                                       np.repeat(floors, len(win_yx)), "window covariance")
            c_oh = torch.from_numpy(cov.between(win_yx, hole_yx))
            wts = torch.cholesky_solve(c_oh, chol)  # (3m, 3k)
            d_o = torch.from_numpy(block[:, :, win_yx[:, 0], win_yx[:, 1]].reshape(len(members), -1))
            mu = (d_o @ wts).numpy()  # (maps, 3k)
            if rng is not None:
                l_s = psd_sqrt(torch.from_numpy(cov.between(hole_yx, hole_yx, noise=True)) - c_oh.T @ wts)
                z = torch.from_numpy(rng.standard_normal((l_s.shape[0], len(members))))
                mu = mu + (l_s @ z).T.numpy()
            vals = mu.reshape(len(members), 3, -1)
            for j, i in enumerate(members):
                out[i][:, hole_yx[:, 0], hole_yx[:, 1]] = vals[j]


def _run(maps, masks, sky, *, method, margin_px, rng):
    if not isinstance(sky, Sky):
        raise InputError(f"sky: expected a combine.sky.Sky, got {type(sky).__name__}")
    if sky.noise_var_uk2 is not None:
        raise InputError("sky: per-pixel noise maps are not supported by the TQU Wiener filter")
    data, holes, out, single = _check_tqu(maps, masks)
    h, w = data.shape[-2:]
    if method == "auto":
        method = "dense" if h * w <= DENSE_MAX_PIXELS else "local"
    if method == "dense":
        _dense_fill(data, holes, out, sky, rng)
    elif method == "local":
        _local_fill(data, holes, out, sky, rng, margin_px)
    else:
        raise InputError(f"method: expected 'auto', 'dense' or 'local', got {method!r}")
    return out[0] if single else out


def tqu_wiener_fill(maps, masks, *, sky: Sky, seed=None, method: str = "auto",
                    margin_px: int = DEFAULT_MARGIN_PX, **_ignored) -> np.ndarray:
    """Joint T, Q, U Wiener fill :math:`\\mu_h = C_{hv}C_{vv}^{-1}d_v` of (N, 3, H, W) or (3, H, W) patches.

    ``method`` ``"auto"`` / ``"dense"`` / ``"local"`` (module docstring); valid pixels of the
    output are bit-identical to the input. ``seed`` is ignored (the fill is deterministic).
    """
    return _run(maps, masks, sky, method=method, margin_px=margin_px, rng=None)


def tqu_gcr_fill(maps, masks, *, sky: Sky, seed=None, rng=None, method: str = "auto",
                 margin_px: int = DEFAULT_MARGIN_PX, **_ignored) -> np.ndarray:
    """T, Q, U constrained realisation: the Wiener fill plus a seeded draw from :math:`N(0, \\Sigma_h)`."""
    if rng is None:
        rng = np.random.default_rng(seed)
    return _run(maps, masks, sky, method=method, margin_px=margin_px, rng=rng)


def tqu_local_wiener_fill(maps, masks, *, sky: Sky, seed=None, margin_px: int = DEFAULT_MARGIN_PX,
                          **_ignored) -> np.ndarray:
    """The local-window T, Q, U Wiener fill at any patch size (``method="local"``)."""
    return _run(maps, masks, sky, method="local", margin_px=margin_px, rng=None)


#: TQU fills by ``--method`` name, each ``fill(maps, masks, *, sky, seed=None, **options)`` on
#: (N, 3, H, W) patches (the baseline convention of :mod:`combine.baselines`).
TQU_BASELINES = {"wiener": tqu_wiener_fill, "gcr": tqu_gcr_fill, "lwiener": tqu_local_wiener_fill}


def get_tqu_baseline(name: str, source: str = "--method"):
    """The TQU fill called ``name`` (:data:`TQU_BASELINES`); InputError naming ``source`` otherwise."""
    try:
        return TQU_BASELINES[name]
    except KeyError:
        raise InputError(f"{source}: method {name!r} has no T, Q, U version (expected one of "
                         f"{', '.join(TQU_BASELINES)}; scalar fills such as diffusive apply per field)") from None


__all__ = ["TQU_BASELINES", "get_tqu_baseline", "DenseTQUWiener", "get_dense_filter", "tqu_wiener_fill", "tqu_gcr_fill", "tqu_local_wiener_fill",
           "DENSE_MAX_PIXELS", "DEFAULT_MARGIN_PX"]
