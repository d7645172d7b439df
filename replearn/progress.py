"""Progress reporting: a tqdm bar on a terminal; in a pipe, a log file or CI, a plain line a minute at most.

A bar redrawn in a file is hundreds of carriage returns for a dozen lines of content, so off a
terminal the bar is replaced by :class:`PlainProgress`, which prints ``desc: n/total (p%) in Ns``
only for loops that run longer than a minute. Notebooks keep tqdm's widget.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm

LINE_EVERY_S = 60.0


def interactive() -> bool:
    """True on a terminal or in a notebook kernel, where a live bar is readable."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


class PlainProgress:
    """The part of tqdm's interface the library uses, writing one plain line per minute at most."""

    def __init__(self, iterable: Iterable | None = None, desc: str = "", total: int | None = None,
                 enabled: bool = True, every_s: float = LINE_EVERY_S):
        self.iterable, self.desc, self.enabled, self.every_s = iterable, desc, enabled, every_s
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.postfix = total, 0, ""
        self.start = self.last = time.monotonic()

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.enabled and now - self.last >= self.every_s:
            self.last = now
            done = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else str(self.n)
            postfix = f"  {self.postfix}" if self.postfix else ""
            print(f"{self.desc}: {done} in {now - self.start:.0f}s{postfix}", file=sys.stderr, flush=True)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def close(self) -> None:
        pass


def progress(iterable: Iterable | None = None, *, desc: str = "", total: int | None = None, enabled: bool = True,
             **tqdm_kwargs: Any):
    """A progress wrapper: tqdm(...) when :func:`interactive`, else :class:`PlainProgress` (same calls)."""
    if enabled and interactive():
        return tqdm(iterable, desc=desc, total=total, **tqdm_kwargs)
    return PlainProgress(iterable, desc=desc, total=total, enabled=enabled)
