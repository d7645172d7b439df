"""Resource guards on files and options: a zip bomb is refused before it is inflated, and visualize's k and steps
are bounded by an estimate of the page's memory and act-max time (issue 19, section 4)."""

from __future__ import annotations

import io
import zipfile

import pytest
import torch
from omegaconf import OmegaConf

import replearn.guards as guards
from replearn.cache import cached
from replearn.errors import ReplearnError
from replearn.runs.checkpoint import load_checkpoint

MB = 1_000_000


def zip_bomb(path, megabytes: int = 50) -> None:
    """A torch file holding ``megabytes`` MB of zeros, every entry deflated: ~1/1000 of that on disk."""
    buffer = io.BytesIO()
    torch.save({"epoch": 1, "model": {"w": torch.zeros(megabytes * MB // 4)}}, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            archive.writestr(info.filename, source.read(info.filename))


@pytest.fixture
def little_memory(monkeypatch):
    """20 MB free, as far as the guards can tell; no override in the environment."""
    monkeypatch.setattr(guards, "available_bytes", lambda device_type="cpu": 20 * MB)
    monkeypatch.delenv(guards.FORCE_ENV, raising=False)


def test_zip_bomb_checkpoint_is_refused_before_it_is_inflated(tmp_path, little_memory, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    zip_bomb(run / "checkpoint.pt")
    assert (run / "checkpoint.pt").stat().st_size < MB  # small on disk, 50 MB once inflated

    def no_load(*args, **kwargs):
        raise AssertionError("torch.load ran on a zip bomb")

    monkeypatch.setattr(torch, "load", no_load)
    with pytest.raises(ReplearnError, match=r"refusing to load checkpoint .*declares 50 MB.*only 20 MB is free.*"
                                            r"REPLEARN_FORCE_RESOURCES=1") as info:
        load_checkpoint(run)
    assert "\n" not in str(info.value)


def test_zip_bomb_is_loaded_when_forced_or_when_memory_allows(tmp_path, little_memory, monkeypatch):
    zip_bomb(tmp_path / "checkpoint.pt")
    monkeypatch.setenv(guards.FORCE_ENV, "1")
    assert load_checkpoint(tmp_path)["model"]["w"].numel() == 50 * MB // 4
    monkeypatch.delenv(guards.FORCE_ENV)
    monkeypatch.setattr(guards, "available_bytes", lambda device_type="cpu": 200 * MB)
    assert guards.archive_excess(tmp_path / "checkpoint.pt") is None
    assert guards.archive_excess(tmp_path / "nothing.pt") is None  # not a zip: torch.load says what it is


def test_zip_bomb_in_the_cache_is_rebuilt_not_inflated(cache_dir, little_memory, capsys):
    (cache_dir / "things").mkdir(parents=True)
    zip_bomb(cache_dir / "things" / "key.pt")
    payload = cached("things", "key", lambda: {"value": torch.ones(3)})
    assert torch.equal(payload["value"], torch.ones(3))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "too big to load" in err[0] and "declares 50 MB" in err[0] and "rebuilding" in err[0]
    assert (cache_dir / "things" / "key.pt").stat().st_size < MB  # the rebuilt entry replaced the bomb
    assert torch.equal(cached("things", "key", lambda: {"value": torch.zeros(3)})["value"], torch.ones(3))


def test_cache_warning_never_repeats_torchs_weights_only_advice(cache_dir, capsys):
    # A pickle of a class weights_only refuses: torch's message advises weights_only=False, which runs code.
    (cache_dir / "things").mkdir(parents=True)
    torch.save({"value": zipfile.ZipInfo("x")}, cache_dir / "things" / "key.pt")
    cached("things", "key", lambda: {"value": torch.ones(3)})
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rebuilding" in err[0] and "unreadable" in err[0]
    assert "weights_only" not in err[0] and "likely succeed" not in err[0]


# --------------------------------------------------------------------------- visualize.py's k and steps

MLP = {"name": "mlp", "depth": 2, "width": 64}
CNN = {"name": "cnn", "depth": 5, "channels": 32, "max_channels": 128}


def opts(**values):
    base = {"k": 9, "units": 16, "steps": 256, "prior": "auto", "prior_weights": [0.3, 1.0, 3.0], "fourier": False}
    return OmegaConf.create({**base, **values})


def test_default_page_fits_and_is_quick(monkeypatch):
    monkeypatch.setattr(guards, "available_bytes", lambda device_type="cpu": 2_000 * MB)
    for model in (MLP, CNN):
        est = guards.check_visualize(opts(), model, test_images=10_000, classes=10, hidden_layers=5)
        assert est.bytes < 100 * MB and est.seconds < 600


def test_huge_k_is_refused_from_the_memory_estimate(little_memory):
    with pytest.raises(ReplearnError, match=r"k=1000000000 units=16 steps=256 need about 41.0 GB \(41.0 GB for a top-k "
                                            r"figure of 160,000 images\).*use k<=.*force_resources=true") as info:
        guards.check_visualize(opts(k=1_000_000_000), MLP, test_images=10_000, classes=10, hidden_layers=2)
    assert "\n" not in str(info.value)
    # k is capped at the test split's size, as the page does: a tiny split needs little.
    est = guards.visualize_estimate(opts(k=1_000_000_000), MLP, test_images=3, classes=10, hidden_layers=2)
    assert est.bytes == guards.TOPK_BYTES_PER_IMAGE * 16 * 3 + guards.ACTMAX_BYTES_PER_STEP * 256


def test_huge_steps_are_refused_from_the_time_estimate(monkeypatch):
    monkeypatch.setattr(guards, "available_bytes", lambda device_type="cpu": 64_000 * MB)
    monkeypatch.delenv(guards.FORCE_ENV, raising=False)
    with pytest.raises(ReplearnError, match=r"steps=1000000000 would take about [0-9,]+ days of act-max "
                                            r"\(366 images optimized .*use steps<=[0-9]+, .*force_resources=true"):
        guards.check_visualize(opts(steps=1_000_000_000), MLP, test_images=10_000, classes=10, hidden_layers=2)


def test_the_estimate_follows_the_work():
    small = guards.visualize_estimate(opts(prior="pixel"), MLP, test_images=100, classes=10, hidden_layers=1)
    auto = guards.visualize_estimate(opts(), MLP, test_images=100, classes=10, hidden_layers=1)
    # class prototypes are drawn for the model and its two controls (random init, shuffled labels)
    assert small.actmax_rows == 3 * 10 + 16 and auto.actmax_rows == 3 * 10 * (3 + 2 * 3) + 16 * 3
    cnn = guards.visualize_estimate(opts(), CNN, test_images=100, classes=10, hidden_layers=1)
    assert cnn.seconds > auto.seconds  # a forward pass of the CNN costs more than the small MLP's


def test_bounds_are_overridable(little_memory, monkeypatch):
    huge = opts(k=1_000_000_000, steps=1_000_000_000)
    guards.check_visualize(OmegaConf.merge(huge, {"force_resources": True}), MLP, test_images=10_000, classes=10,
                           hidden_layers=2)
    monkeypatch.setenv(guards.FORCE_ENV, "1")
    guards.check_visualize(huge, MLP, test_images=10_000, classes=10, hidden_layers=2)


def test_units_are_capped_at_the_widest_layer():
    # units=10**9 shows every unit of a 64-wide MLP, as the page does: no refusal, no absurd estimate.
    est = guards.visualize_estimate(opts(units=10**9), MLP, test_images=100, classes=10, hidden_layers=2)
    assert est.panels == 64 and est.actmax_rows == 3 * 10 * 9 + 2 * 64 * 3


@pytest.mark.parametrize("model_cfg", [
    {"name": "mlp", "depth": 3, "width": 32},
    {"name": "cnn", "depth": 1, "channels": 4, "max_channels": 8, "norm": "batchnorm"},
    {"name": "cnn", "depth": 4, "channels": 4, "max_channels": 8, "norm": "batchnorm", "head": "flatten"},
    {"name": "cnn", "depth": 3, "channels": 4, "max_channels": 8, "reach": "cover", "norm": "none"},
    {"name": "cnn", "depth": 6, "channels": 4, "max_channels": 16, "norm": "batchnorm", "head": "flatten",
     "reach": "cover"},
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_size_and_flop_estimates_match_the_built_model(model_cfg):
    """The estimates read the (composed, so complete) config before torch loads; torch's own count of the built
    model is the oracle."""
    from torch.utils.flop_counter import FlopCounterMode

    from replearn.models import build_model, count_parameters

    model = build_model(**model_cfg).eval()
    assert guards.estimate(model_cfg).params == count_parameters(model)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *model.input_shape))
    assert guards.forward_flops(model_cfg) == counter.get_total_flops()
