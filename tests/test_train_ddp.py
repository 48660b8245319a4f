"""Two CPU processes (torchrun, gloo) == one process on the same global batch.

Runs in float64 (``[train] precision``): in float32 the two runs differ by reduction-order
rounding (~1e-7 relative in gradients), which Adam turns into steps of up to ``lr`` on the
parameters whose true gradient is ~0 (a conv bias just before batch norm), so a 1e-5 parameter
comparison would test rounding, not the data split, gradient averaging and global-batch
batch norm that this test is about.
"""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from combine.config import load_config
from combine.train import train

CONFIG = """seed = 4
[data]
source = "simulate:planck18"
size = 64
[model]
levels = 3
channels = [8, 16, 16]
kernels = [5, 3, 3]
[train]
epochs = 1
steps_per_epoch = 3
batch_size = 4
val_steps = 1
lr = 1e-3
precision = "float64"
tensorboard = false
"""


@pytest.mark.slow
def test_two_process_ddp_equals_one_process_on_the_global_batch(tmp_path):
    from combine.sky.spectra import lensed_tt_cl_uk2

    lensed_tt_cl_uk2()  # fill the CAMB cache once, before two processes want it
    cfg_path = tmp_path / "ddp.toml"
    cfg_path.write_text(CONFIG)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "-m", "combine", "train", "--config", str(cfg_path), "--out", str(tmp_path / "ddp"),
           "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout
    # one header and one summary under torchrun (rank 0 only), not one per process
    assert proc.stdout.count("combine train: stage") == 1 and proc.stdout.count("; seed ") == 1, proc.stdout

    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(load_config(cfg_path).resolve(), tmp_path / "one", log=lambda m: None)
    finally:
        torch.set_num_threads(n_threads)

    two = load_file(str(tmp_path / "ddp" / "last" / "weights.safetensors"))
    one = load_file(str(tmp_path / "one" / "last" / "weights.safetensors"))
    assert two.keys() == one.keys()
    diff = max(float((two[k] - one[k]).abs().max()) for k in one)
    assert diff <= 1e-5, diff
    # the comparison is meaningful: 3 Adam steps of 1e-3 moved the weights by ~1e-3
    torch.manual_seed(4)
    from combine.nn import PConvUNet

    start = PConvUNet(levels=3, channels=[8, 16, 16], kernels=[5, 3, 3]).double().state_dict()
    moved = max(float((one[k] - start[k]).abs().max()) for k in one if k.endswith("conv.weight"))
    assert moved > 1e-3
    # batch-norm running statistics were accumulated over the global batch too
    assert float((two["decoder.1.bn.running_var"] - one["decoder.1.bn.running_var"]).abs().max()) <= 1e-8
