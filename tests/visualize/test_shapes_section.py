"""A shapes run's page shows the three levels' exact masks beside the units whose best concept is at each level."""

import re

import pytest
import torch

from replearn.data import Splits
from replearn.device import single_thread
from replearn.dissection import dissect_model
from replearn.dissection.concept_cache import concepts_for
from replearn.dissection.dissect import LayerDissection
from replearn.errors import ReplearnError
from replearn.models import CNN
from replearn.shapes import class_names
from replearn.shapes.cache import load_split
from replearn.visualize.shapes_section import TITLE, is_shapes, level_units, shapes_section

pytestmark = pytest.mark.usefixtures("one_thread")
PROBE = 400  # test images dissected
SHAPES_CFG = {"name": "shapes", "size": 28, "labels": "parts", "val_size": 5000, "split_seed": 0}


def _dissection(layer, iou, levels, names=None) -> LayerDissection:
    iou = torch.tensor(iou, dtype=torch.float64)
    names = names or [f"c{i}" for i in range(iou.shape[1])]
    return LayerDissection(layer, "activation", iou, torch.zeros(iou.shape[0]), names,
                           torch.tensor(levels), iou_threshold=0.04, images=10)


def test_level_units_puts_hidden_units_and_distinct_concepts_first():
    levels = [1, 2, 3, 3]
    dissected = {
        "blocks.0": _dissection("blocks.0", [[0.05, 0.0, 0.0, 0.0],   # unit 0: line
                                             [0.0, 0.06, 0.0, 0.0],   # unit 1: part
                                             [0.0, 0.0, 0.07, 0.0],   # unit 2: object c2
                                             [0.0, 0.0, 0.09, 0.0],   # unit 3: object c2, better
                                             [0.0, 0.0, 0.0, 0.03]], levels),  # unit 4: below the threshold
        "head": _dissection("head", [[0.0, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.4]], levels),
    }
    assert level_units(dissected, 1, 4) == [("blocks.0", 0)]
    assert level_units(dissected, 2, 4) == [("blocks.0", 1)]
    # Hidden units first, highest IoU first, then the logits: one unit per concept before a second (c2 at the head).
    assert level_units(dissected, 3, 4) == [("blocks.0", 3), ("blocks.0", 2), ("head", 0), ("head", 1)]
    dissected["head"] = _dissection("head", [[0.0, 0.0, 0.5, 0.0], [0.0, 0.0, 0.45, 0.0], [0.0, 0.0, 0.0, 0.4]], levels)
    assert level_units(dissected, 3, 5)[2:] == [("head", 0), ("head", 2), ("head", 1)]
    assert level_units(dissected, 3, 1) == [("blocks.0", 3)]


@pytest.fixture(scope="module")
def shapes():
    """The generator's test split as a shapes run's splits (no training images), and a tiny CNN fitted briefly."""
    with single_thread():  # module fixtures start before the function-scoped one_thread
        return _shapes()


def _shapes():
    test = load_split("test", 28)
    x, y = test["images"], test["parts"]
    splits = Splits(x[:0], y[:0], x[:0], y[:0], x[:PROBE], y[:PROBE], name="shapes", classes=class_names("parts"),
                    mean=0.1, std=0.3, data_cfg=dict(SHAPES_CFG))
    torch.manual_seed(0)
    model = CNN(depth=2, channels=4, max_channels=8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for start in range(1000, 3000, 50):  # images the probe set does not hold
        loss = torch.nn.functional.cross_entropy(model(splits.normalize(x[start:start + 50])), y[start:start + 50])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    concepts = concepts_for(splits, PROBE)
    dissected = dissect_model(model, splits.test_x, concepts, normalize=splits.normalize, std=splits.std)
    return splits, model, concepts, dissected


def test_shapes_section_draws_each_level_beside_its_units(shapes, tmp_path):
    splits, model, concepts, dissected = shapes
    assert is_shapes(splits) and not is_shapes(Splits(*[splits.test_x] * 6, name="synthetic"))
    section = shapes_section(model, splits, dissected, tmp_path, n_images=PROBE, k=3)
    assert section.title == TITLE
    assert [f.path.name for f in section.figures] == ["shapes_levels.png", "shapes_level1.png", "shapes_level2.png",
                                                      "shapes_level3.png"]
    assert all(f.path.is_file() and f.path.stat().st_size > 5000 for f in section.figures)
    head, *rows = section.table
    assert head == ["layer", "level 1: lines", "level 2: parts", "level 3: objects"]
    assert [r[0] for r in rows] == list(dissected)
    for row, d in zip(rows, dissected.values()):  # each cell: labelled units at the level / all units
        counts = [int(cell.split("/")[0]) for cell in row[1:]]
        unit_levels = d.concept_levels[d.best_concept][d.labelled]
        assert counts == [int((unit_levels == lv).sum()) for lv in (1, 2, 3)]
        assert all(cell.split("/")[1].split(" ")[0] == str(len(d.best_iou)) for cell in row[1:])
    labelled = sum(int(d.labelled.sum()) for d in dissected.values())
    assert labelled > 0  # the fixture's network has units to show
    for level, figure in zip((1, 2, 3), section.figures[1:]):
        shown = level_units(dissected, level, 4)
        assert (f"the {len(shown)} units whose best concept" in figure.caption) == bool(shown)
        assert ("no unit of the dissected layers" in figure.caption) == (not shown)


def test_shapes_section_refuses_a_dissection_of_other_concepts(shapes, tmp_path):
    splits, model, concepts, dissected = shapes
    other = {"blocks.0": _dissection("blocks.0", [[0.5, 0.0]], [1, 3], names=["edge_left", "digit_0"])}
    with pytest.raises(ReplearnError, match="scored other concepts .* than the shapes generator's masks"):
        shapes_section(model, splits, other, tmp_path, n_images=PROBE)


def test_the_page_of_a_shapes_run_shows_the_section_after_the_dissection(shapes, tmp_path):
    from replearn.conf.visualize import VisualizeConfig
    from replearn.visualize.run import PAGE_ORDER, render_all

    splits, model, _, _ = shapes
    assert PAGE_ORDER.index("dissection") < PAGE_ORDER.index("shapes") < PAGE_ORDER.index("layers")
    opts = dict(layers=["blocks.1"], units=4, k=3, steps=4, embedding_samples=40, num_inputs=2, progress=False,
                dissect_images=PROBE)
    page = render_all(model, splits, tmp_path / "viz", VisualizeConfig(**opts)).read_text()
    headings = re.findall(r"<h2[^>]*>([^<]*)</h2>", page)
    assert headings.index("What each unit detects") + 1 == headings.index(TITLE)
    assert headings[headings.index(TITLE) + 1].startswith("blocks.1")
    assert 'src="shapes_level2.png"' in page and "shapes generator&#39;s exact masks" in page
    plain = render_all(model, splits, tmp_path / "plain", VisualizeConfig(**{**opts, "dissect": False})).read_text()
    assert TITLE not in plain and "shapes_level" not in plain  # nothing to match without a dissection


@pytest.mark.slow  # about 30 s: generates the 60k training images, trains 1 epoch, draws the page
def test_visualize_a_trained_shapes_run(compose_cfg, tmp_path):
    from replearn.training.loop import train
    from replearn.visualize.run import visualize_run

    run_dir = tmp_path / "run"
    train(compose_cfg("train", ["data=shapes", "model=cnn", "depth=2", "model.channels=4", "model.max_channels=8",
                                "trainer.epochs=1", "trainer.progress=false", "trainer.threads=1", "device=cpu"]),
          output_dir=run_dir)
    page = visualize_run(compose_cfg("visualize", [f"run={run_dir}", "units=4", "k=3", "steps=8", "embedding_samples=60",
                                                   "num_inputs=2", "dissect_images=500", "progress=false", "threads=1",
                                                   "device=cpu"]))
    headings = re.findall(r"<h2[^>]*>([^<]*)</h2>", page.read_text())
    assert headings.index("What each unit detects") + 1 == headings.index(TITLE)
    assert {f"shapes_level{lv}.png" for lv in (1, 2, 3)} <= {p.name for p in page.parent.glob("*.png")}
