"""Reading a YAML file that may be hostile: bounded size, nesting and alias expansion, one line on any problem.

``yaml.safe_load`` runs no code, but a 55 KB "billion laughs" file (aliases of aliases) expands to
billions of nodes for whoever walks the result, 100k levels of nesting overflow Python's stack, and a
binary file raises UnicodeDecodeError. Here the file's events are first streamed (libyaml's parser
when present: no tree is built, ~1 s per million events) while counting the nesting depth and the
nodes the document holds once every alias is expanded; only a file within all three limits is then
loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from replearn.errors import ReplearnError

MAX_BYTES = 16_000_000
MAX_DEPTH = 64
# Nodes once every alias is expanded: a network of 100,000 nodes of a few weights each is ~1,000,000.
MAX_NODES = 2_000_000

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_events(text: str, where: str) -> None:
    """Raise ReplearnError when the document nests deeper than MAX_DEPTH or expands to more than MAX_NODES nodes."""
    sizes: dict[str, int] = {}  # anchor -> nodes in the anchored subtree, aliases expanded
    open_nodes: list[list] = []  # [anchor, nodes so far] per open mapping/sequence
    total = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in sizes:
                raise ReplearnError(f"{where} is not valid YAML: alias *{event.anchor} names no anchor before it")
            added = sizes[event.anchor]
        elif isinstance(event, yaml.ScalarEvent):
            added = 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            if len(open_nodes) >= MAX_DEPTH:
                raise ReplearnError(f"{where} nests lists or mappings more than {MAX_DEPTH} levels deep; "
                                    "a network file needs 4 (see configs/networks/course_example.yaml)")
            open_nodes.append([event.anchor, 1])
            total += 1
            continue
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, count = open_nodes.pop()
            if anchor:
                sizes[anchor] = count
            if open_nodes:
                open_nodes[-1][1] += count
            continue
        else:
            continue
        total += added
        if open_nodes:
            open_nodes[-1][1] += added
        if total > MAX_NODES:
            raise ReplearnError(f"{where} holds more than {MAX_NODES:,} values once its aliases (*name) are expanded; "
                                "write a smaller network without chains of aliases")


def load_yaml_file(path: str | os.PathLike, what: str = "file") -> object:
    """The document in ``path``, read within the limits above; ReplearnError (one line) for anything else."""
    path = Path(path)
    where = f"{what} {path}"
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ReplearnError(f"{where} is {size / 1e6:.0f} MB; a network file may be at most {MAX_BYTES / 1e6:.0f} MB")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ReplearnError(f"{where} is not a UTF-8 text file; pass a YAML file (see "
                            "configs/networks/course_example.yaml)") from None
    except OSError as exc:
        raise ReplearnError(f"cannot read {where}: {exc.strerror or exc}") from None
    try:
        _check_events(text, where)
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 -- a safe loader (SafeLoader or its libyaml twin)
    except yaml.YAMLError as exc:
        raise ReplearnError(f"{where} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:  # not reached within MAX_DEPTH; kept so no input can print a traceback
        raise ReplearnError(f"{where} nests too deeply to read") from None
