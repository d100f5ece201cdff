import os
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from spqindex.train import SPQConfig, SPQModel, fit
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    model = SPQModel(SPQConfig(bits=16, batch_size=16), "cnn28")
    hist = fit(model, x, epochs=2, device="cpu", checkpoint_dir=sys.argv[1], progress=False)
    assert len(hist) == 2
""")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_torchrun_two_cpu_processes(tmp_path):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(script),
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    # both processes stepped the same replicated model: rank 0's file is the result
    assert (tmp_path / "run" / "model.pt").exists()
