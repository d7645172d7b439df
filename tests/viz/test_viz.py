"""Plot functions render headless to PNG files; grids, scales, embeddings and the page builder behave."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.image import imread

from replearn.errors import ReplearnError
from replearn.models import CNN, MLP
from replearn.visualize.page import PageFigure, PageSection, write_page
from replearn.viz import (
    block_grid,
    embed_2d,
    first_layer_weights,
    image_grid,
    plot_activation_heatmap,
    plot_actmax,
    plot_embedding,
    plot_embeddings_by_layer,
    plot_feature_maps,
    plot_feature_maps_batch,
    plot_first_layer,
    plot_top_k,
)
from replearn.viz.grid import DPI, rescale_each, short_number, tile


def _saved_png(fig: Figure, path) -> np.ndarray:
    """Save headless, read the file back, check its pixel size matches the figure's."""
    assert isinstance(fig, Figure)
    fig.savefig(path, dpi=DPI)
    pixels = imread(path)
    width, height = fig.get_size_inches() * DPI
    assert abs(pixels.shape[1] - width) <= 2 and abs(pixels.shape[0] - height) <= 2
    # Not a blank canvas: something was drawn.
    assert pixels[..., :3].std() > 0.01
    return pixels


def test_tile_places_images_row_major_with_nan_gaps():
    images = np.arange(5 * 2 * 3, dtype=float).reshape(5, 2, 3)  # (N, H, W)
    mosaic = tile(images, ncols=2, pad=1, pad_y=2)
    assert mosaic.shape == (3 * 2 + 2 * 2, 2 * 3 + 1)
    np.testing.assert_array_equal(mosaic[0:2, 0:3], images[0])
    np.testing.assert_array_equal(mosaic[0:2, 4:7], images[1])
    np.testing.assert_array_equal(mosaic[4:6, 0:3], images[2])
    np.testing.assert_array_equal(mosaic[8:10, 0:3], images[4])
    assert np.isnan(mosaic[2:4]).all() and np.isnan(mosaic[:, 3]).all()
    assert np.isnan(mosaic[8:10, 4:7]).all()  # the empty sixth cell


def test_rescale_each_stretches_every_image_to_unit_range():
    images = np.stack([np.linspace(-3, 5, 16).reshape(4, 4), np.linspace(10, 11, 16).reshape(4, 4), np.ones((4, 4))])
    out = rescale_each(images)
    np.testing.assert_allclose(out[:2].min(axis=(1, 2)), 0.0)
    np.testing.assert_allclose(out[:2].max(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(out[2], 0.5)


def test_image_grid_scales(tmp_path):
    images = torch.randn(6, 1, 8, 8) * 3 + 1
    sym = image_grid(images, scale="symmetric", labels=[str(i) for i in range(6)], title="sym", colorbar=True)
    lo, hi = sym.axes[0].images[0].get_clim()
    assert lo == pytest.approx(-hi) and hi == pytest.approx(float(images.abs().max()))
    assert sym.axes[0].images[0].get_cmap().name.startswith("RdBu_r")
    _saved_png(sym, tmp_path / "sym.png")
    shared = image_grid(images, scale="shared")
    assert shared.axes[0].images[0].get_clim() == pytest.approx((float(images.min()), float(images.max())))
    fixed = image_grid(images, limits=(-1.0, 2.0))
    assert fixed.axes[0].images[0].get_clim() == (-1.0, 2.0)


def test_image_grid_draws_into_given_ax():
    fig = Figure()
    ax = fig.add_subplot(1, 2, 2)
    assert image_grid(torch.rand(4, 5, 5), ax=ax) is fig
    assert len(ax.images) == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"scale": "log"}, "scale"),
    ({"labels": ["a"]}, "labels"),
])
def test_image_grid_rejects_bad_input(kwargs, match):
    with pytest.raises(ReplearnError, match=match):
        image_grid(torch.rand(3, 1, 4, 4), **kwargs)


def test_image_grid_rejects_multichannel():
    with pytest.raises(ReplearnError, match="single-channel"):
        image_grid(torch.rand(3, 3, 4, 4))


def test_first_layer_weights_are_the_layer_parameters():
    mlp, cnn = MLP(depth=2, width=12), CNN(depth=2, channels=6, max_channels=12)
    w = first_layer_weights(mlp)
    assert w.shape == (12, 1, 28, 28)
    torch.testing.assert_close(w.reshape(12, -1), mlp.blocks[0].linear.weight.detach())
    f = first_layer_weights(cnn)
    assert f.shape == (6, 1, 3, 3)
    torch.testing.assert_close(f, cnn.blocks[0].conv.weight.detach())


def test_first_layer_plots_render(tmp_path):
    mlp, cnn = MLP(depth=1, width=10), CNN(depth=1, channels=8, max_channels=8)
    fig = plot_first_layer(first_layer_weights(mlp), units=[0, 3, 5])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["0", "3", "5"]
    lo, hi = fig.axes[0].images[0].get_clim()
    assert lo == pytest.approx(-hi)  # diverging scale centred at 0
    _saved_png(fig, tmp_path / "mlp.png")
    _saved_png(plot_first_layer(first_layer_weights(cnn)), tmp_path / "cnn.png")


def test_feature_map_plots_render(tmp_path):
    cnn = CNN(depth=2, channels=6, max_channels=12)
    x = torch.randn(3, 1, 28, 28)
    maps = cnn.blocks[0](x).detach()  # (3, 6, 14, 14)
    fig = plot_feature_maps_batch(maps, x, captions=["a", "b", "c"], title="blocks.0")
    # One shared colour range over every input's channels.
    clims = {ax.images[0].get_clim() for ax in fig.axes if ax.images and len(ax.texts) == 6}
    assert len(clims) == 1
    _saved_png(fig, tmp_path / "batch.png")
    _saved_png(plot_feature_maps(maps[0], image=x[0], channels=[1, 4]), tmp_path / "one.png")
    _saved_png(plot_feature_maps(maps[0] - 1.0), tmp_path / "signed.png")


def test_activation_heatmap_renders(tmp_path):
    acts = torch.relu(torch.randn(4, 50))
    fig = plot_activation_heatmap(acts, row_labels=list("abcd"), title="blocks.1")
    assert fig.axes[0].images[0].get_array().shape == (4, 50)
    _saved_png(fig, tmp_path / "hm.png")
    logits = torch.randn(4, 10)
    fig = plot_activation_heatmap(logits, unit_labels=[str(c) for c in range(10)])
    lo, hi = fig.axes[0].images[0].get_clim()
    assert lo == pytest.approx(-hi)  # signed values get a diverging scale
    _saved_png(fig, tmp_path / "logits.png")
    with pytest.raises(ReplearnError, match="(N, U)"):
        plot_activation_heatmap(torch.rand(2, 3, 4))


def test_top_k_and_block_grid(tmp_path):
    crops = torch.randint(0, 256, (5, 9, 1, 7, 7)).float()
    values = torch.rand(5, 9).sort(dim=1, descending=True).values
    fig = plot_top_k(crops, units=[2, 4, 6, 8, 10], values=values, title="top")
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels[0].startswith("2: ") and labels[-1].startswith("10: ") and len(labels) == 5
    _saved_png(fig, tmp_path / "topk.png")
    mosaic = fig.axes[0].images[0].get_array()
    # Every one of the 5 * 9 crops is in the mosaic: count pixels that are not gap.
    assert int((~np.ma.getmaskarray(mosaic)).sum()) == 5 * 9 * 49
    _saved_png(plot_top_k(torch.rand(3, 4, 1, 28, 28), unit_names=["0", "1", "2"]), tmp_path / "full.png")
    with pytest.raises(ReplearnError, match="unit indices"):
        plot_top_k(crops, units=[1])
    with pytest.raises(ReplearnError, match="image groups"):
        block_grid(torch.rand(3, 4))


def test_actmax_plot_renders(tmp_path):
    images = torch.randn(10, 1, 28, 28)
    fig = plot_actmax(images, unit_names=[f"class {c}" for c in range(10)], objective=torch.arange(10.0))
    assert fig.axes[0].texts[3].get_text() == "class 3: 3"
    _saved_png(fig, tmp_path / "am.png")


def test_short_number_labels():
    assert [short_number(v) for v in (341.7, -1234.0, 3.14159, 0.02712, 0.0)] == ["342", "-1234", "3.1", "0.027", "0"]


def test_embed_2d_pca_is_the_top_principal_plane():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(200, 6, generator=gen) * torch.tensor([5.0, 0.1, 2.0, 0.1, 0.1, 0.1])
    points = embed_2d(features.reshape(200, 2, 3), "pca")  # any trailing shape is flattened
    assert points.shape == (200, 2)
    spread = points.std(axis=0)
    assert spread[0] == pytest.approx(float(features[:, 0].std()), rel=0.1)
    assert spread[1] == pytest.approx(float(features[:, 2].std()), rel=0.1)
    np.testing.assert_array_equal(points, embed_2d(features, "pca"))


def test_embed_2d_tsne_is_seeded():
    features = torch.randn(40, 60, generator=torch.Generator().manual_seed(1))
    a, b = embed_2d(features, "tsne", seed=3, tsne_iter=250), embed_2d(features, "tsne", seed=3, tsne_iter=250)
    assert a.shape == (40, 2)
    np.testing.assert_array_equal(a, b)


def test_embed_2d_rejects_bad_input():
    with pytest.raises(ReplearnError, match="embedding="):
        embed_2d(torch.randn(10, 3), "umap")
    with pytest.raises(ReplearnError, match="at least 3"):
        embed_2d(torch.randn(2, 3))


def test_embedding_plots_render(tmp_path):
    labels = torch.arange(60) % 10
    points = np.random.default_rng(0).normal(size=(60, 2))
    fig = plot_embedding(points, labels, classes=[f"c{i}" for i in range(10)], title="blocks.0")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [f"c{i}" for i in range(10)]
    _saved_png(fig, tmp_path / "emb.png")
    fig = plot_embeddings_by_layer({f"l{i}": points for i in range(5)}, labels, title="all")
    assert sum(ax.get_visible() for ax in fig.axes) == 5
    _saved_png(fig, tmp_path / "all.png")


def test_write_page_links_relative_and_escapes(tmp_path):
    (tmp_path / "sub").mkdir()
    a, b = tmp_path / "a.png", tmp_path / "sub" / "b 1.png"
    sections = [
        PageSection("blocks.0", "first <layer>", [PageFigure(a, "weights & more")]),
        PageSection("head", "", [PageFigure(b, "logits")]),
    ]
    page = write_page(sections, tmp_path / "index.html", title="t", meta=["run: x"])
    text = page.read_text()
    assert 'src="a.png"' in text and 'src="sub/b 1.png"' in text
    assert "weights &amp; more" in text and "first &lt;layer&gt;" in text
    assert text.index('id="blocks-0"') < text.index('id="head"')
    assert str(tmp_path) not in text  # no absolute paths: the folder can be moved
    with pytest.raises(ReplearnError, match="outside"):
        write_page([PageSection("x", "", [PageFigure(tmp_path.parent / "c.png", "c")])], tmp_path / "i.html")


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_top_k_marks_dead_units_with_an_empty_block(tmp_path):
    examples = torch.rand(3, 4, 1, 5, 5)  # (U, k, 1, h, w)
    values = torch.tensor([[2.0, 1.0, 1.0, 0.5], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.5, 0.5]])
    fig = plot_top_k(examples, units=[7, 3, 9], values=values, dead=values[:, 0] <= 0)
    _saved_png(fig, tmp_path / "topk.png")
    assert _texts(fig) == ["7: 2", "3: dead", "9: 1"]
    mosaic = fig.axes[0].images[0].get_array()
    assert mosaic.mask.sum() > 0  # the dead unit's block is empty cells, not tied test images
    live = plot_top_k(examples, units=[7, 3, 9], values=values).axes[0].images[0].get_array()
    assert mosaic.mask.sum() - live.mask.sum() == 4 * 5 * 5  # exactly one block of k images blanked
    all_dead = plot_top_k(examples, dead=[True, True, True])
    assert _texts(all_dead) == ["0: dead", "1: dead", "2: dead"]
    with pytest.raises(ReplearnError, match="dead flags"):
        plot_top_k(examples, dead=[True])


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a 1-D boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.astype(int), [0]))))
    return list(zip(edges[::2], edges[1::2]))


def test_actmax_fades_and_labels_failed_units():
    images = torch.rand(3, 1, 6, 6)
    fig = plot_actmax(images, units=[4, 5, 6], objective=torch.tensor([1.5, 0.0, -0.2]))
    assert _texts(fig) == ["4: 1.5", "5: failed", "6: failed"]
    mosaic = np.ma.filled(fig.axes[0].images[0].get_array(), np.nan)
    cells = []  # the 6x6 tiles, read row-major from the mosaic's non-empty runs of rows and columns
    row_runs = _runs(np.isfinite(mosaic).any(axis=1))
    col_runs = _runs(np.isfinite(mosaic).any(axis=0))
    for r0, r1 in row_runs:
        for c0, c1 in col_runs:
            cell = mosaic[r0:r1, c0:c1]
            if np.isfinite(cell).all():
                cells.append(cell)
    assert len(cells) == 3
    spans = [float(c.max() - c.min()) for c in cells]
    assert spans[0] == pytest.approx(1.0) and spans[1] < 0.25 and spans[2] < 0.25


def _page_figures():
    """Every figure function the run page uses, called as the page calls it (16 units, 10 classes)."""
    from replearn.conf import CONFIG_DIR
    from replearn.trace import draw_network, forward_trace, load_network

    g = torch.Generator().manual_seed(0)
    classes = [str(c) for c in range(10)]
    labels = torch.arange(60) % 10
    units = [12, 3, 7, 0, 15, 9, 1, 4, 2, 5, 6, 8, 10, 11, 13, 14]
    captions = ["test #4021 (7)", "test #17 (2)", "test #998 (0)"]
    return {
        "conv filters": plot_first_layer(torch.randn(16, 1, 3, 3, generator=g), units=list(range(16))),
        "few conv filters": plot_first_layer(torch.randn(4, 1, 3, 3, generator=g)),
        "mlp units": plot_first_layer(torch.randn(16, 1, 28, 28, generator=g)),
        "feature maps": plot_feature_maps_batch(torch.rand(3, 32, 7, 7, generator=g), torch.rand(3, 1, 28, 28),
                                                channels=units, captions=captions,
                                                title="blocks.3 feature maps"),
        "one input's maps": plot_feature_maps(torch.rand(16, 14, 14, generator=g), image=torch.rand(1, 28, 28),
                                              title="blocks.0 feature maps"),
        "heatmap": plot_activation_heatmap(torch.rand(3, 256, generator=g), row_labels=captions,
                                           title="blocks.1 activations (256 units)"),
        "head heatmap": plot_activation_heatmap(torch.randn(3, 10, generator=g), row_labels=captions,
                                                unit_labels=classes, title="head activations (10 class logits)"),
        "top-k crops": plot_top_k(torch.rand(16, 9, 1, 3, 3, generator=g), units=units,
                                  values=torch.rand(16, 9) * 300, title="blocks.0: top-9 test images per channel"),
        "top-k images": plot_top_k(torch.rand(10, 9, 1, 28, 28, generator=g), units=list(range(10)),
                                   values=torch.rand(10, 9), unit_names=classes,
                                   title="head: top-9 test images per class logit"),
        "act-max": plot_actmax(torch.rand(16, 1, 28, 28, generator=g), units=units, objective=torch.randn(16) * 50,
                               title="blocks.2: activation maximization (blur prior)"),
        "act-max head": plot_actmax(torch.rand(10, 1, 28, 28, generator=g), unit_names=classes,
                                    objective=torch.randn(10) * 5,
                                    title="head: activation maximization (blur prior)"),
        "embedding": plot_embedding(np.random.default_rng(0).normal(size=(60, 2)), labels, classes=classes,
                                    title="blocks.1: PCA"),
        "overview": plot_embeddings_by_layer({name: np.random.default_rng(1).normal(size=(60, 2)) for name in
                                              ["input (pixels)", "blocks.0", "blocks.1", "blocks.2", "head"]},
                                             labels, classes=classes,
                                             title="PCA of test representations, layer by layer"),
        "summary": _summary_figure(),
        "trace": draw_network(forward_trace(load_network(CONFIG_DIR / "networks" / "course_example.yaml"))),
    }


def test_every_page_figure_keeps_its_text_inside_at_its_saved_size():
    from figure_text import outside_figure

    clipped = {name: bad for name, fig in _page_figures().items() if (bad := outside_figure(fig))}
    assert not clipped, clipped


def test_page_figures_have_no_colliding_labels():
    from figure_text import overlapping, text_boxes

    collisions = {name: pairs for name, fig in _page_figures().items() if (pairs := overlapping(text_boxes(fig)))}
    assert not collisions, collisions


def test_context_crops_keep_the_field_bright_and_the_digit_faint():
    from replearn.viz.topk_plot import FAINT, context_crops

    images = torch.full((2, 1, 10, 10), 100.0)  # (N, 1, H, W)
    images[1] = 200.0
    indices = torch.tensor([[1, 0]])  # (U=1, k=2)
    boxes = torch.tensor([[[4, 4, 7, 7], [0, 0, 2, 2]]])  # a 3x3 field inside, a 2x2 field clipped at the corner
    crops = context_crops(images, indices, boxes, side=6)
    assert crops.shape == (1, 2, 1, 6, 6)
    inner = crops[0, 0, 0]  # window rows/cols 2..7 of image 1; the field (4..6) sits at 2..4
    assert (inner[2:5, 2:5] == 200).all()
    assert inner[0, 0] == pytest.approx(200 * FAINT) and inner[5, 5] == pytest.approx(200 * FAINT)
    corner = crops[0, 1, 0]  # window starts at -2: two rows/cols beyond the image are 0
    assert (corner[:2] == 0).all() and (corner[:, :2] == 0).all()
    assert (corner[2:4, 2:4] == 100).all() and corner[5, 5] == pytest.approx(100 * FAINT)
    with pytest.raises(ReplearnError, match="boxes"):
        context_crops(images, indices, boxes[:, :1], side=6)


def _summary_figure():
    from replearn.viz.summary import SummaryRow, plot_summary

    rows = [SummaryRow("blocks.0", ["channel 31: max 13", "channel 3: max 12", "channel 2: max 12"],
                       torch.rand(3, 3, 1, 14, 14), torch.rand(3, 1, 28, 28)),
            SummaryRow("head", ["class 3: max 18", "class 7: max 16", "class 0: max 15", "class 4: max 15"],
                       torch.rand(4, 3, 1, 28, 28), torch.rand(4, 1, 28, 28))]
    return plot_summary(rows, title="Each layer's strongest units, first layer to last")


def test_summary_figure_has_one_row_per_layer(tmp_path):
    from replearn.viz.summary import SummaryRow, plot_summary

    fig = _summary_figure()
    _saved_png(fig, tmp_path / "summary.png")
    assert len(fig.axes) == 3 * 4 + 4 * 4  # per unit: 3 examples and its act-max image
    texts = [t.get_text() for t in fig.texts]
    assert texts[1:3] == ["blocks.0", "channel 31: max 13"] and "head" in texts
    rows = sorted({round(ax.get_position().y0, 3) for ax in fig.axes}, reverse=True)
    assert len(rows) == 2  # first layer on top
    with pytest.raises(ReplearnError, match="summary row head"):
        plot_summary([SummaryRow("head", ["a"], torch.rand(2, 3, 1, 8, 8), torch.rand(2, 1, 8, 8))])


@pytest.mark.parametrize("width", [40, 700], ids=["exact", "randomized"])
def test_torch_pca_matches_scikit_learn(width):
    """Oracle: scikit-learn's PCA gives the same 2-D coordinates (same signs) on the same data."""
    from sklearn.decomposition import PCA

    gen = torch.Generator().manual_seed(2)
    # Two clear axes (the plane is well defined) in a random orientation, over many small ones.
    scales = torch.cat([torch.tensor([5.0, 3.0], dtype=torch.float64), torch.full((width - 2,), 0.1, dtype=torch.float64)])
    rotation, _ = torch.linalg.qr(torch.randn(width, width, generator=gen, dtype=torch.float64))
    features = (torch.randn(300, width, generator=gen, dtype=torch.float64) * scales) @ rotation
    ours = embed_2d(features, "pca")
    theirs = PCA(n_components=2, svd_solver="full").fit_transform(features.numpy())
    np.testing.assert_allclose(ours, theirs, atol=1e-6 if width == 40 else 1e-3)
