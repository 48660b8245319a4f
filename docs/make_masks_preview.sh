#!/bin/sh
# Regenerate docs/masks_preview.png (README): masks drawn with `combine masks`, shown over one
# simulated planck18 patch. Rows: random shapes, centred circles (r = 5, 16, 32, 60 px), point
# sources. Run from the repository root: sh docs/make_masks_preview.sh
set -eu
COMBINE=${COMBINE:-.venv/bin/combine}
PY=${PY:-.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$COMBINE" masks --quiet --kind random --n 4 --seed 1 --out "$tmp/random.npy"
for r in 5 16 32 60; do
    "$COMBINE" masks --quiet --kind circle --n 1 --radius "$r" --out "$tmp/circle$r.npy"
done
"$COMBINE" masks --quiet --kind points --n 4 --seed 3 --out "$tmp/points.npy"
"$PY" - "$tmp" <<'PYEOF'
import sys
import numpy as np
from combine.atomic import atomic_path
from combine.commands.masks import plot_mask_preview

tmp = sys.argv[1]
radii = (5, 16, 32, 60)
masks = np.concatenate([np.load(f"{tmp}/random.npy")]
                       + [np.load(f"{tmp}/circle{r}.npy") for r in radii]
                       + [np.load(f"{tmp}/points.npy")])
labels = [f"random #{i}" for i in range(4)] + [f"circle r={r}" for r in radii] + [f"points #{i}" for i in range(4)]
with atomic_path("docs/masks_preview.png") as out:
    plot_mask_preview(out, masks, seed=2018, labels=labels,
                      title="combine masks over a simulated planck18 patch (128² px of 1.7177', holes grey)")
PYEOF
echo "wrote docs/masks_preview.png"
