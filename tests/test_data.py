"""Dataset files: HDF5 layout, attributes, validation errors, splits."""

import json

import h5py
import numpy as np
import pytest

from combine import __version__
from combine.data import REQUIRED_ATTRS, dataset_cosmology, read_dataset, split_counts, write_dataset
from combine.errors import InputError
from combine.sky.defaults import PLANCK18_COSMOLOGY


def _attrs(**over):
    attrs = dict(
        pixel_arcmin=1.7177,
        beam_fwhm_arcmin=5.0,
        noise_uk_arcmin=1.0,
        size=64,
        method="flat",
        seed=3,
        cosmology=PLANCK18_COSMOLOGY,
    )
    attrs.update(over)
    return attrs


def test_round_trip_layout_and_attrs(tmp_path, rng):
    maps = rng.normal(0, 100, (5, 64, 64))
    ns = np.array([0.9, 0.9, 1.1, 1.1, 1.1])
    path = tmp_path / "train.h5"
    write_dataset(path, maps, ns=ns, attrs=_attrs(split="train"))
    # the raw layout DESIGN.md fixes
    with h5py.File(path, "r") as f:
        assert f["maps"].shape == (5, 64, 64) and f["maps"].dtype == np.float32
        assert f["ns"].shape == (5,)
        assert set(REQUIRED_ATTRS) <= set(f.attrs)
        assert json.loads(f.attrs["cosmology"])["H0"] == 67.36
    got, got_ns, attrs = read_dataset(path)
    np.testing.assert_array_equal(got, maps.astype(np.float32))
    np.testing.assert_array_equal(got_ns, ns)
    assert attrs["combine_version"] == __version__ and attrs["seed"] == 3 and attrs["split"] == "train"
    assert attrs["size"] == 64 and attrs["method"] == "flat" and attrs["noise_uk_arcmin"] == 1.0
    assert dataset_cosmology(attrs) == PLANCK18_COSMOLOGY
    assert not list(tmp_path.glob(".*tmp*"))


def test_four_dim_maps_and_no_seed(tmp_path, rng):
    path = tmp_path / "d.h5"
    write_dataset(path, rng.normal(size=(2, 3, 64, 64)), attrs=_attrs(seed=None))
    maps, ns, attrs = read_dataset(path)
    assert maps.shape == (2, 3, 64, 64) and ns is None and attrs["seed"] is None


def test_write_rejects_bad_input(tmp_path):
    with pytest.raises(InputError, match="shape"):
        write_dataset(tmp_path / "a.h5", np.zeros((64, 64)), attrs=_attrs())
    with pytest.raises(InputError, match="missing"):
        write_dataset(tmp_path / "a.h5", np.zeros((1, 64, 64)), attrs={"method": "flat"})
    with pytest.raises(InputError, match="ns"):
        write_dataset(tmp_path / "a.h5", np.zeros((2, 64, 64)), ns=[1.0], attrs=_attrs())
    assert not list(tmp_path.iterdir())


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    import combine.data as data

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(data, "init_h5", broken)
    with pytest.raises(RuntimeError):
        write_dataset(tmp_path / "a.h5", np.zeros((1, 64, 64)), attrs=_attrs())
    assert not list(tmp_path.iterdir())


def test_read_errors(tmp_path):
    not_h5 = tmp_path / "x.h5"
    not_h5.write_text("hello")
    with pytest.raises(InputError, match="not an HDF5"):
        read_dataset(not_h5)
    with pytest.raises(InputError, match="no such file"):
        read_dataset(tmp_path / "missing.h5")
    no_maps = tmp_path / "nomaps.h5"
    with h5py.File(no_maps, "w") as f:
        f["other"] = np.zeros(3)
    with pytest.raises(InputError, match="no 'maps'"):
        read_dataset(no_maps)
    bad_dims = tmp_path / "dims.h5"
    with h5py.File(bad_dims, "w") as f:
        f["maps"] = np.zeros((64, 64), np.float32)
    with pytest.raises(InputError, match="shape"):
        read_dataset(bad_dims)
    no_attrs = tmp_path / "attrs.h5"
    with h5py.File(no_attrs, "w") as f:
        f["maps"] = np.zeros((1, 64, 64), np.float32)
        f.attrs["method"] = "flat"
    with pytest.raises(InputError, match="missing attribute"):
        read_dataset(no_attrs)


@pytest.mark.parametrize(
    "n, fractions, expected",
    [
        (100, (0.7, 0.15, 0.15), (70, 15, 15)),
        (10, (0.7, 0.15, 0.15), (7, 2, 1)),
        (1, (0.7, 0.15, 0.15), (1, 0, 0)),
        (7, (1 / 3, 1 / 3, 1 / 3), (3, 2, 2)),
        (5, (0.0, 0.0, 1.0), (0, 0, 5)),
    ],
)
def test_split_counts(n, fractions, expected):
    counts = split_counts(n, fractions)
    assert counts == expected and sum(counts) == n


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.7, 0.2, 0.2), (1.2, -0.1, -0.1)])
def test_split_counts_bad(fractions):
    with pytest.raises(InputError):
        split_counts(10, fractions)
