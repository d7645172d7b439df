"""Act-max's cached reference classifier, recognizability statistics and priors are checked on load and rebuilt
with one warning line when damaged, never trusted (issue 19, section 5)."""

from __future__ import annotations

import pytest
import torch

from replearn.actmax import priors
from replearn.actmax.priors import load_prior, prior_cache_path
from replearn.actmax.reference import load_reference
from replearn.actmax.scoring import real_statistics, score_prototypes
from replearn.cache import CHECKSUM_KEY, cache_dir, checksum
from replearn.models import MLP

pytestmark = pytest.mark.usefixtures("one_thread", "cache_dir")


@pytest.fixture(scope="module")
def splits(synthetic):
    return synthetic(num_train=300, num_test=100, val_size=50)


def rewrite(path, change) -> None:
    """Change a cache entry's payload and store it with a matching checksum, as if it had been written so."""
    payload = torch.load(path, weights_only=True)
    del payload[CHECKSUM_KEY]
    change(payload)
    torch.save({**payload, CHECKSUM_KEY: checksum(payload)}, path)


def only_entry(sub: str):
    (path,) = cache_dir(sub).glob("*.pt")
    return path


def one_warning(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "rebuilding" in lines[0], lines
    assert "Traceback" not in lines[0] and "weights_only" not in lines[0]
    return lines[0]


def test_nan_reference_weights_are_rebuilt_not_trusted(splits, capsys):
    good = load_reference(splits, epochs=1)
    rewrite(only_entry("reference_classifiers"),
            lambda p: p["state"].update({name: torch.full_like(v, float("nan")) for name, v in p["state"].items()}))
    capsys.readouterr()
    again = load_reference(splits, epochs=1)
    assert "NaN" in one_warning(capsys)
    for name, value in good.state_dict().items():
        assert torch.equal(again.state_dict()[name], value), name


def test_a_nan_reference_recognizes_nothing(splits):
    # Before: softmax of NaN logits has argmax 0, so class 0's prototype was "recognized".
    reference = load_reference(splits, epochs=1)
    with torch.no_grad():
        for param in reference.parameters():
            param.fill_(float("nan"))
    protos = splits.test_x[:10].float() / 255
    rows = score_prototypes(MLP(depth=1, width=8).eval(), protos, splits, reference,
                            real_statistics(splits, per_class=20), classes=splits.test_y[:10].tolist())["classes"]
    assert not any(row["recognized"] for row in rows)


@pytest.mark.parametrize("change", [
    lambda p: p.update(knn=[str(t.tolist()) for t in p["knn"]]),  # wrong types: a TypeError traceback before
    lambda p: p.update(centroid=p["centroid"][:-1]),  # one class short
    lambda p: p["nearest"].__setitem__(0, torch.full_like(p["nearest"][0], float("inf"))),
    lambda p: p["index"].__setitem__(1, p["index"][1] + 10**6),  # indices outside the test split
])
def test_bad_recognizability_statistics_are_rebuilt(splits, capsys, change):
    good = real_statistics(splits, per_class=20)
    rewrite(only_entry("recognizability_stats"), change)
    capsys.readouterr()
    again = real_statistics(splits, per_class=20)
    one_warning(capsys)
    for key in ("knn", "nearest", "index"):
        assert all(torch.equal(a, b) for a, b in zip(again[key], good[key], strict=True)), key


def test_a_prior_of_the_wrong_types_is_rebuilt(splits, capsys, monkeypatch):
    real_fit = priors.fit_prior
    monkeypatch.setattr(priors, "fit_prior", lambda *a, **kw: real_fit(*a, **{**kw, "gmm_dims": 4, "gmm_components": 2}))
    good = load_prior(splits, components=12)
    rewrite(prior_cache_path(good.key), lambda p: p.update(gmm_weights=p["gmm_weights"].double(), eps="0.01"))
    capsys.readouterr()
    again = load_prior(splits, components=12)
    one_warning(capsys)
    assert torch.equal(again.basis, good.basis) and isinstance(again.eps, float)
