"""The documented defaults deliver on the real data (slow: full training runs)."""

import json

import pytest
from helpers import run_script


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides,minimum",
    [
        (["depth=5"], 0.98),
        (["model=cnn", "depth=4"], 0.99),
        (["data=fashion_mnist", "depth=3"], 0.88),
        (["data=fashion_mnist", "model=cnn", "depth=4"], 0.91),
    ],
    ids=["mlp-mnist", "cnn-mnist", "mlp-fashion", "cnn-fashion"],
)
def test_default_command_reaches_its_accuracy(mnist_root, tmp_path, overrides, minimum):
    proc = run_script("train.py", *overrides, "trainer.progress=false", f"hydra.run.dir={tmp_path}", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["test_acc"] >= minimum, final
