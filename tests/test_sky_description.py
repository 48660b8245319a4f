"""`combine.sky.Sky`: validation, identity, JSON round trip, and the one ξ(θ) / beamed spectrum."""

import json
import math

import numpy as np
import pytest

from combine.errors import InputError
from combine.sky import Sky


def _toy_cl(lmax=400):
    ell = np.arange(lmax + 1, dtype=float)
    cl = np.zeros(lmax + 1)
    cl[2:] = 1e3 / (ell[2:] * (ell[2:] + 1))
    return cl


def test_json_round_trip_explicit_spectra_is_equal_and_hash_stable():
    sky = Sky(cl_tt_uk2=_toy_cl(), cl_ee_uk2=0.1 * _toy_cl(), beam_fwhm_arcmin=7.0, noise_uk_arcmin=2.5)
    text = json.dumps(sky.to_json())
    back = Sky.from_json(text)
    assert back == sky and hash(back) == hash(sky)
    np.testing.assert_array_equal(back.spectra_uk2()["ee"], 0.1 * _toy_cl())
    np.testing.assert_array_equal(back.spectra_uk2()["bb"], 0.0)  # not given -> zero
    assert back.replace(noise_uk_arcmin=2.6) != sky


def test_fields_change_identity_and_ns_replaces_cosmology():
    sky = Sky.planck18()
    assert sky.ns == pytest.approx(0.9649)
    assert sky.with_ns(0.5).ns == 0.5 and sky.with_ns(0.5) != sky
    assert sky.with_ns(0.5).cosmology["H0"] == sky.cosmology["H0"]
    assert Sky.from_json(sky.with_ns(0.5).to_json()) == sky.with_ns(0.5)
    assert sky.noise_qu_uk_arcmin == 0.0
    assert Sky(noise_uk_arcmin=2.0).noise_qu_uk_arcmin == pytest.approx(2.0 * math.sqrt(2.0))
    assert Sky(noise_uk_arcmin=2.0, noise_pol_uk_arcmin=1.0).noise_qu_uk_arcmin == 1.0
    assert Sky(noise_uk_arcmin=3.0, pixel_arcmin=1.5).noise_var_pix_uk2 == pytest.approx(4.0)


@pytest.mark.parametrize("kwargs, word", [
    ({"cosmology": {"ns": 7}}, "ns"),
    ({"cosmology": {"H0": -1}}, "H0"),
    ({"pixel_arcmin": 0}, "pixel_arcmin"),
    ({"noise_uk_arcmin": float("nan")}, "noise_uk_arcmin"),
    ({"beam_fwhm_arcmin": "wide"}, "beam_fwhm_arcmin"),
    ({"cl_tt_uk2": [1.0, -1.0, 2.0]}, "cl_tt_uk2"),
    ({"cl_ee_uk2": [0.0, 0.0, 1.0]}, "cl_ee_uk2"),
    ({"noise_var_uk2": np.array([1.0, -2.0])}, "noise_var_uk2"),
])
def test_bad_values_are_input_errors_naming_the_field(kwargs, word):
    with pytest.raises(InputError, match=word):
        Sky(**kwargs)


def test_from_json_rejects_unknown_format_and_spectrum():
    with pytest.raises(InputError, match="format"):
        Sky.from_json({"format": "combine-sky/99"})
    with pytest.raises(InputError, match="unknown spectrum"):
        Sky.from_json({"spectra": {"tt": [0, 0, 1], "xx": [0, 0, 1]}})
    with pytest.raises(InputError, match="not JSON"):
        Sky.from_json("{not json")


def test_beamed_spectrum_and_correlation_are_the_legendre_sum():
    from scipy.special import eval_legendre

    cl = _toy_cl(300)
    sky = Sky(cl_tt_uk2=cl, beam_fwhm_arcmin=30.0)
    ell = np.arange(cl.size)
    sigma = math.radians(30.0 / 60.0) / math.sqrt(8 * math.log(2))
    bl2 = np.exp(-ell * (ell + 1) * sigma**2)
    np.testing.assert_allclose(sky.beamed_cl_uk2(), cl * bl2, rtol=1e-12, atol=0)
    theta = np.array([0.0, 0.01, 0.05, 0.3])
    direct = np.array([np.sum((2 * ell + 1) / (4 * np.pi) * cl * bl2 * eval_legendre(ell, math.cos(t)))
                       for t in theta])
    np.testing.assert_allclose(sky.correlation_uk2(theta), direct, rtol=1e-9, atol=1e-12 * direct[0])
    window = np.linspace(1.0, 0.5, cl.size)
    np.testing.assert_allclose(sky.beamed_cl_uk2(pixel_window=window), cl * bl2 * window**2, rtol=1e-12)


def test_legacy_dataset_attributes_read_as_sky():
    attrs = {"pixel_arcmin": 2.0, "beam_fwhm_arcmin": 4.0, "noise_uk_arcmin": 1.0,
             "cosmology": json.dumps({"ns": 0.7})}
    sky = Sky.from_legacy_attrs(attrs)
    assert (sky.pixel_arcmin, sky.beam_fwhm_arcmin, sky.noise_uk_arcmin, sky.ns) == (2.0, 4.0, 1.0, 0.7)
    assert Sky.from_legacy_attrs({"sky": sky.to_json_text()}) == sky
