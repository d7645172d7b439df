"""Per-run analysis: complexity measures, trainability, and analyze_model/analyze_run end to end."""

import json
import math

import pytest
import torch

from replearn.analysis.complexity import (
    class_selectivity,
    effective_receptive_field,
    participation_ratio,
    spectral_centroid,
)
from replearn.analysis.dissection_block import DISSECT_KEYS
from replearn.analysis.run import analyze_model, analyze_run, as_analysis_config, random_init_control
from replearn.analysis.trainability import dead_unit_fraction, gradient_norms
from replearn.errors import ReplearnError
from replearn.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny ops: a second thread only adds waiting

# Analysis settings small enough for a test (the splits fixture is 400 train, 200 test images).
# No shuffled-label twin here: these folders are hand-made checkpoints, not finished runs (tests/analysis/test_controls.py
# trains twins through the analysis).
FAST_ANALYSIS = dict(n_train=300, n_eval=200, actmax_units=2, actmax_steps=3, erf_units=2, erf_images=4, grad_images=64,
                     shuffled_control=False)


def test_participation_ratio_isotropic_and_rank_one():
    gen = torch.Generator().manual_seed(0)
    iso = torch.randn(20000, 16, generator=gen)
    assert participation_ratio(iso) == pytest.approx(16, rel=0.03)
    rank1 = torch.randn(500, 1, generator=gen) * torch.randn(1, 40, generator=gen)
    assert participation_ratio(rank1) == pytest.approx(1.0, abs=1e-6)
    assert participation_ratio(torch.ones(50, 4)) == 0.0
    # Gram route (D > N) agrees with the covariance route.
    wide = torch.randn(30, 100, generator=gen)
    assert participation_ratio(wide) == pytest.approx(participation_ratio(wide.T.contiguous().T), rel=1e-9)


def test_class_selectivity_one_hot_unit_and_unselective_unit():
    labels = torch.arange(10).repeat(20)  # (200,)
    one_hot = (labels == 3).float()[:, None]  # fires only for class 3
    flat = torch.ones(200, 1)  # same response for every class
    si = class_selectivity(torch.cat([one_hot, flat, torch.zeros(200, 1)], 1), labels, 10)
    assert si[0].item() == pytest.approx(1.0)
    assert si[1].item() == pytest.approx(0.0)
    assert math.isnan(si[2].item())  # silent unit: undefined, not 0


def test_spectral_centroid_orders_frequencies():
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    coarse = torch.cos(2 * math.pi * 2 * xx / 28)
    fine = torch.cos(2 * math.pi * 10 * xx / 28)
    c = spectral_centroid(torch.stack([coarse, fine, torch.ones(28, 28)])[:, None])
    assert c[0].item() == pytest.approx(2 / 28, abs=1e-6)
    assert c[1].item() == pytest.approx(10 / 28, abs=1e-6)
    assert math.isnan(c[2].item())


def test_erf_grows_with_conv_depth():
    torch.manual_seed(0)
    model = build_model("cnn", depth=4, channels=8, max_channels=8, norm="none").eval()
    images = torch.randn(4, 1, 28, 28)
    first = effective_receptive_field(model, "blocks.0", images, [0, 1, 2])
    last = effective_receptive_field(model, "blocks.3", images, [0, 1, 2])
    # One stride-2 3x3 conv sees at most 9 of 784 pixels.
    assert first["erf_area"] <= 9 / 784 + 1e-9
    assert last["erf_area"] > first["erf_area"]


def test_dead_units_and_gradient_norms():
    acts = torch.relu(torch.randn(100, 6))
    acts[:, [1, 4]] = 0.0
    assert dead_unit_fraction(acts) == pytest.approx(2 / 6)
    maps = torch.relu(torch.randn(10, 4, 5, 5))
    maps[:, 2] = 0.0
    assert dead_unit_fraction(maps) == pytest.approx(1 / 4)
    model = build_model("cnn", depth=2, channels=4, max_channels=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = gradient_norms(model, torch.randint(0, 255, (16, 1, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (16,)),
                           normalize=lambda x: x.float() / 255)
    assert list(grads) == ["blocks.0", "blocks.1", "head"]
    assert all(v["grad_norm"] > 0 and math.isfinite(v["relative"]) for v in grads.values())
    # BatchNorm running stats of the analysed model are untouched.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_config_validation():
    with pytest.raises(ReplearnError):
        as_analysis_config({"probe_method": "svm"})
    with pytest.raises(ReplearnError):
        as_analysis_config({"n_eval": 0})
    with pytest.raises(ReplearnError):
        as_analysis_config({"no_such_key": 1})
    assert as_analysis_config(None).n_train == 10000


def _check_block(block, n_layers, allow_null):
    for key, values in block.items():
        if key == "cka":
            assert len(values) == n_layers and all(len(r) == n_layers for r in values)
            assert all(v is not None and 0.0 <= v <= 1.0 + 1e-9 for r in values for v in r)
            continue
        assert len(values) == n_layers, key
        for i, v in enumerate(values):
            if key == "dissect_method" and v is not None:
                assert v in ("activation", "grad_x_input", "class")
            elif v is None:
                assert (key, i) in allow_null, (key, i)
            else:
                assert math.isfinite(v), (key, i)


@pytest.mark.parametrize("name,kwargs", [
    ("mlp", dict(depth=3, width=32)),
    ("mlp", dict(depth=3, width=16, residual=True, norm="layernorm")),
    ("cnn", dict(depth=3, channels=4, max_channels=8)),
])
def test_analyze_model_tiny_models(splits, name, kwargs):
    model = build_model(name, **kwargs)
    control = random_init_control(dict(name=name, **kwargs), seed=1)
    result = analyze_model(model, splits, FAST_ANALYSIS, control=control)
    layers = result["layers"]
    assert layers == ["input", "blocks.0", "blocks.1", "blocks.2", "logits"]
    assert result["position"][0] == 0.0 and result["position"][-1] == 1.0
    # Measures that do not apply to raw pixels are null; everything else is a finite number.
    input_only = {(k, 0) for k in ("grad_norm", "grad_relative", "dead_fraction", "erf_area", "erf_radius",
                                   "actmax_spectral_centroid", *DISSECT_KEYS)}
    logits_dead = {("dead_fraction", len(layers) - 1)}
    # The logits are labelled by their class, not measured: their dissection summaries are null.
    logits_dead |= {(k, len(layers) - 1) for k in DISSECT_KEYS if k != "dissect_method"}
    assert "shuffled_labels" not in result  # no shuffled-label network passed
    for tag in ("trained", "random_init"):
        _check_block(result[tag], len(layers), input_only | logits_dead)
        block = result[tag]
        # The shuffled-label floor sits near chance (10 balanced classes), far below a real probe of pixels.
        assert all(0.0 <= v <= 0.25 for v in block["probe_shuffled_eval_acc"])
        for i in range(1, len(layers) - 1):
            fractions = [block[f"dissect_fraction_{lv}"][i] for lv in ("l1", "l2", "l3", "unlabelled")]
            assert sum(fractions) == pytest.approx(1.0)
        expected = "activation" if name == "cnn" else "grad_x_input"
        assert block["dissect_method"][1:-1] == [expected] * 3 and block["dissect_method"][-1] == "class"
        units = result["dissection"][tag]
        assert list(units) == ["blocks.0", "blocks.1", "blocks.2", "head"]
        assert len(units["head"]["best_concept"]) == 10
    assert len(result["dissection"]["concepts"]) == len(result["dissection"]["levels"])
    assert len(result["cka_trained_vs_init"]) == len(layers)
    json.dumps(result, allow_nan=False)


def test_analyze_model_skips_diverged_weights(splits):
    model = build_model("mlp", depth=2, width=16)
    with torch.no_grad():
        model.blocks[0].linear.weight[0, 0] = float("nan")
    result = analyze_model(model, splits, dict(FAST_ANALYSIS, actmax_units=0, erf_units=0), control=None)
    assert result["trained"] is None and "non-finite" in result["trained_skipped"]
    json.dumps(result, allow_nan=False)


def test_analyze_run_writes_json(tmp_path, splits):
    from omegaconf import OmegaConf

    from replearn.runs.checkpoint import save_checkpoint

    model_cfg = {"name": "mlp", "depth": 2, "width": 16}
    cfg = OmegaConf.create({"seed": 3, "model": model_cfg, "data": {"name": "synthetic", "num_train": 300, "num_test": 150,
                                                                    "val_size": 50, "split_seed": 0}})
    model = random_init_control(model_cfg, seed=3)
    save_checkpoint({"model": model.state_dict(), "config": OmegaConf.to_container(cfg)}, tmp_path / "checkpoint.pt")
    result = analyze_run(tmp_path, dict(FAST_ANALYSIS, n_eval=150))
    saved = json.loads((tmp_path / "analysis.json").read_text())
    assert saved["layers"] == result["layers"] == ["input", "blocks.0", "blocks.1", "logits"]
    # The control is the same init as the "trained" weights here, so every layer matches itself.
    assert all(v == pytest.approx(1.0, abs=1e-6) for v in saved["cka_trained_vs_init"])


def test_participation_ratio_from_cka_cache_matches_direct():
    from replearn.analysis.cka import CentredLayers

    gen = torch.Generator().manual_seed(1)
    feats = {"a": torch.randn(400, 12, generator=gen) * torch.linspace(0.1, 2, 12),
             "wide": torch.randn(50, 80, generator=gen)[:, :].repeat(8, 1)}
    ratios = CentredLayers(feats).participation_ratios()
    fast = CentredLayers(feats, dtype=torch.float32).participation_ratios()
    for k, v in feats.items():
        assert ratios[k] == pytest.approx(participation_ratio(v), rel=1e-9)
        assert fast[k] == pytest.approx(participation_ratio(v), rel=1e-4)


def test_minibatch_cka_on_unpooled_conv_maps(splits):
    model = build_model("cnn", depth=2, channels=4, max_channels=8)
    cfg = dict(FAST_ANALYSIS, actmax_units=0, erf_units=0, cka_minibatch=True, cka_batch_size=50)
    grid = torch.tensor(analyze_model(model, splits, cfg)["trained"]["cka"])
    assert grid.shape == (4, 4)
    assert torch.allclose(grid.diagonal(), torch.ones(4, dtype=grid.dtype), atol=1e-6)
    assert torch.allclose(grid, grid.T)
