"""IDX decoding, the real MNIST copy, corrupt files, splits and the synthetic set."""

import gzip
import shutil
import struct

import pytest
import torch
from omegaconf import OmegaConf

from replearn.data import load_raw, load_splits, make_synthetic, read_idx, split_validation
from replearn.errors import ReplearnError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_real_mnist_known_facts(mnist_root):
    raw = load_raw("mnist", mnist_root)
    assert raw["train_images"].shape == (60000, 28, 28) and raw["train_images"].dtype == torch.uint8
    assert raw["test_images"].shape == (10000, 28, 28)
    assert torch.bincount(raw["train_labels"]).tolist() == MNIST_TRAIN_COUNTS
    assert raw["train_labels"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert abs(raw["train_images"].double().mean().item() / 255 - 0.1306604762738429) < 1e-12


def test_real_fashion_mnist_decodes(mnist_root):
    raw = load_raw("fashion_mnist", mnist_root)
    assert raw["train_images"].shape == (60000, 28, 28)
    assert torch.bincount(raw["train_labels"]).tolist() == [6000] * 10


def test_splits_hold_out_seeded_validation(mnist_root):
    cfg = OmegaConf.create({"name": "mnist", "root": str(mnist_root), "download": False, "val_size": 5000,
                            "split_seed": 0, "num_train": 0, "num_test": 0})
    a, b = load_splits(cfg), load_splits(cfg)
    assert len(a.train_x) == 55000 and len(a.val_x) == 5000 and len(a.test_x) == 10000
    assert a.train_x.shape[1:] == (1, 28, 28)
    assert torch.equal(a.val_y, b.val_y)
    x = a.normalize(a.train_x[:1000])
    assert x.dtype == torch.float32 and abs(x.mean().item()) < 0.1


def _write_idx(path, magic, shape, payload: bytes, gz=False):
    header = struct.pack(">II", magic, shape[0]) + b"".join(struct.pack(">I", s) for s in shape[1:])
    opener = gzip.open if gz else open
    with opener(path, "wb") as handle:
        handle.write(header + payload)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    images = torch.randint(0, 256, (3, 4, 5), dtype=torch.uint8)
    path = _write_idx(tmp_path / ("x.gz" if gz else "x"), 2051, (3, 4, 5), images.numpy().tobytes(), gz)
    assert torch.equal(read_idx(path), images)


def test_truncated_file_names_the_file(tmp_path):
    path = _write_idx(tmp_path / "train-images-idx3-ubyte", 2051, (3, 4, 5), bytes(10))
    with pytest.raises(ReplearnError, match="train-images-idx3-ubyte has 26 bytes but its header promises 76"):
        read_idx(path)


def test_bad_magic_names_the_file(tmp_path):
    path = _write_idx(tmp_path / "labels", 1234, (3,), bytes(3))
    with pytest.raises(ReplearnError, match="labels is not an IDX file"):
        read_idx(path)


def test_corrupt_gzip_names_the_file(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(ReplearnError, match="t10k-labels-idx1-ubyte.gz"):
        read_idx(path)


def test_mismatched_files_are_rejected(tmp_path, mnist_root):
    raw_dir = tmp_path / "MNIST" / "raw"
    raw_dir.mkdir(parents=True)
    for f in (mnist_root / "MNIST" / "raw").iterdir():
        shutil.copy(f, raw_dir / f.name)
    # Replace the test labels by a file with too few labels.
    for f in raw_dir.glob("t10k-labels*"):
        f.unlink()
    _write_idx(raw_dir / "t10k-labels-idx1-ubyte", 2049, (7,), bytes(7))
    with pytest.raises(ReplearnError, match="has 10000 images but .*t10k-labels-idx1-ubyte has 7 labels"):
        load_raw("mnist", tmp_path)


def test_missing_files_name_path_env_and_files(tmp_path):
    with pytest.raises(ReplearnError) as info:
        load_raw("mnist", tmp_path, download=False)
    message = str(info.value)
    for needle in (str(tmp_path / "MNIST" / "raw"), "REPLEARN_DATA_DIR", "train-images-idx3-ubyte",
                   "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert needle in message
    assert not (tmp_path / "MNIST").exists()  # nothing written without download


def test_split_validation_is_disjoint():
    images, labels = torch.arange(100).view(100, 1, 1).to(torch.uint8), torch.arange(100)
    tx, ty, vx, vy = split_validation(images, labels, 20, seed=3)
    assert len(set(ty.tolist()) & set(vy.tolist())) == 0 and len(ty) + len(vy) == 100
    with pytest.raises(ReplearnError, match="val_size=100"):
        split_validation(images, labels, 100, seed=0)


def test_synthetic_is_deterministic_and_balanced():
    a, b = make_synthetic(500, 200, seed=1), make_synthetic(500, 200, seed=1)
    assert torch.equal(a.train_x, b.train_x) and a.train_x.dtype == torch.uint8
    assert a.train_x.shape == (500, 1, 28, 28) and set(a.train_y.tolist()) == set(range(10))


@pytest.fixture
def small_shapes(monkeypatch):
    """data=shapes from made-up tensors: generating even small shapes splits takes seconds, and what is tested
    here is load_splits' handling of whatever the shapes generator gives."""
    import replearn.shapes.cache as shapes_cache

    gen = torch.Generator().manual_seed(0)

    def fake(n):
        return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=gen), torch.randint(0, 8, (n,), generator=gen)

    (train_x, train_y), (val_x, val_y), (test_x, test_y) = fake(400), fake(80), fake(100)
    tensors = dict(train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y, test_x=test_x, test_y=test_y,
                   classes=[str(c) for c in range(8)], mean=0.5, std=0.3)
    monkeypatch.setattr(shapes_cache, "load_shapes", lambda data_cfg: dict(tensors))


DATA_CFGS = {
    "synthetic": {"name": "synthetic", "num_train": 300, "num_test": 100, "val_size": 50, "split_seed": 0},
    "shapes": {"name": "shapes", "size": 28, "labels": "parts", "val_size": 80, "split_seed": 0},
}


@pytest.mark.parametrize("name", ["synthetic", "shapes"])
def test_shuffle_labels_permutes_the_training_labels_only(name, request):
    if name == "shapes":
        request.getfixturevalue("small_shapes")
    true = load_splits(OmegaConf.create(DATA_CFGS[name]))
    cfg = OmegaConf.create({**DATA_CFGS[name], "shuffle_labels": True, "label_shuffle_seed": 3})
    shuffled, again = load_splits(cfg), load_splits(cfg)
    for key in ("train_x", "val_x", "val_y", "test_x", "test_y"):  # images and the held-out labels untouched
        assert torch.equal(getattr(shuffled, key), getattr(true, key)), key
    assert torch.equal(shuffled.train_y.sort().values, true.train_y.sort().values)  # a permutation: same class counts
    # No longer the images' labels: about 1 in (number of classes) keeps its label by chance, not all of them.
    assert (shuffled.train_y == true.train_y).float().mean() < 0.3
    assert torch.equal(shuffled.train_y, again.train_y)  # the same permutation every time
    other = load_splits(OmegaConf.create({**DATA_CFGS[name], "shuffle_labels": True, "label_shuffle_seed": 4}))
    assert not torch.equal(other.train_y, shuffled.train_y)  # ... that label_shuffle_seed picks


def test_shuffle_labels_on_real_mnist(mnist_root):
    cfg = {"name": "mnist", "root": str(mnist_root), "download": False, "val_size": 5000, "split_seed": 0}
    true, shuffled = load_splits(OmegaConf.create(cfg)), load_splits(OmegaConf.create({**cfg, "shuffle_labels": True}))
    assert torch.equal(shuffled.test_y, true.test_y) and torch.equal(shuffled.val_y, true.val_y)
    assert torch.bincount(shuffled.train_y).tolist() == torch.bincount(true.train_y).tolist()
    assert abs((shuffled.train_y == true.train_y).float().mean().item() - 0.1) < 0.01  # chance agreement


def test_shuffle_labels_is_a_config_key_off_by_default(compose_cfg):
    assert compose_cfg("train", []).data.shuffle_labels is False
    cfg = compose_cfg("train", ["data=shapes", "data.shuffle_labels=true", "data.label_shuffle_seed=2"])
    assert cfg.data.shuffle_labels is True and cfg.data.label_shuffle_seed == 2
