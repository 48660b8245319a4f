"""Theory spectra: CAMB TT sanity, disk cache, ns tilt, beam, HEALPix pixel window."""

import healpy as hp
import numpy as np
import pytest

import combine.sky.spectra as spectra
from combine.errors import InputError
from combine.sky.spectra import (
    gaussian_beam_bl,
    healpix_pixel_window,
    lensed_tt_cl_uk2,
)


def test_planck18_tt_shape_units_and_first_peak():
    cl = lensed_tt_cl_uk2()
    assert cl.shape == (6501,) and cl.dtype == np.float64
    assert cl[0] == 0 and cl[1] == 0
    ell = np.arange(cl.size)
    dl = ell * (ell + 1) * cl / (2 * np.pi)
    peak = int(np.argmax(dl))
    # Planck 2018: first acoustic peak at ℓ ≈ 220 with D_ℓ ≈ 5700 μK² (μK², not K²)
    assert 210 <= peak <= 230
    assert dl[peak] == pytest.approx(5700.0, rel=0.05)
    # damping tail: lensed CMB alone has D_3000 ≈ 28 μK² (the ~70 μK² seen by Planck is foregrounds)
    assert 20 < dl[3000] < 40


def test_cache_hit_does_not_recompute(tmp_path, monkeypatch):
    monkeypatch.setenv("COMBINE_CACHE_DIR", str(tmp_path))
    calls = []

    def fake_camb(params, lmax):
        calls.append((params["ns"], lmax))
        return np.linspace(0.0, 1.0, lmax + 1) * params["ns"]

    monkeypatch.setattr(spectra, "_camb_lensed_tt", fake_camb)
    a = lensed_tt_cl_uk2(ns=0.9, lmax=100)
    b = lensed_tt_cl_uk2(ns=0.9, lmax=100)
    assert len(calls) == 1
    np.testing.assert_array_equal(a, b)
    files = list((tmp_path / "spectra").glob("*.npy"))
    assert len(files) == 1 and not list((tmp_path / "spectra").glob(".*tmp*"))
    lensed_tt_cl_uk2(ns=1.1, lmax=100)  # another parameter -> another key
    lensed_tt_cl_uk2(ns=0.9, lmax=101)
    assert len(calls) == 3


def test_real_cache_returns_identical_array(monkeypatch):
    first = lensed_tt_cl_uk2()

    def boom(params, lmax):  # pragma: no cover - must not run
        raise AssertionError("CAMB called despite cache")

    monkeypatch.setattr(spectra, "_camb_lensed_tt", boom)
    np.testing.assert_array_equal(lensed_tt_cl_uk2(), first)


def test_ns_tilt_changes_spectrum_the_right_way():
    base = lensed_tt_cl_uk2()
    tilted = lensed_tt_cl_uk2(ns=1.1)
    ratio = tilted / np.where(base > 0, base, 1.0)
    # primordial P(k) ∝ (k/k_*)^(ns-1), k_* = 0.05/Mpc projects to ℓ ≈ 700: ratio ≈ 1 there
    assert ratio[700] == pytest.approx(1.0, abs=0.06)
    # ℓ-slope of the ratio ≈ Δns = 0.135 (measured 0.118: transfer + lensing); allow 25%
    slope = np.log(ratio[2000] / ratio[100]) / np.log(2000 / 100)
    assert 0.75 * 0.1351 < slope < 1.25 * 0.1351


@pytest.mark.parametrize("ns", [0, -0.5, float("nan"), "abc", 7.0, 0.05])
def test_bad_ns(ns):
    with pytest.raises(InputError, match="ns"):
        lensed_tt_cl_uk2(ns=ns)


def test_direct_spectrum_calls_apply_the_sky_parameter_ranges():
    """The CAMB front end and ``Sky`` share one validation (``check_cosmology``): a parameter
    outside ``COSMOLOGY_RANGES`` is refused before CAMB runs, with the parameter named."""
    with pytest.raises(InputError, match=r"cosmology\.H0: 500(\.0)? is outside"):
        lensed_tt_cl_uk2(cosmology={"H0": 500.0})
    with pytest.raises(InputError, match=r"ns: 3\.5 is outside"):
        lensed_tt_cl_uk2(cosmology={"ns": 3.5})


def test_gaussian_beam():
    bl = gaussian_beam_bl(5.0, 4000)
    sigma = np.deg2rad(5.0 / 60) / np.sqrt(8 * np.log(2))
    ell = np.arange(4001)
    np.testing.assert_allclose(bl, np.exp(-0.5 * ell * (ell + 1) * sigma**2), rtol=1e-10)
    np.testing.assert_array_equal(gaussian_beam_bl(0.0, 10), np.ones(11))
    with pytest.raises(InputError):
        gaussian_beam_bl(-1.0, 10)


def test_pixel_window_matches_direct_pixel_average():
    """w_ℓ² from the pair quadrature vs. averaging every real Y_ℓm over the pixels.

    For one ℓ, Σ_m |Y_ℓm|² = (2ℓ+1)/4π, so (4π/(2ℓ+1)) · mean_p Σ_m (pixel average of the
    real harmonics)² is w_ℓ² by definition. Pixel averages are 16×16 sub-pixel means
    (ud_grade from Nside 256 to 16). Our quadrature samples 768 of 3072 pixels; that
    sampling leaves ~1e-3 relative error at ℓ = 2.5 Nside (measured 2.6e-4 .. 1e-3).
    """
    nside_lo, nside_hi = 16, 256
    w = healpix_pixel_window(nside_lo, 48)
    assert w[0] == pytest.approx(1.0, abs=1e-12)
    for ell in (8, 24, 40):
        total = 0.0
        for m in range(ell + 1):
            for coeff in (1.0,) if m == 0 else (1 / np.sqrt(2), 1j / np.sqrt(2)):
                alm = np.zeros(hp.Alm.getsize(ell), complex)
                alm[hp.Alm.getidx(ell, ell, m)] = coeff
                averaged = hp.ud_grade(hp.alm2map(alm, nside_hi, lmax=ell), nside_lo)
                total += np.mean(averaged**2)
        w2_direct = total * 4 * np.pi / (2 * ell + 1)
        assert w[ell] ** 2 == pytest.approx(w2_direct, rel=2e-3)


def test_pixel_window_scales_with_nside():
    """At fixed ℓ/Nside the window is nearly Nside-independent (pixel shapes converge)."""
    w64 = healpix_pixel_window(64, 192)
    w128 = healpix_pixel_window(128, 384)
    np.testing.assert_allclose(w64[[64, 128, 192]], w128[[128, 256, 384]], rtol=3e-3)
    assert 0.94 < w64[64] < 0.97 and 0.6 < w64[192] < 0.7
    with pytest.raises(InputError):
        healpix_pixel_window(100, 10)
