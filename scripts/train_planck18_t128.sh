#!/usr/bin/env bash
# Reproduce the shipped model planck18-t128 on this machine's CPU (see README "Shipped model").
# Stage 1 then stage 2 on fresh simulated planck18 patches, then evaluation and shipping.
# Steps per stage are in configs/planck18-t128*.toml (300 + 200 steps of batch 16: about 35 min
# on 2 free cores); the shipped model's config.json ("shipped.stages") records the runs it came from.
set -euo pipefail
cd "$(dirname "$0")/.."
COMBINE=.venv/bin/combine
$COMBINE train --config configs/planck18-t128.toml --out runs/planck18-t128-s1 "$@"
$COMBINE train --config configs/planck18-t128-stage2.toml --init runs/planck18-t128-s1/last \
    --out runs/planck18-t128-s2
# ship without evaluation, evaluate the shipped model (README table, docs/evaluation/), ship again
# with the evaluation figures recorded in its config.json
STAGES="--stage runs/planck18-t128-s1 --stage runs/planck18-t128-s2"
.venv/bin/python scripts/ship_model.py $STAGES --name planck18-t128
sh scripts/make_readme_results.sh
.venv/bin/python scripts/ship_model.py $STAGES --name planck18-t128 --evaluation docs/evaluation/results.json
