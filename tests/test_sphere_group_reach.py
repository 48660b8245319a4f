"""``combine.sphere.wiener._group_reach``, the ξ table's range, against the per-group loop it
replaced: equal to the last bit (so the table and the fill are unchanged), over several chunks."""

import healpy as hp
import numpy as np
import pytest

from combine.sphere import hole_groups
from combine.sphere import wiener


def _reference_reach(groups):
    reach = 0.0
    for k in range(len(groups)):
        pix = np.concatenate([groups.holes(k), groups.context(k)])
        vec = np.stack(hp.pix2vec(groups.nside, pix, nest=groups.nest), 1)
        centre = vec.mean(axis=0)
        centre /= max(float(np.linalg.norm(centre)), 1e-300)
        reach = max(reach, float(np.max(np.linalg.norm(vec - centre, axis=1))))
    return reach


@pytest.mark.parametrize("nest, chunk", [(False, None), (True, 300)])
def test_group_reach_equals_the_per_group_loop(monkeypatch, nest, chunk):
    if chunk is not None:
        monkeypatch.setattr(wiener, "REACH_CHUNK_PIXELS", chunk)
    nside = 64
    rng = np.random.default_rng(5)
    valid = np.ones(hp.nside2npix(nside), bool)
    for _ in range(40):
        vec = hp.ang2vec(rng.uniform(0, 360), rng.uniform(-80, 80), lonlat=True)
        valid[hp.query_disc(nside, vec, np.radians(rng.uniform(0.5, 3.0)), nest=nest)] = False
    groups = hole_groups(valid, nside, nest=nest, margin_rad=4 * hp.nside2resol(nside))
    assert len(groups) > 10
    reach = wiener._group_reach(groups)
    assert reach == _reference_reach(groups)
    assert 0 < reach <= 2.0
