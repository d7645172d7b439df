"""Soak: random ``kill -9``s over a small sweep, then one rerun; every run must equal an uninterrupted sweep.

    python tests/soak.py [--kills 50] [--seed 0] [--startup-share 0.25] [--max-delay 5] [--out /tmp/soak]

The sweep is ``experiment=depth_smoke`` with 4 short epochs per run (2 runs, analysed). Each launch is a
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
import runpy
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train.py"
SWEEP = ["-m", "experiment=depth_smoke", "trainer.epochs=4", "trainer.batch_size=16", "data.num_train=1500",
         "analysis.dissection=false"]
TIMING_KEYS = {"epoch_seconds", "samples_per_s", "wall_seconds", "train_seconds", "timing_s"}


def _launch(sweep_dir: Path) -> int:
    """Fork a child that runs the sweep command; returns its pid."""
    pid = os.fork()
    if pid == 0:  # the child: exactly `python scripts/train.py -m ...`, output discarded
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        sys.argv = [str(SCRIPT), *SWEEP, f"hydra.sweep.dir={sweep_dir}"]
        code = 0
        try:
            runpy.run_path(str(SCRIPT), run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            code = 1
        os._exit(code)
    return pid


def _run_to_end(sweep_dir: Path) -> int:
    _, status = os.waitpid(_launch(sweep_dir), 0)
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


def soak(out: Path, kills: int = 50, seed: int = 0, startup_share: float = 0.25, max_delay: float = 5.0) -> dict:
    """Reference sweep, then rounds of (random kill -9s until a launch completes the sweep, one rerun, compare).

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
    killed, rounds, resumes, problems = 0, 0, 0, []
    while killed < kills:
        soaked = out / f"soaked_{rounds}"
        rounds += 1
        while killed < kills:
            if not _wait_or_kill(_launch(soaked), soaked, rng, startup_share, max_delay):
                break  # this launch completed the sweep
            killed += 1
        code = _run_to_end(soaked)  # the one rerun
        problems += [f"round {rounds}: {p}" for p in _differences(ref, soaked)]
        if code:
            problems.append(f"round {rounds}: the rerun exited with {code}")
        resumes += sum(len(f.read_text().splitlines()) for f in soaked.glob("*/resumes.jsonl"))
    return {"kills": killed, "rounds": rounds, "resumes": resumes, "reference_s": round(reference_s, 1),
            "total_s": round(time.perf_counter() - start, 1), "problems": problems}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    # Share of kills during start-up; the others come up to --max-delay s after a launch takes a run folder.
    parser.add_argument("--startup-share", type=float, default=0.25)
    parser.add_argument("--max-delay", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("soak"))
    args = parser.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.chdir(ROOT)
    summary = soak(args.out.resolve(), args.kills, args.seed, args.startup_share, args.max_delay)
    print(json.dumps(summary))
    return 1 if summary["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
