"""Every file name of a run folder (and of a sweep folder), in one place.

Other modules name run-folder files only through these constants; each file has one reader
(the readers live beside the constants, in this package).
"""

from __future__ import annotations

# ------------------------------------------------------------------ a training run's folder
CONFIG = "config.yaml"  # the resolved config
LOG = "train.log"  # the console's lines, time-stamped
METRICS = "metrics.jsonl"  # one row per epoch
FINAL = "final.json"  # status and test results of a finished run
CHECKPOINT = "checkpoint.pt"  # model, optimizer, scheduler, RNG states, epoch
CURVES = "curves.png"
METRICS_CSV = "metrics.csv"  # logger=csv
TENSORBOARD = "tensorboard"  # logger=tensorboard (a folder)
WANDB = "wandb"  # logger=wandb (a folder)
ANALYSIS = "analysis.json"  # analysis.enabled=true
RESUMES = "resumes.jsonl"  # one row per resume
CONFIG_HISTORY = "config_history"  # replaced config.yaml files (a folder)
LOCK = ".lock"  # the OS lock of the process that owns the folder
VIZ = "viz"  # scripts/visualize.py's page (a folder)
HYDRA = ".hydra"  # Hydra's own copies of the config and the overrides (a folder)
HYDRA_OVERRIDES = "overrides.yaml"  # inside HYDRA

# ------------------------------------------------------------------ a sweep's folder
SWEEP_PROGRESS = "sweep_progress.jsonl"
MULTIRUN = "multirun.yaml"
DEPTH_REPORT = "depth_report"  # scripts/compare_depth.py's output (a folder)
