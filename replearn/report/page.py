"""summary.md and index.html of the depth report: the same sections, rendered by replearn.page."""

from __future__ import annotations

import math
from pathlib import Path

from replearn.page import Figure, Section, Table, render_html, render_markdown
from replearn.report.claims import LEVELS, Claim, format_interval
from replearn.report.collect import RunRecord
from replearn.report.layers import GROUPS, METRIC_BY_KEY, rows_by_metric

CSV_NOTE = (
    "summary.csv is the per-layer table in long format, one row per variant × depth × layer × metric "
    "(pandas.read_csv(\"summary.csv\"), then filter or pivot on 'metric'): n_seeds; trained_mean and "
    "trained_ci95 (half-width of the 95% t-interval over seeds); control_mean and control_ci95 (the same "
    "architecture at random init, same seed); diff_mean, diff_low, diff_high (trained − control paired by "
    "seed, with its 95% CI) and trained_vs_control (above 0 / below 0 / includes 0 / zero / no CI); for "
    "probe accuracy also floor_mean, floor_ci95 and floor_sd (probe fitted and scored on shuffled labels, "
    "mean over shuffles; floor_sd is the spread over shuffles), control_floor_mean and trained_vs_floor. "
    "runs.csv has one row per run: status, test accuracy, epochs, parameters, wall time."
)


def _cell(row: dict) -> str:
    if not row["ok"]:
        return "—"
    text = f"{100 * row['mean']:.2f}"
    if not math.isnan(row["ci95"]):
        text += f" ± {100 * row['ci95']:.2f}"
    return text


def _status(row: dict) -> str:
    parts = [f"{row['ok']}/{row['runs']} ok"]
    parts += [f"{row[s]} {s}" for s in ("diverged", "failed", "missing") if row.get(s)]
    return ", ".join(parts)


def _problems(records: list[RunRecord]) -> list[RunRecord]:
    return [r for r in records if r.status != "ok"]


def _num(x, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _pm(mean, half) -> str:
    if mean is None:
        return "—"
    return _num(mean) + ("" if half is None else f" ± {_num(half)}")


def _diff(row: dict) -> str:
    if row["diff_mean"] is None:
        return "—"
    text = f"{row['diff_mean']:+.3f}"
    if row["diff_low"] is not None and row["diff_pairs"] >= 2:
        text += f" [{row['diff_low']:+.3f}, {row['diff_high']:+.3f}]"
    return text


def metric_table(key: str, rows: list[dict], collapsed: bool = True) -> Table:
    """The per-layer rows of one metric as a table (floor columns for probes)."""
    metric = METRIC_BY_KEY.get(key)
    floor = any(r["floor_mean"] is not None for r in rows)
    columns = ["variant", "depth", "layer", "position", "seeds", "trained (mean ± 95% CI)", "control",
               "trained − control [95% CI]", "vs control"]
    if floor:
        columns += ["shuffled-label floor (± sd over shuffles)", "trained − floor"]
    body = []
    for r in rows:
        line = [r["variant"], str(r["depth"]), r["layer"], f"{r['position']:.2f}", str(r["n_seeds"]),
                _pm(r["trained_mean"], r["trained_ci95"]), _pm(r["control_mean"], r["control_ci95"]), _diff(r),
                r["trained_vs_control"]]
        if floor:
            line += [_pm(r["floor_mean"], r["floor_sd"]), r["trained_vs_floor"] or "—"]
        body.append(line)
    return Table(columns, body, caption=f"{metric.label if metric else key} per layer", text_columns=3,
                 collapsed=collapsed)


def _counts(counts: dict | None) -> str:
    if not counts:
        return "—"
    total = sum(counts.values())
    text = f"{counts.get('above 0', 0)} / {counts.get('below 0', 0)} / {counts.get('includes 0', 0) + counts.get('zero', 0)}"
    return text + (f" / {counts['no CI']} untested" if counts.get("no CI") else "") + f" of {total}"


def glance_section(claims: list[Claim]) -> Section | None:
    """The numbers behind every sentence, one row per variant and metric, and the dissection level order."""
    metric_rows, order_rows = [], []
    for c in claims:
        n = c.numbers
        if c.topic == "dissection_order":
            for block, name in (("trained", "trained"), ("random_init", "control")):
                if block in n:
                    cent = n[block]["centroids"]
                    order_rows.append([c.variant, name] + [format_interval(cent[lv], signed=False) if cent[lv].n else "none"
                                                           for lv in LEVELS]
                                      + [f"{n[block]['order_holds']} of {n[block]['seeds']}"])
            continue
        label = METRIC_BY_KEY[c.topic].label if c.topic in METRIC_BY_KEY else c.topic
        if c.group == "verdict":
            continue
        metric_rows.append([c.variant, label, format_interval(n["slope"]), format_interval(n["control_slope"]),
                            format_interval(n["slope_vs_control"]), _counts(n.get("vs_control")),
                            _counts(n.get("vs_floor"))])
    if not metric_rows:
        return None
    tables = [Table(["variant", "metric", "trained slope vs position [95% CI]", "control slope [95% CI]",
                     "trained − control slope (paired) [95% CI]",
                     "vs control: cells above / below / same", "vs shuffled-label floor: above / below / same"],
                     metric_rows, text_columns=2)]
    if order_rows:
        tables.append(Table(["variant", "network"] + [f"centroid: {name}" for name in LEVELS.values()]
                            + ["seeds with edges < parts < digits"], order_rows, text_columns=2,
                            caption="Dissection level centroids: mean relative position (0 = input, 1 = logits) of the "
                                    "hidden units labelled at each level, 95% CI over seeds."))
    return Section("At a glance", intro="The numbers behind the sentences below: slopes are per unit of relative "
                   "layer position over hidden layers (fitted per seed, depths pooled); counts are depth × layer cells "
                   "whose paired 95% CI is above 0, below 0, or includes 0.", tables=tables)


def accuracy_section(table: list[dict], records: list[RunRecord]) -> Section:
    rows = [[row["variant"], str(row["depth"]), _cell(row), _status(row)] for row in table]
    classes = ["bad" if row["ok"] < row["runs"] else "" for row in table]
    problems = [f"{r.variant} depth {r.depth} seed {r.seed}: {r.status} {r.error}".rstrip() for r in _problems(records)]
    return Section("Test accuracy", tables=[Table(["variant", "depth", "test accuracy % (mean ± 95% CI)", "runs"], rows,
                                                  text_columns=1, row_classes=classes)],
                   paragraphs=[f"Runs that did not finish ok ({len(problems)}): " + ("; ".join(problems) or "none") + "."])


def write_report(out: Path, sweep_dir: Path, table: list[dict], records: list[RunRecord], claims: list[Claim],
                 rows: list[dict], figures: list[tuple[str, str, str]]) -> Path:
    """Write summary.md and index.html (same sections); returns the path of index.html.

    ``figures`` are (section title, file name in ``out``, caption); claims and per-metric tables go under
    their metric group's section.
    """
    by_metric = rows_by_metric(rows)
    glance = glance_section(claims)
    sections = [accuracy_section(table, records)] + ([glance] if glance else [])
    checks = [c for c in claims if c.group == "verdict"]
    if checks:
        sections.append(Section("What the numbers say about the claim", intro=VERDICT_INTRO,
                                bullets=[f"{c.variant}: {c.text}" for c in checks]))
    for title in ["Training", *GROUPS.values(), "Representation similarity", "Trainability"]:
        section = Section(title)
        group = next((g for g, t in GROUPS.items() if t == title), None)
        if group:
            section.intro = GROUP_INTRO[group]
            section.bullets = [f"{c.variant}: {c.text}" for c in claims if c.group == group]
            section.tables = [metric_table(key, r) for key, r in by_metric.items()
                              if key in METRIC_BY_KEY and METRIC_BY_KEY[key].group == group]
            if not section.bullets and not section.tables:
                section.paragraphs.append("No analysed run in this sweep has these measures.")
        sections.append(section)
    for section in sections:
        section.figures = [Figure(name, caption) for sec, name, caption in figures if sec == section.title]
    sections = [s for s in sections if s.figures or s.bullets or s.tables or s.paragraphs]
    ok = sum(r.status == "ok" for r in records)
    analysed = len({(r.variant, r.depth, r.seed) for r in records if r.status == "ok" and r.analysis})
    meta = [f"Sweep: {sweep_dir}", f"{len(records)} runs, {ok} ok, {analysed} with analysis.json"]
    intro = [INTRO, CSV_NOTE]
    render_markdown(out / "summary.md", f"Depth report: {sweep_dir.name}", sections, meta=meta, intro=intro)
    return render_html(out / "index.html", f"Depth report: {sweep_dir.name}", sections, meta=meta, intro=intro,
                       links=[("summary.md", "summary.md"), ("summary.csv", "summary.csv (per layer)"),
                              ("runs.csv", "runs.csv (per run)")])


VERDICT_INTRO = (
    "The claim — successive layers pick up oriented edges and strokes first, then parts and shapes, then whole "
    "digits — predicts the signs below. Each is checked against the trained networks' slopes (95% CI over seeds "
    "must exclude 0 with the predicted sign) and against the random-init control (the paired trained − control "
    "slope must too); the level order must hold in every seed and not in every seed of the control."
)

INTRO = (
    "Every per-layer number is given for the trained networks and for their random-init controls (the same "
    "architecture and seed before training), as a mean with its 95% t-interval over seeds; the trained − control "
    "difference is paired by seed. The sentences are computed from these numbers: 'rises'/'falls' is the sign of "
    "the least-squares slope of the metric vs relative layer position (0 = input, 1 = logits) over hidden "
    "layers, fitted per seed with all depths pooled, when its 95% CI over seeds (in brackets) excludes 0, else "
    "'no clear direction'; a depth × layer cell counts as above or below the control (or the shuffled-label "
    "floor) only when the 95% CI of the paired difference excludes 0 (the input pixels are not counted). Level "
    "centroids are the mean relative position of the hidden units labelled at each dissection level, per seed "
    "with depths pooled, with their 95% CI over seeds."
)

GROUP_INTRO = {
    "decodability": "How well a linear probe reads the digit class out of each layer, and how class-selective its "
                    "units are. Probes are also fitted on shuffled training labels and scored on shuffled test "
                    "labels: that chance floor is reported with its spread over shuffles.",
    "dissection": "Network dissection against concepts at three levels (MNIST: 1: oriented edges and strokes; "
                  "2: endpoints, junctions, corners, arcs, loops; 3: whole digits; data=shapes: the generator's exact "
                  "masks of its 4 line orientations, 6 part types and objects): the fraction of a layer's units "
                  "labelled at each level (or unlabelled) and the mean best IoU per level.",
    "architecture": "Measures that the architecture largely fixes: they are shown with their random-init control, "
                    "and the sentences say whether training moves them at all. They are not evidence for the "
                    "edges → parts → digits claim.",
}
