"""Training-loop benchmark: replearn's loop vs the pytorch/examples MNIST pipeline, in one process.

(a) replearn: uint8 tensors normalized once, batches indexed from a seeded randperm.
(b) pytorch/examples: torchvision.datasets.MNIST + ToTensor + Normalize + DataLoader(batch_size=64),
    i.e. a PIL image and two transforms per sample.
Both train the same architecture with the same optimizer for one epoch. The achieved GFLOP/s of (a)
is compared with two probes run in the same process: the model's own layers alone at the same
shapes (replearn.bench.probe, the target's yardstick) and a square torch.matmul. With
``trainer.threads=0`` every figure is measured on 1 and on 2 threads.
"""

from __future__ import annotations

import gzip
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.utils.flop_counter import FlopCounterMode

from replearn.bench.machine import matmul_gflops
from replearn.bench.probe import layer_probe
from replearn.data import DATASETS, FILES, load_splits
from replearn.device import resolve_device, seed_everything
from replearn.models import build_model_from_config
from replearn.training.loop import TrainState, build_training_model, train_epoch
from replearn.training.optim import build_optimizer

TARGET_RATIO = 8.0
#: An epoch's rate as a share of the same-shape layer probe (replearn.bench.probe): issue 12's targets.
TARGET_PROBE_FRACTION = {"mlp": 0.85, "cnn": 0.75}


def train_flops_per_sample(model: torch.nn.Module, batch: int = 64) -> float:
    """Forward + backward FLOPs per sample, counted by torch's FlopCounterMode."""
    x = torch.randn(batch, *model.input_shape)
    y = torch.randint(0, 10, (batch,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def replearn_epoch(cfg: DictConfig) -> tuple[float, int]:
    """Seconds and samples of one epoch of replearn's own training loop."""
    device = resolve_device(cfg.device)
    shuffle_gen = seed_everything(cfg.seed)
    splits = load_splits(cfg.data).to(device)
    model = build_training_model(cfg, device)
    optimizer = build_optimizer(cfg.optim, model.parameters())
    train_x = splits.normalize(splits.train_x)
    start = time.perf_counter()
    row = train_epoch(cfg, TrainState(model, optimizer, None, shuffle_gen, device), train_x, splits)
    return time.perf_counter() - start, round(row["samples_per_s"] * row["epoch_seconds"])


def _torchvision_root(cfg: DictConfig) -> tuple[Path, Path | None]:
    """A root torchvision.datasets.MNIST can read; decompress .gz copies into a temp dir if needed.

    The data root itself is never written to (it may be read-only).
    """
    folder = DATASETS[cfg.data.name][0]
    raw = Path(cfg.data.root) / folder / "raw"
    if all((raw / stem).is_file() for stem in FILES.values()):
        return Path(cfg.data.root), None
    tmp = Path(tempfile.mkdtemp(prefix="replearn-bench-"))
    (tmp / folder / "raw").mkdir(parents=True)
    for stem in FILES.values():
        with gzip.open(raw / f"{stem}.gz", "rb") as src, open(tmp / folder / "raw" / stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return tmp, tmp


def examples_epoch(cfg: DictConfig) -> tuple[float, int]:
    """Seconds and samples of one epoch of the pytorch/examples-style pipeline."""
    # lazy: torchvision is the baseline's library, not replearn's; importing it costs start-up for every other suite
    import torchvision.datasets as tvd
    from torchvision import transforms  # lazy: as above

    root, cleanup = _torchvision_root(cfg)
    try:
        _, mean, std, _ = DATASETS[cfg.data.name]
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
        dataset = getattr(tvd, DATASETS[cfg.data.name][0])(str(root), train=True, download=False, transform=transform)
        loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.baseline_batch_size, shuffle=True)
        seed_everything(cfg.seed)
        model = build_model_from_config(cfg.model)
        optimizer = build_optimizer(cfg.optim, model.parameters())
        model.train()
        samples, start = 0, time.perf_counter()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            samples += len(x)
        return time.perf_counter() - start, samples
    finally:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)


def thread_counts(cfg: DictConfig) -> list[int]:
    """``trainer.threads=N`` measures N threads; 0 (auto) measures 1 and 2 (as many as there are cores)."""
    if cfg.trainer.threads > 0:
        return [int(cfg.trainer.threads)]
    return sorted({1, min(2, os.cpu_count() or 1)})


def measure(cfg: DictConfig, threads: int) -> dict:
    """Both loops, the matmul probe and the same-shape layer probe on ``threads`` torch threads."""
    torch.set_num_threads(threads)
    matmul = matmul_gflops(cfg.matmul_size)
    model = build_training_model(cfg, torch.device("cpu"))
    probe = lambda: layer_probe(model, cfg.trainer.batch_size, memory_format=model.training_memory_format)  # noqa: E731
    before = probe()
    flops = before["mflop_per_sample"] * 1e6
    ours = [replearn_epoch(cfg) for _ in range(cfg.repeats)]
    ours_seconds = statistics.median(s for s, _ in ours)
    ours_rate = ours[0][1] / ours_seconds
    base_seconds, base_samples = examples_epoch(cfg)
    base_rate = base_samples / base_seconds
    achieved = flops * ours_rate / 1e9
    # Probes before and after the loops, each a median of several runs: they resist a noisy neighbour.
    matmul_rate = statistics.median([matmul, matmul_gflops(cfg.matmul_size)])
    probe_rate = statistics.median([before["gflops"], probe()["gflops"]])
    target = TARGET_PROBE_FRACTION[cfg.model.name]
    return {
        "replearn_epoch_seconds_median": ours_seconds,
        "replearn_samples_per_s": ours_rate,
        "examples_epoch_seconds": base_seconds,
        "examples_samples_per_s": base_rate,
        "speedup": ours_rate / base_rate,
        "replearn_gflops": achieved,
        "layer_probe_gflops": probe_rate,
        "fraction_of_layer_probe": achieved / probe_rate,
        "matmul_gflops": matmul_rate,
        "fraction_of_matmul": achieved / matmul_rate,
        "speedup_ok": ours_rate / base_rate >= TARGET_RATIO,
        "fraction_ok": achieved / probe_rate >= target,
    }


def run(cfg: DictConfig) -> dict:
    """Measure both loops and both probes on each thread count; return the figures."""
    counts = thread_counts(cfg)
    model = build_model_from_config(cfg.model)
    figures = {
        "model": f"{cfg.model.name} depth={cfg.model.depth}",
        # Every count measured; the busy check probes the largest (report.describe_load).
        "threads": ", ".join(map(str, counts)),
        "replearn_batch_size": cfg.trainer.batch_size,
        "train_mflop_per_sample": train_flops_per_sample(model) / 1e6,
        "target_speedup": TARGET_RATIO,
        "target_fraction_of_layer_probe": TARGET_PROBE_FRACTION[cfg.model.name],
    }
    for threads in counts:
        unit = f"{threads} thread" + ("s" if threads != 1 else "")
        figures.update({f"{key} ({unit})": value for key, value in measure(cfg, threads).items()})
    return figures
