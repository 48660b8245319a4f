#!/usr/bin/env bash
# Reproduce the shipped model planck18-t128 on this machine's CPU (see README "Shipped model").
# Stage 1 then stage 2 on fresh simulated planck18 patches, then evaluation and shipping.
# Steps per stage are in configs/planck18-t128*.toml; the shipped model stopped stage 1 early
# (its config.json, "shipped.stages", records the steps actually taken).
set -euo pipefail
cd "$(dirname "$0")/.."
COMBINE=.venv/bin/combine
$COMBINE train --config configs/planck18-t128.toml --out runs/planck18-t128-s1 "$@"
$COMBINE train --config configs/planck18-t128-stage2.toml --init runs/planck18-t128-s1/last \
    --out runs/planck18-t128-s2
$COMBINE evaluate --model runs/planck18-t128-s2/last --data simulate:48 --masks circle-r4,circle-r8,circle-r16,circle-r32,random,points \
    --out runs/planck18-t128-eval
.venv/bin/python scripts/ship_model.py --stage runs/planck18-t128-s1 --stage runs/planck18-t128-s2 \
    --name planck18-t128 --evaluation runs/planck18-t128-eval/results.json
