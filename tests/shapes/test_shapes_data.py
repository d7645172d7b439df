"""data=shapes: the config option, load_splits, the per-user cache, masks per split, a tiny training run."""

import time

import pytest
import torch
from omegaconf import OmegaConf

import replearn.shapes.cache as shapes_cache
from replearn.cache import cache_dir
from replearn.conf.validate import validate_train
from replearn.data import Splits, load_splits
from replearn.errors import ReplearnError
from replearn.shapes import CLASSES, STROKE_CLASSES

SMALL = {"train": (800, 101), "test": (160, 102)}


@pytest.fixture
def small_splits(monkeypatch):
    """Generate small splits instead of 60k/10k (the generator and the cache path are the real ones)."""
    monkeypatch.setattr(shapes_cache, "SPLITS", SMALL)


def _data_cfg(**over):
    return OmegaConf.create({"name": "shapes", "size": 28, "labels": "parts", "val_size": 80, "split_seed": 0, **over})


def test_load_splits_returns_balanced_splits(small_splits):
    splits = load_splits(_data_cfg())
    assert isinstance(splits, Splits) and splits.name == "shapes" and splits.classes == list(CLASSES)
    assert splits.train_x.shape == (720, 1, 28, 28) and splits.val_x.shape == (80, 1, 28, 28)
    assert splits.test_x.shape == (160, 1, 28, 28) and splits.train_x.dtype == torch.uint8
    for y, per_class in ((splits.train_y, 90), (splits.val_y, 10), (splits.test_y, 20)):
        assert torch.bincount(y, minlength=8).tolist() == [per_class] * 8
    assert 0.0 < splits.mean < 1.0 and splits.std > 0.0
    twin = load_splits(_data_cfg(labels="strokes"))
    assert twin.classes == list(STROKE_CLASSES) and torch.equal(twin.train_x, splits.train_x)


def test_splits_are_cached_and_read_back(small_splits, monkeypatch):
    load_splits(_data_cfg())
    calls = []
    real = shapes_cache.generate_arrays
    monkeypatch.setattr(shapes_cache, "generate_arrays", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = load_splits(_data_cfg(labels="strokes", split_seed=3))
    assert calls == [] and again.train_x.shape == (720, 1, 28, 28)
    assert len(list(cache_dir("shapes").glob("*.pt"))) >= 2  # in the per-user cache, never next to any data


def test_concept_masks_for_split_match_the_split_images(small_splits):
    cfg = _data_cfg()
    splits = load_splits(cfg)
    for name, images, labels in (("val", splits.val_x, splits.val_y), ("test", splits.test_x, splits.test_y)):
        masks = shapes_cache.concept_masks_for_split(cfg, name)
        assert masks.masks.shape[0] == len(images)
        assert torch.equal(masks.masks[:, :4].any(1), images[:, 0] > 127)
        own = masks.masks[:, -len(CLASSES):].flatten(2).any(-1)
        assert torch.equal(own, torch.nn.functional.one_hot(labels, len(CLASSES)).bool())
    some = shapes_cache.concept_masks_for_split(cfg, "train", index=torch.arange(5))
    assert torch.equal(some.masks[:, :4].any(1), splits.train_x[:5, 0] > 127)
    with pytest.raises(ReplearnError, match="split='dev' is invalid"):
        shapes_cache.concept_masks_for_split(cfg, "dev")


def test_the_config_option_composes_and_validates(compose_cfg):
    cfg = compose_cfg("train", ["data=shapes", "model=cnn", "depth=4"])
    assert cfg.data.name == "shapes" and cfg.data.size == 28 and cfg.data.labels == "parts"
    assert cfg.data.max_shift == 0 and cfg.data.val_size == 5000
    validate_train(cfg)
    validate_train(compose_cfg("train", ["data=shapes", "data.labels=strokes"]))


@pytest.mark.parametrize("overrides, key", [
    (["data=shapes", "data.labels=digits"], "data.labels='digits'"),
    (["data=shapes", "data.size=7"], "data.size=7"),
    (["data=mnist", "data.labels=strokes"], "data.labels='strokes'"),
    (["data=fashion_mnist", "data.size=56"], "data.size=56"),
])
def test_bad_shapes_settings_fail_with_one_line(compose_cfg, overrides, key):
    with pytest.raises(ReplearnError) as info:
        validate_train(compose_cfg("train", overrides))
    assert key in str(info.value) and "\n" not in str(info.value)


def test_a_tiny_cnn_trains_on_shapes(compose_cfg, small_splits, tmp_path):
    from replearn.training import train

    cfg = compose_cfg("train", ["data=shapes", "data.val_size=80", "model=cnn", "depth=2", "model.channels=8",
                                "trainer.epochs=1", "trainer.progress=false", "trainer.threads=1"])
    train(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "final.json").is_file()


def test_a_tiny_cnn_trains_and_is_dissected_on_56_pixel_shapes(compose_cfg, small_splits, tmp_path):
    """data.size=56: the model takes the size from the data, analysis dissects with 56 px masks."""
    from replearn.runs import load_run
    from replearn.runs.layout import read_analysis
    from replearn.training import train

    cfg = compose_cfg("train", ["data=shapes", "data.size=56", "data.val_size=80", "model=cnn", "depth=2",
                                "model.channels=4", "model.max_channels=8", "trainer.epochs=1", "trainer.progress=false",
                                "trainer.threads=1", "analysis.enabled=true", "analysis.n_train=200", "analysis.n_eval=80",
                                "analysis.actmax_steps=0", "analysis.erf_units=0", "analysis.probe_shuffles=1",
                                "analysis.dissect_grad_images=40", "analysis.dissect_quantile_images=40"])
    assert cfg.model.image_size == 56 and cfg.model.num_classes == 8
    train(cfg, tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert run.model.input_shape == (1, 56, 56) and run.splits().test_x.shape[1:] == (1, 56, 56)
    analysis = read_analysis(tmp_path / "run")
    assert analysis is not None and analysis.get("trained") is not None


@pytest.mark.slow
def test_60k_plus_10k_images_in_20_seconds_on_one_core():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.process_time()
        for split in ("train", "test"):
            n, seed = shapes_cache.SPLITS[split]
            shapes_cache.generate_arrays(n, seed, 28, with_codes=False)
        assert time.process_time() - start <= 20.0
    finally:
        torch.set_num_threads(threads)
