"""A second visualize of an unchanged run reads its dissection and act-max prior comparison (and, through
reuse.layer_actmax, each layer's act-max) back from the per-user cache (issue "fast enough"): the page is the same,
a changed network or option computes again, a damaged entry is rebuilt with one warning line, and the payloads
give back every field."""

from __future__ import annotations

import dataclasses
import io
import os

import pytest
import torch
from helpers import FAST, snapshot

import replearn.actmax.choice as choice_module
import replearn.visualize.reuse as reuse
from replearn.actmax.choice import PriorChoice, compare_priors
from replearn.cache import checksum
from replearn.conf.visualize import VisualizeConfig
from replearn.dissection import DissectionSettings, dissect_model
from replearn.dissection.concept_cache import concepts_for
from replearn.dissection.result import LayerDissection
from replearn.models import CNN, MLP
from replearn.runs.layout import CHECKPOINT
from replearn.visualize.run import visualize_run

pytestmark = pytest.mark.usefixtures("one_thread", "cache_dir")

VIZ = ["units=3", "k=3", "steps=4", "embedding_samples=40", "num_inputs=2", "progress=false", "device=cpu",
       "layers=[blocks.0,head]", "threads=1", "dissect_images=100", "prior_weights=[1.0]", "prior=pca"]


@pytest.fixture
def calls(monkeypatch) -> dict:
    """Counts of the two slow computations, which still run."""
    count = {"dissect": 0, "priors": 0}

    def counted(name, real):
        def wrapper(*args, **kwargs):
            count[name] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(reuse, "dissect_model", counted("dissect", reuse.dissect_model))
    monkeypatch.setattr(choice_module, "compare_priors", counted("priors", choice_module.compare_priors))
    return count


@pytest.fixture
def run(trained_run):
    return trained_run([*FAST, "trainer.epochs=1"])


def _draw(compose_cfg, run, *extra):
    return visualize_run(compose_cfg("visualize", [f"run={run}", *VIZ, *extra]))


def test_a_second_visualize_reuses_both_and_draws_the_same_page(run, compose_cfg, calls, capsys, monkeypatch):
    layer_runs = []
    real = reuse.compute_layer_actmax
    monkeypatch.setattr(reuse, "compute_layer_actmax", lambda *a, **k: layer_runs.append(a[2]) or real(*a, **k))
    page = _draw(compose_cfg, run)
    assert calls == {"dissect": 2, "priors": 1}  # the model and its random-init control; the priors once
    first_layers = list(layer_runs)
    assert first_layers  # each hidden layer's act-max was computed once
    first = snapshot(page.parent)
    assert "What each unit detects" in page.read_text() and "Act-max recognizability" in page.read_text()
    capsys.readouterr()
    _draw(compose_cfg, run)
    assert calls == {"dissect": 2, "priors": 1}
    assert layer_runs == first_layers  # and read back the second time
    assert snapshot(page.parent) == first  # index.html, actmax.json and every figure, byte for byte
    out = capsys.readouterr().out
    assert "reused the dissection" in out and "reused the act-max prior comparison" in out


def test_a_changed_weight_or_option_computes_again(run, compose_cfg, calls):
    _draw(compose_cfg, run)
    path = run / CHECKPOINT
    stamp = path.stat()
    state = torch.load(path, weights_only=True)
    state["model"]["blocks.0.linear.weight"][0, 0] += 0.5
    torch.save(state, path)
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # still as old as final.json: a finished run
    _draw(compose_cfg, run)
    assert calls == {"dissect": 4, "priors": 2}
    _draw(compose_cfg, run, "steps=5")  # act-max's option: the dissection stays
    assert calls == {"dissect": 4, "priors": 3}


def test_a_damaged_entry_is_rebuilt_with_one_warning(run, compose_cfg, calls, cache_dir, capsys):
    first = snapshot(_draw(compose_cfg, run).parent)
    entries = list((cache_dir / reuse.DISSECTION_SUB).glob("*.pt"))
    assert len(entries) == 1
    entries[0].write_bytes(entries[0].read_bytes()[:-40] + b"\0" * 40)
    capsys.readouterr()
    page = _draw(compose_cfg, run)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(f"warning: cache file {entries[0]} is not used") \
        and err[0].endswith("rebuilding it")
    assert calls == {"dissect": 4, "priors": 1} and snapshot(page.parent) == first


def test_dissect_pair_keys_the_probe_images_and_the_control(splits, calls):
    model, control = MLP(depth=1, width=8).eval(), MLP(depth=1, width=8).eval()
    concepts = concepts_for(splits, 60)
    settings = DissectionSettings(grad_images=60)
    first, control_first = reuse.dissect_pair(model, control, splits, ["blocks.0", "head"], concepts, 60, settings)
    again, control_again = reuse.dissect_pair(model, control, splits, ["blocks.0", "head"], concepts, 60, settings)
    assert calls["dissect"] == 2 and checksum(_fields(again["blocks.0"])) == checksum(_fields(first["blocks.0"]))
    assert checksum(_fields(control_again["head"])) == checksum(_fields(control_first["head"]))
    reuse.dissect_pair(model, None, splits, ["blocks.0", "head"], concepts, 60, settings)
    assert calls["dissect"] == 3
    changed = splits.test_x.clone()
    changed[0, 0, 14, 14] ^= 1
    reuse.dissect_pair(model, None, dataclasses.replace(splits, test_x=changed), ["blocks.0", "head"], concepts, 60,
                       settings)
    assert calls["dissect"] == 4


def test_prior_choice_keys_every_control(splits, calls):
    model = MLP(depth=1, width=8).eval()
    random_init, shuffled = MLP(depth=1, width=8).eval(), MLP(depth=1, width=8).eval()
    opts = VisualizeConfig(prior="pixel", steps=3, prior_weights=[1.0])
    cpu = torch.device("cpu")
    first = reuse.prior_choice(model, splits, opts, cpu, controls={"random_init": random_init})
    again = reuse.prior_choice(model, splits, opts, cpu, controls={"random_init": random_init})
    assert calls["priors"] == 1 and checksum(_choice_fields(again)) == checksum(_choice_fields(first))
    reuse.prior_choice(model, splits, opts, cpu, controls={"random_init": random_init, "shuffled_labels": shuffled})
    assert calls["priors"] == 2
    with torch.no_grad():
        shuffled.head.bias[0] += 1.0
    reuse.prior_choice(model, splits, opts, cpu, controls={"random_init": random_init, "shuffled_labels": shuffled})
    assert calls["priors"] == 3


def test_layer_actmax_is_read_back_for_the_same_units(splits, monkeypatch):
    count = []
    real = reuse.compute_layer_actmax
    monkeypatch.setattr(reuse, "compute_layer_actmax", lambda *args: count.append(1) or real(*args))
    model = MLP(depth=1, width=8).eval()
    choice = PriorChoice("pixel", None, (1.0,))
    opts = VisualizeConfig(steps=3, progress=False)
    cpu = torch.device("cpu")
    result, record = reuse.layer_actmax(choice, model, "blocks.0", [1, 3], splits, opts, cpu)
    again, record_again = reuse.layer_actmax(choice, model, "blocks.0", [1, 3], splits, opts, cpu)
    assert len(count) == 1 and record_again == record and checksum(_fields(again)) == checksum(_fields(result))
    reuse.layer_actmax(choice, model, "blocks.0", [1, 4], splits, opts, cpu)
    reuse.layer_actmax(choice, model, "blocks.0", [1, 3], splits, VisualizeConfig(steps=4, progress=False), cpu)
    assert len(count) == 3


def _fields(result) -> dict:
    """Every field of a dataclass (the geometry as its dict), for a checksum that sees types, shapes and bytes."""
    out = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    if out.get("geometry") is not None:
        out["geometry"] = out["geometry"].as_dict()
    return out


def _choice_fields(choice: PriorChoice) -> dict:
    out = {f.name: getattr(choice, f.name) for f in dataclasses.fields(choice) if f.name != "prior"}
    out["results"] = {name: _fields(r) for name, r in choice.results.items()}
    return out


def _stored(payload: dict) -> dict:
    """``payload`` written and read back the way the cache does (tensors and plain values only)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("model", [MLP(depth=1, width=8), CNN(depth=2, channels=4, max_channels=8)],
                         ids=["mlp", "cnn"])
def test_layer_dissection_payload_gives_back_every_field(splits, model):
    model.eval()
    result = dissect_model(model, splits.test_x[:50], concepts_for(splits, 50), normalize=splits.normalize,
                           std=splits.std, settings=DissectionSettings(grad_images=50, null_permutations=3),
                           labels=splits.test_y[:50])
    methods = {d.method for d in result.values()}
    assert "class" in methods and len(methods) == 2  # the head and the measured layers
    for d in result.values():
        back = LayerDissection.from_payload(_stored(d.to_payload()))
        assert back.geometry == d.geometry and checksum(_fields(back)) == checksum(_fields(d)), d.layer


@pytest.fixture(scope="module")
def prior_splits(synthetic):
    return synthetic(num_train=1500, num_test=400, val_size=300)


def test_prior_choice_payload_gives_back_every_field(prior_splits):
    model, control = MLP(depth=1, width=16).eval(), MLP(depth=1, width=16).eval()
    choice = compare_priors(model, prior_splits, names=["pixel", "pca"], steps=4, weights=[0.5, 2],
                            controls={"random_init": control})
    choice.scores["pca"]["classes"][0]["centroid_percentile"] = float("nan")
    back = PriorChoice.from_payload(_stored(choice.to_payload()), choice.prior)
    assert back.prior is choice.prior and back.results and back.control_prototypes["pca"]
    assert checksum(_choice_fields(back)) == checksum(_choice_fields(choice))
