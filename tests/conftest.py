"""Shared test fixtures. Tests make their own small data; nothing is downloaded."""

import os

import numpy as np
import pytest

# Keep CAMB spectra cached between tests of one session (and between sessions on one machine).
os.environ.setdefault("COMBINE_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".cache"))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A small randomly initialised PConv UNet (6 levels, 8–16 channels) saved as a model dir:
    takes 64² and 128² patches; its outputs are finite but meaningless."""
    import torch

    from combine.models import save_model
    from combine.nn import PConvUNet

    torch.manual_seed(0)
    unet = PConvUNet("t128", levels=6, channels=[8, 16, 16, 16, 16, 16]).eval()
    d = tmp_path_factory.mktemp("models") / "tiny"
    save_model(unet, d, extra={"note": "random init for tests"})
    return d


@pytest.fixture(scope="session")
def untrained_models(tmp_path_factory):
    """Directory holding two untrained t128 model dirs: ``t128`` (T) and ``t128-3ch`` (3 channels)."""
    import torch

    from combine.models import save_model
    from combine.nn import PConvUNet

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("untrained")
    save_model(PConvUNet("t128").eval(), root / "t128")
    save_model(PConvUNet("t128", in_channels=3).eval(), root / "t128-3ch")
    return root


@pytest.fixture
def single_openmp_thread():
    """healpy's OpenMP threads spin for ~0.1 s per tiny transform when the cores are busy (measured:
    Nside-16 alm2map 117 ms with 2 threads on a loaded machine, 0.9 ms with one): run on one."""
    import ctypes

    import healpy as hp

    hp.alm2map(np.zeros((3, 10), complex), 1, pol=True)  # loads healpy's libgomp
    libs = {w for w in open("/proc/self/maps").read().split() if "libgomp" in w}
    gomp = [ctypes.CDLL(path) for path in sorted(libs)]
    before = [g.omp_get_max_threads() for g in gomp]
    for g in gomp:
        g.omp_set_num_threads(1)
    yield
    for g, n in zip(gomp, before):
        g.omp_set_num_threads(n)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module (small forward passes and factorisations run faster so on
    2 shared cores), restored after it: a module-level ``set_num_threads(1)`` would leave every
    later test, e.g. test_pretrained's 16384² Cholesky, on one core. Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
