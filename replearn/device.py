"""Seeds and devices are resolved here and nowhere else."""

from __future__ import annotations

import ctypes
import functools
import os
import random
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from replearn.errors import ReplearnError

# MKL's strict "conditional numerical reproducibility" mode: its matrix products (GEMM) give the same
# bits whatever the thread count. Without it, a product with a small output (the head's weight
# gradient, 10 x width, summed over the batch) is split over the batch by thread, and 1 and 2 threads
# round differently. MKL reads this when it first runs, so it is set on import, before any op; a
# value the user set is kept. The strict branch measured no slower than the default here.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
_CBWR_STRICT = 0x10000  # MKL_CBWR_STRICT in mkl.h


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cpu``/``cuda``/``cuda:N`` are taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ReplearnError(f"device={name!r} is not a device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ReplearnError(f"device={name!r} but no CUDA GPU is available; use device=auto or device=cpu")
    return device


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for data shuffling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA; none on CPU, where bf16 is emulated and ~13x slower."""
    return torch.bfloat16 if device.type == "cuda" else None


@contextmanager
def single_thread():
    """Run torch on one CPU thread inside the block (restored after).

    Act-max and gradient probes run hundreds of small ops on ~16 images: a second thread only
    adds synchronisation (on a busy 2-core machine 2 threads measured 15-50x slower than 1).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# CPU threads. On a 2-core machine shared with one busy process, torch's default of one thread
# per core made an MLP epoch 3-5x slower than one thread (OpenMP threads wait for the one that
# lost its core at every op), so the default is chosen from what the other processes leave free,
# where that cannot change the numbers (thread_dependence); elsewhere it is one count per run.

#: Other processes' CPU use (in cores) above which a core counts as taken.
BUSY_CORE = 0.5


def cpu_cores() -> list[int]:
    """The CPUs this process may run on (affinity mask, so containers and taskset are honoured)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _busy_seconds(cores: list[int]) -> float | None:
    """CPU-seconds spent busy so far on ``cores`` by every process (Linux /proc/stat), else None."""
    try:
        with open("/proc/stat") as handle:
            lines = [line.split() for line in handle if line.startswith("cpu") and line[3] != " "]
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cores}
    # user nice system idle iowait irq softirq steal: everything but idle and iowait is busy.
    busy = sum(sum(int(v) for v in (f[1:4] + f[6:9])) for f in lines if f[0] in wanted)
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU-seconds used by this process (all its threads) so far."""
    times = os.times()
    return times.user + times.system


class CpuMeter:
    """Cores used by *other* processes between two readings: machine busy time minus our own."""

    def __init__(self):
        self.cores = cpu_cores()
        self.reset()

    def reset(self) -> None:
        self._wall, self._busy, self._own = time.perf_counter(), _busy_seconds(self.cores), _own_cpu_seconds()

    def others(self) -> float | None:
        """Mean cores the other processes used since the last reset (None where /proc/stat is absent)."""
        busy, wall, own = _busy_seconds(self.cores), time.perf_counter(), _own_cpu_seconds()
        if busy is None or self._busy is None or wall - self._wall <= 0:
            return None
        return max(0.0, (busy - self._busy - (own - self._own)) / (wall - self._wall))


def other_load(sample_seconds: float = 0.15) -> float:
    """Cores busy with other processes right now: a short /proc/stat sample, else the 1-min load average."""
    meter = CpuMeter()
    time.sleep(sample_seconds)
    measured = meter.others()
    if measured is not None:
        return measured
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def auto_threads(others: float, cores: int, most: int) -> int:
    """Threads for the cores the other processes leave free: at least 1, at most ``most``."""
    free = cores - others
    return max(1, min(most, int(free + BUSY_CORE)))


def fixed_threads(cores: int, most: int) -> int:
    """The count for a run whose numbers depend on it: half the cores (at least 1), whatever the load.

    Half, because a neighbour that takes a core makes every thread wait at every op: on 2 shared
    cores a CNN step took 0.15-0.8 s on 2 threads against 0.025-0.08 s on 1 (docs/reliability.md).
    """
    return max(1, min(most, cores // 2))


@functools.cache
def strict_gemm() -> bool:
    """True if torch's matrix products give the same bits at any thread count (MKL in strict CNR mode)."""
    if not torch.backends.mkl.is_available():
        return False
    libs = [str(p) for p in (Path(torch.__file__).parent / "lib").glob("libtorch_cpu.*")] + [None]
    for lib in libs:
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for symbol in ("mkl_serv_cbwr_get", "mkl_cbwr_get"):
            get = getattr(handle, symbol, None)
            if get is not None:
                get.argtypes, get.restype = [ctypes.c_int], ctypes.c_int
                settings = get(-1)  # MKL_CBWR_ALL: the branch and the strict flag
                return settings >= 0 and bool(settings & _CBWR_STRICT)
    return False


# Layers whose training step gives the same bits at any thread count under MKL's strict mode, checked
# bit for bit by tests/test_threads.py. Batch and layer norm sum over the batch (or the features) in
# chunks per thread, and oneDNN's convolutions split their sums by thread (the forward pass on
# channels-last tensors, the weight gradient always); computing those without threads would cost
# more (a CNN step took 3x the time without oneDNN), so such models keep one count for the whole run.
_THREAD_INDEPENDENT = (torch.nn.Linear, torch.nn.ReLU, torch.nn.Tanh, torch.nn.GELU, torch.nn.Sigmoid,
                       torch.nn.Identity, torch.nn.Flatten)


def thread_dependence(model: torch.nn.Module, device: torch.device) -> str | None:
    """Why training ``model`` on ``device`` gives numbers that depend on the CPU thread count; None if they do not."""
    if device.type != "cpu":
        return None
    if not strict_gemm():
        return "this torch's matrix products are not in MKL's strict reproducible mode (MKL_CBWR=AUTO,STRICT)"
    layers = sorted({type(m).__name__ for m in model.modules()
                     if not list(m.children()) and not isinstance(m, _THREAD_INDEPENDENT)})
    if layers:
        return f"its {', '.join(layers)} layers sum in an order that depends on the thread count"
    return None


class ThreadPolicy:
    """The torch CPU thread count of a run: ``requested`` > 0 is used as given; 0 means auto.

    Auto follows the load when the numbers do not depend on the count (``depends`` is None): it
    starts from the cores other processes leave free and, after each epoch, re-checks how much CPU
    they took meanwhile, dropping to fewer threads when the machine became busy and going back up
    when it is quiet again. When the numbers do depend on it (``depends`` says why), auto is one
    count for the whole run that never looks at the load: ``pinned`` (the count the run's checkpoint
    recorded) or :func:`fixed_threads`. Every choice is reported with its reason (``describe``);
    ``recorded`` is the count a checkpoint must keep (None where the numbers do not depend on it).
    """

    def __init__(self, requested: int = 0, device: torch.device | None = None, key: str = "trainer.threads",
                 depends: str | None = None, pinned: int | None = None):
        self.requested = int(requested)
        cpu = device is None or device.type == "cpu"
        self.auto = self.requested <= 0 and cpu and depends is None
        self.most = _DEFAULT_THREADS
        self.cores = len(cpu_cores())
        self.meter = CpuMeter()
        self.recorded: int | None = None
        if self.requested > 0:
            self.threads, self.reason = self.requested, f"{key}={self.requested}"
            if depends and pinned and pinned != self.requested:
                self.reason += (f"; the run so far used {pinned}, so from here its numbers differ slightly from an "
                                f"uninterrupted run ({depends})")
        elif not cpu:
            self.threads, self.reason = torch.get_num_threads(), f"torch default ({device} does the work)"
        elif depends is not None:
            if pinned:
                self.threads, self.reason = int(pinned), f"auto: the count this run started with, kept because {depends}"
            else:
                self.threads = fixed_threads(self.cores, self.most)
                self.reason = (f"auto: fixed for the whole run at half of {self.cores} cores, whatever the load, "
                               f"because {depends}")
        else:
            others = other_load()
            self.threads = auto_threads(others, self.cores, self.most)
            self.reason = f"auto: other processes use {others:.1f} of {self.cores} cores"
        if cpu and depends is not None:
            self.recorded = self.threads
        torch.set_num_threads(self.threads)
        self.meter.reset()

    def describe(self) -> str:
        return f"{self.threads} torch thread{'s' if self.threads != 1 else ''} ({self.reason})"

    def update(self) -> str | None:
        """Re-choose after an epoch (auto, where the count does not change the numbers); a line saying what changed, or None."""
        if not self.auto:
            return None
        others = self.meter.others()
        self.meter.reset()
        if others is None:
            return None
        threads = auto_threads(others, self.cores, self.most)
        if threads > self.threads:
            # Going back up needs a clearly idle core, so a neighbour near the threshold does not
            # make the count flip every epoch.
            threads = max(self.threads, auto_threads(others + BUSY_CORE / 2, self.cores, self.most))
        if threads == self.threads:
            return None
        before, self.threads = self.threads, threads
        self.reason = f"auto: other processes used {others:.1f} of {self.cores} cores during the last epoch"
        torch.set_num_threads(threads)
        return f"threads {before} -> {self.describe()}"


def resolve_threads(requested: int = 0, device: torch.device | None = None, key: str = "trainer.threads",
                    depends: str | None = None, pinned: int | None = None) -> ThreadPolicy:
    """Set torch's CPU threads for a run (``key``, e.g. ``trainer.threads``; 0 = auto) and return the policy.

    ``depends``: why the run's numbers depend on the count (:func:`thread_dependence`), which makes auto
    one fixed count; ``pinned``: the count the run's checkpoint recorded.
    """
    return ThreadPolicy(requested, device, key, depends, pinned)


# torch's own default (one thread per core), read once before any run changes it.
_DEFAULT_THREADS = torch.get_num_threads()
