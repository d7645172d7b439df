"""examples/course.ipynb (small settings) and examples/shapes_world.ipynb run top to bottom within the 3-minute budget."""

import time
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "course.ipynb"
SHAPES_NOTEBOOK = NOTEBOOK.with_name("shapes_world.ipynb")
BUDGET_SECONDS = 180


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


def _execute(path: Path, tmp_path: Path) -> list:
    """Run the committed (output-free) notebook in ``tmp_path`` within the budget; return its code cells."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    start = time.perf_counter()
    client = nbclient.NotebookClient(nb, timeout=BUDGET_SECONDS, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    seconds = time.perf_counter() - start
    assert seconds <= BUDGET_SECONDS, f"the notebook took {seconds:.0f} s"
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.mark.slow  # about a minute on 2 shared CPU cores
def test_course_notebook_runs(tmp_path, mnist_root, monkeypatch):
    monkeypatch.setenv("REPLEARN_DATA_DIR", str(mnist_root))
    monkeypatch.setenv("REPLEARN_COURSE_QUICK", "1")
    code = _execute(NOTEBOOK, tmp_path)
    everything = "\n".join(_text(c) for c in code)
    assert "3·2 + 5·4 = 6 + 20 = 26 -> ReLU -> 26" in everything
    assert "prediction:" in everything
    for layer in ("input", "blocks.0", "blocks.2", "logits"):
        assert f"{layer:>9}  probe accuracy" in everything
    figures = sum(1 for c in code for o in c.outputs if "image/png" in o.get("data", {}))
    assert figures == 8  # every figure cell drew its figure
    for depth in (1, 3, 6):
        assert (tmp_path / "outputs" / "course" / f"mlp_d{depth}" / "final.json").is_file()


@pytest.mark.slow  # about 100 s on 2 shared CPU cores, most of it two 1-epoch trainings on the generated images
def test_shapes_world_notebook_runs(tmp_path):
    code = _execute(SHAPES_NOTEBOOK, tmp_path)  # its generated data sets go to the tests' temporary cache
    everything = "\n".join(_text(c) for c in code)
    assert "images (16, 1, 28, 28) torch.uint8" in everything
    assert "level 2: l_corner, t_junction, x_junction, square, triangle, filled_square" in everything
    assert "twin label: more_" in everything
    accuracy = float(everything.split("objects (8 classes): test accuracy ")[1].split()[0])
    assert accuracy > 0.9  # one epoch of the depth-4 CNN: about 0.99
    for layer in ("blocks.0", "blocks.3", "head"):
        assert f"{layer:>9}  " in everything  # a row of level fractions per layer
    figures = sum(1 for c in code for o in c.outputs if "image/png" in o.get("data", {}))
    assert figures == 7  # every figure cell drew its figure; the last draws one per level
    for name in ("parts_d4", "strokes_d4"):
        assert (tmp_path / "outputs" / "shapes_world" / name / "final.json").is_file()
