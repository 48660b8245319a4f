"""`Sky` in files: datasets record it, `read_header` / `Sky.from_dataset` read it back; the loose
keywords of the first API build the same Sky."""

import json

import h5py
import numpy as np
import pytest

from combine.data import read_dataset, read_header, write_dataset
from combine.errors import InputError
from combine.sky import Sky
from combine.sky.model import sky_from_keywords

#: a CAMB-free sky (explicit stand-in spectrum)
CL = np.r_[0.0, 0.0, 1.0 / np.arange(2, 400) ** 2]


def _legacy_attrs(**over):
    attrs = dict(pixel_arcmin=2.0, beam_fwhm_arcmin=7.0, noise_uk_arcmin=3.0, size=8, method="flat", seed=1,
                 cosmology=json.dumps({"H0": 70.0, "ns": 0.9}), combine_version="old")
    attrs.update(over)
    return attrs


def test_dataset_records_the_sky_and_reads_it_back(tmp_path):
    sky = Sky(cl_tt_uk2=CL, pixel_arcmin=2.5, beam_fwhm_arcmin=4.0, noise_uk_arcmin=1.5)
    path = tmp_path / "d.h5"
    write_dataset(path, np.ones((3, 8, 8)), sky=sky, attrs=dict(size=8, method="flat", seed=None))
    shape, attrs, got = read_header(path)
    assert shape == (3, 8, 8) and got == sky
    assert Sky.from_dataset(path) == sky
    # the loose attributes of DESIGN.md's layout repeat the sky
    assert (attrs["pixel_arcmin"], attrs["beam_fwhm_arcmin"], attrs["noise_uk_arcmin"]) == (2.5, 4.0, 1.5)
    np.testing.assert_array_equal(got.cl_tt, CL)
    # read_dataset goes through the same header checks
    maps, ns, attrs2 = read_dataset(path)
    assert maps.shape == (3, 8, 8) and ns is None and attrs2 == attrs


def test_read_header_does_not_load_the_maps(tmp_path, monkeypatch):
    path = tmp_path / "d.h5"
    write_dataset(path, np.zeros((2, 8, 8)), attrs=_legacy_attrs())

    def no_read(self, *args, **kwargs):
        raise AssertionError("maps were read")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", no_read)
    shape, attrs, sky = read_header(path)
    assert shape == (2, 8, 8) and attrs["seed"] == 1


def test_files_of_the_first_layout(tmp_path):
    """No `sky` attribute: the sky of the loose attributes (cosmology JSON included)."""
    path = tmp_path / "old.h5"
    write_dataset(path, np.zeros((2, 8, 8)), attrs=_legacy_attrs())
    with h5py.File(path, "r") as f:
        assert "sky" not in f.attrs
    sky = Sky.from_dataset(path)
    assert (sky.pixel_arcmin, sky.beam_fwhm_arcmin, sky.noise_uk_arcmin) == (2.0, 7.0, 3.0)
    assert sky.cosmology["H0"] == 70.0 and sky.ns == 0.9
    # several ns classes were recorded as cosmology.ns = null: the shared sky, Planck ns; pick a class
    multi = tmp_path / "multi.h5"
    write_dataset(multi, np.zeros((2, 8, 8)), ns=[0.7, 1.1], attrs=_legacy_attrs(cosmology=json.dumps({"ns": None})))
    assert Sky.from_dataset(multi).ns == pytest.approx(0.9649)
    assert Sky.from_dataset(multi, ns=0.7).ns == 0.7


def test_header_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.h5"
    write_dataset(path, np.zeros((2, 8, 8)), attrs=_legacy_attrs(size=16))
    with pytest.raises(InputError, match="bad.h5: attribute size=16"):
        read_header(path)
    path = tmp_path / "badsky.h5"
    write_dataset(path, np.zeros((2, 8, 8)), attrs=_legacy_attrs(sky='{"pixel_arcmin": -1}'))
    with pytest.raises(InputError, match="badsky.h5: pixel_arcmin"):
        read_header(path)


def test_sky_from_keywords():
    sky = sky_from_keywords(cl_uk2=CL, pixel_arcmin=3.0, noise_uk_arcmin=2.0)
    assert sky == Sky(cl_tt_uk2=CL, pixel_arcmin=3.0, noise_uk_arcmin=2.0)
    assert sky.noise_var_pix_uk2 == pytest.approx((2.0 / 3.0) ** 2)
    assert sky_from_keywords(sky) is sky
    assert sky_from_keywords(default_noise_uk_arcmin=1.0).noise_uk_arcmin == 1.0
    with pytest.raises(InputError, match="not both"):
        sky_from_keywords(sky, pixel_arcmin=1.0)
    with pytest.raises(InputError, match="ns"):
        sky_from_keywords(cl_uk2=CL, ns=0.9)
    with pytest.raises(InputError, match="cl_uk2"):
        sky_from_keywords(cl_uk2=-CL)
    # the preset name is informational: the same parameters are the same sky
    assert Sky.planck18().with_ns(0.5) == Sky(cosmology={"ns": 0.5})



def test_from_model_dir(tmp_path):
    """The shipped model's sky block and a JSON-form block read back (no weights, no CAMB)."""
    from pathlib import Path

    import combine

    shipped = Sky.from_model_dir(Path(combine.__file__).parent / "pretrained" / "planck18-t128")
    assert (shipped.pixel_arcmin, shipped.beam_fwhm_arcmin, shipped.noise_uk_arcmin) == (1.7177, 5.0, 1.0)
    assert shipped.ns == pytest.approx(0.9649) and "_spectra" not in shipped.__dict__
    sky = Sky(cl_tt_uk2=CL, noise_uk_arcmin=2.0)
    (tmp_path / "config.json").write_text(json.dumps({"sky": sky.to_json(), "architecture": {}}))
    assert Sky.from_model_dir(tmp_path) == sky
    with pytest.raises(InputError, match="no such model config"):
        Sky.from_model_dir(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text(json.dumps({"architecture": {}}))
    with pytest.raises(InputError, match="no 'sky' table"):
        Sky.from_model_dir(tmp_path)
