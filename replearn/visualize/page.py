"""A static ``index.html`` that shows the figures grouped by layer; it opens straight from disk.

The page renders through the project's one template (replearn/templates/page.html.j2, via
:func:`replearn.page.render_html`), the same one the depth report uses.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from replearn.errors import ReplearnError
from replearn.page import Figure, Section, Table, render_html


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


def _relative_src(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` with '/' separators, so the page folder can be moved or served as is."""
    rel = os.path.relpath(Path(path).resolve(), base.resolve())
    if rel.startswith(".."):
        raise ReplearnError(f"figure {path} is outside {base}; keep every figure inside the page's folder")
    return "/".join(Path(rel).parts)  # the template escapes it


def _section(section: PageSection, base: Path) -> Section:
    tables = []
    if section.table:
        head, *body = section.table
        # Every column is text here (prior names, scores with their units), so all cells are left-aligned.
        tables.append(Table([str(c) for c in head], [[str(c) for c in row] for row in body], text_columns=len(head)))
    figures = [Figure(_relative_src(fig.path, base), fig.caption) for fig in section.figures]
    # The table reads as part of the intro (it holds the scores the intro names), so it comes before the figures.
    return Section(section.title, intro=section.intro, figures=figures, tables=tables, tables_first=True)


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
    converted = [_section(section, base) for section in sections]  # raises before anything is written
    path.parent.mkdir(parents=True, exist_ok=True)
    # Eager images: the browser's load event then waits for every figure, which is what the page check relies on.
    # "gallery": narrower captions, so a layer's small figures sit side by side.
    return render_html(path, title, converted, meta=list(meta), image_loading="eager", page_class="gallery")
