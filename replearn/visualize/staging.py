"""The page is built aside and swapped in only when complete; and whether the run it shows is finished.

:func:`staged_page` gives :func:`replearn.visualize.run.draw_run` an empty folder beside the page
folder. Only when every figure and index.html are written there are they moved in, index.html last,
so a visualize that fails (a bad option met late, act-max diverging, Ctrl-C, a full disk) leaves the
previous page as it was. :func:`unfinished` says when the run's checkpoint is not the finished model
final.json describes (the run is training now, was stopped, or was resumed after it finished).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from replearn.guards import archive_excess
from replearn.runs.layout import CHECKPOINT, LOCK, load_json, read_final

STAGING_PREFIX = ".viz-new-"


def _is_ours(entry: os.DirEntry, own_files: tuple[str, ...]) -> bool:
    return entry.is_file(follow_symlinks=False) and (entry.name.endswith(".png") or entry.name in own_files)


def _remove_dead_staging(parent: Path) -> None:
    """Staging folders left by a visualize that was killed (its pid is gone); a live one's is left alone."""
    for folder in parent.glob(f"{STAGING_PREFIX}*"):
        pid = folder.name[len(STAGING_PREFIX):]
        if not pid.isdigit() or folder.is_symlink():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # that process still runs (it may be a visualize of this run right now)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


@contextmanager
def staged_page(out: Path, own_files: tuple[str, ...], clear_stale: bool) -> Iterator[Path]:
    """Yield an empty folder beside ``out``; on success move its files into ``out`` (index.html last).

    With ``clear_stale``, files of a previous page (``*.png`` and ``own_files``) that the new page does
    not have are then removed from ``out``; links, sub-folders and other files are never touched. On any
    failure the staging folder is removed and ``out`` is left exactly as it was.
    """
    target = out.resolve() if out.is_symlink() else out
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_staging(parent)
    stage = parent / f"{STAGING_PREFIX}{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        out.mkdir(parents=True, exist_ok=True)
        new = sorted(os.listdir(stage), key=lambda name: name == "index.html")  # the page switches last
        for name in new:
            os.replace(stage / name, out / name)
        if clear_stale:
            with os.scandir(out) as entries:
                stale = [entry.path for entry in entries if _is_ours(entry, own_files) and entry.name not in new]
            for path in stale:
                os.unlink(path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _lock_holder(run_dir: Path) -> str | None:
    """Who holds the run's lock (training or resuming it now), or None; never takes the lock or writes."""
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY)
    except OSError:
        return None  # no lock file: nobody has trained here since locks exist
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        info = load_json(run_dir / LOCK)
        return f"pid {info.get('pid')}" if isinstance(info, dict) and info.get("pid") else "another process"
    finally:
        os.close(fd)


def checkpoint_epoch(run_dir: Path) -> int | None:
    """The epoch of the run's checkpoint, read without inflating its tensors (memory-mapped); None if unreadable."""
    path = run_dir / CHECKPOINT
    if archive_excess(path) is not None:
        return None
    try:
        epoch = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("epoch")
    except Exception:  # noqa: BLE001 -- the model load reports an unreadable checkpoint in its own words
        return None
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None


def unfinished(run_dir: Path) -> str | None:
    """Why the checkpoint is not the finished model that final.json describes, or None when it is."""
    epoch = checkpoint_epoch(run_dir)
    at = f"the checkpoint of epoch {epoch}" if epoch is not None else "its latest checkpoint"
    holder = _lock_holder(run_dir)
    if holder is not None:
        return f"the run is being trained now (by {holder}); these figures show {at}, not the finished model"
    final = read_final(run_dir)
    if final is None:
        return f"the run has no final.json (stopped before it finished); these figures show {at}"
    done = final.get("epochs_completed")
    if final.get("status") == "ok" and epoch is not None and isinstance(done, int) and done != epoch:
        return (f"final.json describes epoch {done} but the checkpoint is from epoch {epoch} (resumed after it "
                f"finished and not finished again); these figures show {at}")
    return None
