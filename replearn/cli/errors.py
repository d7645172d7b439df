"""Errors on the command line: one ``error: ...`` line on stderr and exit status 2, never a traceback.

Configuration errors are described by :func:`replearn.conf.compose.describe_config_error` (the library
needs it too); this module prints them, wraps the Hydra task (:func:`report_errors`), and removes the
folder of a run that failed before it wrote anything.
"""

from __future__ import annotations

import errno
import functools
import logging
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from omegaconf import DictConfig

from replearn.cli.job import EXISTING, config_name, hydra_output_dir, in_multirun
from replearn.conf.compose import validate_config
from replearn.errors import ReplearnError
from replearn.runs.layout import HYDRA, LOCK, LOG
from replearn.runs.lock import RunLock


def fail(message: str) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2) from None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C, so a run stops the same way (its last epoch kept)."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def report_errors(task: Callable[[DictConfig], None]) -> Callable[[DictConfig], None]:
    """The Hydra task with one-line errors: exit 2 in a single run, keep a sweep going in a multirun.

    A single run's config was validated by :func:`replearn.cli.check.check_cli` before Hydra started;
    a sweep job's is validated here, since its values may come from the sweeper's params, which that
    check does not compose. Ctrl-C and SIGTERM stop with one line (status 130 and 143): a training run
    says which checkpoint is kept and how to continue.
    """

    @functools.wraps(task)
    def wrapper(cfg: DictConfig) -> None:
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _on_sigterm) if main else None
        try:
            if in_multirun():
                validate_config(config_name(), cfg)
            task(cfg)
        except (ReplearnError, OSError) as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            if config_name() == "train":  # only a training job's folder is a run folder
                discard_unstarted_run_dir(hydra_output_dir())
            if not in_multirun():
                raise SystemExit(2) from None
        except KeyboardInterrupt as exc:
            how = "stopped by SIGTERM" if isinstance(exc, Terminated) else "interrupted"
            print(f"{how}: {exc}" if str(exc) else how, file=sys.stderr)
            raise SystemExit(143 if isinstance(exc, Terminated) else 130) from None
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


def one_line(exc: ReplearnError | OSError) -> str:
    """A ReplearnError's message, or an OS error (full disk, read-only folder) with its fix."""
    if isinstance(exc, ReplearnError):
        return str(exc)
    where = exc.filename or "a file"
    fix = ("free some disk space" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
           else "make it writable or choose another folder" if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
           else "check the path")
    return f"cannot use {where}: {exc.strerror or exc}; {fix}, then run the command again"


def discard_unstarted_run_dir(folder: Path) -> bool:
    """Remove a run folder that holds only Hydra's files (a run that failed before writing anything).

    Such folders would otherwise pile up and read as failed runs in a sweep report. Returns whether
    the folder was removed: not if it existed before this command started (:data:`EXISTING`), if the
    run wrote anything of its own, if another process holds its lock (it may have just started), or if
    it cannot be removed.
    """
    try:
        if str(Path(folder).resolve()) in EXISTING:
            return False  # not made by this command: a refused command leaves it as it was
        if {p.name for p in folder.iterdir()} - {HYDRA, LOCK, LOG}:
            return False  # the run wrote something of its own: keep everything
        with RunLock(folder):
            logging.shutdown()  # close the job's log file before removing it
            shutil.rmtree(folder)
        return True
    except ReplearnError:
        return False  # locked by another process: leave it to that process
    except OSError:
        return False  # best effort: a folder we cannot remove is left as it is
