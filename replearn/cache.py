"""A per-user cache for things built once per dataset (concept masks, act-max priors, reference classifiers).

Never next to the data (the data root may be read-only): ``$REPLEARN_CACHE_DIR``
if set, else ``$XDG_CACHE_HOME/replearn`` or ``~/.cache/replearn``. Entries are
written atomically, keyed by a content hash, and stored with a SHA-256 checksum of
their content. A file that cannot be read back, whose zip declares more than memory
holds, whose content no longer matches its checksum (bytes changed inside a valid
zip) or that its user's ``validate`` rejects (shapes, types, finiteness) is rebuilt
with one warning line, never trusted.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from replearn.guards import archive_excess
from replearn.runs.atomic import atomic_write

# Every entry is the payload plus this key: the SHA-256 of the rest of the payload's content.
CHECKSUM_KEY = "_checksum"


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


def _feed(digest, value) -> None:
    """Hash ``value`` (nested dicts/lists of tensors and plain values) with its types, shapes and every byte."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{tuple(value.shape)}{t.dtype};".encode())
        digest.update(t.view(torch.uint8).numpy() if t.numel() else b"")
    elif isinstance(value, dict):
        digest.update(f"D{len(value)};".encode())
        for key in sorted(value, key=repr):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)};".encode())
        for item in value:
            _feed(digest, item)
    elif value is None or isinstance(value, (bool, int, float, str)):
        text = repr(value)
        digest.update(f"{type(value).__name__}{len(text)}:{text};".encode())
    else:
        raise TypeError(f"cannot checksum a {type(value).__name__}")


def checksum(payload) -> str:
    """SHA-256 of a payload's content: its structure, types, shapes and bytes (not of the file that holds it)."""
    digest = hashlib.sha256()
    _feed(digest, payload)
    return digest.hexdigest()


def _unpack(stored) -> dict:
    """The payload of a loaded cache file, once its checksum is right; ValueError otherwise."""
    if not isinstance(stored, dict):
        raise ValueError(f"not a cache entry (it holds a {type(stored).__name__})")
    payload = dict(stored)
    stored_sum = payload.pop(CHECKSUM_KEY, None)
    if stored_sum is None:
        raise ValueError("written by an older replearn (no checksum)")
    if stored_sum != checksum(payload):
        raise ValueError("damaged: its content no longer matches its checksum")
    return payload


def _unreadable(exc: BaseException) -> str:
    """Why torch could not load a cache file, in a few words (never torch's advice to use weights_only=False)."""
    text = str(exc)
    if "Unsupported global" in text or "Unsupported class" in text:
        return "unreadable: it holds objects other than tensors and plain values"
    if "weights_only" in text or "Weights only load failed" in text:
        return "unreadable: not a tensor file"
    first = text.splitlines()[0] if text else ""
    return f"unreadable ({type(exc).__name__}: {first})" if first else f"unreadable ({type(exc).__name__})"


def cached(sub: str, key: str, build: Callable[[], dict], validate: Callable[[dict], None] | None = None,
           use_cache: bool = True) -> dict:
    """Return the dict of tensors/values stored under ``<cache>/<sub>/<key>.pt``, building and storing it if absent.

    ``validate(payload)`` raises (any exception) when a loaded payload is not what
    ``build`` would make (check shapes, types and finiteness there); such a file, one
    torch cannot load, one whose zip declares more than memory holds, or one whose
    content fails its checksum is rebuilt with one warning line. An unwritable cache
    folder only costs the rebuild next time (one warning line).
    """
    path = cache_dir(sub) / f"{key}.pt"
    if use_cache and path.is_file():
        try:
            excess = archive_excess(path)
            if excess is not None:
                raise ValueError(f"too big to load: {excess}")
            try:
                stored = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 -- whatever torch raises, the file is rebuilt
                raise ValueError(_unreadable(exc)) from None
            payload = _unpack(stored)
            if validate is not None:
                validate(payload)
            return payload
        except Exception as exc:  # noqa: BLE001 -- any unreadable, damaged or implausible entry is rebuilt, never trusted
            reason = str(exc).splitlines()[0] if str(exc) else ""
            reason = reason if isinstance(exc, ValueError) else f"{type(exc).__name__}: {reason}".rstrip(": ")
            _warn(f"cache file {path} is not used, {reason}; rebuilding it")
    payload = build()
    if CHECKSUM_KEY in payload:
        raise ValueError(f"a cache payload may not use the key {CHECKSUM_KEY!r}")
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            torch.save({**payload, CHECKSUM_KEY: checksum(payload)}, buffer)
            atomic_write(path, lambda handle: handle.write(buffer.getvalue()), binary=True)
        except OSError as exc:
            _warn(f"cannot write the cache at {path} ({exc.strerror or exc}); set REPLEARN_CACHE_DIR to a writable folder")
    return payload
