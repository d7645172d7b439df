"""Soak: random ``kill -9``s over a small sweep under a changing load, then one rerun; every run must equal an
uninterrupted sweep on a quiet machine.

    python tests/soak.py [--kills 50] [--seed 0] [--startup-share 0.25] [--max-delay 5] [--no-competitor] [--out /tmp/soak]

The sweep is ``experiment=depth_smoke`` with 4 short epochs per run (2 runs, analysed), on auto threads
(``trainer.threads=0``): while the soak runs, a competing CPU-bound process is started and stopped at
random times, so the runs start on 1 or 2 threads and change their count between epochs. Each launch is a
forked copy of this process that runs ``scripts/train.py`` exactly as the command line does
(torch and Hydra are imported once here, so a launch starts in a fraction of a second and the
kills land in every phase: composition, data, training, checkpointing, final.json, analysis).
The child is killed with SIGKILL at a random point (see ``_wait_or_kill``) until a launch gets
to the end by itself; then one uninterrupted rerun, and every run folder is compared with a
reference sweep: model weights, metrics rows, final.json and analysis.json (timings and paths
aside) must be identical. Rounds repeat on fresh folders until the kill budget is spent. Prints a JSON summary;
exit status 1 on any difference. Run by tests/test_soak.py (slow).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import runpy
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train.py"
SWEEP = ["-m", "experiment=depth_smoke", "trainer.epochs=4", "trainer.batch_size=16", "data.num_train=1500",
         "analysis.dissection=false", "trainer.threads=0",
         # The thread count is how a run is run, not what it is: the folder names leave it out, so a launch
         # with another count (--mixed-threads) continues the same runs.
         "hydra.job.config.override_dirname.exclude_keys=[experiment,hydra/launcher,hydra.sweep.dir,"
         "hydra.launcher.n_jobs,trainer.threads]"]
TIMING_KEYS = {"epoch_seconds", "samples_per_s", "wall_seconds", "train_seconds", "timing_s"}


def _launch(sweep_dir: Path, extra: tuple[str, ...] = ()) -> int:
    """Fork a child that runs the sweep command (with ``extra`` overrides); returns its pid."""
    pid = os.fork()
    if pid == 0:  # the child: exactly `python scripts/train.py -m ...`, output discarded
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        sys.argv = [str(SCRIPT), *SWEEP, *extra, f"hydra.sweep.dir={sweep_dir}"]
        code = 0
        try:
            runpy.run_path(str(SCRIPT), run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            code = 1
        os._exit(code)
    return pid


class Competitor:
    """A CPU-bound process (a Python busy loop) started and stopped at random times, 0.2-3 s apart, until ``stop``."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.proc: subprocess.Popen | None = None
        self.toggles = 0
        self.busy_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Competitor:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.rng.uniform(0.2, 3.0)):
            if self.proc is None:
                self.proc, self._since = subprocess.Popen([sys.executable, "-c", "while True: pass"]), time.perf_counter()
            else:
                self._end()
            self.toggles += 1
        if self.proc is not None:
            self._end()

    def _end(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        self.busy_s += time.perf_counter() - self._since

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _threads(rng: random.Random, mixed: bool) -> tuple[str, ...]:
    return (f"trainer.threads={rng.choice((1, 2))}",) if mixed else ()


def _thread_counts(sweep_dir: Path) -> tuple[Counter, int]:
    """(how many launches started a run on each thread count, how many times a run changed its count mid-run)."""
    started, changed = Counter(), 0
    for log in sweep_dir.glob("*/train.log"):
        text = log.read_text(errors="replace")
        started.update(int(n) for n in re.findall(r"on cpu, (\d+) torch threads? \(", text))
        changed += len(re.findall(r"\] - threads \d+ -> \d+", text))
    return started, changed


def _run_to_end(sweep_dir: Path, extra: tuple[str, ...] = ()) -> int:
    _, status = os.waitpid(_launch(sweep_dir, extra), 0)
    return os.waitstatus_to_exitcode(status)


def _strip(value, drop_paths: bool = False):
    """Drop timing keys (and the absolute run path) recursively."""
    if isinstance(value, dict):
        return {k: _strip(v, drop_paths) for k, v in value.items()
                if k not in TIMING_KEYS and not (drop_paths and k == "run_dir")}
    if isinstance(value, list):
        return [_strip(v, drop_paths) for v in value]
    return value


def _differences(ref: Path, got: Path) -> list[str]:
    """What differs between two sweep folders' runs (empty when every run is identical)."""
    import torch

    problems = []
    runs = sorted(p.name for p in ref.iterdir() if p.is_dir() and not p.name.startswith("."))
    for name in runs:
        a, b = ref / name, got / name
        for file in ("final.json", "analysis.json", "checkpoint.pt", "metrics.jsonl"):
            if not (b / file).is_file():
                problems.append(f"{name}: no {file}")
        if problems:
            continue
        for file in ("final.json", "analysis.json"):
            if _strip(json.loads((a / file).read_text()), True) != _strip(json.loads((b / file).read_text()), True):
                problems.append(f"{name}: {file} differs")
        rows = [[_strip(json.loads(line)) for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (a, b)]
        if rows[0] != rows[1]:
            problems.append(f"{name}: metrics.jsonl differs")
        wa = torch.load(a / "checkpoint.pt", weights_only=True)["model"]
        wb = torch.load(b / "checkpoint.pt", weights_only=True)["model"]
        if wa.keys() != wb.keys() or not all(torch.equal(wa[k], wb[k]) for k in wa):
            problems.append(f"{name}: final weights differ")
        leftovers = [p.name for p in b.glob(".*.tmp")]
        if leftovers:
            problems.append(f"{name}: stale temp files {leftovers}")
    extra = sorted(p.name for p in got.iterdir() if p.is_dir() and not p.name.startswith(".")) != runs
    if extra:
        problems.append("the soaked sweep holds other run folders than the reference")
    return problems


def _owns_a_run(sweep_dir: Path, pid: int) -> bool:
    """True once ``pid`` holds the lock of a run folder (it is past start-up, inside train())."""
    for lock in sweep_dir.glob("*/.lock"):
        try:
            if json.loads(lock.read_text()).get("pid") == pid:
                return True
        except (OSError, ValueError):
            continue
    return False


def _wait_or_kill(pid: int, sweep_dir: Path, rng: random.Random, startup_share: float, max_delay: float) -> bool:
    """Kill ``pid`` at a random point; True if it was killed, False if it finished first.

    A share of the kills lands during start-up (composition, Hydra's folders); the rest a random
    time after the launch has taken a run folder, so they hit training, checkpoints, final.json
    and analysis rather than the imports.
    """
    start = time.perf_counter()
    in_startup = rng.random() < startup_share
    deadline = start + rng.uniform(0.0, 2.5) if in_startup else None
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
        now = time.perf_counter()
        if deadline is None and (_owns_a_run(sweep_dir, pid) or now - start > 30):
            deadline = now + rng.uniform(0.0, max_delay)
        if deadline is not None and now >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return True
        time.sleep(0.01)


def soak(out: Path, kills: int = 50, seed: int = 0, startup_share: float = 0.25, max_delay: float = 5.0,
         competitor: bool = True, mixed_threads: bool = False) -> dict:
    """Reference sweep (quiet), then rounds of (random kill -9s until a launch completes the sweep, one rerun, compare),
    with a competing CPU-bound process switched on and off at random times (``competitor``).

    ``mixed_threads``: each launch takes ``trainer.threads=1`` or ``2`` at random instead of auto, so a run's
    epochs are trained on both counts even where the machine is too busy for auto to pick 2.

    Every kill hits a sweep still in progress; a round ends when a launch gets to the end on its
    own (or the kill budget is spent), then one uninterrupted rerun, and its runs are compared
    with the reference.
    """
    # Everything a launch imports, imported once before forking (no torch ops run in this process).
    import hydra  # noqa: F401
    import torch  # noqa: F401

    import replearn.analysis.run  # noqa: F401
    import replearn.cli.check  # noqa: F401
    import replearn.training.loop  # noqa: F401

    rng = random.Random(seed)
    ref = out / "reference"
    start = time.perf_counter()
    if _run_to_end(ref) != 0:
        raise RuntimeError(f"the reference sweep failed; see {ref}")
    reference_s = time.perf_counter() - start
    load = Competitor(seed + 1).start() if competitor else None
    killed, rounds, resumes, problems = 0, 0, 0, []
    started, changed = Counter(), 0
    try:
        while killed < kills:
            soaked = out / f"soaked_{rounds}"
            rounds += 1
            while killed < kills:
                if not _wait_or_kill(_launch(soaked, _threads(rng, mixed_threads)), soaked, rng, startup_share, max_delay):
                    break  # this launch completed the sweep
                killed += 1
            code = _run_to_end(soaked, _threads(rng, mixed_threads))  # the one rerun
            problems += [f"round {rounds}: {p}" for p in _differences(ref, soaked)]
            if code:
                problems.append(f"round {rounds}: the rerun exited with {code}")
            resumes += sum(len(f.read_text().splitlines()) for f in soaked.glob("*/resumes.jsonl"))
            round_started, round_changed = _thread_counts(soaked)
            started, changed = started + round_started, changed + round_changed
    finally:
        if load is not None:
            load.stop()
    return {"kills": killed, "rounds": rounds, "resumes": resumes, "reference_s": round(reference_s, 1),
            "total_s": round(time.perf_counter() - start, 1),
            "competitor_toggles": load.toggles if load else 0,
            "competitor_busy_s": round(load.busy_s, 1) if load else 0.0,
            "runs_started_on_threads": {str(k): v for k, v in sorted(started.items())},
            "thread_changes_mid_run": changed, "mixed_threads": mixed_threads, "problems": problems}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    # Share of kills during start-up; the others come up to --max-delay s after a launch takes a run folder.
    parser.add_argument("--startup-share", type=float, default=0.25)
    parser.add_argument("--max-delay", type=float, default=5.0)
    parser.add_argument("--no-competitor", action="store_true", help="no competing CPU-bound process")
    parser.add_argument("--mixed-threads", action="store_true", help="each launch on 1 or 2 threads at random, not auto")
    parser.add_argument("--out", type=Path, default=Path("soak"))
    args = parser.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.chdir(ROOT)
    summary = soak(args.out.resolve(), args.kills, args.seed, args.startup_share, args.max_delay,
                   competitor=not args.no_competitor, mixed_threads=args.mixed_threads)
    print(json.dumps(summary))
    return 1 if summary["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
