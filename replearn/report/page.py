"""summary.md and index.html of the depth report: the same sections, rendered by replearn.page."""

from __future__ import annotations

import math
from pathlib import Path

from replearn.page import Figure, Section, Table, render_html, render_markdown
from replearn.report.claims import LEVELS
from replearn.report.collect import RunRecord
from replearn.report.layers import BLOCKS, GROUPS, INPUT, METRIC_BY_KEY, rows_by_metric
from replearn.report.wording import Claim, format_interval, format_number

VERDICTS_TITLE = "What the numbers say about the claim"
CSV_NOTE = (
    "summary.csv is the per-layer table in long format, one row per variant × depth × layer × metric "
    "(pandas.read_csv(\"summary.csv\"), then filter or pivot on 'metric'): n_seeds; trained_mean and "
    "trained_ci95 (half-width of the 95% t-interval over seeds); control_mean and control_ci95 (the same "
    "architecture at random init, same seed) and shuffled_labels_mean / shuffled_labels_ci95 (the same architecture "
    "and budget trained on shuffled labels; empty for runs without one); per comparison X in control, "
    "shuffled_labels and floor: the paired difference (diff_mean/low/high for the control, diff_X_mean/low/high "
    "otherwise) with its 95% CI, trained_vs_X (the sign of that raw CI), p_vs_X (paired t-test), p_holm_vs_X "
    "(Holm-adjusted across the depth × layer cells of the metric and variant), holm_vs_X (above 0 / below 0 / not "
    "detected / zero / no CI, from the adjusted p; the report's counts use it) and mdd_vs_X (the difference the "
    "cell's seeds would detect with 80% power at the Bonferroni level, a bound on Holm's). For probe accuracy also "
    "floor_mean, floor_ci95 and floor_sd (probe fitted and scored on shuffled labels, mean over shuffles; floor_sd "
    "is the spread over shuffles) and control_floor_mean. runs.csv has one row per run: status, test accuracy, "
    "epochs, parameters, wall time."
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


def _diff_of(row: dict, name: str) -> str:
    prefix = "diff" if name == "control" else f"diff_{name}"
    mean, low, high = row.get(f"{prefix}_mean"), row.get(f"{prefix}_low"), row.get(f"{prefix}_high")
    if mean is None:
        return "n/a"
    return f"{mean:+.3f}" + (f" [{low:+.3f}, {high:+.3f}]" if low is not None and row.get(f"{prefix}_pairs", 0) >= 2 else "")


def _tested(row: dict, name: str) -> str:
    """The Holm-tested verdict of a cell; 'not detected' carries the difference the seeds could have detected."""
    verdict = row.get(f"holm_vs_{name}") or ("—" if row["layer"] == INPUT else "n/a")
    mdd = row.get(f"mdd_vs_{name}")
    return f"not detected (could detect ≥ {format_number(mdd)})" if verdict == "not detected" and mdd else verdict


def metric_table(key: str, rows: list[dict], collapsed: bool = True) -> Table:
    """The per-layer rows of one metric: trained, random init, shuffled labels (where any run has it), floor."""
    metric = METRIC_BY_KEY.get(key)
    floor = any(r["floor_mean"] is not None for r in rows)
    shuffled = any(r.get("shuffled_labels_mean") is not None for r in rows)
    columns = ["variant", "depth", "layer", "position", "seeds", "trained (mean ± 95% CI)", "random init",
               "trained − random init [95% CI]", "vs random init (Holm)"]
    if shuffled:
        columns += ["shuffled labels", "trained − shuffled labels [95% CI]", "vs shuffled labels (Holm)"]
    if floor:
        columns += ["shuffled-label floor (± sd over shuffles)", "vs floor (Holm)"]
    body = []
    for r in rows:
        line = [r["variant"], str(r["depth"]), r["layer"], f"{r['position']:.2f}", str(r["n_seeds"]),
                _pm(r["trained_mean"], r["trained_ci95"]), _pm(r["control_mean"], r["control_ci95"]),
                _diff_of(r, "control"), _tested(r, "control")]
        if shuffled:
            line += [_pm(r["shuffled_labels_mean"], r["shuffled_labels_ci95"]) if r["shuffled_labels_mean"] is not None
                     else "n/a", _diff_of(r, "shuffled_labels"), _tested(r, "shuffled_labels")]
        if floor:
            line += [_pm(r["floor_mean"], r["floor_sd"]), _tested(r, "floor")]
        body.append(line)
    return Table(columns, body, caption=f"{metric.label if metric else key} per layer", text_columns=3,
                 collapsed=collapsed)


def _counts(counts: dict | None) -> str:
    """'above / below / not detected of n' (Holm-adjusted cells), or n/a when the comparison was not made."""
    if not counts:
        return "n/a"
    total = sum(counts.values())
    text = f"{counts.get('above 0', 0)} / {counts.get('below 0', 0)} / {counts.get('not detected', 0)}"
    for key, word in (("zero", "identical"), ("no CI", "untested")):
        if counts.get(key):
            text += f" / {counts[key]} {word}"
    return text + f" of {total}"


def glance_section(claims: list[Claim]) -> Section | None:
    """The numbers behind every sentence, one row per variant and metric, and the dissection level order."""
    metric_rows, order_rows = [], []
    for c in claims:
        n = c.numbers
        if c.topic == "dissection_order":
            for block, name in BLOCKS.items():
                if block in n:
                    cent = n[block]["centroids"]
                    order_rows.append([c.variant, name] + [format_interval(cent[lv], signed=False) if cent[lv].n else "none"
                                                           for lv in LEVELS]
                                      + [f"{n[block]['order_holds']} of {n[block]['seeds']}"])
            continue
        if c.group == "verdict":
            continue
        label = METRIC_BY_KEY[c.topic].label if c.topic in METRIC_BY_KEY else c.topic
        metric_rows.append([c.variant, label, format_interval(n["slope"]), format_interval(n["control_slope"]),
                            format_interval(n["slope_vs_control"]), format_interval(n.get("shuffled_slope")),
                            format_interval(n.get("slope_vs_shuffled")), _counts(n.get("vs_control")),
                            _counts(n.get("vs_shuffled")), _counts(n.get("vs_floor"))])
    if not metric_rows:
        return None
    tables = [Table(["variant", "metric", "trained slope vs position [95% CI]", "random-init slope",
                     "trained − random init slope (paired)", "shuffled-labels slope",
                     "trained − shuffled labels slope (paired)", "vs random init: cells above / below / not detected",
                     "vs shuffled labels: above / below / not detected", "vs shuffled-label floor: above / below / not detected"],
                    metric_rows, text_columns=2)]
    if order_rows:
        tables.append(Table(["variant", "network"] + [f"centroid: {name}" for name in LEVELS.values()]
                            + ["seeds with edges < parts < digits"], order_rows, text_columns=2,
                            caption="Dissection level centroids: mean relative position (0 = input, 1 = logits) of the "
                                    "hidden units labelled at each level, 95% CI over seeds."))
    return Section("At a glance", intro="The numbers behind the sentences below: slopes are per unit of relative "
                   "layer position over hidden layers (fitted per seed, depths pooled); counts are depth × layer cells "
                   "whose paired t-test, Holm-adjusted across the cells of the metric, finds the trained network above "
                   "or below the other, or detects none ('not detected' is not 'absent': the tables say how "
                   "large a difference the seeds could have detected).", tables=tables)


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
    checks = [c for c in claims if c.group == "verdict"]
    # The verdicts first: they are what the sweep says about the claim; the rest is the evidence behind them.
    sections = [Section(VERDICTS_TITLE, intro=VERDICT_INTRO,
                        bullets=[f"{c.variant}: {c.text}" for c in checks])] if checks else []
    sections += [accuracy_section(table, records)] + ([glance] if glance else [])
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
    "digits — is checked by the predictions below, each computed from the numbers, never written in advance. Every "
    "prediction must hold in the trained networks and beyond both controls, paired by seed: the random-init network "
    "(what the architecture gives for free) and the shuffled-label network (the same architecture and budget trained "
    "without the digit labels). Where the shuffled-label network is missing the verdict says 'untested against "
    "shuffled labels', never 'holds'. The middle stage: per seed and depth with 3 or more hidden layers, the largest "
    "level-2 value in an interior hidden layer minus the larger of the first and last hidden layer, averaged over "
    "depths; its 95% CI over seeds must be above 0, and so must the same contrast of the trained − control profiles; "
    "the three level-2 measures are Holm-adjusted together. The order: both level-centroid gaps (parts − edges, "
    "digits − parts) above 0 in the trained networks and trained − each control. The slopes: the 95% CI of the "
    "trained slope and of the trained − control slopes must exclude 0 with the predicted sign."
)

INTRO = (
    "Every per-layer number is given for the trained networks and for two controls of the same architecture and "
    "seed: the random-init network and, where the runs have it, the network trained on shuffled labels; each as a "
    "mean with its 95% t-interval over seeds, and each trained − control difference paired by seed. 'Rises'/'falls' "
    "is the sign of the least-squares slope of the metric vs relative layer position (0 = input, 1 = logits) over "
    "hidden layers, fitted per seed with all depths pooled, when its 95% CI over seeds (in brackets) excludes 0, else "
    "'no clear direction'. A depth × layer cell counts as above or below a control only when its paired t-test, "
    "Holm-adjusted across the cells of that metric and variant, is under 0.05 (Holm, not a false-discovery rate: "
    "the cells of one network are correlated and Holm holds under any dependence, and each counted cell is then "
    "evidence on its own). Other cells are 'not detected', reported with the difference their seeds could have "
    "detected with 80% power; with few seeds that is large, so 'not detected' is not 'absent'. The input pixels "
    "are not counted. Level centroids are the mean relative position of the hidden units labelled at each "
    "dissection level, per seed with depths pooled."
)

GROUP_INTRO = {
    "decodability": "How well a linear probe reads the digit class out of each layer, and how class-selective its "
                    "units are. Probes are also fitted on shuffled training labels and scored on shuffled test "
                    "labels: that chance floor is reported with its spread over shuffles.",
    "dissection": "Network dissection against concepts at three levels (MNIST: 1: oriented edges and strokes; "
                  "2: endpoints, junctions, corners, arcs, loops; 3: whole digits; data=shapes: the generator's exact "
                  "masks of its 4 line orientations, 6 part types and objects): the fraction of a layer's units "
                  "labelled at each level after a within-image null (and before it: threshold and ink baseline "
                  "only), the mean best IoU per level, and that IoU over the concept's ceiling (what a perfect "
                  "detector reaches at the layer's map size). The logits are labelled by their class, not measured.",
    "parts": "Concept probes that need no activation map: how well a linear read-out of the layer predicts the "
             "presence, count and position of the level-1 and level-2 concepts within a digit class (the class "
             "regressed out), as held-out R². The middle-stage verdict of MLPs rests on the level-2 probe.",
    "architecture": "Measures that the architecture largely fixes: they are shown with their controls, "
                    "and the sentences say whether training moves them at all. They are not evidence for the "
                    "edges → parts → digits claim.",
}
