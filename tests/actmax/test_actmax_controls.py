"""Act-max scored against control networks: the margin arithmetic, the prior ranking on the margin over the
random-init control, and the controls run under the same prior as the model."""

import copy

import pytest

from replearn.actmax.choice import RANDOM_INIT, SHUFFLED, best_prior, compare_priors
from replearn.actmax.scoring import CRITERIA, margins, rank_key
from replearn.models import MLP

pytestmark = pytest.mark.usefixtures("one_thread")


def summary(**counts) -> dict:
    base = {c: 0 for c in CRITERIA}
    return {**base, **counts, "classes": 10, "mean_confidence": 0.9, "typicality_gap": 20.0}


def test_margin_is_trained_minus_best_control():
    trained = summary(recognized=10, maximizer=9, knn5_in_band=9, centroid_in_band=10, not_copy=10, all=9)
    random_init = summary(recognized=1, maximizer=10, knn5_in_band=8, centroid_in_band=6, not_copy=10, all=1)
    shuffled = summary(recognized=3, maximizer=7, knn5_in_band=9, centroid_in_band=4, not_copy=10, all=0)
    got = margins(trained, {RANDOM_INIT: random_init, SHUFFLED: shuffled})
    assert got == {"recognized": 7, "maximizer": -1, "knn5_in_band": 0, "centroid_in_band": 4, "not_copy": 0, "all": 8}
    assert margins(trained, {RANDOM_INIT: random_init})["recognized"] == 9
    assert margins(trained, {}) == {}


def test_ranking_uses_the_margin_over_the_random_init_control():
    # gmm passes more targets on the model, but almost as many on an untrained network: gaussian has the larger margin.
    scores = {"gmm": {"summary": summary(recognized=10, knn5_in_band=9, all=9)},
              "gaussian": {"summary": summary(recognized=9, knn5_in_band=6, all=6)}}
    controls = {"gmm": {RANDOM_INIT: {"summary": summary(recognized=8, knn5_in_band=9, all=8)}},
                "gaussian": {RANDOM_INIT: {"summary": summary(recognized=0, knn5_in_band=2, all=0)}}}
    assert best_prior(scores) == "gmm"  # raw score
    assert best_prior(scores, controls) == "gaussian"
    # Only the random-init control ranks: a shuffled-label one alone leaves the raw ranking.
    assert best_prior(scores, {p: {SHUFFLED: c[RANDOM_INIT]} for p, c in controls.items()}) == "gmm"
    assert rank_key(scores["gaussian"]["summary"], controls["gaussian"][RANDOM_INIT]["summary"])[:2] == (6, 13)


def test_controls_run_under_the_same_prior(splits):
    model = MLP(depth=1, width=16).eval()
    other = MLP(depth=1, width=16).eval()  # another random initialization
    choice = compare_priors(model, splits, names=["pixel", "pca"], steps=4,
                            controls={RANDOM_INIT: copy.deepcopy(model), SHUFFLED: other})
    for name in ("pixel", "pca"):
        assert set(choice.control_scores[name]) == {RANDOM_INIT, SHUFFLED}
        assert choice.control_prototypes[name][SHUFFLED].shape == (10, 1, 28, 28)
        # A control identical to the model draws the same prototypes: every margin over it is at most 0.
        assert choice.control_scores[name][RANDOM_INIT]["summary"] == choice.scores[name]["summary"]
        assert set(choice.margins[name]) == set(CRITERIA) and max(choice.margins[name].values()) <= 0
        assert choice.control_seconds[name] > 0
    assert choice.ranked_by == "margin over the random-init control" and "random-init control" in choice.reason
    plain = compare_priors(model, splits, names=["pixel"], steps=4)
    assert plain.margins == {"pixel": {}} and plain.ranked_by == "raw score" and "no random-init control" in plain.reason
