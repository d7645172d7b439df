"""When a run has diverged, and what to do then."""

from __future__ import annotations

import math
from pathlib import Path


class Diverged(Exception):
    """The loss became NaN or infinite."""


# A loss this many times its value at the first step means the run blew up, NaN or not.
EXPLODED_FACTOR = 10.0
# At chance accuracy, a loss this many times the first-step loss is a blow-up too, not a slow start.
CHANCE_FACTOR = 3.0


def exploded(row: dict, initial_loss: float | None, when: str, num_classes: int = 10) -> str | None:
    """Why ``row`` (``{split}_loss`` / ``{split}_acc``) shows a diverged run, or None if it does not."""
    initial = initial_loss if initial_loss and math.isfinite(initial_loss) else math.log(num_classes)
    for split in ("train", "val", "test"):
        loss, acc = row.get(f"{split}_loss"), row.get(f"{split}_acc")
        if loss is None:
            continue
        if not math.isfinite(loss) or loss > EXPLODED_FACTOR * initial:
            return (f"{split} loss {loss:.3g} at {when} is over {EXPLODED_FACTOR:g}x the first step's {initial:.3g} "
                    f"({split} accuracy {100 * acc:.1f}%): the run diverged")
        if acc is not None and acc <= 1.5 / num_classes and loss > CHANCE_FACTOR * initial:
            return (f"{split} accuracy {100 * acc:.1f}% is at chance with {split} loss {loss:.3g} at {when} "
                    f"(over {CHANCE_FACTOR:g}x the first step's {initial:.3g}): the run diverged")
    return None


def divergence_advice(cfg, output_dir: Path, metrics: list[dict]) -> str:
    """What to do after a divergence: a whole training command (``scripts/train.py``'s options, never another
    script's), naming a checkpoint only if one was saved.

    Typed as it stands, the resume keeps the run's own settings, the diverged leg's included
    (replearn.training.own_config): only the learning rate changes.
    """
    lower = f"{cfg.optim.lr / 10:g}"
    if metrics:
        return (f"the checkpoint of epoch {metrics[-1]['epoch']} is kept: continue from it and lower the learning rate "
                f"(python scripts/train.py trainer.resume={output_dir} optim.lr={lower}), or train again with "
                "model.norm=batchnorm")
    return (f"no epoch finished, so there is no checkpoint to resume: train again and lower the learning rate "
            f"(python scripts/train.py ... optim.lr={lower}, was {cfg.optim.lr:g}) or add normalization "
            "(model.norm=batchnorm)")
