"""The run page's act-max section: actmax.json, the prior-comparison figure and the score table."""

import json

import pytest

from replearn.actmax.choice import compare_priors
from replearn.models import MLP
from replearn.visualize.actmax_section import write_actmax_outputs
from replearn.visualize.page import write_page

pytestmark = pytest.mark.usefixtures("one_thread", "cache_dir")


@pytest.fixture(scope="module")
def splits(synthetic):
    return synthetic(num_train=1500, num_test=400, val_size=300)


def test_outputs_page_table_and_json(splits, tmp_path):
    """The chosen prior's score table reaches the page section and actmax.json (NaN written as null)."""
    model = MLP(depth=1, width=16).eval()
    choice = compare_priors(model, splits, names=["pixel", "pca"], steps=4)
    assert choice.name in ("pixel", "pca") and set(choice.scores) == {"pixel", "pca"}
    choice.scores["pca"]["classes"][0]["centroid_percentile"] = float("nan")
    section = write_actmax_outputs(choice, {"head": {"units": [0], "reached": 1}}, tmp_path, splits.classes)
    data = json.loads((tmp_path / "actmax.json").read_text())
    assert data["prior"] == choice.name and data["scores"]["pca"]["classes"][0]["centroid_percentile"] is None
    assert data["layers"]["head"]["reached"] == 1 and (tmp_path / "actmax_priors.png").is_file()
    header, *rows = section.table
    assert "recognized (mean conf.)" in header and [r[0].split()[0] for r in rows] == ["pixel", "pca"]
    assert sum("(chosen)" in r[0] for r in rows) == 1
    page = write_page([section], tmp_path / "index.html").read_text()
    assert "<table>" in page and "(chosen)" in page and "actmax_priors.png" in page


def test_controls_and_margins_on_page_and_json(splits, tmp_path):
    """Each prior's rows: the model, its controls, the margin; a missing shuffled-label control is said in one row."""
    model, control = MLP(depth=1, width=16).eval(), MLP(depth=1, width=16).eval()
    choice = compare_priors(model, splits, names=["pixel", "pca"], steps=4, controls={"random_init": control})
    missing = {"shuffled_labels": "not trained; run the analysis"}
    section = write_actmax_outputs(choice, {"head": {"units": [0], "reached": 1}}, tmp_path, splits.classes,
                                   missing_controls=missing)
    data = json.loads((tmp_path / "actmax.json").read_text())
    assert set(data["controls"]) == {"pixel", "pca"} and set(data["controls"]["pca"]) == {"random_init"}
    assert data["margins"]["pca"]["all"] == data["scores"]["pca"]["summary"]["all"] - \
        data["controls"]["pca"]["random_init"]["summary"]["all"]
    assert data["missing_controls"] == missing and data["ranked_by"] == "margin over the random-init control"
    assert "margin" in data["margin_is"]
    header, *rows = section.table
    networks = [r[1] for r in rows]
    assert networks == ["trained", "random-init control", "margin (trained - best control)"] * 2 + \
        ["shuffled-label control: not trained; run the analysis"]
    margin_row = rows[2]
    assert margin_row[-1] == f"{data['margins']['pixel']['all']:+d}" and len(margin_row) == len(header)
    assert "margin" in section.intro and "random-init control" in section.intro
