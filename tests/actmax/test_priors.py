"""Act-max data priors: fitting, the per-user cache (corrupt entries rebuilt), wrong data refused, densities, transforms."""

import math

import pytest
import torch

import replearn.actmax.priors as priors
from replearn.actmax.ascent import maximize_activations
from replearn.actmax.priors import DataPrior, fit_prior, load_prior, prior_cache_path, random_transform
from replearn.errors import ReplearnError
from replearn.models import MLP

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fitted(splits) -> DataPrior:
    return fit_prior(splits.train_x, splits.name, components=40, gmm_dims=8, gmm_components=3)


def test_fit_render_encode(splits, fitted):
    prior = fitted
    assert prior.dims == 40 and prior.gmm_dims == 8 and prior.image_shape == (1, 28, 28)
    assert torch.all(prior.scale[:-1] >= prior.scale[1:])  # by decreasing variance
    torch.testing.assert_close(prior.basis @ prior.basis.T, torch.eye(40), atol=1e-4, rtol=0)
    z = prior.encode(splits.test_x[:16].float() / 255)  # (16, K)
    assert z.shape == (16, 40)
    # Training codes are whitened: unit variance along each kept direction.
    train_z = prior.encode(splits.train_x.float() / 255)
    assert abs(float(train_z.var(0).mean()) - 1) < 0.05
    images = prior.render(z)
    assert images.shape == (16, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    # 40 directions reconstruct a test image much better than the mean image alone does.
    real = splits.test_x[:16].float() / 255
    mean_only = prior.render(torch.zeros(16, 40))
    assert (images - real).pow(2).mean() < 0.5 * (mean_only - real).pow(2).mean()


def test_densities(splits, fitted):
    prior = fitted
    real = prior.encode(splits.test_x[:32].float() / 255)
    for kind in ("gaussian", "gmm"):  # codes 4x too far from the mean are atypical under both
        assert prior.log_density(real, kind).mean() > prior.log_density(4 * real, kind).mean()
    # The mixture knows the class clusters: structureless codes with the same spread are less likely.
    assert prior.log_density(real, "gmm").mean() > prior.log_density(torch.randn(32, 40), "gmm").mean() + 5
    # The radial density peaks at the typical radius sqrt(K - 1), not at the mean image (radius 0).
    direction = torch.nn.functional.normalize(torch.randn(1, 40), dim=1)
    radii = torch.tensor([0.5, 3.0, math.sqrt(39), 10.0, 20.0])
    dens = prior.log_density(direction * radii[:, None], "gaussian")
    assert int(dens.argmax()) == 2
    with pytest.raises(ReplearnError, match="density"):
        prior.log_density(real, "laplace")


def test_cached_once_and_corrupt_cache_rebuilt(splits, cache_dir, monkeypatch, capsys):
    calls = []
    real_fit = priors.fit_prior

    def counting_fit(*args, **kw):
        calls.append(1)
        return real_fit(*args, **{**kw, "components": 30, "gmm_dims": 6, "gmm_components": 2})

    monkeypatch.setattr(priors, "fit_prior", counting_fit)
    first = load_prior(splits, components=30)
    second = load_prior(splits, components=30)
    assert len(calls) == 1 and torch.equal(first.basis, second.basis)
    path = prior_cache_path(first.key)
    assert path.is_file() and str(path).startswith(str(cache_dir))
    path.write_bytes(b"not a torch file")
    third = load_prior(splits, components=30)
    assert len(calls) == 2 and torch.equal(third.basis, first.basis)
    assert "rebuilding" in capsys.readouterr().err
    assert load_prior(splits, components=30).key == first.key and len(calls) == 2  # the rebuilt file is good


def test_unwritable_cache_still_works(splits, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("REPLEARN_CACHE_DIR", str(blocker / "cache"))  # a folder under a file cannot be made
    prior = load_prior(splits, components=20)
    assert prior.dims == 20 and "REPLEARN_CACHE_DIR" in capsys.readouterr().err


def test_prior_of_other_data_is_refused(fitted):
    prior = fitted
    with pytest.raises(ReplearnError, match="fitted on synthetic.*fashion_mnist"):
        prior.check("fashion_mnist", (1, 28, 28))
    prior.check("synthetic", (1, 28, 28))
    other_size = DataPrior(**{**prior.__dict__, "image_shape": (1, 32, 32)})
    with pytest.raises(ReplearnError, match="fitted on synthetic images of shape \\(1, 32, 32\\)"):
        maximize_activations(MLP(depth=1, width=8), "head", steps=2, param="gmm", prior=other_size, progress=False)
    with pytest.raises(ReplearnError, match="needs a fitted prior"):
        maximize_activations(MLP(depth=1, width=8), "head", steps=2, param="pca", progress=False)


def test_cache_of_other_dataset_is_not_reused(splits, synthetic, cache_dir):
    a = load_prior(splits, components=20)
    other = synthetic(seed=1)
    other.name = "other"
    b = load_prior(other, components=20)
    assert a.key != b.key and b.dataset == "other"
    # A cache file holding another dataset's prior under this key is rejected and rebuilt.
    prior_cache_path(b.key).write_bytes(prior_cache_path(a.key).read_bytes())
    assert load_prior(other, components=20).dataset == "other"


def test_random_transform_seeded_and_identity():
    images = torch.rand(4, 1, 28, 28)
    a = random_transform(images, torch.Generator().manual_seed(0))
    b = random_transform(images, torch.Generator().manual_seed(0))
    assert a.shape == images.shape and torch.equal(a, b)
    assert not torch.allclose(a, images)
    same = random_transform(images, torch.Generator().manual_seed(0), shift=0, degrees=0, scale=(1, 1))
    torch.testing.assert_close(same, images, atol=1e-5, rtol=0)


@pytest.mark.parametrize("param", ["pca", "gaussian", "gmm"])
def test_actmax_with_prior_rises_and_stays_valid(splits, fitted, param):
    prior = fitted
    model = MLP(depth=2, width=32).eval()
    result = maximize_activations(model, "head", steps=30, lr=0.1, param=param, prior=prior, progress=False,
                                  mean=splits.mean, std=splits.std)
    assert float((result.objective_end > result.objective_start).float().mean()) >= 0.8
    pixels = result.images * splits.std + splits.mean
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5


def test_weight_ladder_keeps_largest_weight_reaching_floor(fitted):
    prior = fitted
    model = MLP(depth=1, width=8).eval()
    common = dict(steps=10, param="gaussian", prior=prior, prior_weight=[1.0, 5.0, 50.0], progress=False)
    low = maximize_activations(model, "head", units=[0, 1], objective_floor=torch.full((2,), -1e9), **common)
    high = maximize_activations(model, "head", units=[0, 1], objective_floor=torch.full((2,), 1e9), **common)
    assert low.prior_weights.tolist() == [50.0, 50.0]  # every weight reaches a floor of -1e9: the largest wins
    assert high.prior_weights.tolist() == [1.0, 1.0]  # none reaches 1e9: the smallest weight's image
    assert low.images.shape == (2, 1, 28, 28) and low.objective_end.shape == (2,)
    with pytest.raises(ReplearnError, match="objective_floor"):
        maximize_activations(model, "head", units=[0], objective_floor=torch.zeros(3), **common)
    with pytest.raises(ReplearnError, match="prior_weight"):
        maximize_activations(model, "head", units=[0], **{**common, "prior_weight": [-1.0]})


@pytest.mark.parametrize("override,match", [("prior=vae", "prior='vae' is invalid: choose one of auto, pixel"),
                                            ("prior_weights=[]", "prior_weights"),
                                            ("prior_weights=[-1]", "prior_weights")])
def test_visualize_config_rejects_bad_prior(compose_cfg, override, match):
    from replearn.conf.visualize import validate_visualize

    cfg = compose_cfg("visualize", ["run=somewhere", override])
    with pytest.raises(ReplearnError, match=match.replace("(", "\\(").replace("[", "\\[")):
        validate_visualize(cfg)


def test_config_prior_names_match_library():
    from replearn.actmax.choice import PRIOR_CHOICES
    from replearn.conf.visualize import PRIORS

    assert PRIORS == PRIOR_CHOICES
