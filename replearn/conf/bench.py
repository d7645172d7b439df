"""Schema of scripts/bench.py: the train config plus what the benchmark suites need."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from replearn.conf.train import TrainConfig


@dataclass
class BenchConfig(TrainConfig):
    # train: replearn's loop vs the pytorch/examples pipeline; viz: recording and act-max;
    # analysis: the per-run analysis.
    suite: str = "train"
    depth: int = 5
    device: str = "cpu"
    repeats: int = 3
    matmul_size: int = 2048
    # The pytorch/examples MNIST script trains with DataLoader(batch_size=64).
    baseline_batch_size: int = 64


ConfigStore.instance().store(name="bench_schema", node=BenchConfig)
