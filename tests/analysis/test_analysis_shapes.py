"""The analysis of a shapes run dissects against the generator's exact masks, never the MNIST morphology."""

import pytest

import replearn.dissection.concept_cache as concept_cache
import replearn.shapes.cache as shapes_cache
from replearn.runs.layout import read_analysis
from replearn.shapes import concepts

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"train": (400, 101), "test": (160, 102)}  # generated splits instead of 60k/10k
FAST_ANALYSIS = ["analysis.enabled=true", "analysis.n_train=200", "analysis.n_eval=160", "analysis.actmax_units=1",
                 "analysis.actmax_steps=2", "analysis.erf_units=1", "analysis.erf_images=2", "analysis.grad_images=32",
                 "analysis.probe_shuffles=1", "analysis.dissect_grad_images=32", "analysis.dissect_quantile_images=160"]


def test_a_shapes_run_is_analysed_with_the_generator_masks(compose_cfg, monkeypatch, tmp_path):
    from replearn.training import train  # lazy: the training stack is only needed by this test

    monkeypatch.setattr(shapes_cache, "SPLITS", SMALL)

    def no_morphology(*args, **kwargs):
        raise AssertionError("MNIST morphology masks were built for a shapes run")

    monkeypatch.setattr(concept_cache, "load_concept_masks", no_morphology)
    cfg = compose_cfg("train", ["data=shapes", "data.val_size=80", "model=cnn", "depth=2", "model.channels=8",
                                "trainer.epochs=1", "trainer.progress=false", "trainer.threads=1", *FAST_ANALYSIS])
    train(cfg, tmp_path / "run")
    analysis = read_analysis(tmp_path / "run")
    dissection = analysis["dissection"]
    assert dissection["concepts"] == [c.name for c in concepts()]
    assert dissection["levels"] == [c.level for c in concepts()] and dissection["images"] == 160
    assert len(analysis["trained"]["dissect_fraction_l2"]) == len(analysis["layers"])
    assert analysis["random_init"] is not None  # the random-init control is dissected the same way
