"""Mask generators: coverage statistics, geometry, point-source sizes, file augmentation, sampling."""

import cv2
import numpy as np
import pytest
from scipy import ndimage

import combine.masks as M
from combine.errors import InputError


def _hole_fraction(masks):
    return 1.0 - np.asarray(masks, np.float64).mean(axis=(-2, -1))


def _is_binary_f32(m, size):
    return m.dtype == np.float32 and m.shape[-2:] == (size, size) and np.isin(m, (0.0, 1.0)).all()


def _boundary_per_hole_pixel(mask):
    """Hole pixels with a valid 4-neighbour, per hole pixel (a perimeter/area ratio, 1/px)."""
    hole = mask == 0
    valid_nb = np.zeros_like(hole)
    valid_nb[1:] |= ~hole[:-1]
    valid_nb[:-1] |= ~hole[1:]
    valid_nb[:, 1:] |= ~hole[:, :-1]
    valid_nb[:, :-1] |= ~hole[:, 1:]
    return (hole & valid_nb).sum() / max(hole.sum(), 1)


# ------------------------------------------------------------------------ random shapes
def test_random_shapes_cover_a_quarter_at_128():
    rng = np.random.default_rng(101)
    masks = np.stack([M.random_shapes_mask(128, rng) for _ in range(500)])
    assert _is_binary_f32(masks, 128)
    f = _hole_fraction(masks)
    # measured over 10,000 masks: mean 0.249, sd 0.081 -> standard error over 500 is 0.0036
    assert abs(f.mean() - 0.25) < 0.015
    assert 0.06 < f.std() < 0.10
    assert f.min() > 0 and f.max() < 0.8  # never empty, never (nearly) all hole


def test_random_shapes_look_the_same_at_512():
    """Same coverage and same shapes magnified: perimeter/area scales as 1/size."""
    r128, r512 = np.random.default_rng(7), np.random.default_rng(8)
    m128 = [M.random_shapes_mask(128, r128) for _ in range(300)]
    m512 = [M.random_shapes_mask(512, r512) for _ in range(150)]
    assert _is_binary_f32(m512[0], 512)
    f128, f512 = _hole_fraction(np.stack(m128)), _hole_fraction(np.stack(m512))
    # standard errors 0.0047 (128², 300) and 0.0066 (512², 150): 3σ of the difference is 0.024
    assert abs(f512.mean() - 0.25) < 0.02
    assert abs(f512.mean() - f128.mean()) < 0.024
    # boundary pixels per hole pixel × size/128: measured 0.317 (128²) and 0.321 (512²),
    # standard errors ~0.003; with shapes not scaled it would differ by a factor 4
    b128 = np.mean([_boundary_per_hole_pixel(m) for m in m128])
    b512 = np.mean([_boundary_per_hole_pixel(m) for m in m512]) * 4
    assert abs(b512 / b128 - 1) < 0.06


def test_random_shapes_deterministic_from_seed():
    a = M.random_shapes_mask(128, np.random.default_rng(5))
    b = M.random_shapes_mask(128, np.random.default_rng(5))
    c = M.random_shapes_mask(128, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(M.random_shapes_mask(64, 3), M.random_shapes_mask(64, 3))  # int seeds


# ------------------------------------------------------------------------ circles
def _dist(size, center=None):
    cx, cy = ((size - 1) / 2,) * 2 if center is None else center
    yy, xx = np.mgrid[0:size, 0:size]
    return np.hypot(xx - cx, yy - cy)


@pytest.mark.parametrize("size", [128, 129])
def test_circle_area_is_round_pi_r2(size):
    """|hole| = round(π r²): within half a pixel, so within 2% of π r² for every r ≥ 4 px."""
    radii = np.concatenate([np.arange(4, 64), np.linspace(4, 63, 200)])
    dev = []
    for r in radii:
        m = M.circle_mask(size, r)
        assert _is_binary_f32(m, size)
        area = int((m == 0).sum())
        assert area == int(np.floor(np.pi * r * r + 0.5)), r
        dev.append(area / (np.pi * r * r) - 1)
    assert max(abs(d) for d in dev) < 0.02  # measured 0.59% (r = 5); pixel-centre rule: 10%


@pytest.mark.parametrize("size", [128, 129])
def test_circle_between_discs_r_minus_1_and_r_plus_1_and_nearest_first(size):
    for r in np.linspace(1.3, 63, 80):
        m = M.circle_mask(size, r)
        d = _dist(size)
        hole = m == 0
        assert hole[d <= r - 1].all(), r  # contains the disc of radius r − 1
        assert (d[hole] <= r + 1).all(), r  # inside the disc of radius r + 1
        assert d[hole].max() <= d[~hole].min(), r  # nearest first
        # symmetric but for the last (partial) ring; centroid near the centre
        inner = hole & (d < d[hole].max() - 1e-9)
        for t in (inner[::-1], inner[:, ::-1], inner.T):
            np.testing.assert_array_equal(inner, t)
        ys, xs = np.nonzero(hole)
        c = (size - 1) / 2
        assert abs(xs.mean() - c) < 1 and abs(ys.mean() - c) < 1, r


def test_circle_partial_last_ring_about_pixel_centre():
    """r = 5 about a pixel centre: 69 pixels within d < 5, then 10 of the 12 at d = 5 (π·25 → 79)."""
    m = M.circle_mask(129, 5)  # centre (64, 64) is a pixel centre
    d = _dist(129)
    hole = m == 0
    assert hole.sum() == 79 and hole[d < 5].sum() == 69 and hole[np.isclose(d, 5)].sum() == 10
    ys, xs = np.nonzero(hole)
    assert abs(xs.mean() - 64) < 0.2 and abs(ys.mean() - 64) < 0.2  # spread over the ring


def test_circle_small_radius_at_least_one_pixel():
    for r in (1e-3, 0.1, 0.3):  # round(π r²) = 0: one pixel, the nearest
        m = M.circle_mask(129, r)
        assert (m == 0).sum() == 1 and m[64, 64] == 0
    assert (M.circle_mask(128, 0.3) == 0).sum() == 1  # centre between four pixels: one of them
    assert (M.circle_mask(128, 1.0) == 0).sum() == 3  # round(π) = 3


def test_circle_deterministic():
    for args in [(128, 7.3), (129, 5), (64, 11.1, (10.2, 50.7)), (128, 20, (0.0, 64.0))]:
        np.testing.assert_array_equal(M.circle_mask(*args), M.circle_mask(*args))


def test_circle_off_centre():
    m = M.circle_mask(128, 10, center=(30.0, 90.0))
    ys, xs = np.nonzero(m == 0)
    assert (m == 0).sum() == round(np.pi * 100)
    assert abs(xs.mean() - 30) < 0.1 and abs(ys.mean() - 90) < 0.1
    assert m[90, 30] == 0 and m[30, 90] == 1
    d = _dist(128, (30.0, 90.0))
    assert d[m == 0].max() <= d[m == 1].min()
    # the same hole shifted: only the distances to the centre matter
    np.testing.assert_array_equal(m[80:101, 20:41], M.circle_mask(128, 10, center=(50.0, 60.0))[50:71, 40:61])


@pytest.mark.parametrize("center", [(0.0, 64.0), (3.25, 120.625), (-4.0, 64.0), (127.5, -0.5)])
def test_circle_clipped_by_edge(center):
    """Partly outside the patch: the in-patch pixels among the n nearest of the unbounded lattice."""
    r = 10.0
    edge = M.circle_mask(128, r, center=center)
    # the same disc in a patch large enough to hold it, shifted by 40 px (exactly: dyadic centres)
    big = M.circle_mask(208, r, center=(center[0] + 40, center[1] + 40))
    assert (big == 0).sum() == round(np.pi * r * r)
    np.testing.assert_array_equal(edge, big[40:168, 40:168])
    assert (edge == 0).sum() < round(np.pi * r * r)  # smaller: the part outside is cut
    d = _dist(128, center)
    hole = edge == 0
    assert hole[d <= r - 1].all() and (d[hole] <= r + 1).all()
    if hole.any():
        assert d[hole].max() <= d[~hole].min()
    half = M.circle_mask(128, r, center=(0.0, 64.0))
    assert 0.45 < (half == 0).sum() / (np.pi * r * r) < 0.56


def test_circle_far_or_huge():
    assert (M.circle_mask(64, 5, center=(200.0, 10.0)) == 1).all()  # misses the patch
    assert (M.circle_mask(64, 100) == 0).all()  # covers it
    m = M.circle_mask(64, 1000, center=(-990.0, 31.5))  # edge through the patch, r ≫ size
    d = _dist(64, (-990.0, 31.5))
    np.testing.assert_array_equal(m == 0, d <= 1000)


@pytest.mark.parametrize("r", [0, -3, float("nan"), float("inf")])
def test_circle_bad_radius(r):
    with pytest.raises(InputError, match="--radius"):
        M.circle_mask(128, r)


def test_random_circle_mask_radius_range():
    rng = np.random.default_rng(4)
    for size in (128, 256):
        for _ in range(50):
            m = M.random_circle_mask(size, rng)
            r_eff = np.sqrt((m == 0).sum() / np.pi) * 128 / size
            assert 1.5 < r_eff < 41  # radius 2-40 px at 128², scaled; centre in the central half


# ------------------------------------------------------------------------ point sources
def test_point_source_diameters_log_uniform_3_to_30_arcmin():
    """Isolated holes at fine pixels (0.5'): equivalent diameters follow log-uniform 3-30'."""
    rng = np.random.default_rng(3)
    size, pix = 512, 0.5
    diam, weight = [], []
    for _ in range(400):
        hole = M.point_source_mask(size, rng, pixel_arcmin=pix, n_sources=1) == 0
        ys, xs = np.nonzero(hole)
        assert ndimage.label(hole)[1] == 1
        if ys.min() == 0 or xs.min() == 0 or ys.max() == size - 1 or xs.max() == size - 1:
            continue  # cut by the border
        d = 2 * np.sqrt(hole.sum() / np.pi) * pix
        diam.append(d)
        # discs near the border were dropped: weight by 1 / P(disc inside), P = ((size - d)/size)²
        weight.append(1 / (1 - d / pix / size) ** 2)
    d, w = np.array(diam), np.array(weight)
    assert len(d) > 300
    assert d.min() > 3 * 0.97 and d.max() < 30 * 1.03
    ln_d = np.log(d)
    mean = np.average(ln_d, weights=w)
    sd = np.sqrt(np.average((ln_d - mean) ** 2, weights=w))
    # log-uniform on [ln 3, ln 30]: mean ln √90 = 2.250, sd ln 10 / √12 = 0.665; se of the mean 0.035
    assert abs(mean - np.log(np.sqrt(90))) < 0.12
    assert abs(sd - np.log(10) / np.sqrt(12)) < 0.08
    assert abs(np.average(d < np.sqrt(90), weights=w) - 0.5) < 0.09  # median √(3·30) = 9.49'
    # a 1/d density: as many holes in 3-5.48' as in 16.4-30' (equal log-widths)
    small, large = (d < 3 * 10 ** 0.26).sum(), (d > 30 / 10 ** 0.26).sum()
    assert abs(small - large) < 4 * np.sqrt(small + large)


def test_point_source_default_pixels():
    """At 1.7177' a 3' hole is 1-4 pixels and a 30' hole ≈ π (8.73)² ≈ 240 pixels."""
    rng = np.random.default_rng(4)
    areas = []
    for _ in range(300):
        hole = M.point_source_mask(128, rng, n_sources=1) == 0
        ys, xs = np.nonzero(hole)
        if ys.min() > 0 and xs.min() > 0 and ys.max() < 127 and xs.max() < 127:
            areas.append(hole.sum())
    areas = np.array(areas)
    r_max = 15 / 1.7177
    assert areas.min() >= 1 and areas.max() <= np.pi * (r_max + 0.5) ** 2
    assert areas.max() > 0.8 * np.pi * r_max ** 2  # the big ones do occur
    assert np.median(areas) < np.pi * (np.sqrt(90) / 2 / 1.7177 + 0.5) ** 2


def test_point_source_coverage_and_counts():
    rng = np.random.default_rng(9)
    f = _hole_fraction(np.stack([M.point_source_mask(128, rng) for _ in range(300)]))
    # measured over 2,000: mean 0.031, sd 0.021 -> se over 300 is 0.0012
    assert abs(f.mean() - 0.031) < 0.006 and f.min() > 0
    f512 = _hole_fraction(np.stack([M.point_source_mask(512, rng) for _ in range(30)]))
    assert abs(f512.mean() - 0.033) < 0.008  # source count scales with the area
    # n_sources tiny discs far apart: one component per source (at most)
    m = M.point_source_mask(256, rng, n_sources=5, diameter_arcmin=(3.0, 3.01))
    assert 1 <= ndimage.label(m == 0)[1] <= 5


# ------------------------------------------------------------------------ files
@pytest.fixture
def mask_dir(tmp_path):
    d = tmp_path / "masks"
    d.mkdir()
    a = np.ones((100, 150), np.float32)
    a[20:40, 30:90] = 0
    a[60:66, :] = 0
    np.save(d / "a.npy", a)
    png = np.full((300, 200), 255, np.uint8)
    cv2.circle(png, (100, 150), 40, 0, -1)
    cv2.imwrite(str(d / "b.png"), png)
    (d / "notes.txt").write_text("ignored")
    return d


def test_file_masks_binary_right_size_deterministic(mask_dir):
    for size in (64, 128, 256):  # 256 > both files: resized up first
        masks = M.masks_from_files(mask_dir, 12, size, seed=3)
        assert masks.shape == (12, size, size) and _is_binary_f32(masks, size)
        np.testing.assert_array_equal(masks, M.masks_from_files(mask_dir, 12, size, seed=3))
    assert not np.array_equal(M.masks_from_files(mask_dir, 4, 64, seed=1), M.masks_from_files(mask_dir, 4, 64, seed=2))


def test_png_white_is_valid(mask_dir):
    fm = M.FileMasks(mask_dir, 64)
    png = fm._load(mask_dir / "b.png")
    assert png[150, 100] == 0 and png[10, 10] == 1
    assert abs((png == 0).sum() - np.pi * 40 ** 2) / (np.pi * 40 ** 2) < 0.03


def test_augment_rotation_zoom_and_crop():
    src = np.ones((256, 256), np.uint8)
    src[123:133, 40:216] = 0  # a horizontal bar through the centre
    c = (256 - 128) // 2
    flat = M.augment_mask(src, 128, angle_deg=0, crop_yx=(c, c))
    turned = M.augment_mask(src, 128, angle_deg=90, crop_yx=(c, c))
    assert _is_binary_f32(turned, 128)
    ys, xs = np.nonzero(flat == 0)
    assert np.ptp(xs) > 5 * np.ptp(ys)
    ys, xs = np.nonzero(turned == 0)
    assert np.ptp(ys) > 5 * np.ptp(xs)  # rotated by 90°
    # zoom 1.5: a central disc of radius 20 becomes one of radius 30 whatever the angle
    disc = M.circle_mask(256, 20)
    for angle in (0, 33, -120):
        out = M.augment_mask(disc, 128, angle_deg=angle, crop_yx=(c, c))
        assert abs((out == 0).sum() / (np.pi * 30 ** 2) - 1) < 0.03
    with pytest.raises(ValueError):
        M.augment_mask(src, 128, crop_yx=(200, 0))


def test_augment_dilation_never_shrinks_holes():
    rng = np.random.default_rng(0)
    src = M.random_shapes_mask(192, rng).astype(np.uint8)
    for _ in range(10):
        angle, crop = float(rng.uniform(-180, 180)), tuple(int(v) for v in rng.integers(0, 65, 2))
        base = M.augment_mask(src, 128, angle_deg=angle, dilation_px=1, crop_yx=crop)
        prev = base
        for k in (2, 3, 5, 9):
            dil = M.augment_mask(src, 128, angle_deg=angle, dilation_px=k, crop_yx=crop)
            assert np.all(dil[prev == 0] == 0)  # every hole stays a hole
            assert (dil == 0).sum() >= (prev == 0).sum()
            prev = dil
        assert (prev == 0).sum() > (base == 0).sum()  # and it does grow


@pytest.mark.parametrize("content, word", [
    (np.full((40, 40), 0.5), "not binary"),
    (np.full((2, 40, 40), 1.0), "2-D"),
    (np.array([["a", "b"], ["c", "d"]]), "numeric"),
])
def test_file_masks_bad_npy(tmp_path, content, word):
    np.save(tmp_path / "bad.npy", content)
    fm = M.FileMasks(tmp_path, 64)
    with pytest.raises(InputError, match=word) as info:
        fm.validate()
    assert "bad.npy" in str(info.value)


def test_file_masks_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        M.FileMasks(tmp_path / "missing")
    with pytest.raises(InputError, match="no .png or .npy"):
        M.FileMasks(tmp_path)
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="x.png: not a readable PNG"):
        M.FileMasks(tmp_path).validate()
    (tmp_path / "x.png").unlink()
    (tmp_path / "t.npy").write_bytes(b"\x93NUMPY trunc")
    with pytest.raises(InputError, match="t.npy: not a readable .npy"):
        M.FileMasks(tmp_path).validate()
    (tmp_path / "t.npy").unlink()
    np.save(tmp_path / "zero.npy", np.zeros((32, 32)))
    with pytest.raises(InputError, match="zero.npy: mask has no valid"):
        M.FileMasks(tmp_path).validate()


def test_file_cache_is_bounded(mask_dir):
    fm = M.FileMasks(mask_dir, 64, cache_bytes=100 * 150)  # room for a.npy only
    fm.validate()
    assert list(fm._cache) == [mask_dir / "a.npy"]
    np.testing.assert_array_equal(fm.sample(np.random.default_rng(1)), M.FileMasks(mask_dir, 64).sample(np.random.default_rng(1)))


# ------------------------------------------------------------------------ sampling
def test_mask_sampler_mix_frequencies(monkeypatch):
    def tag(value):
        return lambda size, rng, **kw: np.full((size, size), value, np.float32)

    monkeypatch.setattr(M, "random_shapes_mask", tag(1))
    monkeypatch.setattr(M, "random_circle_mask", tag(2))
    monkeypatch.setattr(M, "point_source_mask", tag(3))
    mix = {"random": 2, "circle": 5, "points": 3}  # normalised: 0.2, 0.5, 0.3
    sampler = M.MaskSampler(mix, 64, np.random.default_rng(0))
    n = 3000
    drawn = np.array([sampler.sample()[0, 0] for _ in range(n)])
    for value, p in ((1, 0.2), (2, 0.5), (3, 0.3)):
        assert abs((drawn == value).mean() - p) < 4 * np.sqrt(p * (1 - p) / n)
    # a zero probability is never drawn
    only = M.MaskSampler({"random": 1, "points": 0}, 64, np.random.default_rng(1))
    assert all(only.sample()[0, 0] == 1 for _ in range(200))


def test_mask_sampler_deterministic_and_real(mask_dir):
    mix = {"random": 1, "circle": 1, "points": 1, f"files:{mask_dir}": 1}
    s1, s2, s3 = (M.MaskSampler(mix, 64, np.random.default_rng(seed)) for seed in (11, 11, 12))
    a, b, c = ([s.sample() for _ in range(20)] for s in (s1, s2, s3))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))
    assert all(_is_binary_f32(x, 64) and 0 < x.mean() for x in a)


@pytest.mark.parametrize("mix, word", [
    ({}, "empty"),
    ({"random": -1}, "probability"),
    ({"random": float("nan")}, "probability"),
    ({"random": 0}, "no positive"),
    ({"squares": 1}, "unknown mask kind"),
    ({"files:/nonexistent/dir": 1}, "does not exist"),
])
def test_mask_sampler_bad_mix(mix, word):
    with pytest.raises(InputError, match=word):
        M.MaskSampler(mix, 64, 0)


# ------------------------------------------------------------------------ generate_masks
def test_generate_masks_kinds(mask_dir):
    for kind in ("random", "circle", "points", "files"):
        m = M.generate_masks(kind, 3, 64, seed=1, radius_px=8, directory=mask_dir)
        assert m.shape == (3, 64, 64) and _is_binary_f32(m, 64)
        np.testing.assert_array_equal(m, M.generate_masks(kind, 3, 64, seed=1, radius_px=8, directory=mask_dir))
    circles = M.generate_masks("circle", 2, 64, radius_px=8, center=(10, 20))
    np.testing.assert_array_equal(circles[0], M.circle_mask(64, 8, (10, 20)))


@pytest.mark.parametrize("kwargs, word", [
    (dict(kind="random", n=0), "--n"),
    (dict(kind="random", n=2, size=4), "--size"),
    (dict(kind="squares", n=2), "unknown mask kind"),
    (dict(kind="files", n=2), "--from"),
    (dict(kind="circle", n=2, radius_px=-1), "--radius"),
])
def test_generate_masks_bad_inputs(kwargs, word):
    with pytest.raises(InputError, match=word):
        M.generate_masks(**kwargs)


def test_one_mask_file_rule_for_masks_and_inpaint(tmp_path):
    """Issue 12: PNG masks were thresholded at > 127 by `combine masks --kind files` and required
    strictly binary by `combine inpaint`. One reader, one rule: black/white (or 0/1) only; an
    anti-aliased (grey) edge is an error naming the file in both, never silently thresholded."""
    from combine.image_io import read_mask_file

    png = np.full((64, 64), 255, np.uint8)
    cv2.circle(png, (32, 32), 10, 0, -1)
    cv2.imwrite(str(tmp_path / "ok.png"), png)
    expected = (png == 255).astype(np.float32)
    np.testing.assert_array_equal(read_mask_file(tmp_path / "ok.png"), expected)
    np.testing.assert_array_equal(M.FileMasks(tmp_path, 64)._load(tmp_path / "ok.png"), expected)
    png[32, 20] = 200  # one grey pixel: > 127, which the old threshold took as valid
    cv2.imwrite(str(tmp_path / "grey.png"), png)
    with pytest.raises(InputError, match="grey.png: mask PNG is not black and white"):
        read_mask_file(tmp_path / "grey.png")
    with pytest.raises(InputError, match="grey.png: mask PNG is not black and white"):
        M.FileMasks(tmp_path, 64).validate()
