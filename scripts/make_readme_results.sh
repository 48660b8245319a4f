#!/bin/sh
# Regenerate the README results: the block between the results markers in README.md,
# docs/results.md, docs/fig_*.png and the full report in docs/evaluation/.
#
#   sh scripts/make_readme_results.sh        (from anywhere; every parameter is fixed in
#                                             scripts/readme_results.py)
#
# About 5 minutes on 2 CPU cores once the 16384² Wiener precision matrix is in the disk cache
# ($COMBINE_CACHE_DIR, default ~/.cache/combine), a few more the first time.
# `python scripts/readme_results.py --check` says whether README.md matches docs/evaluation.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
exec "$PY" "$ROOT/scripts/readme_results.py"
