#!/bin/sh
# Regenerate the README results: docs/results.md (the table) and docs/fig_*.png (its figures),
# from the shipped model planck18-t128, with the full evaluation report in docs/evaluation/.
#
#   sh scripts/make_readme_results.sh [N_PATCHES]        (run from the repository root)
#
# N_PATCHES fresh planck18 patches (128², 1.7177' pixels, 5' beam, 1 μK·arcmin noise; seed 1)
# are filled with centred holes of radius 4, 8, 16, 32 px and random shapes (N_RANDOM patches)
# by the model, the exact Wiener filter, the constrained realisation and the classical fills.
# Default N_PATCHES = 200, N_RANDOM = 32: a few minutes on 2 CPU cores (the 16384² Wiener
# precision matrix alone takes about 2; it is cached on disk for later runs).
set -eu
COMBINE=${COMBINE:-.venv/bin/combine}
PY=${PY:-.venv/bin/python}
MODEL=${MODEL:-planck18-t128}
N_PATCHES=${1:-200}
N_RANDOM=${N_RANDOM:-32}
REPORT=${REPORT:-docs/evaluation}
SEED=${SEED:-1}

"$COMBINE" evaluate --model "$MODEL" --data "simulate:$N_PATCHES" --seed "$SEED" \
    --n-random "$N_RANDOM" --out "$REPORT"
"$PY" scripts/readme_results.py "$REPORT" docs --model "$MODEL"
