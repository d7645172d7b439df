"""The claim's verdicts can fail: the middle stage, the level order as a difference test, the shuffled-label
control, and Holm's multiplicity control with the minimum detectable difference, on synthetic sweeps."""

import math
from pathlib import Path

import pytest
from fake_sweep import fake_analysis, flat, hierarchy, peaked, reversed_hierarchy, rising, seed_offsets
from scipy import stats

from replearn.report.claims import metric_claim, sweep_claims
from replearn.report.collect import RunRecord
from replearn.report.layers import METRIC_BY_KEY, analysed_cells, layer_rows
from replearn.report.middle import interior_contrast
from replearn.report.stats import holm, min_detectable, p_value, standard_error

DEPTHS, SEEDS = (1, 2, 4), (0, 1, 2)


def _records(variant="plain", depths=DEPTHS, seeds=SEEDS, model="mlp", per_seed=None, drop=(), **kwargs):
    """RunRecords of a fake sweep; ``per_seed(seed)`` gives extra fake_analysis keywords; ``drop``: blocks removed."""
    records = []
    for d in depths:
        for s in seeds:
            analysis = fake_analysis(d, s, **kwargs, **(per_seed(s) if per_seed else {}))
            for block in drop:
                analysis.pop(block, None)
            records.append(RunRecord(Path(f"{variant}-{d}-{s}"), "ok", variant, d, s, model=model, analysis=analysis))
    return records


def _verdicts(**kwargs) -> dict:
    cells = analysed_cells(_records(**kwargs))
    return {c.topic: c for c in sweep_claims(cells, layer_rows(cells)) if c.group == "verdict"}


# --- statistics ---------------------------------------------------------------------------------------------------

def test_holm_p_values_and_detectable_difference_by_hand():
    assert holm([0.01, 0.04, 0.03, math.nan, 0.5]) == pytest.approx([0.04, 0.09, 0.09, math.nan, 0.5], nan_ok=True)
    assert holm([0.02] * 10) == pytest.approx([0.2] * 10)  # passes 0.05 alone, fails as one of ten
    x = [0.75, 1.0, 1.25]
    assert p_value(x) == pytest.approx(stats.ttest_1samp(x, 0).pvalue)
    assert math.isnan(p_value([0.0, 0.0, 0.0])) and p_value([0.3, 0.3]) == 0.0 and math.isnan(p_value([0.3]))
    se = stats.sem(x)
    assert standard_error(x) == pytest.approx(se)
    assert min_detectable(se, 3) == pytest.approx((stats.t.ppf(0.975, 2) + stats.t.ppf(0.8, 2)) * se)


def test_holm_turns_borderline_cells_into_not_detected_with_the_detectable_difference():
    # Every cell: paired differences of exactly 0.0075, 0.01, 0.0125 over the three seeds (p = 0.0202 alone).
    offsets = {0: 0.0075, 1: 0.01, 2: 0.0125}
    cells = analysed_cells(_records(trained={"class_selectivity": seed_offsets(0.1, offsets)},
                                    control={"class_selectivity": flat(0.1, sd=0.0)}, control_noise=0))
    rows = layer_rows(cells)
    mine = [r for r in rows if r["metric"] == "class_selectivity" and r["layer"] != "input"]
    assert len(mine) == 10
    assert all(r["trained_vs_control"] == "above 0" for r in mine)  # each raw 95% CI excludes 0 ...
    assert all(r["p_vs_control"] == pytest.approx(0.0202, abs=1e-3) for r in mine)
    assert all(r["holm_vs_control"] == "not detected" for r in mine)  # ... but not as one of 10 cells
    se = stats.sem([0.0075, 0.01, 0.0125])
    mdd = (stats.t.ppf(1 - 0.05 / 20, 2) + stats.t.ppf(0.8, 2)) * se  # Bonferroni level 0.05 / 10 cells
    assert mine[0]["mdd_vs_control"] == pytest.approx(mdd, rel=1e-3)
    claim = metric_claim("plain", METRIC_BY_KEY["class_selectivity"], cells, rows)
    assert claim.numbers["vs_control"] == {"not detected": 10}
    assert f"above the random-init control in 0 of 10 depth × layer cells, below in 0, not detected in 10 (could have " \
           f"detected ≥ {mdd:.4f}" in claim.text  # three significant digits
    assert "no difference" not in claim.text


# --- the middle stage ---------------------------------------------------------------------------------------------

def test_interior_contrast_is_the_inner_peak_over_the_ends():
    values = [None, 0.1, 0.5, 0.3, 0.2, None]  # input, 4 hidden layers, logits
    assert interior_contrast(values, [1, 2, 3, 4]) == pytest.approx(0.3)
    assert interior_contrast([None, 0.1, 0.2, 0.3, 0.4, None], [1, 2, 3, 4]) == pytest.approx(-0.1)
    assert math.isnan(interior_contrast([None, 0.1, 0.5, None], [1, 2]))  # no interior layer


@pytest.mark.parametrize("profile, holds", [(flat(0.3), False), (rising(0.1, 0.5), False), (peaked(0.1, 0.5), True)])
def test_middle_stage_holds_only_for_an_interior_peak(profile, holds):
    checks = _verdicts(depths=(2, 4, 5), trained={"concept_probe_l2": profile})
    middle = checks["verdict_middle_stage"]
    assert middle.numbers["holds"] is holds and middle.numbers["primary"] == "concept_probe_l2"
    assert middle.text.startswith("Holds" if holds else "Does not hold"), middle.text


def test_middle_stage_of_a_cnn_rests_on_the_iou_over_its_ceiling():
    flat_levels = lambda pos: (0.2, 0.2, 0.2)  # noqa: E731
    checks = _verdicts(depths=(4,), model="cnn", levels=flat_levels, trained={"concept_probe_l2": peaked()})
    middle = checks["verdict_middle_stage"]
    assert middle.numbers["primary"] == "dissect_iou_vs_ceiling_l2" and middle.numbers["holds"] is False
    assert "Primary measure for CNNs" in middle.text and "Beside it: within-class concept probe" in middle.text


@pytest.mark.parametrize("also", ["both", "shuffled_labels"])
def test_a_peak_the_controls_have_as_well_is_not_the_middle_stage(also):
    profile = {"concept_probe_l2": peaked(0.1, 0.5)}
    checks = _verdicts(depths=(4, 5), trained=profile, shuffled_labels=profile,
                       control=profile if also == "both" else None, control_noise=0)
    middle = checks["verdict_middle_stage"]
    assert middle.numbers["tests"]["concept_probe_l2"].trained.sign == "above 0"  # the trained peak is there
    assert middle.numbers["holds"] is False and middle.text.startswith("Does not hold")


def test_middle_stage_without_the_shuffled_label_network_is_untested():
    checks = _verdicts(depths=(4, 5), trained={"concept_probe_l2": peaked()}, drop=("shuffled_labels",))
    middle = checks["verdict_middle_stage"]
    assert middle.numbers["holds"] is None
    assert middle.text.startswith("Untested against shuffled labels") and "no shuffled-label network" in middle.text


# --- the level order and the slopes -------------------------------------------------------------------------------

def test_an_order_the_control_shows_in_two_of_three_seeds_is_not_absent_from_it():
    checks = _verdicts(levels=hierarchy, per_seed=lambda s: {"control_levels": hierarchy if s < 2 else reversed_hierarchy})
    order = checks["verdict_order"]
    assert order.numbers["holds"] is False and order.text.startswith("Does not hold")
    assert "not in the control" not in order.text
    assert "the random-init network shows the order in 2 of 3 seed(s)" in order.text


def test_order_beyond_both_controls_holds_and_is_untested_without_shuffled_labels():
    assert _verdicts(levels=hierarchy)["verdict_order"].numbers["holds"] is True
    order = _verdicts(levels=hierarchy, drop=("shuffled_labels",))["verdict_order"]
    assert order.numbers["holds"] is None and order.text.startswith("Untested against shuffled labels")


def test_slopes_any_classifier_shows_must_beat_the_shuffled_label_network():
    checks = _verdicts(levels=hierarchy, shuffled_levels=hierarchy, shuffled_labels={"probe_eval_acc": rising()},
                       control_noise=0)
    for key in ("verdict_probe_eval_acc", "verdict_dissect_fraction_l3"):
        assert checks[key].numbers["holds"] is False, key
        assert checks[key].text.startswith("Does not hold beyond shuffled labels"), checks[key].text
        assert "only the comparison with the shuffled-label network is informative" in checks[key].text
    untested = _verdicts(levels=hierarchy, drop=("shuffled_labels",))["verdict_probe_eval_acc"]
    assert untested.numbers["holds"] is None and untested.text.startswith("Untested against shuffled labels")
