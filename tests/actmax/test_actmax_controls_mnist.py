"""On real MNIST, a data prior alone does not make an untrained network's class prototypes its own digits, and a
trained depth-5 MLP's prototypes are recognized for far more classes than its random-init control's."""

import pytest

from replearn.actmax.choice import RANDOM_INIT, compare_priors
from replearn.analysis.run import random_init_control
from replearn.runs.load import load_run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def gmm_choice(trained_runs, mnist_root, tmp_path_factory):
    """The gmm prior's class prototypes of a depth-5 MLP (2 epochs on MNIST) and of its own random-init network."""
    overrides = ["depth=5", "trainer.epochs=2", "trainer.progress=false", "trainer.threads=1", "device=cpu",
                 f"data.root={mnist_root}"]
    run = load_run(trained_runs.copy(overrides, tmp_path_factory.mktemp("mnist") / "run"))
    control = random_init_control(run.cfg.model, int(run.cfg.seed))
    return compare_priors(run.model, run.splits(), names=["gmm"], controls={RANDOM_INIT: control})


def test_random_init_prototypes_are_not_their_own_class(gmm_choice):
    rows = gmm_choice.control_scores["gmm"][RANDOM_INIT]["classes"]
    recognized = [row["class"] for row in rows if row["recognized"]]
    assert len(rows) == 10 and len(recognized) <= 1, recognized


def test_trained_margin_on_recognized(gmm_choice):
    margin = gmm_choice.margins["gmm"]
    assert margin["recognized"] >= 7, (margin, gmm_choice.scores["gmm"]["summary"])
