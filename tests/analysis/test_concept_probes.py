"""Within-class concept probes: targets from masks, the class regressed out, R^2 against an explicit oracle."""

import math

import numpy as np
import pytest
import torch

from replearn.analysis.concept_probes import (
    ALPHA_GRID,
    ConceptTargets,
    components_per_image,
    concept_probe_layers,
    part_targets,
    within_class_probe,
)
from replearn.dissection.concepts import Concept, ConceptMasks
from replearn.errors import ReplearnError

pytestmark = pytest.mark.usefixtures("one_thread")


def _targets(values, valid=None, kinds=None, levels=None) -> ConceptTargets:
    """Targets named c0:<kind>, c1:<kind>, ... (level 1 and kind presence unless told)."""
    n, t = values.shape
    kinds = kinds or ["presence"] * t
    return ConceptTargets(values.float(), [f"c{j}:{kinds[j]}" for j in range(t)], [f"c{j}" for j in range(t)],
                          torch.tensor(levels or [1] * t), kinds,
                          torch.ones(n, t, dtype=torch.bool) if valid is None else valid)


def _classes(n, k=4):
    return torch.arange(n) % k


# ----------------------------------------------------------------------------- targets from masks


def test_part_targets_presence_count_and_position():
    masks = torch.zeros(3, 2, 8, 8, dtype=torch.bool)  # 3 images, concepts a (level 1) and b (level 2)
    masks[0, 0, 2, 5] = True  # one pixel at row 2, column 5
    masks[2, 0, 0:2, 0:2] = True  # two blobs: rows 0-1 x cols 0-1 and rows 6-7 x cols 6-7
    masks[2, 0, 6:8, 6:8] = True
    masks[:, 1, 4, 4] = True  # b everywhere
    cm = ConceptMasks(masks, [Concept("a", 1), Concept("b", 2)])
    t = part_targets(cm)
    assert t.names[:4] == ["a:presence", "a:count", "a:position_y", "a:position_x"] and len(t.names) == 8
    assert t.level.tolist() == [1] * 4 + [2] * 4 and t.kind[4:] == ["presence", "count", "position_y", "position_x"]
    a = t.values[:, :4]
    assert a[:, 0].tolist() == [1, 0, 1] and a[:, 1].tolist() == [1, 0, 2]
    assert a[0, 2].item() == pytest.approx(2 / 7) and a[0, 3].item() == pytest.approx(5 / 7)
    assert a[2, 2].item() == pytest.approx(0.5) and a[2, 3].item() == pytest.approx(0.5)
    # Positions are undefined where the part is absent: invalid, and NaN so that nothing can use them silently.
    assert t.valid[:, 2].tolist() == [True, False, True] and t.valid[:, :2].all()
    assert math.isnan(a[1, 2].item()) and math.isnan(a[1, 3].item())
    assert part_targets(cm, levels=(2,)).names == t.names[4:]
    with pytest.raises(ReplearnError, match="no concept has a level"):
        part_targets(cm, levels=(3,))


def test_count_is_per_image_and_never_joins_touching_images():
    stack = np.zeros((5, 4, 4), dtype=bool)
    # Images 0 and 1 both have a pixel at (1, 1): neighbours along the stack axis, which must not join them.
    stack[0, 1, 1] = True
    stack[1, 1, 1] = stack[1, 3, 3] = True
    stack[2, 0, 0] = stack[2, 1, 1] = True  # diagonal neighbours: one 8-connected component
    stack[4, 0, 0] = stack[4, 0, 2] = stack[4, 3, 3] = True  # three separate pixels (image 3 is empty)
    assert components_per_image(stack).tolist() == [1, 2, 1, 0, 3]
    assert components_per_image(np.zeros((2, 4, 4), dtype=bool)).tolist() == [0, 0]
    masks = torch.from_numpy(stack)[:, None]
    assert part_targets(ConceptMasks(masks, [Concept("a", 1)])).values[:, 1].tolist() == [1, 2, 1, 0, 3]


# ----------------------------------------------------------------------------- the probe


def _planted(n=1600, seed=0):
    """A target = class offset + within-class deviation, and three layers: the deviation, the class, noise."""
    gen = torch.Generator().manual_seed(seed)
    y = _classes(n)
    dev = torch.randn(n, generator=gen)
    target = torch.tensor([0.0, 2.0, 4.0, 6.0])[y] + dev
    noise = lambda d: torch.randn(n, d, generator=gen)  # noqa: E731
    feats = {
        "deviation": torch.cat([dev[:, None] + 0.05 * noise(1), noise(8)], 1),
        "class_only": torch.cat([3 * torch.nn.functional.one_hot(y, 4).float(), target.sub(dev)[:, None], 0 * noise(3)], 1),
        "class_plus_noise": torch.cat([3 * torch.nn.functional.one_hot(y, 4).float(), noise(20)], 1),
        "noise": noise(20),
    }
    return feats, _targets(target[:, None]), y


def test_within_class_deviation_decodes_and_the_class_alone_does_not():
    feats, targets, y = _planted()
    # The fixture is meaningful: the class alone explains most of the target's total variance.
    class_mean = torch.tensor([0.0, 2.0, 4.0, 6.0])[y]
    assert torch.corrcoef(torch.stack([class_mean, targets.values[:, 0]]))[0, 1] > 0.9
    res = concept_probe_layers(feats, targets, y)
    r2 = {name: r["per_target"]["c0:presence"] for name, r in res.items()}
    assert r2["deviation"] > 0.95
    assert abs(r2["class_only"]) < 0.02  # the point of regressing the class out
    assert -0.05 < r2["class_plus_noise"] <= 0.05
    assert -0.05 < r2["noise"] <= 0.05
    assert res["deviation"]["l1"] == pytest.approx(r2["deviation"])
    assert res["deviation"]["by_kind"]["presence"]["l1"] == pytest.approx(r2["deviation"])
    assert all(r["alpha"]["c0:presence"] in ALPHA_GRID for r in res.values())


def test_positions_leave_out_images_without_the_part():
    n = 1600
    gen = torch.Generator().manual_seed(3)
    y = _classes(n)
    present = torch.rand(n, generator=gen) < 0.5
    pos = torch.rand(n, generator=gen)
    # Where the part is absent the feature is unrelated noise and the target NaN (as part_targets leaves it).
    feat = torch.where(present, pos, 3 * torch.randn(n, generator=gen))[:, None]
    values = torch.stack([present.float(), torch.where(present, pos, torch.nan)], 1)
    valid = torch.stack([torch.ones(n, dtype=torch.bool), present], 1)
    targets = _targets(values, valid, kinds=["presence", "position_y"])
    res = concept_probe_layers({"f": feat}, targets, y)["f"]["per_target"]
    assert res["c1:position_y"] > 0.95
    assert not math.isnan(res["c0:presence"])


def test_targets_without_within_class_variance_are_nan():
    n = 400
    y = _classes(n)
    gen = torch.Generator().manual_seed(1)
    varied = torch.randn(n, generator=gen)
    values = torch.stack([y.float(), varied, torch.zeros(n), varied], 1)  # constant within class / varied / constant
    rare = torch.zeros(n, dtype=torch.bool)
    rare[::16] = True  # the last target is valid on 25 rows: 13 fit, 12 eval, too few beyond the class means
    valid = torch.stack([torch.ones(n, dtype=torch.bool)] * 3 + [rare], 1)
    targets = _targets(values, valid, levels=[1, 1, 2, 2])
    feats = torch.randn(n, 5, generator=gen)
    res = within_class_probe(feats[:200], targets.subset(slice(0, 200)), y[:200],
                             feats[200:], targets.subset(slice(200, None)), y[200:])
    assert math.isnan(res["per_target"]["c0:presence"]) and math.isnan(res["per_target"]["c2:presence"])
    assert not math.isnan(res["per_target"]["c1:presence"])
    assert res["l1"] == pytest.approx(res["per_target"]["c1:presence"])  # NaN left out of the level mean
    assert math.isnan(res["l2"]) and math.isnan(res["per_target"]["c3:presence"])
    # Varied on the fit split but constant within class on the eval split: NaN too.
    eval_values = values[200:].clone()
    eval_values[:, 1] = y[200:].float()
    res = within_class_probe(feats[:200], targets.subset(slice(0, 200)), y[:200], feats[200:],
                             _targets(eval_values, valid[200:], levels=[1, 1, 2, 2]), y[200:])
    assert math.isnan(res["per_target"]["c1:presence"])


def _explicit_r2(xf, tf, vf, yf, xe, te, ve, ye, alpha, k=4):
    """The probe written out row by row in numpy, for one target, at a fixed strength."""
    xf, xe, tf, te = (np.asarray(a, dtype=np.float64) for a in (xf, xe, tf, te))
    yf, ye, vf, ve = (np.asarray(a) for a in (yf, ye, vf, ve))
    means = np.stack([xf[yf == c].mean(0) for c in range(k)])
    zf = xf - means[yf]
    scale = 1.0 / np.sqrt((zf ** 2).mean())
    zf, ze = zf * scale, (xe - means[ye]) * scale
    z, t, y = zf[vf], tf[vf], yf[vf]
    zc = z - np.stack([z[y == c].mean(0) for c in range(k)])[y]
    tc = t - np.array([t[y == c].mean() for c in range(k)])[y]
    def ridge(a):
        inverse = np.linalg.inv(zc.T @ zc + a * len(t) * np.eye(z.shape[1]))
        return inverse @ zc.T @ tc, np.trace(zc @ inverse @ zc.T)

    if alpha is None:  # generalized cross-validation over the grid; ties to the stronger ridge
        scores = []
        for a in ALPHA_GRID:
            w, df = ridge(a)
            scores.append(((tc - zc @ w) ** 2).sum() / (len(t) - k - df) ** 2)
        alpha = ALPHA_GRID[len(scores) - 1 - int(np.argmin(scores[::-1]))]
    w, _ = ridge(alpha)
    z, t, y = ze[ve], te[ve], ye[ve]
    resid = t - z @ w
    sse = sum(((resid[y == c] - resid[y == c].mean()) ** 2).sum() for c in range(k))
    sst = sum(((t[y == c] - t[y == c].mean()) ** 2).sum() for c in range(k))
    return 1 - sse / sst, alpha


@pytest.mark.parametrize("alpha", [1e-3, 1.0, None])
def test_matches_an_explicit_ridge_with_the_class_regressed_out(alpha):
    """R^2 (and, with alpha=None, the strength chosen by generalized cross-validation) as written out by hand."""
    n, d = 600, 12
    gen = torch.Generator().manual_seed(5)
    y = _classes(n)
    x = torch.randn(n, d, generator=gen) + torch.randn(4, d, generator=gen)[y] * 3
    present = torch.rand(n, generator=gen) < 0.6  # a position-like target valid on 60% of the rows
    values = torch.stack([x[:, 0] + 0.5 * x[:, 1] + torch.randn(n, generator=gen), x[:, 2] - x[:, 3] + y,
                          torch.randn(n, generator=gen)], 1)  # noisy / exact on 60% of the rows / pure noise
    valid = torch.stack([torch.ones(n, dtype=torch.bool), present, torch.ones(n, dtype=torch.bool)], 1)
    targets = _targets(torch.where(valid, values, torch.nan), valid)
    fit, ev = slice(0, 350), slice(350, None)
    res = within_class_probe(x[fit], targets.subset(fit), y[fit], x[ev], targets.subset(ev), y[ev], alpha=alpha)
    for j in range(3):
        expected, chosen = _explicit_r2(x[fit], values[fit, j], valid[fit, j], y[fit], x[ev], values[ev, j],
                                        valid[ev, j], y[ev], alpha)
        assert res["per_target"][f"c{j}:presence"] == pytest.approx(expected, abs=1e-9)
        assert res["alpha"][f"c{j}:presence"] == chosen


def test_concept_probe_layers_splits_once_and_reports_bad_input():
    feats, targets, y = _planted(n=400)
    nan_layer = feats["deviation"].clone()
    nan_layer[3, 0] = torch.nan
    res = concept_probe_layers({"a": feats["deviation"], "b": feats["deviation"], "bad": nan_layer}, targets, y, seed=4)
    assert res["a"] == res["b"]  # the same split for every layer
    assert math.isnan(res["bad"]["l1"]) and math.isnan(res["bad"]["per_target"]["c0:presence"])
    assert concept_probe_layers({"a": feats["deviation"]}, targets, y, seed=5)["a"] != res["a"]
    # Wider layers are randomly projected first: the deviation survives a projection of 9 features to 6.
    assert concept_probe_layers({"a": feats["deviation"]}, targets, y, max_dim=6)["a"]["l1"] > 0.5
    with pytest.raises(ReplearnError, match="rows for 400 images"):
        concept_probe_layers({"a": feats["deviation"][:300]}, targets, y)
    with pytest.raises(ReplearnError, match="fit_fraction"):
        concept_probe_layers(feats, targets, y, fit_fraction=1.0)
    with pytest.raises(ReplearnError, match="alpha"):
        concept_probe_layers(feats, targets, y, alpha=0.0)


# ----------------------------------------------------------------------------- real MNIST


def test_pixels_decode_part_positions_within_class_on_real_mnist(mnist_root, cache_dir):
    """On 500 real test digits the pixels carry the parts' within-class positions; random features do not.

    (Within a class, the pixels hardly decode whether a part is there at all - R^2 ~0.02 on 2000 digits -
    so presence is not what this asserts.) Pixels are 2x2 average-pooled (196 features) to keep the test fast.
    """
    from replearn.data import load_raw
    from replearn.dissection.concept_cache import load_concept_masks

    raw = load_raw("mnist", mnist_root)
    images, labels = raw["test_images"][:500, None], raw["test_labels"][:500].long()
    targets = part_targets(load_concept_masks(images, labels, use_cache=False))
    pixels = torch.nn.functional.avg_pool2d(images.float() / 255, 2).flatten(1)  # (500, 196)
    noise = torch.randn(500, pixels.shape[1], generator=torch.Generator().manual_seed(0))
    res = concept_probe_layers({"pixels": pixels, "random": noise}, targets, labels)

    def position(layer):
        return float(np.mean([res[layer]["by_kind"][kind][level] for kind in ("position_x", "position_y")
                              for level in ("l1", "l2")]))

    assert position("pixels") > 0.05 and position("pixels") > position("random") + 0.05, (position("pixels"),
                                                                                          position("random"))
    for level in ("l1", "l2"):
        assert abs(res["random"][level]) < 0.02 and res["pixels"][level] > res["random"][level]
