"""Visualization benchmark: activation maximization and full-network recording on CPU.

(a) act-max of all 64 channels of ``blocks.1`` of a random-init CNN(depth=4)
    (channels 32 -> 64 -> 128 -> 128), 256 steps, target <= 30 s;
(b) capture of every layer of a random-init CNN(depth=8) over 10k images (the
    MNIST test set when $REPLEARN_DATA_DIR holds it, else random uint8), unpooled maps,
    median of ``repeats`` runs, target <= 10 s;
(c) fitting the act-max data prior (PCA + GMM) on the MNIST training images (else random uint8),
    uncached, target <= 30 s;
(d) the 10 class prototypes of a random-init CNN(depth=4) with the gmm prior and the default ladder of
    prior weights (each class optimized once per weight, one batch), 256 steps, target <= 10 s;
(e) (a) with the gmm prior and the same ladder, target <= 30 s.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch

from replearn.actmax.ascent import maximize_activations
from replearn.actmax.choice import DEFAULT_WEIGHTS
from replearn.actmax.priors import fit_prior
from replearn.data import load_raw
from replearn.models import CNN
from replearn.recording.hooks import capture_activations

TARGET_ACTMAX_SECONDS = 30.0
TARGET_CAPTURE_SECONDS = 10.0
TARGET_PRIOR_FIT_SECONDS = 30.0
TARGET_PROTOTYPES_SECONDS = 10.0
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def _cfg(cfg, key: str, default):
    return cfg.get(key, default) if cfg is not None else default


def bench_images(n: int = 10_000, seed: int = 0) -> tuple[torch.Tensor, str]:
    """(images uint8 (n, 1, 28, 28), source): the MNIST test set if found, else seeded random pixels."""
    root = os.environ.get("REPLEARN_DATA_DIR")
    if root and (Path(root) / "MNIST" / "raw").is_dir():
        images = load_raw("mnist", root)["test_images"][:n].unsqueeze(1)
        if len(images) == n:
            return images, "mnist test"
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=gen), "random uint8"


def train_images(seed: int = 0) -> tuple[torch.Tensor, str]:
    """(uint8 (N, 1, 28, 28), source): the MNIST training images if found, else 20k seeded random ones."""
    root = os.environ.get("REPLEARN_DATA_DIR")
    if root and (Path(root) / "MNIST" / "raw").is_dir():
        return load_raw("mnist", root)["train_images"].unsqueeze(1), "mnist train"
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (20_000, 1, 28, 28), dtype=torch.uint8, generator=gen), "random uint8"


def bench_prior(seed: int = 0) -> dict:
    """Time (c), (d) and (e): fitting the prior, 10 class prototypes and 64 channels with it."""
    images, source = train_images(seed)
    start = time.perf_counter()
    prior = fit_prior(images, "mnist", seed=seed)
    fit_seconds = time.perf_counter() - start
    model = CNN(depth=4).eval()
    common = dict(steps=256, seed=seed, progress=False, param="gmm", prior=prior, prior_weight=list(DEFAULT_WEIGHTS))
    start = time.perf_counter()
    protos = maximize_activations(model, "head", objective_floor=torch.ones(10), **common)
    proto_seconds = time.perf_counter() - start
    start = time.perf_counter()
    channels = maximize_activations(model, "blocks.1", objective_floor=torch.ones(64), **common)
    channel_seconds = time.perf_counter() - start
    return {
        "prior_setup": f"PCA ({prior.dims} directions) + {len(prior.gmm_weights)}-component GMM on "
                       f"{min(len(images), 20_000)} of {len(images)} {source} images",
        "prior_fit_seconds": fit_seconds,
        "prototypes_setup": f"CNN(depth=4) head: {len(protos.units)} classes x {len(DEFAULT_WEIGHTS)} prior weights "
                            "x 256 steps, gmm prior (random init)",
        "prototypes_seconds": proto_seconds,
        "actmax_prior_setup": f"CNN(depth=4) blocks.1: {len(channels.units)} channels x {len(DEFAULT_WEIGHTS)} "
                              "prior weights x 256 steps, gmm prior (random init)",
        "actmax_prior_seconds": channel_seconds,
        "target_prior_fit_seconds": TARGET_PRIOR_FIT_SECONDS,
        "target_prototypes_seconds": TARGET_PROTOTYPES_SECONDS,
        "prior_fit_ok": fit_seconds <= TARGET_PRIOR_FIT_SECONDS,
        "prototypes_ok": proto_seconds <= TARGET_PROTOTYPES_SECONDS,
        "actmax_prior_ok": channel_seconds <= TARGET_ACTMAX_SECONDS,
    }


def run(cfg=None) -> dict:
    """Time act-max and capture; return seconds, targets and pass/fail flags."""
    trainer = _cfg(cfg, "trainer", None)
    threads = int(trainer.get("threads", 0)) if trainer is not None else 0
    if threads > 0:
        torch.set_num_threads(threads)
    seed = int(_cfg(cfg, "seed", 0))
    repeats = max(1, int(_cfg(cfg, "repeats", 3)))
    torch.manual_seed(seed)

    actmax_model = CNN(depth=4).eval()
    layer = "blocks.1"  # the depth-4 CNN's 64-channel block
    start = time.perf_counter()
    result = maximize_activations(actmax_model, layer, steps=256, seed=seed, progress=False)
    actmax_seconds = time.perf_counter() - start

    capture_model = CNN(depth=8).eval()
    images, source = bench_images(10_000, seed)
    normalize = lambda x: (x.float() / 255 - MNIST_MEAN) / MNIST_STD  # noqa: E731
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        acts = capture_activations(capture_model, images, layers="all", normalize=normalize)
        times.append(time.perf_counter() - start)
        floats = sum(t.numel() for t in acts.values())
        del acts
    capture_seconds = statistics.median(times)
    return {
        "threads": torch.get_num_threads(),
        "actmax_setup": f"CNN(depth=4) {layer}: {len(result.units)} channels x 256 steps (random init)",
        "actmax_seconds": actmax_seconds,
        "actmax_objective_start_mean": float(result.objective_start.mean()),
        "actmax_objective_end_mean": float(result.objective_end.mean()),
        "capture_setup": f"CNN(depth=8), all {len(capture_model.layer_names())} layers, 10000 {source} images, unpooled",
        "capture_seconds_median": capture_seconds,
        "capture_seconds_all": ", ".join(f"{t:.2f}" for t in times),
        "capture_megabytes": floats * 4 / 2**20,
        "target_actmax_seconds": TARGET_ACTMAX_SECONDS,
        "target_capture_seconds": TARGET_CAPTURE_SECONDS,
        "actmax_ok": actmax_seconds <= TARGET_ACTMAX_SECONDS,
        "capture_ok": capture_seconds <= TARGET_CAPTURE_SECONDS,
        **bench_prior(seed),
    }


if __name__ == "__main__":
    import sys

    # python -m replearn.bench.viz [threads]
    overrides = {"trainer": {"threads": int(sys.argv[1])}} if len(sys.argv) > 1 else None
    for key, value in run(overrides).items():
        print(f"{key}: {value}")
