"""summary.md and index.html of the depth report."""

from __future__ import annotations

import html
import math
from pathlib import Path

from replearn.report.collect import RunRecord


def _cell(row: dict) -> str:
    if not row["ok"]:
        return "—"
    text = f"{100 * row['mean']:.2f}"
    if not math.isnan(row["ci95"]):
        text += f" ± {100 * row['ci95']:.2f}"
    return text


def _status(row: dict) -> str:
    parts = [f"{row['ok']}/{row['runs']} ok"]
    parts += [f"{row[s]} {s}" for s in ("diverged", "failed", "missing") if row[s]]
    return ", ".join(parts)


def _problems(records: list[RunRecord]) -> list[RunRecord]:
    return [r for r in records if r.status != "ok"]


def write_markdown(path: Path, sweep_dir: Path, table: list[dict], records: list[RunRecord]) -> None:
    """Accuracy per variant and depth (mean ± 95% CI over seeds) and every run that did not finish ok."""
    lines = [f"# Depth report: {sweep_dir}", "", "| variant | depth | test accuracy % (mean ± 95% CI) | runs |",
             "|---|---:|---:|---|"]
    lines += [f"| {row['variant']} | {row['depth']} | {_cell(row)} | {_status(row)} |" for row in table]
    problems = _problems(records)
    lines += ["", f"## Runs that did not finish ok ({len(problems)})", ""]
    lines += [f"- {r.variant} depth {r.depth} seed {r.seed}: **{r.status}** {r.error}".rstrip() for r in problems] or ["none"]
    path.write_text("\n".join(lines) + "\n")


def write_page(path: Path, sweep_dir: Path, table: list[dict], records: list[RunRecord],
               figures: list[tuple[str, str, str]]) -> Path:
    """A static page (relative links; opens from disk) with the table and every figure by section."""
    esc = html.escape
    rows = "".join(
        f"<tr class='{'bad' if row['ok'] < row['runs'] else ''}'><td>{esc(row['variant'])}</td><td>{row['depth']}</td>"
        f"<td>{esc(_cell(row))}</td><td>{esc(_status(row))}</td></tr>"
        for row in table
    )
    problems = "".join(f"<li>{esc(r.variant)} depth {r.depth} seed {r.seed}: <b>{esc(r.status)}</b> {esc(r.error)}</li>"
                       for r in _problems(records)) or "<li>none</li>"
    body, current = [], None
    for section, name, caption in figures:
        if section != current:
            body.append(f"<h2>{esc(section)}</h2>")
            current = section
        body.append(f"<figure><img src='{esc(name)}' alt='{esc(caption)}'><figcaption>{esc(caption)}</figcaption></figure>")
    path.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Depth report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1400px; margin: 1.5em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 3px 10px; text-align: right; }}
tr.bad td {{ background: #fff1f0; }} figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>Depth report</h1>
<p>Sweep: <code>{esc(str(sweep_dir))}</code> — {len(records)} runs; files: <a href="summary.csv">summary.csv</a>,
<a href="summary.md">summary.md</a>.</p>
<h2>Test accuracy</h2>
<table><tr><th>variant</th><th>depth</th><th>test accuracy % (mean ± 95% CI)</th><th>runs</th></tr>{rows}</table>
<h3>Runs that did not finish ok</h3><ul>{problems}</ul>
{''.join(body)}
</body></html>
""")
    return path
