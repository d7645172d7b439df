"""Read every run of a sweep folder: config, status, final metrics, curves, analysis.

A run that never started (asked for by the sweep but without a folder, or with
only Hydra's ``.hydra/`` from a failed start) is ``missing``; one with a folder
but no readable ``final.json`` (or any other unreadable file) is ``failed``
with the reason; a ``diverged`` run keeps that status. None is dropped.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser

from replearn.errors import ReplearnError
from replearn.runs.layout import (
    CHECKPOINT,
    CONFIG,
    DEPTH_REPORT,
    FINAL,
    HYDRA,
    METRICS,
    load_json,
    read_analysis,
    read_config,
    read_metrics,
    read_multirun,
    read_overrides,
)


@dataclass
class RunRecord:
    path: Path
    status: str  # ok | diverged | failed | missing
    variant: str
    depth: int
    seed: int
    model: str = ""
    final: dict = field(default_factory=dict)
    metrics: list = field(default_factory=list)
    analysis: dict | None = None
    error: str = ""
    # The config keys that must be equal across one sweep (see SWEPT), flattened; None without a readable config.
    settings: dict | None = None

    @property
    def test_acc(self) -> float | None:
        return self.final.get("test_acc") if self.status == "ok" else None


def variant_name(model_cfg: dict, overrides: list | None = None) -> str:
    """The run's ``variant=`` override if it has one, else a name built from norm/residual/init."""
    for override in overrides if isinstance(overrides, list) else []:
        key, _, value = str(override).partition("=")
        if key.lstrip("+") == "variant" and value:
            return value
    norm = model_cfg.get("norm", "none")
    parts = (["residual"] if model_cfg.get("residual") else []) + ([str(norm)] if norm != "none" else [])
    if model_cfg.get("init", "he") != "he":
        parts.append(f"{model_cfg['init']}_init")
    return "+".join(parts) or "plain"


def _name_keys(path: Path) -> dict[str, str]:
    """``depth=8,seed=1,variant=plain`` (Hydra's override_dirname) -> its key/value pairs."""
    keys = {}
    for part in path.name.split(","):
        key, sep, value = part.partition("=")
        if sep:
            keys[key.lstrip("+")] = value
    return keys


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


# What a depth sweep varies (depth, seed and the variant's model settings) and what does not change what a run
# learns (where the data is, progress bars, threads, resuming): everything else under these sections is one setting.
SECTIONS = ("data", "model", "optim", "trainer")
SWEPT = {"model.depth", "model.norm", "model.residual", "model.init", "data.root", "data.download",
         "trainer.resume", "trainer.force", "trainer.force_resources", "trainer.progress", "trainer.eval_batch_size"}


def run_settings(cfg: dict) -> dict:
    """The run's config keys that one sweep holds fixed, flattened (``{"data.name": "mnist", ...}``)."""
    flat: dict = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}", item)
        elif prefix not in SWEPT and "thread" not in prefix:
            flat[prefix] = value

    for section in SECTIONS:
        walk(section, cfg.get(section))
    return flat


def check_one_sweep(records: list[RunRecord], sweep_dir: Path) -> None:
    """Refuse runs that are not one sweep: compare_depth averages runs of one setting as seeds.

    Runs must agree on every setting but depth, seed and the variant, and no two finished runs may be the
    same (variant, depth, seed) (a copy, or a run trained twice): either would be averaged as independent seeds.
    """
    readable = [r for r in records if r.settings is not None]
    # The dataset and the model first: the difference a reader recognizes at once.
    for key in sorted({k for r in readable for k in r.settings}, key=lambda k: (k not in ("data.name", "model.name"), k)):
        values: dict[str, RunRecord] = {}
        for r in readable:
            values.setdefault(repr(r.settings.get(key)), r)
        if len(values) > 1:
            (a, ra), (b, rb) = list(values.items())[:2]
            raise ReplearnError(f"sweep={sweep_dir} holds runs that are not one sweep: {key} is {a} in {ra.path.name} but "
                                f"{b} in {rb.path.name} (runs of one setting are averaged as seeds); pass the folder of "
                                "one sweep (python scripts/train.py -m ... writes one) or move the other runs out")
    seen: dict[tuple, RunRecord] = {}
    for r in records:
        if r.status != "ok":
            continue
        other = seen.setdefault((r.variant, r.depth, r.seed), r)
        if other is not r:
            raise ReplearnError(f"sweep={sweep_dir} holds two runs of variant={r.variant} depth={r.depth} seed={r.seed} "
                                f"({other.path.name} and {r.path.name}), which would be averaged as two seeds; keep one "
                                "of them (a sweep has one run per setting)")


# Files only a started run has; a folder with none of them (Hydra's .hydra/ from a failed start) is no run.
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, FINAL)
# An ``ok`` final.json from before exploding losses were caught: a test loss above 10x chance's ln(10).
EXPLODED_TEST_LOSS = 10 * math.log(10)


def _judge(final: Any) -> tuple[str, str]:
    """(status, reason) from a final.json's contents; anything unreadable is ``failed`` with why."""
    if final is None:
        return "failed", "no readable final.json (stopped before it finished, or the file is corrupt)"
    if not isinstance(final, dict):
        return "failed", f"final.json holds {type(final).__name__}, not a run summary"
    status = final.get("status")
    if status == "diverged":
        return "diverged", str(final.get("error", ""))
    if status != "ok":
        return "failed", f"final.json has status {status!r}"
    acc, loss = final.get("test_acc"), final.get("test_loss")
    if not isinstance(acc, (int, float)) or isinstance(acc, bool) or not math.isfinite(acc):
        return "failed", f"final.json has test_acc {acc!r}"
    if isinstance(loss, (int, float)) and not (math.isfinite(loss) and loss <= EXPLODED_TEST_LOSS):
        return "diverged", (f"test loss {loss:.3g} (over {EXPLODED_TEST_LOSS:.3g}): "
                            "the loss exploded although it was recorded as ok")
    return "ok", ""


def read_run(path: Path) -> RunRecord | None:
    """One run folder, or None if the folder holds no run at all.

    Never raises on a corrupt file: an unreadable config, final.json or depth makes the run
    ``failed`` with the reason in ``error``.
    """
    if not any((path / name).exists() for name in RUN_FILES):
        return None
    names = _name_keys(path)
    cfg = read_config(path) or read_config(path / HYDRA)
    overrides = read_overrides(path) or []
    if cfg is None:
        depth, seed = _as_int(names.get("depth")), _as_int(names.get("seed"))
        return RunRecord(path=path, status="failed", variant=names.get("variant", "unknown"),
                         depth=depth if depth is not None else 0, seed=seed if seed is not None else 0,
                         error="config.yaml is missing or unreadable")
    model_cfg = cfg["model"]
    depth = _as_int(model_cfg.get("depth"))
    if depth is None:  # unresolved interpolation in .hydra/config.yaml, or a damaged file
        depth = _as_int(cfg.get("depth"))
    seed = _as_int(cfg.get("seed", 0))
    variant = variant_name(model_cfg, overrides)
    final = load_json(path / FINAL)  # the raw document: _judge says what is wrong with it
    status, error = _judge(final)
    if depth is None or depth < 1:
        status, error = "failed", f"config.yaml has depth {model_cfg.get('depth')!r}"
        depth = _as_int(names.get("depth")) or 0
    if seed is None:
        status, error, seed = "failed", f"config.yaml has seed {cfg.get('seed')!r}", 0
    analysis = read_analysis(path)
    return RunRecord(
        path=path, status=status, variant=variant, depth=depth, seed=seed,
        model=str(model_cfg.get("name", "")), final=final if isinstance(final, dict) else {},
        metrics=read_metrics(path) if status != "failed" or final is None else [],
        analysis=analysis, error=error, settings=run_settings(cfg),
    )


def expected_grid(sweep_dir: Path) -> list[dict[str, str]]:
    """The runs the sweep was asked for, as {variant, depth, seed} values (only the keys it set).

    Hydra's sweeper takes the experiment's ``sweeper.params`` and lets the command line's task
    overrides replace them key by key, so ``variant=plain depth=1,4,8 seed=0`` asks for 3 runs.
    """
    multirun = read_multirun(sweep_dir)
    hydra = multirun.get("hydra") if isinstance(multirun, dict) else None
    if not isinstance(hydra, dict):
        return []
    params = (hydra.get("sweeper") or {}).get("params") or {}
    task = (hydra.get("overrides") or {}).get("task") or []
    lines = [f"{k}={v}" for k, v in dict(params).items()] + [str(o) for o in task]
    parser = OverridesParser.create()
    values: dict[str, list[str]] = {}
    for line in lines:
        try:
            override = parser.parse_override(line)
            key = override.key_or_group.lstrip("+~")
            if override.is_sweep_override():
                values[key] = list(override.sweep_string_iterator())
            else:
                values[key] = [override.get_value_element_as_str()]
        except Exception:  # a form the grid does not need (e.g. a deletion): ignore it
            continue
    keys = [k for k in ("variant", "depth", "seed") if k in values]
    if "depth" not in keys:
        return []
    return [dict(zip(keys, combo)) for combo in itertools.product(*(values[k] for k in keys))]


def collect_runs(sweep_dir: str | Path) -> list[RunRecord]:
    """Every run in ``sweep_dir`` plus a ``missing`` record for each requested run without a folder."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ReplearnError(f"sweep={sweep_dir} is not a folder; pass a multirun folder or sweep=latest")
    records = []
    for path in sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name != DEPTH_REPORT
                       and not p.name.startswith(".")):
        record = read_run(path)
        if record is not None:
            records.append(record)
    for point in expected_grid(sweep_dir):
        depth, seed = _as_int(point["depth"]), _as_int(point.get("seed", 0))
        if depth is None or seed is None:
            continue
        wanted = {"variant": point.get("variant"), "depth": depth, "seed": seed if "seed" in point else None}
        if any(all(v is None or getattr(r, k) == v for k, v in wanted.items()) for r in records):
            continue
        variant = point.get("variant") or (records[0].variant if records else "plain")
        records.append(RunRecord(path=sweep_dir / "(not started)", status="missing", variant=variant,
                                 depth=depth, seed=seed))
    if not records:
        raise ReplearnError(f"no runs found in {sweep_dir}; run a sweep first (python scripts/train.py -m experiment=depth_mlp)")
    check_one_sweep(records, sweep_dir)
    return sorted(records, key=lambda r: (r.variant, r.depth, r.seed))


def resolve_sweep_dir(spec: str, root: str | Path = "multirun") -> Path:
    """A sweep folder, or ``latest``: the most recently modified folder under ``root`` holding a multirun.yaml."""
    if spec != "latest":
        return Path(spec).expanduser()
    candidates = [p.parent for p in Path(root).glob("**/multirun.yaml")]
    if not candidates:
        raise ReplearnError(f"sweep=latest found no sweep under {Path(root).resolve()}; run one first "
                            "(python scripts/train.py -m experiment=depth_mlp) or pass sweep=<folder>")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def as_row(record: RunRecord) -> dict[str, Any]:
    """A flat summary.csv row."""
    return {
        "variant": record.variant, "depth": record.depth, "seed": record.seed, "status": record.status,
        "test_acc": record.final.get("test_acc"), "best_val_acc": record.final.get("best_val_acc"),
        "epochs": record.final.get("epochs_completed"), "params": record.final.get("params"),
        "wall_seconds": record.final.get("wall_seconds"), "run": record.path.name, "error": record.error,
    }
