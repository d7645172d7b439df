"""The recognizability score on data with known answers, and the prior comparison end to end."""

import pytest
import torch

from replearn.actmax.reference import load_reference, train_reference
from replearn.actmax.scoring import (
    class_logit_floor,
    nearest_distances,
    percentile_of,
    real_statistics,
    score_prototypes,
    spectral_centroid,
)
from replearn.errors import ReplearnError
from replearn.models import MLP

pytestmark = pytest.mark.usefixtures("one_thread", "cache_dir")


@pytest.fixture(scope="module")
def splits(synthetic):
    return synthetic(num_train=1500, num_test=400, val_size=300)  # the reference classifier needs more to learn from


@pytest.fixture(scope="module")
def reference(splits):
    return train_reference(splits.train_x, splits.train_y, 10, epochs=2)


def test_percentile_of():
    ref = torch.tensor([1.0, 2.0, 3.0, 4.0, float("nan")])
    assert percentile_of(0.5, ref) == 0 and percentile_of(2.0, ref) == 50 and percentile_of(9.0, ref) == 100
    assert percentile_of(1.0, torch.tensor([])) != percentile_of(1.0, torch.tensor([]))  # NaN


def test_nearest_distances_match_brute_force():
    gen = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (50, 1, 6, 6), dtype=torch.uint8, generator=gen)
    query = torch.rand(7, 1, 6, 6, generator=gen)
    got = nearest_distances(query, train, k=3, chunk=16)  # several chunks
    brute = torch.cdist(query.flatten(1), train.flatten(1).float() / 255).sort(1).values[:, :3]
    torch.testing.assert_close(got, brute, atol=1e-4, rtol=1e-4)
    with pytest.raises(ReplearnError, match="differ in shape"):
        nearest_distances(torch.rand(2, 1, 5, 5), train)


def _score(splits, reference, protos, classes):
    model = MLP(depth=1, width=16).eval()
    return score_prototypes(model, protos, splits, reference, real_statistics(splits, per_class=60), classes=classes)


def test_held_out_real_images_look_like_data(splits, reference):
    # Validation images are real images the statistics never saw: about 90% must land in each 5-95 band.
    protos = splits.val_x[:60].float() / 255
    rows = _score(splits, reference, protos, splits.val_y[:60].tolist())["classes"]
    for flag in ("knn5_in_band", "centroid_in_band", "not_copy", "recognized"):
        assert sum(r[flag] for r in rows) >= 0.75 * len(rows), flag


def test_copy_of_training_image_is_flagged(splits, reference):
    protos = splits.train_x[:10].float() / 255
    rows = _score(splits, reference, protos, splits.train_y[:10].tolist())["classes"]
    assert all(not r["not_copy"] and r["nearest_distance"] < 0.05 and r["nearest_percentile"] == 0 for r in rows)
    assert all(not r["all"] for r in rows)


def test_white_noise_does_not_look_like_data(splits, reference):
    noise = torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    score = _score(splits, reference, noise, list(range(10)))
    assert score["summary"]["knn5_in_band"] == 0 and score["summary"]["centroid_in_band"] == 0
    assert all(r["knn5_percentile"] == 100 and r["centroid_percentile"] == 100 for r in score["classes"])
    assert score["summary"]["all"] == 0


def test_logit_percentile_and_floor(splits, reference):
    model = MLP(depth=1, width=16).eval()
    floor = class_logit_floor(model, splits, percentile=50)
    assert floor.shape == (10,)
    # A real test image's own-logit percentile is its rank among its class.
    x = splits.test_x[:1].float() / 255
    c = int(splits.test_y[0])
    row = score_prototypes(model, x, splits, reference, real_statistics(splits, per_class=60), classes=[c])["classes"][0]
    with torch.no_grad():
        logits = model(splits.normalize(splits.test_x[splits.test_y == c]))[:, c]
    assert row["logit_percentile"] == pytest.approx(100 * float((logits <= row["logit"] + 1e-6).double().mean()), abs=0.5)


def test_bad_prototypes_are_refused(splits, reference):
    model = MLP(depth=1, width=16).eval()
    with pytest.raises(ReplearnError, match="pixels in \\[0, 1\\]"):
        score_prototypes(model, torch.full((1, 1, 28, 28), 2.0), splits, reference, classes=[0])
    with pytest.raises(ReplearnError, match="one per class"):
        score_prototypes(model, torch.zeros(2, 1, 28, 28), splits, reference, classes=[0])


def test_spectral_centroid_orders_smooth_and_noisy():
    smooth = torch.zeros(1, 1, 28, 28)
    smooth[..., 8:20, 8:20] = 1
    noisy = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert float(spectral_centroid(smooth)) < float(spectral_centroid(noisy))


def test_reference_cached_and_accurate(splits):
    net = load_reference(splits, epochs=6)
    again = load_reference(splits, epochs=6)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    with torch.no_grad():
        acc = float((net(splits.test_x.float() / 255).argmax(1) == splits.test_y).float().mean())
    assert acc > 0.9


@pytest.mark.slow
def test_priors_on_real_mnist(mnist_root, compose_cfg, tmp_path):
    """A briefly trained MLP on real MNIST: the data priors' class prototypes look more like digits than pixel ones."""
    from replearn.actmax.choice import compare_priors
    from replearn.runs.load import load_run
    from replearn.training.loop import train

    cfg = compose_cfg("train", ["depth=2", "trainer.epochs=1", "trainer.progress=false", "trainer.threads=1",
                                "device=cpu", f"data.root={mnist_root}"])
    train(cfg, output_dir=tmp_path / "run")
    run = load_run(tmp_path / "run")
    choice = compare_priors(run.model, run.splits(), names=["pixel", "gmm"], steps=128)
    pixel, gmm = choice.scores["pixel"]["summary"], choice.scores["gmm"]["summary"]
    assert choice.name == "gmm"
    assert gmm["knn5_in_band"] > pixel["knn5_in_band"] and gmm["recognized"] >= 8
    assert choice.prototypes["gmm"].shape == (10, 1, 28, 28)


def test_rank_prefers_targets_then_typical_prototypes():
    from replearn.actmax.scoring import rank_key

    base = {"all": 5, "recognized": 9, "maximizer": 9, "knn5_in_band": 6, "centroid_in_band": 6, "not_copy": 10,
            "mean_confidence": 0.9, "typicality_gap": 30.0}
    assert rank_key({**base, "all": 6, "typicality_gap": 45.0}) > rank_key(base)
    assert rank_key({**base, "typicality_gap": 10.0}) > rank_key({**base, "mean_confidence": 1.0})
    assert rank_key({**base, "typicality_gap": float("nan")}) < rank_key(base)
