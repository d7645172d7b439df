"""Random shifts of training images: exact translation, fill, determinism, config checks."""

import pytest
import torch

from replearn.conf.validate import validate_train
from replearn.errors import ReplearnError
from replearn.training.augment import draw_shifts, shift_images


def _shift_one(image: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    """Reference: pixel (r, c) of the output is input (r - dy, c - dx), or ``fill`` outside the image."""
    out = torch.full_like(image, fill)
    _, h, w = image.shape
    for r in range(h):
        for c in range(w):
            if 0 <= r - dy < h and 0 <= c - dx < w:
                out[:, r, c] = image[:, r - dy, c - dx]
    return out


def test_shift_matches_a_pixel_by_pixel_translation():
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(12, 2, 9, 7, generator=gen)
    shifts = draw_shifts(12, 3, gen)
    out = shift_images(images, shifts, fill=-0.42)
    for image, (dy, dx), got in zip(images, shifts.tolist(), out):
        assert torch.equal(got, _shift_one(image, dy, dx, -0.42))


def test_zero_shifts_return_the_images_unchanged():
    images = torch.randn(4, 1, 28, 28)
    assert torch.equal(shift_images(images, torch.zeros(4, 2, dtype=torch.long), 0.0), images)


def test_draws_cover_the_range_and_follow_the_generator():
    a = draw_shifts(5000, 2, torch.Generator().manual_seed(1))
    b = draw_shifts(5000, 2, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert set(a.flatten().tolist()) == {-2, -1, 0, 1, 2}


@pytest.mark.parametrize("value", [-1, 9])
def test_out_of_range_shift_is_one_line(compose_cfg, value):
    cfg = compose_cfg("train", ["model=cnn", f"trainer.augment_shift={value}"])
    with pytest.raises(ReplearnError) as info:
        validate_train(cfg)
    assert "trainer.augment_shift" in str(info.value) and "\n" not in str(info.value)


def test_the_cnn_shifts_mnist_but_not_fashion_and_the_mlp_never(compose_cfg):
    assert compose_cfg("train", ["model=cnn"]).trainer.augment_shift == 2
    assert compose_cfg("train", ["model=cnn", "data=fashion_mnist"]).trainer.augment_shift == 0
    assert compose_cfg("train", ["model=mlp"]).trainer.augment_shift == 0
