"""Render a page with the project's one HTML template (replearn/templates/page.html.j2) and its Markdown twin.

A page is a title, meta lines, intro paragraphs, links and a list of
:class:`Section`; a section holds paragraphs, bullet sentences, figures
(paths relative to the page) and :class:`Table`. The same model renders to
Markdown for summary.md.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from replearn.runs.atomic import atomic_write


@dataclass
class Table:
    """Rows of already-formatted cells; the first ``text_columns`` columns are left-aligned labels."""

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    text_columns: int = 1
    row_classes: list[str] | None = None
    collapsed: bool = False  # shown folded (<details>) on the page

    def markdown(self) -> list[str]:
        def esc(cell) -> str:
            return str(cell).replace("|", "\\|")

        align = ["---"] * self.text_columns + ["---:"] * (len(self.columns) - self.text_columns)
        lines = ([f"*{self.caption}*", ""] if self.caption else []) + [
            "| " + " | ".join(esc(c) for c in self.columns) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in self.rows]
        return lines + [""]


@dataclass
class Figure:
    src: str  # relative to the page
    caption: str


@dataclass
class Section:
    title: str
    intro: str = ""
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    level: int = 2  # 2: a top-level section (in the contents bar), 3: a subsection
    tables_first: bool = False  # tables right under the intro, before the figures (the run page's score tables)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "section"


def _environment() -> Environment:
    return Environment(loader=PackageLoader("replearn", "templates"), autoescape=select_autoescape(["html", "j2"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _unique_anchors(sections: list[Section]) -> list[dict]:
    seen, out = set(), []
    for section in sections:
        anchor = section.anchor
        while anchor in seen:
            anchor += "-x"
        seen.add(anchor)
        out.append({**section.__dict__, "anchor": anchor})
    return out


def render_html(path: str | os.PathLike, title: str, sections: list[Section], *, meta: list[str] = (),
                intro: list[str] = (), links: list[tuple[str, str]] = (), image_loading: str = "lazy",
                page_class: str = "") -> Path:
    """Write ``path`` from page.html.j2 (atomically); returns the path.

    ``image_loading="eager"`` makes the browser's load event wait for every image (the run page's check needs it);
    ``page_class`` is set on ``<body>`` for page-specific style rules in the template (e.g. "gallery").
    """
    html = _environment().get_template("page.html.j2").render(
        title=title, meta=list(meta), intro=list(intro), links=list(links), sections=_unique_anchors(sections),
        image_loading=image_loading, page_class=page_class)
    path = Path(path)
    atomic_write(path, lambda handle: handle.write(html.encode("utf-8")), binary=True)
    return path


def render_markdown(path: str | os.PathLike, title: str, sections: list[Section], *, meta: list[str] = (),
                    intro: list[str] = ()) -> Path:
    """The same page as Markdown (figures as links)."""
    lines = [f"# {title}", ""] + [f"{m}  " for m in meta] + [""] + [p + "\n" for p in intro]
    for section in sections:
        lines += ["#" * section.level + f" {section.title}", ""]
        lines += [p + "\n" for p in ([section.intro] if section.intro else []) + section.paragraphs]
        lines += [f"- {b}" for b in section.bullets] + ([""] if section.bullets else [])
        lines += [f"![{f.caption}]({f.src})\n" for f in section.figures]
        for table in section.tables:
            lines += table.markdown()
    path = Path(path)
    text = "\n".join(lines).rstrip() + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")), binary=True)
    return path
