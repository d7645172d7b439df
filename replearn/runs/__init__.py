"""Run folders: their file names and readers (layout), loading a finished run, checkpoints, the lock, atomic writes."""

from replearn.runs.load import LoadedRun, latest_run, load_run, resolve_run_dir

__all__ = ["LoadedRun", "latest_run", "load_run", "resolve_run_dir"]
