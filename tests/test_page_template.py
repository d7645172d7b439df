"""The run page (viz.write_page) and the depth report render through the one template, page.html.j2."""

import re
from importlib.resources import files

import pytest

from replearn.errors import ReplearnError
from replearn.page import Figure, Section, Table, render_html
from replearn.visualize.page import PageFigure, PageSection, write_page


def _head(text: str) -> str:
    return text[: text.index("<body")]


def _run_page(tmp_path):
    (tmp_path / "figs").mkdir(parents=True)
    sections = [
        PageSection("Scores", "per prior <b>", [PageFigure(tmp_path / "figs" / "a.png", "a & b")],
                    table=[["prior", "score"], ["pca <chosen>", "5/10"]]),
        PageSection("Scores", "", [PageFigure(tmp_path / "b.png", "b")]),
    ]
    return write_page(sections, tmp_path / "index.html", title="run <x>", meta=["run: here"]).read_text()


def test_run_page_and_report_share_the_template_head_and_style(tmp_path):
    run = _run_page(tmp_path / "run")
    report = render_html(tmp_path / "report.html", "run <x>", [Section("a"), Section("b")]).read_text()
    assert _head(run) == _head(report)  # same <head>: title escaping and the one style sheet
    template = files("replearn").joinpath("templates/page.html.j2").read_text()
    style = re.search(r"<style>.*?</style>", template, re.S).group(0)
    assert style in run and style in report


def test_run_page_layout(tmp_path):
    text = _run_page(tmp_path)
    assert text.count("<h2>") == 2 and text.count("<figcaption>") == 2
    assert 'id="scores"' in text and 'id="scores-x"' in text  # repeated titles still get distinct anchors
    assert '<nav><a href="#scores">Scores</a><a href="#scores-x">Scores</a></nav>' in text
    assert '<p class="meta">run: here</p>' in text and "<h1>run &lt;x&gt;</h1>" in text
    assert 'src="figs/a.png"' in text and 'src="b.png"' in text and str(tmp_path) not in text
    assert "per prior &lt;b&gt;" in text and "a &amp; b" in text and "pca &lt;chosen&gt;" in text
    # The score table follows the intro and precedes the figures; every cell is a left-aligned text cell.
    first = text[text.index('id="scores"'):text.index('id="scores-x"')]
    assert first.index("per prior") < first.index("<table>") < first.index('<div class="figs">')
    assert '<th>prior</th><th>score</th>' in first
    assert '<td class="text">pca &lt;chosen&gt;</td><td class="text">5/10</td>' in first
    # Eager images (the Chromium check waits on the load event) and the gallery's narrow captions.
    assert text.count('loading="eager"') == 2 and 'loading="lazy"' not in text
    assert '<body class="gallery">' in text


def test_report_defaults_unchanged(tmp_path):
    section = Section("One", figures=[Figure("f.png", "f")], tables=[Table(["l", "v"], [["x", "1"]])])
    text = render_html(tmp_path / "r.html", "t", [section]).read_text()
    assert "<body>\n" in text and 'loading="lazy"' in text
    assert text.index('<div class="figs">') < text.index("<table>")  # report tables stay below its figures
    assert "<nav>" not in text  # a one-section page has no contents bar


def test_figure_outside_folder_writes_nothing(tmp_path):
    (tmp_path / "page").mkdir()
    with pytest.raises(ReplearnError, match="outside .*keep every figure inside the page's folder"):
        write_page([PageSection("x", "", [PageFigure(tmp_path / "c.png", "c")])], tmp_path / "page" / "index.html")
    assert not (tmp_path / "page" / "index.html").exists()
