#!/usr/bin/env bash
# Reproduce the T, Q, U model planck18-tqu128 on this machine's CPU (see README "Shipped models").
# Stage 1 then stage 2 on fresh simulated planck18 T, Q, U patches (configs/planck18-tqu128*.toml:
# 8 + 2 epochs of 60 steps of batch 8: 58 + 21 min at ~1 sample/s on 2 cores shared by five jobs,
# about 3.6 samples/s on a lighter load), then
# the evaluation against the T, Q, U local Wiener fill (benchmarks/bench_tqu_model.py) and
# shipping with that evaluation recorded in its config.json. The model is shipped only if its
# Q and U hole RMSE are within 10 % of the local Wiener fill's (scripts/ship_model.py --max-ratio).
set -euo pipefail
cd "$(dirname "$0")/.."
COMBINE=.venv/bin/combine
PY=.venv/bin/python
$COMBINE train --config configs/planck18-tqu128.toml --out runs/planck18-tqu128-s1 "$@"
$COMBINE train --config configs/planck18-tqu128-stage2.toml --init runs/planck18-tqu128-s1/last \
    --out runs/planck18-tqu128-s2
PYTHONPATH=src $PY benchmarks/bench_tqu_model.py --model runs/planck18-tqu128-s2/last --n 24 --seed 2027 \
    --out docs/evaluation/tqu128.json
$PY scripts/ship_model.py --stage runs/planck18-tqu128-s1 --stage runs/planck18-tqu128-s2 \
    --name planck18-tqu128 --reproduce "bash scripts/train_planck18_tqu128.sh" \
    --evaluation docs/evaluation/tqu128.json --max-ratio Q=1.10 --max-ratio U=1.10
