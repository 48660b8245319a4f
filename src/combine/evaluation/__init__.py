"""Evaluation: a model and the classical baselines side by side on the same patches and holes.

For every method (the network ``"nn"``, the exact Wiener filter, the Gaussian constrained
realisation and the classical fills of :mod:`combine.baselines`) and every mask specification
(centred circles ``circle-rN`` of radius N px, ``random`` shapes, ``points``), the same masked
patches are filled and compared with the truth. Each number becomes one record

``{"method": ..., "mask": ..., "metric": ..., "value": float, "n_patches": int, ...}``

with optional fields ``radius_px`` (circle masks), ``ell_bin``/``ell_min``/``ell_max`` (per-ℓ-bin
metrics), ``err`` (1σ error), ``truth`` (the same statistic of the true hole pixels), ``epoch``
(per-checkpoint analysis). The metrics (pooled over the patches of one mask specification):

* ``rmse_hole`` — :math:`\\sqrt{\\sum_{i,p\\in\\mathrm{hole}} (\\hat T - T)^2 / N_\\mathrm{hole}}`, μK;
  ``err`` from the scatter of the per-patch mean squared errors;
* ``rmse_hole_ratio_wiener`` — ``rmse_hole`` divided by the Wiener filter's on the same patches;
* ``abs_diff_{mean,std,percent}_{hole,patch}`` — the original CoMBInE's statistics of
  :math:`|\\hat T - T|` in the hole and on the whole (composited) patch; percent is
  :math:`100\\,\\langle|\\hat T - T|\\rangle / \\langle|T|\\rangle`;
* ``hole_variance_ratio`` — variance of filled hole pixels over that of the true ones;
* ``power_ratio`` (per ℓ bin) — :math:`\\sum_i P_{\\hat T_i}(\\ell_b) / \\sum_i P_{T_i}(\\ell_b)` of the
  apodised flat-sky spectra, ``err`` the cosmic-variance error of the bin; ``power_ratio_band``
  its mean over the bins with centre in [``POWER_BAND_ELL``];
* ``ks_statistic`` / ``ks_pvalue`` — two-sample Kolmogorov–Smirnov test of the filled against
  the true hole-pixel values;
* ``gauss_mu_hole`` / ``gauss_sigma_hole`` — Gaussian fit of the filled hole-pixel values
  (``truth``: the fit of the true ones);
* ``seconds_per_patch`` — wall time of the fill divided by the number of patches (includes the
  factorisation of the Wiener filter / GCR for the mask geometry: ``setup`` notes it);
* ``seconds_precision_matrix`` (mask ``"all"``) — the one-off precision matrix of the sky that
  the Wiener filter and GCR share (not in ``seconds_per_patch``).

Centred circles are one geometry per radius, so the Wiener filter factorises once per radius and
reuses it across patches; random and point-source masks differ per patch, so every patch costs a
factorisation of its own (``n_random`` limits the number of patches used for those masks).

Modules: :mod:`~combine.evaluation.specs` (mask specifications, method names),
:mod:`~combine.evaluation.cell` (metrics of one method on one mask set),
:mod:`~combine.evaluation.loop` (the loop over methods and masks, one Sky for all),
:mod:`~combine.evaluation.epochs` (checkpoints of a training run),
:mod:`~combine.evaluation.fullsky` (HEALPix spectra), :mod:`~combine.evaluation.report`
(markdown, figures, results.json). T, Q, U data: :mod:`~combine.evaluation.tqu` (per-field hole
RMSE, flat-sky E/B of patches), :mod:`~combine.evaluation.fullsky_tqu` (anafast EE/BB of maps
filled on the sphere against the truth and the cut sky), :mod:`~combine.evaluation.report_tqu`.
"""

from .cell import MAX_HOLE_SAMPLES, POWER_BAND_ELL, cell_metrics  # noqa: F401
from .epochs import evaluate_run, list_checkpoints  # noqa: F401
from .fullsky import fill_healpix, fullsky_records, fullsky_spectra  # noqa: F401
from .loop import Evaluation, check_model_fits, evaluate, run_evaluation  # noqa: F401
from .report import (  # noqa: F401
    SUMMARY_METHODS,
    _clean,
    cost_table,
    metric_table,
    metric_table_by_epoch,
    report_markdown,
    results_table,
    summary_table,
    write_figures,
    write_report,
)
from .specs import (  # noqa: F401
    ALL_METHODS,
    DEFAULT_MASK_SPECS,
    RADIUS_SWEEP_PX,
    MaskSpec,
    make_masks,
    parse_mask_spec,
    parse_methods,
    spec_seed,
)
