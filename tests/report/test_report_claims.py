"""Per-layer table, paired statistics and computed sentences of the depth report, on synthetic sweeps with known answers."""

import math
from pathlib import Path

import numpy as np
import pytest
from fake_sweep import fake_analysis, falling, flat, hierarchy, reversed_hierarchy, rising
from scipy import stats

from replearn.report.claims import level_centroids, metric_claim, order_claim, seed_slopes, sweep_claims
from replearn.report.collect import RunRecord
from replearn.report.layers import METRIC_BY_KEY, analysed_cells, layer_rows
from replearn.report.stats import interval, paired_difference, slope

DEPTHS, SEEDS = (1, 2, 4), (0, 1, 2)


def _sweep(variant="plain", depths=DEPTHS, seeds=SEEDS, **kwargs):
    records = [RunRecord(Path(f"{variant}-{d}-{s}"), "ok", variant, d, s, analysis=fake_analysis(d, s, **kwargs))
               for d in depths for s in seeds]
    cells = analysed_cells(records)
    return cells, layer_rows(cells)


def _claim(key, cells, rows, variant="plain"):
    return metric_claim(variant, METRIC_BY_KEY[key], cells, rows)


# --- statistics ---------------------------------------------------------------------------------------------------

def test_paired_difference_matches_scipy_paired_t_interval():
    rng = np.random.default_rng(0)
    a = rng.normal(0.8, 0.05, 5)
    b = a - rng.normal(0.1, 0.03, 5)
    diff = paired_difference(list(a), list(b))
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert diff.mean == pytest.approx(float(np.mean(a - b)))
    assert (diff.low, diff.high) == pytest.approx((ci.low, ci.high))
    assert diff.n == 5 and diff.sign == "above 0"
    # A missing seed on either side drops that pair only.
    partial = paired_difference([*a[:4], None], [*b[:3], math.nan, b[4]])
    ci3 = stats.ttest_rel(a[:3], b[:3]).confidence_interval(0.95)
    assert partial.n == 3 and (partial.low, partial.high) == pytest.approx((ci3.low, ci3.high))


def test_interval_signs():
    assert interval([1.0, 1.1, 0.9]).sign == "above 0"
    assert interval([-1.0, -1.1, -0.9]).sign == "below 0"
    assert interval([1.0, -1.0, 0.1]).sign == "includes 0"
    assert interval([0.0, 0.0]).sign == "zero"
    assert interval([1e-17, -1e-17, 0.0]).sign == "zero"  # round-off is no direction
    assert interval([0.3]).sign == "no CI" and interval([0.0]).sign == "no CI" and interval([]).sign == "no data"
    mean, low, high = 0.5, *stats.t.interval(0.95, 2, loc=0.5, scale=stats.sem([0.4, 0.5, 0.6]))
    iv = interval([0.4, 0.5, 0.6])
    assert (iv.mean, iv.low, iv.high) == pytest.approx((mean, low, high))


def test_slope_matches_least_squares():
    x, y = [0.0, 0.25, 0.5, 1.0], [1.0, 1.4, 2.1, 2.9]
    assert slope(x, y) == pytest.approx(np.polyfit(x, y, 1)[0])
    assert slope([0.2, 0.5, 0.8], [1.0, None, 3.0]) == pytest.approx(2 / 0.6)
    assert math.isnan(slope([0.5, 0.5], [1.0, 2.0]))


# --- the per-layer table ------------------------------------------------------------------------------------------

def test_layer_rows_aggregate_over_seeds_and_pair_by_seed():
    cells, rows = _sweep()
    row = next(r for r in rows if r["depth"] == 2 and r["layer"] == "blocks.1" and r["metric"] == "probe_eval_acc")
    cell = next(c for c in cells if c.depth == 2)
    t = [cell.analyses[s]["trained"]["probe_eval_acc"][2] for s in SEEDS]
    c = [cell.analyses[s]["random_init"]["probe_eval_acc"][2] for s in SEEDS]
    ci = stats.ttest_rel(t, c).confidence_interval(0.95)
    assert row["n_seeds"] == 3 and row["position"] == pytest.approx(2 / 3)
    assert row["trained_mean"] == pytest.approx(np.mean(t), abs=1e-6)
    assert row["control_mean"] == pytest.approx(np.mean(c), abs=1e-6)
    assert (row["diff_low"], row["diff_high"]) == pytest.approx((ci.low, ci.high), abs=1e-6)
    assert row["trained_vs_control"] == "above 0" and row["trained_vs_floor"] == "above 0"
    assert row["floor_mean"] == pytest.approx(0.1, abs=0.02) and row["floor_sd"] == pytest.approx(0.01)
    # Dissection does not apply to the input pixels (null there): no row, not a row of zeros.
    assert not [r for r in rows if r["metric"].startswith("dissect") and r["layer"] == "input"]
    # Every metric of every layer of every depth is there.
    assert len([r for r in rows if r["metric"] == "probe_eval_acc"]) == sum(d + 2 for d in DEPTHS)


def test_runs_of_another_architecture_are_not_averaged_in():
    a, b = fake_analysis(2, 0), fake_analysis(3, 1)
    records = [RunRecord(Path("a"), "ok", "plain", 2, 0, analysis=a), RunRecord(Path("b"), "ok", "plain", 2, 1, analysis=b),
               RunRecord(Path("c"), "diverged", "plain", 2, 2, analysis=fake_analysis(2, 2)),
               RunRecord(Path("d"), "ok", "plain", 2, 3, analysis={"trained": None})]
    (cell,) = analysed_cells(records)
    assert cell.seeds == [0]


# --- computed sentences -------------------------------------------------------------------------------------------

def test_rising_trend_that_beats_the_control():
    cells, rows = _sweep(trained={"probe_eval_acc": rising(sd=0.002)}, control={"probe_eval_acc": flat(0.2, sd=0.002)})
    claim = _claim("probe_eval_acc", cells, rows)
    assert claim.numbers["slope"].sign == "above 0"
    assert claim.numbers["slope"].mean == pytest.approx(0.6, abs=0.05)
    assert f"slope {claim.numbers['slope'].mean:+.3f} [" in claim.text  # three significant digits
    assert claim.numbers["control_slope"].sign == "includes 0"
    hidden_and_logits = sum(d + 1 for d in DEPTHS)
    assert claim.numbers["vs_control"] == {"above 0": hidden_and_logits}
    assert claim.numbers["vs_floor"] == {"above 0": hidden_and_logits}
    assert "trained rises with layer position" in claim.text and "random init no clear direction" in claim.text
    assert f"above the random-init control in {hidden_and_logits} of {hidden_and_logits}" in claim.text


def test_falling_trend_below_the_control():
    cells, rows = _sweep(trained={"class_selectivity": falling(0.1, 0.3)}, control={"class_selectivity": flat(0.5)})
    claim = _claim("class_selectivity", cells, rows)
    assert claim.numbers["slope"].sign == "below 0"
    assert "trained falls with layer position" in claim.text
    assert claim.numbers["vs_control"] == {"below 0": sum(d + 1 for d in DEPTHS)}


def test_flat_metric_has_no_direction():
    cells, rows = _sweep(trained={"class_selectivity": flat(0.3, sd=0.0)}, control={"class_selectivity": flat(0.3, sd=0.0)},
                         control_noise=0)
    claim = _claim("class_selectivity", cells, rows)
    assert "trained flat with layer position" in claim.text
    assert claim.numbers["vs_control"] == {"zero": sum(d + 1 for d in DEPTHS)}
    assert f"identical in {sum(d + 1 for d in DEPTHS)}" in claim.text
    noisy, rows = _sweep(trained={"class_selectivity": flat(0.3, sd=0.01)})
    assert "trained no clear direction" in _claim("class_selectivity", noisy, rows).text


def test_architecture_measure_identical_to_control_says_so():
    profile = rising(0.6, 0.8)
    cells, rows = _sweep(trained={"erf_area": profile}, control={"erf_area": profile}, control_noise=0)
    claim = _claim("erf_area", cells, rows)
    assert claim.numbers["slope"].sign == "above 0" and claim.numbers["control_slope"].sign == "above 0"
    assert "not as evidence for the claim" in claim.text
    assert "trained is identical to the control in every cell" in claim.text


def test_single_seed_is_untested_not_significant():
    cells, rows = _sweep(seeds=(0,))
    claim = _claim("probe_eval_acc", cells, rows)
    assert "rises in the single seed" in claim.text and "(one seed, no CI)" in claim.text
    assert set(claim.numbers["vs_control"]) == {"no CI"}
    assert "above the random-init control in 0 of" in claim.text and "untested (one seed)" in claim.text


def test_dissection_order_holds_for_a_hierarchy_and_not_for_its_reverse():
    cells, _ = _sweep(levels=hierarchy)
    per_seed = level_centroids(cells)
    assert all(c[1] < c[2] < c[3] for c in per_seed.values())
    claim = order_claim("plain", cells)
    assert claim.numbers["trained"]["order_holds"] == 3 and claim.numbers["random_init"]["order_holds"] == 0
    assert "edges < parts < digits in 3 of 3 seed(s)" in claim.text
    assert "do not show" not in claim.text

    rev, _ = _sweep(levels=reversed_hierarchy)
    claim = order_claim("plain", rev)
    assert claim.numbers["trained"]["order_holds"] == 0
    assert "do not show the edges < parts < digits order in every seed (3 of 3 do not)" in claim.text
    c = claim.numbers["trained"]["centroids"]
    assert c[1].mean > c[2].mean > c[3].mean

    both, _ = _sweep(levels=hierarchy, control_levels=hierarchy)
    assert "the order alone is not evidence of learning" in order_claim("plain", both).text


def test_level_centroid_weights_units_by_position():
    # depth 2: blocks.0 at 1/3, blocks.1 at 2/3; all level-1 units in blocks.0, all level-3 units in blocks.1.
    levels = lambda pos: (1.0, 0.0, 0.0) if pos < 0.5 else (0.0, 0.0, 1.0)  # noqa: E731
    cells, _ = _sweep(depths=(2,), levels=levels)
    for centroids in level_centroids(cells).values():
        assert centroids[1] == pytest.approx(1 / 3) and centroids[3] == pytest.approx(2 / 3)
        assert math.isnan(centroids[2])  # no level-2 unit anywhere
    assert "parts & shapes none labelled" in order_claim("plain", cells).text


def test_sweep_claims_cover_every_variant_and_measured_metric():
    cells, rows = _sweep()
    other, other_rows = _sweep("residual", trained={"probe_eval_acc": falling()})
    claims = sweep_claims(cells + other, rows + other_rows)
    topics = {(c.variant, c.topic) for c in claims}
    for variant in ("plain", "residual"):
        assert {(variant, k) for k in ("probe_eval_acc", "class_selectivity", "dissect_fraction_l1", "erf_area",
                                        "cka_input", "dissection_order")} <= topics
        # Metrics absent from analysis.json get no sentence (the fake has no act-max centroid).
        assert (variant, "actmax_spectral_centroid") not in topics
    residual_probe = next(c for c in claims if c.variant == "residual" and c.topic == "probe_eval_acc")
    assert "trained falls" in residual_probe.text
    assert seed_slopes([c for c in other], METRIC_BY_KEY["probe_eval_acc"])[0] < 0


def test_verdicts_on_the_claim_follow_the_data():
    cells, rows = _sweep(levels=hierarchy, trained={"probe_eval_acc": rising()}, control={"probe_eval_acc": flat(0.2)})
    checks = {c.topic: c for c in sweep_claims(cells, rows) if c.group == "verdict"}
    assert {k: c.numbers["holds"] for k, c in checks.items()} == {
        "verdict_dissect_fraction_l1": True, "verdict_dissect_fraction_l3": True, "verdict_probe_eval_acc": True,
        "verdict_order": True, "verdict_middle_stage": False}  # the fake's level-2 concept probe is flat
    assert checks["verdict_order"].text.startswith("Holds: edges & strokes < parts & shapes < digits")

    rev, rows = _sweep(levels=reversed_hierarchy)
    checks = {c.topic: c for c in sweep_claims(rev, rows) if c.group == "verdict"}
    for key in ("verdict_dissect_fraction_l1", "verdict_dissect_fraction_l3", "verdict_order"):
        assert checks[key].numbers["holds"] is False and checks[key].text.startswith("Does not hold"), key
    assert "the opposite sign" in checks["verdict_dissect_fraction_l1"].text

    # A trend the control has just as much is not credited to learning.
    same, rows = _sweep(trained={"probe_eval_acc": rising()}, control={"probe_eval_acc": rising()}, control_noise=0)
    probe = next(c for c in sweep_claims(same, rows) if c.topic == "verdict_probe_eval_acc")
    assert probe.numbers["holds"] is False and probe.text.startswith("Does not hold beyond random init")

    # One seed is untested even where its slope is exactly 0 (no digit units anywhere).
    one, rows = _sweep(seeds=(0,), levels=lambda pos: (0.5, 0.0, 0.0))
    assert all(c.numbers["holds"] is None and c.text.startswith("Untested")
               for c in sweep_claims(one, rows) if c.group == "verdict")
