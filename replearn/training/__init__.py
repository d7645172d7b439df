"""Training: the loop, optimizers and schedules, the run writer, resume, loggers and augmentation."""

from replearn.training.loop import train

__all__ = ["train"]
