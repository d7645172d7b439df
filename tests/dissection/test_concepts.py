"""Concept masks: hand-drawn shapes with known parts, mask layout, the cache, and plausibility on real MNIST."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from replearn.dissection import concept_cache
from replearn.dissection.concept_cache import load_concept_masks
from replearn.dissection.concepts import (
    LEVELS,
    Concept,
    ConceptMasks,
    build_concept_masks,
    concept_list,
    part_counts,
    part_points,
)
from replearn.errors import ReplearnError

H = W = 28


def blank() -> np.ndarray:
    return np.zeros((H, W), np.uint8)


def ring() -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    d = np.hypot(yy - 14, xx - 14)
    image = blank()
    image[(d >= 4) & (d <= 7)] = 255
    return image


def letter_l() -> np.ndarray:
    image = blank()
    image[5:22, 8:11] = 255  # the upright
    image[19:22, 8:23] = 255  # the foot
    return image


def plus() -> np.ndarray:
    image = blank()
    image[4:25, 13:16] = 255
    image[13:16, 4:25] = 255
    return image


def cross_x() -> np.ndarray:
    image = blank()
    for t in range(-9, 10):
        for w in (-1, 0, 1):
            image[14 + t, 14 + t + w] = 255
            image[14 + t, 14 - t + w] = 255
    return image


def letter_t() -> np.ndarray:
    image = blank()
    image[5:8, 5:24] = 255
    image[5:24, 13:16] = 255
    return image


def vertical_bar() -> np.ndarray:
    image = blank()
    image[4:25, 12:16] = 255
    return image


def diagonal_up() -> np.ndarray:
    """A "/" stroke: going right, it goes up (towards row 0)."""
    image = blank()
    for t in range(-8, 9):
        image[14 - t, 14 + t - 1 : 14 + t + 2] = 255
    return image


def stack(*images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images))[:, None]  # (N, 1, H, W) uint8


def near(points, target, tol=2.0) -> bool:
    return any(np.hypot(p[0] - target[0], p[1] - target[1]) <= tol for p in points)


# ----------------------------------------------------------------------------- parts of hand-drawn shapes


def test_ring_has_one_loop_and_no_endpoints():
    parts = part_points(torch.from_numpy(ring()))
    assert parts["loops"] == 1
    assert parts["endpoints"] == [] and parts["junctions"] == []


def test_l_has_two_endpoints_and_one_corner():
    parts = part_points(torch.from_numpy(letter_l()))
    assert len(parts["endpoints"]) == 2
    assert near(parts["endpoints"], (6, 9)) and near(parts["endpoints"], (20, 21))
    assert len(parts["corners"]) == 1 and near(parts["corners"], (20, 9))
    assert parts["junctions"] == [] and parts["loops"] == 0


def test_plus_has_one_junction_and_four_endpoints():
    parts = part_points(torch.from_numpy(plus()))
    assert len(parts["junctions"]) == 1 and near(parts["junctions"], (14, 14), tol=1)
    assert len(parts["endpoints"]) == 4
    for tip in [(5, 14), (23, 14), (14, 5), (14, 23)]:
        assert near(parts["endpoints"], tip), (tip, parts["endpoints"])
    assert parts["corners"] == [] and parts["loops"] == 0


def test_diagonal_cross_is_one_junction():
    # skeletonize draws the middle of an X as a small blob: still one junction, not zero or two.
    parts = part_points(torch.from_numpy(cross_x()))
    assert len(parts["junctions"]) == 1 and near(parts["junctions"], (14, 14), tol=1)
    assert len(parts["endpoints"]) == 4


def test_t_has_one_junction_and_three_endpoints():
    parts = part_points(torch.from_numpy(letter_t()))
    assert len(parts["junctions"]) == 1 and near(parts["junctions"], (6, 14))
    assert len(parts["endpoints"]) == 3


def test_part_points_rejects_a_stack():
    with pytest.raises(ReplearnError, match=r"one \(H, W\) image"):
        part_points(torch.zeros(2, H, W))


# ----------------------------------------------------------------------------- masks


def masks_of(images: torch.Tensor, labels=None) -> dict[str, torch.Tensor]:
    labels = torch.zeros(len(images), dtype=torch.int64) if labels is None else labels
    built = build_concept_masks(images, labels, [str(i) for i in range(10)])
    return {name: built.masks[:, k] for k, name in enumerate(built.names())}


def test_vertical_bar_lights_vertical_edges_and_strokes_not_horizontal():
    m = masks_of(stack(vertical_bar()))
    assert m["stroke_vertical"].sum() >= 40
    assert m["stroke_horizontal"].sum() == 0
    # an even-width bar's skeleton may bend by a pixel at its tips: a few diagonal pixels at most
    assert m["stroke_diag_up"].sum() + m["stroke_diag_down"].sum() <= 0.15 * m["stroke_vertical"].sum()
    # The bar's long sides are its left and right edges, of equal size; its two short ends are
    # top and bottom edges: far fewer pixels.
    assert m["edge_left"].sum() == m["edge_right"].sum() >= 4 * m["edge_top"].sum() > 0
    assert m["edge_top"].sum() == m["edge_bottom"].sum()
    # Polarity: the left edge lies left of the bar's centre, the right edge right of it.
    def mean_col(mask):
        return float(torch.nonzero(torch.as_tensor(mask))[:, -1].double().mean())

    assert mean_col(m["edge_left"]) < mean_col(m["stroke_vertical"]) < mean_col(m["edge_right"])
    # Transposed, it is a horizontal bar and the answer flips.
    t = masks_of(stack(vertical_bar().T.copy()))
    assert t["stroke_horizontal"].sum() >= 40 and t["stroke_vertical"].sum() == 0
    assert t["edge_top"].sum() >= 4 * t["edge_left"].sum()


def test_diagonal_names_follow_the_stroke_with_y_up():
    m = masks_of(stack(diagonal_up()))
    assert m["stroke_diag_up"].sum() >= 30 and m["stroke_diag_down"].sum() == 0
    # A "/" stroke is bounded by its top-left and bottom-right edges.
    along = m["edge_top_left"].sum() + m["edge_bottom_right"].sum()
    assert along > 3 * (m["edge_bottom_left"].sum() + m["edge_top_right"].sum())
    flipped = masks_of(stack(diagonal_up()[:, ::-1].copy()))  # mirrored left-right: "\"
    assert flipped["stroke_diag_down"].sum() >= 30 and flipped["stroke_diag_up"].sum() == 0


def test_ring_loop_mask_is_the_hole_and_its_ring_and_l_has_none():
    m = masks_of(stack(ring(), letter_l()))
    loop = m["loop"][0]
    yy, xx = np.mgrid[:H, :W]
    d = torch.from_numpy(np.hypot(yy - 14, xx - 14))
    assert loop[d < 3.5].all()  # the hole
    assert loop[(d >= 4) & (d <= 5)].all()  # the ink next to the hole
    assert not loop[d > 8].any()
    assert m["loop"][1].sum() == 0
    assert m["endpoint"][0].sum() == 0 and m["junction"][0].sum() == 0


def test_point_parts_are_small_discs():
    m = masks_of(stack(plus()))
    assert 9 <= m["junction"][0].sum() <= 25  # one disc of radius 2 (13 px)
    assert m["junction"][0, 14, 14]
    assert 4 * 9 <= m["endpoint"][0].sum() <= 4 * 25


def test_masks_are_bool_and_aligned_with_concept_list():
    images = stack(ring(), letter_l(), plus(), vertical_bar())
    labels = torch.tensor([0, 7, 3, 1])
    built = build_concept_masks(images, labels)
    concepts = concept_list([str(i) for i in range(10)])
    assert built.masks.dtype == torch.bool and built.masks.shape == (4, len(concepts), H, W)
    assert built.concepts == concepts and built.names() == [c.name for c in concepts]
    assert built.levels().dtype == torch.int64 and built.levels().tolist() == [c.level for c in concepts]
    assert len(built) == 4
    sub = built.subset(torch.tensor([2, 0]))
    assert len(sub) == 2 and torch.equal(sub.masks[1], built.masks[0])
    assert built.subset(1).masks.shape == (1, len(concepts), H, W)


def test_level3_mask_is_the_foreground_of_the_own_class_only():
    images = stack(plus(), letter_l())
    built = build_concept_masks(images, torch.tensor([3, 5]))
    names = built.names()
    level3 = [k for k, c in enumerate(built.concepts) if c.level == 3]
    for row, own in ((0, "digit_3"), (1, "digit_5")):
        for k in level3:
            if names[k] == own:
                ink = torch.from_numpy(images[row, 0].numpy() > 127)
                assert built.masks[row, k][ink].all()  # covers the ink ...
                assert built.masks[row, k].sum() <= ink.sum() * 2  # ... and only a rim around it
            else:
                assert built.masks[row, k].sum() == 0, (row, names[k])


def test_float_images_give_the_same_masks_as_uint8():
    images = stack(ring(), plus(), diagonal_up())
    labels = torch.tensor([0, 1, 2])
    as_uint8 = build_concept_masks(images, labels)
    as_float = build_concept_masks(images.float() / 255.0, labels)
    assert torch.equal(as_uint8.masks, as_float.masks)


def test_concept_list_levels_and_class_names():
    concepts = concept_list([str(i) for i in range(10)])
    levels = [c.level for c in concepts]
    assert levels == sorted(levels) and set(levels) == set(LEVELS)
    names = [c.name for c in concepts]
    for expected in ("edge_left", "edge_top_right", "stroke_diag_up", "endpoint", "junction", "corner", "curve", "loop",
                     "digit_3"):
        assert expected in names
    assert sum(c.level == 1 for c in concepts) == 12 and sum(c.level == 3 for c in concepts) == 10
    fashion = concept_list(["T-shirt/top", "Trouser", "Ankle boot"])
    assert [c.name for c in fashion if c.level == 3] == ["class_t_shirt_top", "class_trouser", "class_ankle_boot"]
    with pytest.raises(ReplearnError, match="duplicate"):
        concept_list(["a b", "a-b"])
    assert Concept("loop", 2) in concepts


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (torch.zeros(0, 1, H, W, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), "empty"),
        (torch.zeros(2, 1, H, W, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), "one label per image"),
        (torch.zeros(2, 3, H, W, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64), "grayscale"),
        (torch.zeros(2, 1, H, W, dtype=torch.uint8), torch.tensor([0, 12]), "class names"),
        (torch.full((2, 1, H, W), -0.42), torch.zeros(2, dtype=torch.int64), "not normalized"),
    ],
)
def test_bad_input_is_one_clear_error(images, labels, message):
    with pytest.raises(ReplearnError, match=message):
        build_concept_masks(images, labels, [str(i) for i in range(10)])


def test_blank_image_has_empty_masks():
    built = build_concept_masks(stack(blank()), torch.tensor([4]))
    assert built.masks.sum() == 0


# ----------------------------------------------------------------------------- the cache


def small_set():
    return stack(ring(), letter_l(), plus(), cross_x()), torch.tensor([0, 7, 4, 8])


def test_second_load_is_a_cache_hit(cache_dir, monkeypatch):
    images, labels = small_set()
    first = load_concept_masks(images, labels)
    assert len(list((cache_dir / "concepts").glob("*.pt"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("rebuilt instead of read from the cache")

    monkeypatch.setattr(concept_cache, "build_concept_masks", fail)
    second = load_concept_masks(images, labels)
    assert isinstance(second, ConceptMasks)
    assert torch.equal(first.masks, second.masks) and second.masks.dtype == torch.bool
    assert second.concepts == first.concepts
    assert torch.equal(second.masks, build_concept_masks(images, labels).masks)
    # Other images are another key: they are built, not served the first set's masks.
    with pytest.raises(AssertionError, match="rebuilt"):
        load_concept_masks(images.flip(-1), labels)


def test_corrupt_cache_file_is_rebuilt_with_one_warning(cache_dir, capsys):
    images, labels = small_set()
    good = load_concept_masks(images, labels)
    (path,) = (cache_dir / "concepts").glob("*.pt")
    path.write_bytes(b"not a torch file")
    capsys.readouterr()
    again = load_concept_masks(images, labels)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "unreadable" in err and "rebuilding" in err
    assert torch.equal(again.masks, good.masks)
    # ... and the rebuilt entry is good again: no warning on the next load.
    load_concept_masks(images, labels)
    assert capsys.readouterr().err == ""


def test_cache_entry_of_the_wrong_shape_is_not_trusted(cache_dir, capsys):
    images, labels = small_set()
    good = load_concept_masks(images, labels)
    (path,) = (cache_dir / "concepts").glob("*.pt")
    payload = torch.load(path, weights_only=True)
    payload["packed"] = payload["packed"][:10]
    torch.save(payload, path)
    again = load_concept_masks(images, labels)
    assert "rebuilding" in capsys.readouterr().err
    assert torch.equal(again.masks, good.masks)


def test_unwritable_cache_dir_still_works(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    # A cache folder under a plain file cannot be created, even by root (chmod would not stop root).
    monkeypatch.setenv("REPLEARN_CACHE_DIR", str(blocker / "cache"))
    images, labels = small_set()
    built = load_concept_masks(images, labels)
    assert torch.equal(built.masks, build_concept_masks(images, labels).masks)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "REPLEARN_CACHE_DIR" in err


def test_use_cache_false_writes_nothing(cache_dir):
    images, labels = small_set()
    load_concept_masks(images, labels, use_cache=False)
    assert not cache_dir.exists()


# ----------------------------------------------------------------------------- real MNIST


def test_real_mnist_statistics_are_plausible(mnist_root):
    from replearn.data import load_raw

    raw = load_raw("mnist", mnist_root)
    images, labels = raw["test_images"][:200, None], raw["test_labels"][:200].long()
    built = build_concept_masks(images, labels)
    names = built.names()
    counts = {key: value.numpy() for key, value in part_counts(images).items()}
    y = labels.numpy()
    for i in (0, 7, 61):  # the batch and the one-image API agree
        single = part_points(images[i, 0])
        assert single["loops"] == counts["loops"][i] and len(single["endpoints"]) == counts["endpoints"][i]

    looped = counts["loops"] > 0
    assert looped[np.isin(y, [0, 6, 8, 9])].mean() > 0.6
    assert looped[y == 1].mean() <= 0.1
    assert looped[np.isin(y, [1, 3, 5, 7])].mean() < 0.15
    assert np.median(counts["endpoints"][y == 1]) == 2
    assert counts["junctions"][y == 1].mean() < 0.2
    assert counts["junctions"][np.isin(y, [4, 8])].mean() > 0.5

    coverage = built.masks.float().mean(dim=(2, 3))  # (N, K): fraction of each image
    k = {name: i for i, name in enumerate(names)}
    ones, zeros = torch.from_numpy(y == 1), torch.from_numpy(y == 0)
    assert coverage[ones, k["stroke_vertical"]].mean() > 3 * coverage[ones, k["stroke_horizontal"]].mean()
    assert coverage[zeros, k["curve"]].mean() > 3 * coverage[ones, k["curve"]].mean()
    assert (coverage[:, : k["loop"] + 1].sum(0) > 0).all()  # every level-1/2 concept occurs somewhere
    # Level 3: each image lights exactly its own class.
    level3 = coverage[:, k["digit_0"] :]
    assert torch.equal(level3.argmax(1), labels) and ((level3 > 0).sum(1) == 1).all()
