"""A per-user cache for things built once per dataset (concept masks, act-max priors, reference classifiers).

Never next to the data (the data root may be read-only): ``$REPLEARN_CACHE_DIR``
if set, else ``$XDG_CACHE_HOME/replearn`` or ``~/.cache/replearn``. Entries are
written atomically, keyed by a content hash, and a file that cannot be read back
is rebuilt (with one warning line), never trusted.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from replearn.runs.atomic import atomic_write


def cache_dir(sub: str = "") -> Path:
    """The cache folder (``sub`` appended); created lazily by :func:`cached`."""
    root = os.environ.get("REPLEARN_CACHE_DIR")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "replearn")
    return Path(root) / sub if sub else Path(root)


def content_key(*parts) -> str:
    """A short hex digest of tensors (their bytes, shape and dtype) and plain values."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            t = part.detach().cpu().contiguous()
            digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
            digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()[:20]


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def cached(sub: str, key: str, build: Callable[[], dict], validate: Callable[[dict], None] | None = None,
           use_cache: bool = True) -> dict:
    """Return the dict of tensors/values stored under ``<cache>/<sub>/<key>.pt``, building and storing it if absent.

    ``validate(payload)`` raises (any exception) when a loaded payload is not what
    ``build`` would make; such a file, or one torch cannot load, is rebuilt. An
    unwritable cache folder only costs the rebuild next time (one warning line).
    """
    path = cache_dir(sub) / f"{key}.pt"
    if use_cache and path.is_file():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(payload, dict):
                raise ValueError("not a dict")
            if validate is not None:
                validate(payload)
            return payload
        except Exception as exc:  # noqa: BLE001 -- any unreadable cache entry is rebuilt, never trusted
            reason = str(exc).splitlines()[0] if str(exc) else ""
            _warn(f"cache file {path} is unreadable ({type(exc).__name__}: {reason}); rebuilding it")
    payload = build()
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            torch.save(payload, buffer)
            atomic_write(path, lambda handle: handle.write(buffer.getvalue()), binary=True)
        except OSError as exc:
            _warn(f"cannot write the cache at {path} ({exc.strerror or exc}); set REPLEARN_CACHE_DIR to a writable folder")
    return payload
