"""Turn a ``combine evaluate`` report into the README's results: ``docs/results.md`` and figures.

Usage (see ``scripts/make_readme_results.sh``)::

    python scripts/readme_results.py REPORT_DIR DOCS_DIR [--model NAME]

Writes ``DOCS_DIR/results.md`` (the summary table of :func:`combine.evaluate.summary_table`, the
one-off Wiener precision-matrix cost, how it was made) and copies two figures of the report to
``DOCS_DIR/fig_panels_r16.png`` (target / masked / filled / difference for a 16 px hole) and
``DOCS_DIR/fig_rmse_vs_radius.png`` (hole RMSE against radius, every method), plus
``DOCS_DIR/fig_power_ratio_random.png``. Every file is written atomically.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from combine.atomic import atomic_path
from combine.evaluate import POWER_BAND_ELL, summary_table

FIGURES = {
    "panels_circle-r16.png": "fig_panels_r16.png",
    "radius_rmse_hole.png": "fig_rmse_vs_radius.png",
    "power_ratio_random.png": "fig_power_ratio_random.png",
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", type=Path, help="combine evaluate report directory")
    p.add_argument("docs", type=Path, help="output directory (docs/)")
    p.add_argument("--model", default="planck18-t128", help="model name, for the text")
    args = p.parse_args(argv)

    records = json.loads((args.report / "results.json").read_text(encoding="utf-8"))
    report_md = (args.report / "report.md").read_text(encoding="utf-8")
    command = report_md.split("```", 2)[1].strip() if "```" in report_md else "combine evaluate ..."
    n_patches = max((r.get("n_patches") or 0) for r in records if r["metric"] == "rmse_hole")
    n_random = next((r["n_patches"] for r in records if r["mask"] == "random" and r["metric"] == "rmse_hole"), None)
    precision = next((r for r in records if r["metric"] == "seconds_precision_matrix"), None)

    lines = [
        f"# Results: `{args.model}` against the exact Wiener filter and classical fills",
        "",
        f"{n_patches} simulated planck18 patches (128² px of 1.7177', 5' beam, 1 μK·arcmin white noise); "
        "centred circular holes of radius r and random-shape holes"
        + (f" ({n_random} patches)" if n_random else "") + ". Hole RMSE in μK, pooled over all hole "
        "pixels, with its ratio to the exact Wiener filter (the minimum possible for a Gaussian sky); "
        f"P ratio: power of the filled patches over the truth's, ℓ ∈ [{POWER_BAND_ELL[0]:g}, "
        f"{POWER_BAND_ELL[1]:g}] (1 = right power; smooth fills lose power); cost per patch on 2 CPU cores.",
        "",
        summary_table(records),
        "",
    ]
    if precision is not None:
        how = {"compute": f"computed in {precision['value']:.0f} s here",
               "disk": f"read in {precision['value']:.0f} s from the disk cache of an earlier run",
               "memory": "already in memory"}.get(precision.get("source"), f"{precision['value']:.0f} s in this run, maybe read from the disk cache")
        lines += ["The Wiener filter and the constrained realisation share a one-off 16384² precision matrix "
                  f"({how}; computing it takes about 2 minutes on 2 free cores), not included in their cost per "
                  "patch; each hole geometry then costs one Cholesky factorisation (once per radius for "
                  "centred holes, once per patch for random masks).", ""]
    lines += ["Made by `sh scripts/make_readme_results.sh`, which ran:", "", "```", command, "```", "",
              "Full report: [evaluation/report.md](evaluation/report.md).", ""]
    for src, dst in FIGURES.items():
        if (args.report / src).is_file():
            lines.append(f"![{dst}]({dst})")
    args.docs.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.docs / "results.md") as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n", encoding="utf-8")
    for src, dst in FIGURES.items():
        if (args.report / src).is_file():
            with atomic_path(args.docs / dst) as tmp:
                shutil.copyfile(args.report / src, tmp)
    print(summary_table(records))
    print(f"\nwrote {args.docs / 'results.md'} and " + ", ".join(str(args.docs / d) for d in FIGURES.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
