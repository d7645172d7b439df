"""A static ``index.html`` that shows the figures grouped by layer; it opens straight from disk."""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from replearn.errors import ReplearnError

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
nav a { margin-right: .8em; } .meta { color: #555; font-size: .9em; }
.figs { display: flex; flex-wrap: wrap; gap: 1.2em; align-items: flex-start; }
figure { margin: 0; max-width: 100%; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #444; max-width: 36em; margin-top: .3em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1em; }
th, td { border: 1px solid #ccc; padding: .2em .5em; text-align: left; }
"""


@dataclass
class PageFigure:
    """One image file and the sentence that says what it shows."""

    path: Path
    caption: str


@dataclass
class PageSection:
    """A group of figures under a heading (one per layer)."""

    title: str
    intro: str = ""
    figures: list[PageFigure] = field(default_factory=list)
    # Optional table shown under the intro: a header row, then data rows (plain strings, escaped).
    table: list[list[str]] = field(default_factory=list)


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


def _relative_src(path: Path, base: Path) -> str:
    rel = os.path.relpath(Path(path).resolve(), base.resolve())
    if rel.startswith(".."):
        raise ReplearnError(f"figure {path} is outside {base}; keep every figure inside the page's folder")
    return "/".join(html.escape(part, quote=True) for part in Path(rel).parts)


def write_page(
    sections: Sequence[PageSection],
    path: str | os.PathLike,
    *,
    title: str = "replearn visualizations",
    meta: Sequence[str] = (),
) -> Path:
    """Write ``path`` (index.html) with a contents bar, one ``<h2>`` per section and relative image links."""
    path = Path(path)
    base = path.parent
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    parts += [f'<p class="meta">{html.escape(line)}</p>' for line in meta]
    anchors = []
    for section in sections:
        anchor = _anchor(section.title)
        while anchor in anchors:
            anchor += "-x"
        anchors.append(anchor)
    parts.append("<nav>" + " ".join(f'<a href="#{a}">{html.escape(s.title)}</a>' for a, s in zip(anchors, sections)) + "</nav>")
    for anchor, section in zip(anchors, sections):
        parts.append(f'<section id="{anchor}"><h2>{html.escape(section.title)}</h2>')
        if section.intro:
            parts.append(f"<p>{html.escape(section.intro)}</p>")
        if section.table:
            head, *body = section.table
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in head) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in body]
            parts.append("</table>")
        parts.append('<div class="figs">')
        for fig in section.figures:
            src = _relative_src(fig.path, base)
            alt = html.escape(fig.caption, quote=True)
            parts.append(
                f'<figure><a href="{src}"><img src="{src}" alt="{alt}" loading="eager"></a>'
                f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>"
            )
        parts.append("</div></section>")
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path
