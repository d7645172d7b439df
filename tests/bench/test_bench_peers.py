"""suite=peers: a missing peer is one skipped row, installed peers record what replearn records, and it composes.

Passes with and without the peer libraries installed (CI installs none of them).
"""

import functools
import sys

import pytest
import torch

from replearn.bench import peers
from replearn.bench.report import run_suite
from replearn.conf.validate import validate_bench
from replearn.errors import ReplearnError
from replearn.models import CNN, MLP
from replearn.recording.hooks import capture_activations

pytestmark = pytest.mark.usefixtures("one_thread")


def _hide(monkeypatch, *modules):
    """Make ``import <module>`` raise ImportError, installed or not (None in sys.modules)."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def _images(n=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=gen)


def test_suite_peers_is_a_valid_choice(compose_cfg):
    cfg = compose_cfg("bench", ["suite=peers"])
    validate_bench(cfg)
    assert cfg.suite == "peers"
    with pytest.raises(ReplearnError, match="peers"):  # listed among the choices of the one-line error
        validate_bench(compose_cfg("bench", ["suite=peer"]))


def test_missing_recorders_are_skipped_and_replearn_still_measures(monkeypatch):
    _hide(monkeypatch, "captum", "captum.attr", "torchlens", "torchlens.options")
    figures = peers.recording_figures(n_images=64, depth=2, batch_size=32, libs=("replearn", "captum", "torchlens"),
                                      memory=False, repeats=2)
    assert figures["record_setup"].endswith("median of 2")
    assert figures["record_replearn_seconds"] > 0
    assert "record_replearn_matches" not in figures  # only peers are checked against replearn
    for lib in ("captum", "torchlens"):
        line = figures[f"record_{lib}"]
        assert line.startswith(f"skipped: {lib} could not be imported") and "\n" not in line
        assert f"record_{lib}_seconds" not in figures and f"record_{lib}_ratio" not in figures
    assert "record_memory_method" not in figures


def test_missing_lucent_and_torch_cka_are_skipped(monkeypatch):
    _hide(monkeypatch, "lucent", "lucent.optvis", "lucent.optvis.render", "torch_cka")
    actmax = peers.actmax_figures(steps=2, lucent_channels=1, lucent_steps=2)
    assert actmax["actmax_replearn_ms_per_channel_step"] > 0
    assert actmax["actmax_lucent"].startswith("skipped: lucent could not be imported")
    assert "actmax_lucent_ratio" not in actmax
    cka = peers.cka_figures(n_images=64, depth=2, batch_size=16)
    assert cka["cka_replearn_seconds"] > 0 and cka["cka_replearn_minibatch_seconds"] > 0
    assert cka["cka_torch_cka"].startswith("skipped: torch_cka could not be imported")


def test_a_peer_that_fails_while_running_is_one_line(monkeypatch):
    def broken(lib, model, images, batch_size=1000):
        if lib == "torchvision":
            raise RuntimeError("symbolically traced variables cannot be used\nsecond line")
        return capture_activations(model, images, normalize=peers.normalize)

    monkeypatch.setattr(peers, "record", broken)
    figures = peers.recording_figures(n_images=16, depth=1, batch_size=8, libs=("replearn", "torchvision"), memory=False)
    assert figures["record_torchvision"] == ("skipped: torchvision failed: RuntimeError: "
                                             "symbolically traced variables cannot be used")
    assert figures["record_replearn_seconds"] > 0


@pytest.mark.parametrize("lib,module", [("torchvision", "torchvision.models.feature_extraction"),
                                        ("captum", "captum.attr"), ("torchlens", "torchlens")])
def test_installed_recorder_equals_capture_activations(lib, module):
    pytest.importorskip(module)
    torch.manual_seed(0)
    model = CNN(depth=3).eval()
    images = _images(10)
    ours = capture_activations(model, images, layers="all", batch_size=4, normalize=peers.normalize)
    theirs = peers.record(lib, model, images, batch_size=4)  # 3 batches, the last one short
    assert list(theirs) == model.layer_names()
    for name in ours:
        assert theirs[name].shape == ours[name].shape
        assert torch.allclose(theirs[name], ours[name], atol=1e-6), name


def test_installed_torch_cka_agrees_with_minibatch_cka():
    pytest.importorskip("torch_cka")
    torch.manual_seed(0)
    model = MLP(depth=3, width=32).eval()
    images = _images(96)
    theirs = peers.torch_cka_grid(model, images, batch_size=32)
    _, _, ours, _ = peers.replearn_cka_grids(model, images, batch_size=32)
    assert theirs.shape == ours.shape == (4, 4)
    assert torch.allclose(theirs.double(), ours, atol=1e-4)


def test_installed_lucent_returns_one_grey_image_per_channel():
    pytest.importorskip("lucent.optvis.render")
    model = CNN(depth=2).eval()
    images = peers.lucent_actmax(model, "blocks.1", [0, 5], steps=3)
    assert len(images) == 2 and all(image.shape == (1, 28, 28, 1) for image in images)


def test_memory_child_reports_a_positive_peak():
    figures = peers.recording_figures(n_images=32, depth=1, batch_size=16, libs=("replearn",), memory=True)
    peak = figures["record_replearn_peak_mb"]
    if isinstance(peak, str):  # no /proc/self/clear_refs here: said in one line
        assert peak.startswith("skipped: ")
    else:
        # 32 images' maps: at least the (32, 32, 14, 14) float32 block-0 output and the logits, well under 1 GiB
        assert 32 * 32 * 14 * 14 * 4 / 2**20 <= peak < 1024


def test_run_suite_prints_every_section_and_the_machine_lines(compose_cfg, tmp_path, capsys, monkeypatch, cache_dir):
    # The four sections at tiny sizes (the real ones take a minute); the epoch pair is stubbed: it needs MNIST.
    # The report records its matmul probe in cache_dir.
    monkeypatch.setattr(peers, "recording_figures", functools.partial(peers.recording_figures, n_images=16, depth=1,
                                                                        batch_size=8, memory=False))
    monkeypatch.setattr(peers, "actmax_figures", functools.partial(peers.actmax_figures, steps=2, lucent_channels=1,
                                                                     lucent_steps=2))
    monkeypatch.setattr(peers, "cka_figures", functools.partial(peers.cka_figures, n_images=32, depth=1, batch_size=16))
    monkeypatch.setattr(peers, "train_figures", lambda cfg: {"train_examples_ratio": 2.0})
    figures = run_suite(compose_cfg("bench", ["suite=peers", "trainer.threads=1"]), tmp_path)
    out = capsys.readouterr().out
    assert out.startswith("== bench suite=peers ==")
    for key in ("record_replearn_seconds", "actmax_replearn_ms_per_channel_step", "cka_replearn_seconds",
                "train_examples_ratio", "load_average_1min"):
        assert key in figures and key in out
    assert figures["threads"] == 1 and (tmp_path / "bench.json").is_file()


def test_markdown_table_shows_ratios_and_skips():
    from replearn.bench.peers import markdown

    table = markdown({"record_torchvision_ratio": 1.234, "record_torchvision_memory_ratio": 1.7,
                      "record_captum": "skipped: captum is not installed", "train_examples_ratio": 7.4})
    lines = table.splitlines()
    assert lines[0].startswith("| task |") and len(lines) == 8
    assert "| 1.23× | 1.70× |" in lines[2]
    assert "skipped: captum is not installed" in lines[3]
    assert lines[-1].endswith("| 7.40× | |")
