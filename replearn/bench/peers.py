"""Peer libraries side by side: replearn against what a user would otherwise pick, in one process.

(a) recording every layer (``layer_names()``) of a random-init CNN(depth=8) over the first 10k MNIST
    test images (batch 1000, eval, no grad, unpooled maps): replearn's ``capture_activations`` vs
    torchvision's ``create_feature_extractor``, Captum's ``LayerActivation`` (all layers in one
    object) and TorchLens's ``trace`` (module addresses as ``layers_to_save``). Each library first
    records 4 images untimed (lazy imports, TorchLens wrapping torch once) and those are compared with
    replearn's (``..._matches``); then each is timed ``repeats`` times in a row (median reported).
    TorchLens is timed last and then unwraps the torch functions it wraps.
    Peak memory: each recording again in a fresh child process, as the peak resident set (VmHWM, reset
    through /proc/self/clear_refs just before the call) minus the resident set before the call, so it
    counts the collected maps too;
(b) act-max of the channels of ``blocks.1`` of a random-init CNN(depth=4) with replearn's batched
    ``maximize_activations`` (all 64 channels x 256 steps, as ``suite=viz``) vs torch-lucent's
    ``render_vis`` one channel per call (a grey 28x28 ``param.image(28, channels=1)``, 1-pixel jitter,
    MNIST normalization; 4 channels x 64 steps), compared per channel-step;
(c) CKA over all layer pairs of a random-init MLP(depth=10) on the first 2,000 test images (torch_cka
    is slow at 10k): replearn's analysis path (capture + ``CentredLayers`` float32 grid, full-batch
    linear CKA) and replearn's ``MinibatchCKA`` (the unbiased minibatch estimator torch_cka also uses,
    batches of 500) vs ``torch_cka.CKA`` on the same layers, images and batches; the largest difference
    between the two minibatch grids is reported;
(d) one training epoch: ``bench.train.replearn_epoch`` vs the pytorch/examples DataLoader pipeline.
(b)-(d) are single timed runs (their ratios are large next to the noise of a shared machine).
Ratios are peer seconds / replearn seconds (above 1: replearn is faster). All times are measured in
this process; only the peak memory figures come from child processes. A peer that is not installed
or fails is reported as ``skipped: <reason>`` and the suite goes on (``pip install 'replearn[peers]'``).
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import importlib
import io
import json
import os
import re
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from replearn.actmax.ascent import maximize_activations
from replearn.analysis.cka import CentredLayers, MinibatchCKA
from replearn.bench.train import examples_epoch, replearn_epoch
from replearn.bench.viz import MNIST_MEAN, MNIST_STD, bench_images
from replearn.models import CNN, MLP
from replearn.recording.hooks import capture_activations

RECORDERS = ("replearn", "torchvision", "captum", "torchlens")
PEER_MODULES = {"torchvision": "torchvision.models.feature_extraction", "captum": "captum.attr",
                "torchlens": "torchlens", "lucent": "lucent.optvis.render", "torch_cka": "torch_cka"}
CHECK_IMAGES = 4


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 MNIST pixels -> the models' normalized float input."""
    return (x.float() / 255 - MNIST_MEAN) / MNIST_STD


def skip_line(peer: str, error: BaseException) -> str:
    """``skipped: <one line>`` for a peer that failed to import or to run."""
    first = (str(error).strip().splitlines() or [""])[0][:200]
    if isinstance(error, ImportError):
        return f"skipped: {peer} could not be imported ({first}); install it with pip install 'replearn[peers]'"
    return f"skipped: {peer} failed: {type(error).__name__}: {first}"


def _import(peer: str):
    with warnings.catch_warnings():  # e.g. kornia's torch.jit deprecation notice on import
        warnings.simplefilter("ignore")
        return importlib.import_module(PEER_MODULES[peer])


def _batched(model, images, names, batch_size, forward: Callable) -> dict[str, torch.Tensor]:
    """What a user writes around a per-batch extractor: normalize, run, collect, concatenate."""
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            outs = forward(normalize(images[start:start + batch_size]))
            for name in names:
                parts[name].append(outs[name])
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def record(lib: str, model: torch.nn.Module, images: torch.Tensor, batch_size: int = 1000) -> dict[str, torch.Tensor]:
    """``{layer: (N, ...)}`` for every ``model.layer_names()`` layer, recorded with library ``lib``."""
    names = model.layer_names()
    if lib == "replearn":
        return capture_activations(model, images, layers=names, batch_size=batch_size, normalize=normalize)
    module = _import(lib)
    if lib == "torchvision":
        extractor = module.create_feature_extractor(model, return_nodes={n: n for n in names})
        return _batched(model, images, names, batch_size, extractor)
    if lib == "captum":
        modules = dict(model.named_modules())
        layer_act = module.LayerActivation(model, [modules[n] for n in names])
        return _batched(model, images, names, batch_size, lambda x: dict(zip(names, layer_act.attribute(x))))
    if lib == "torchlens":
        from torchlens.options import CaptureOptions  # lazy: torchlens is an optional peer

        options = CaptureOptions(layers_to_save=list(names))

        def forward(x):
            trace = module.trace(model, x, capture=options)
            return {n: trace.modules[n].out for n in names}

        return _batched(model, images, names, batch_size, forward)
    raise ValueError(f"unknown recorder {lib!r}; choose one of {', '.join(RECORDERS)}")


def _unwrap_torchlens() -> None:
    """Give torch back its own functions (TorchLens keeps them wrapped after a trace) for the sections after it."""
    if sys.modules.get("torchlens") is None:
        return
    with contextlib.suppress(Exception):
        from torchlens.backends.torch.wrappers import unwrap_torch  # lazy: torchlens is an optional peer

        unwrap_torch()


def _status_kb(key: str) -> int:
    return int(re.search(rf"{key}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def peak_memory_mb(lib: str, n_images: int, depth: int, batch_size: int, seed: int) -> float:
    """Run in a fresh process: MiB the recording adds at its peak over the resident set before it."""
    torch.manual_seed(seed)
    model = CNN(depth=depth).eval()
    images, _ = bench_images(n_images, seed)
    record(lib, model, images[:CHECK_IMAGES], batch_size)  # imports and one-time set-up, as in the timed run
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc: hand freed heap back, else the call reuses it unseen
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
    before = _status_kb("VmRSS")
    acts = record(lib, model, images, batch_size)
    peak = _status_kb("VmHWM")
    del acts
    return (peak - before) / 1024


def _memory_in_child(lib: str, n_images: int, depth: int, batch_size: int, seed: int) -> float | str:
    """peak_memory_mb in a fresh interpreter; a ``skipped: ...`` line when that cannot run."""
    if not Path("/proc/self/clear_refs").exists():
        return "skipped: no /proc/self/clear_refs on this platform to reset the peak resident set"
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    args = [sys.executable, "-m", "replearn.bench.peers", "memory", lib, str(n_images), str(depth), str(batch_size),
            str(seed), str(torch.get_num_threads())]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1][:200]
        return f"skipped: the child process measuring {lib} failed: {last}"
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"])


def _timed(fn: Callable) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def recording_figures(n_images: int = 10_000, depth: int = 8, batch_size: int = 1000, seed: int = 0,
                      libs: tuple[str, ...] = RECORDERS, memory: bool = True, repeats: int = 1) -> dict:
    """(a): median seconds, ratios, equality with replearn on the check images and (``memory``) peak MiB per library."""
    torch.manual_seed(seed)
    model = CNN(depth=depth).eval()
    images, source = bench_images(n_images, seed)
    figures: dict = {"record_setup": f"CNN(depth={depth}), all {len(model.layer_names())} layers, {n_images} {source} "
                                     f"images, batch {batch_size}, eval, no grad, unpooled, median of {repeats}"}
    reference = record("replearn", model, images[:CHECK_IMAGES], batch_size)
    seconds: dict[str, float] = {}
    for lib in [x for x in libs if x != "torchlens"] + [x for x in libs if x == "torchlens"]:
        try:
            check = record(lib, model, images[:CHECK_IMAGES], batch_size)
            if lib != "replearn":
                figures[f"record_{lib}_matches"] = all(torch.allclose(check[n], reference[n], atol=1e-6) for n in reference)
            times = []
            for _ in range(repeats):
                elapsed, acts = _timed(lambda lib=lib: record(lib, model, images, batch_size))
                times.append(elapsed)
                del acts
            seconds[lib] = statistics.median(times)
        except Exception as error:  # noqa: BLE001  (any failure of a peer is a row, never a traceback)
            figures[f"record_{lib}"] = skip_line(lib, error)
    _unwrap_torchlens()
    for lib in libs:
        if lib in seconds:
            figures[f"record_{lib}_seconds"] = seconds[lib]
            if lib != "replearn" and "replearn" in seconds:
                figures[f"record_{lib}_ratio"] = seconds[lib] / seconds["replearn"]
    if memory:
        peaks = {lib: _memory_in_child(lib, n_images, depth, batch_size, seed) for lib in libs if lib in seconds}
        for lib, peak in peaks.items():
            figures[f"record_{lib}_peak_mb"] = peak
            if lib != "replearn" and isinstance(peak, float) and isinstance(peaks.get("replearn"), float):
                figures[f"record_{lib}_memory_ratio"] = peak / peaks["replearn"]
        figures["record_memory_method"] = ("each library in a fresh child process: peak resident set (VmHWM reset via "
                                           "/proc/self/clear_refs) minus the resident set before the call, in MiB")
    return figures


def lucent_actmax(model: torch.nn.Module, layer: str, channels: list[int], steps: int, seed: int = 0) -> list:
    """torch-lucent's render_vis, one channel per call, on a grey 28x28 image (its images, one per channel)."""
    render = _import("lucent")
    from lucent.optvis import param, transform  # lazy: lucent is an optional peer (pip install 'replearn[peers]')

    torch.manual_seed(seed)
    np.random.seed(seed)
    mnist = lambda t: (t - MNIST_MEAN) / MNIST_STD  # noqa: E731  (its images are in [0, 1])
    target = layer.replace(".", "_")  # lucent names modules with underscores
    return [render.render_vis(model, f"{target}:{c}", param_f=lambda: param.image(28, channels=1),
                              transforms=[transform.jitter(2), mnist], thresholds=(steps,), preprocess=False,
                              show_image=False, progress=False, fixed_image_size=28)[-1] for c in channels]


def actmax_figures(steps: int = 256, lucent_channels: int = 4, lucent_steps: int = 64, seed: int = 0) -> dict:
    """(b): per channel-step milliseconds of replearn (all channels at once) and Lucent (one channel per call)."""
    torch.manual_seed(seed)
    model, layer = CNN(depth=4).eval(), "blocks.1"
    # Untimed warm-up: the first optimizer step pays one-time imports (torch._dynamo) for whoever runs first.
    maximize_activations(model, layer, units=[0], steps=2, seed=seed, progress=False)
    ours, result = _timed(lambda: maximize_activations(model, layer, steps=steps, seed=seed, progress=False))
    per_step = ours / (len(result.units) * steps) * 1000
    figures: dict = {
        "actmax_setup": f"CNN(depth=4) {layer}: replearn {len(result.units)} channels x {steps} steps in one batch; "
                        f"lucent {lucent_channels} channels x {lucent_steps} steps, one render_vis call per channel",
        "actmax_replearn_seconds": ours,
        "actmax_replearn_ms_per_channel_step": per_step,
    }
    try:
        lucent_actmax(model, layer, [0], 2, seed)  # untimed: imports and first-call set-up
        theirs, _ = _timed(lambda: lucent_actmax(model, layer, list(range(lucent_channels)), lucent_steps, seed))
        figures["actmax_lucent_seconds"] = theirs
        figures["actmax_lucent_ms_per_channel_step"] = theirs / (lucent_channels * lucent_steps) * 1000
        figures["actmax_lucent_ratio"] = figures["actmax_lucent_ms_per_channel_step"] / per_step
    except Exception as error:  # noqa: BLE001
        figures["actmax_lucent"] = skip_line("lucent", error)
    return figures


def torch_cka_grid(model: torch.nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """torch_cka's within-model grid over ``model.layer_names()`` (unbiased minibatch HSIC)."""
    module = _import("torch_cka")
    names = model.layer_names()
    model = copy.deepcopy(model)  # torch_cka's hooks are never removed
    x = normalize(images)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(len(x))), batch_size=batch_size)
    cka = module.CKA(model, model, model1_name="a", model2_name="b", model1_layers=names, model2_layers=names)
    with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar
        cka.compare(loader, loader)
    return cka.export()["CKA"]


def replearn_cka_grids(model: torch.nn.Module, images: torch.Tensor,
                       batch_size: int) -> tuple[torch.Tensor, float, torch.Tensor, float]:
    """(full-batch grid as the analysis computes it, its seconds, minibatch grid, its seconds)."""
    def full():
        feats = capture_activations(model, images, layers=model.layer_names(), batch_size=batch_size, normalize=normalize)
        return CentredLayers({k: v.flatten(1) for k, v in feats.items()}, dtype=torch.float32).grid()

    def minibatch():
        acc = MinibatchCKA()
        for start in range(0, len(images) - batch_size + 1, batch_size):
            feats = capture_activations(model, images[start:start + batch_size], layers=model.layer_names(),
                                        batch_size=batch_size, normalize=normalize)
            acc.update({k: v.flatten(1) for k, v in feats.items()})
        return acc.compute()

    full_seconds, full_grid = _timed(full)
    mini_seconds, mini_grid = _timed(minibatch)
    return full_grid, full_seconds, mini_grid, mini_seconds


def cka_figures(n_images: int = 2000, depth: int = 10, batch_size: int = 500, seed: int = 0) -> dict:
    """(c): seconds of replearn's two CKA paths and torch_cka's over all layer pairs of a random-init MLP."""
    torch.manual_seed(seed)
    model = MLP(depth=depth).eval()
    images, source = bench_images(n_images, seed)
    layers = len(model.layer_names())
    _, full_seconds, mini_grid, mini_seconds = replearn_cka_grids(model, images, batch_size)
    figures: dict = {
        "cka_setup": f"MLP(depth={depth}), {layers}x{layers} layer pairs, {n_images} {source} images, batches of {batch_size}",
        "cka_replearn_seconds": full_seconds,
        "cka_replearn_minibatch_seconds": mini_seconds,
    }
    try:
        _import("torch_cka")  # untimed, as replearn's modules are already imported
        theirs, grid = _timed(lambda: torch_cka_grid(model, images, batch_size))
        figures["cka_torch_cka_seconds"] = theirs
        figures["cka_torch_cka_ratio"] = theirs / full_seconds
        figures["cka_torch_cka_ratio_vs_minibatch"] = theirs / mini_seconds
        # A string: the report prints floats to 3 decimals, which would show 0.000.
        figures["cka_torch_cka_max_abs_diff_vs_minibatch"] = f"{float((grid.double() - mini_grid).abs().max()):.1e}"
    except Exception as error:  # noqa: BLE001
        figures["cka_torch_cka"] = skip_line("torch_cka", error)
    return figures


def train_figures(cfg) -> dict:
    """(d): one epoch of replearn's loop and of the pytorch/examples pipeline (the ``train`` suite's pieces)."""
    ours, _ = replearn_epoch(cfg)
    theirs, _ = examples_epoch(cfg)
    return {
        "train_setup": f"{cfg.model.name} depth={cfg.model.depth}, one epoch, replearn batch {cfg.trainer.batch_size} vs "
                       f"MNIST+ToTensor+Normalize+DataLoader({cfg.baseline_batch_size})",
        "train_replearn_epoch_seconds": ours,
        "train_examples_epoch_seconds": theirs,
        "train_examples_ratio": theirs / ours,
    }


def run(cfg) -> dict:
    """All four comparisons on ``trainer.threads`` torch threads (0: torch's default); a flat dict of figures."""
    threads = int(cfg.trainer.get("threads", 0))
    if threads > 0:
        torch.set_num_threads(threads)
    seed = int(cfg.get("seed", 0))
    figures: dict = {"threads": torch.get_num_threads()}
    figures.update(recording_figures(seed=seed, repeats=max(1, int(cfg.get("repeats", 3)))))
    figures.update(actmax_figures(seed=seed))
    figures.update(cka_figures(seed=seed))
    figures.update(train_figures(cfg))
    return figures


def _ratio(figures: dict, key: str) -> str:
    value = figures.get(key)
    return f"{value:.2f}×" if isinstance(value, (int, float)) else "skipped"


def markdown(figures: dict) -> str:
    """The README's peer table (rows: task, peer, time ratio, memory ratio), from this run's figures."""
    def skipped(peer_key: str) -> str:
        return str(figures.get(peer_key, "skipped")).replace("|", "/")

    rows = [
        "| task | peer | peer time / replearn time | peer memory / replearn memory |",
        "|---|---|---|---|",
    ]
    for lib, name in (("torchvision", "torchvision `create_feature_extractor`"), ("captum", "Captum `LayerActivation`"),
                      ("torchlens", "TorchLens")):
        time_ratio = _ratio(figures, f"record_{lib}_ratio")
        rows.append(f"| record every layer of a depth-8 CNN, 10k images | {name} | "
                    f"{time_ratio if time_ratio != 'skipped' else skipped(f'record_{lib}')} | "
                    f"{_ratio(figures, f'record_{lib}_memory_ratio')} |")
    rows.append(f"| act-max, per channel-step | torch-lucent (`render_vis`, 1-channel 28 px) | "
                f"{_ratio(figures, 'actmax_lucent_ratio')} | |")
    rows.append(f"| linear CKA, all layer pairs of a depth-10 MLP | torch_cka | {_ratio(figures, 'cka_torch_cka_ratio')} | |")
    rows.append(f"| one MLP training epoch | pytorch/examples `DataLoader` pipeline | "
                f"{_ratio(figures, 'train_examples_ratio')} | |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    # python -m replearn.bench.peers memory LIB N_IMAGES DEPTH BATCH SEED THREADS (the suite's child process)
    _, what, lib, n, depth, batch, seed, threads = sys.argv
    torch.set_num_threads(int(threads))
    print(json.dumps({"peak_mb": peak_memory_mb(lib, int(n), int(depth), int(batch), int(seed))}))
