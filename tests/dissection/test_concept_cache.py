"""The concept-mask cache is rebuilt, never trusted: bytes changed inside a valid zip, or a well-formed entry of the
wrong types, give one warning line and the right masks (issue 19, section 5)."""

from __future__ import annotations

import struct
import zipfile

import pytest
import torch

from replearn.cache import CHECKSUM_KEY, checksum
from replearn.dissection.concept_cache import load_concept_masks

pytestmark = pytest.mark.usefixtures("one_thread")


def probe_set():
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(12, 1, 28, 28, generator=gen) > 0.8).to(torch.uint8) * 255
    return images, torch.arange(12) % 10


def garble_largest_entry(path) -> None:
    """Flip bytes in the middle of the file's largest zip entry, in place: the zip still opens and lists its entries."""
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    for i in range(start + info.compress_size // 3, start + info.compress_size // 3 + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as archive:  # still a valid zip: only a CRC check would notice
        assert [i.filename for i in archive.infolist()]


def test_garbled_bytes_inside_a_valid_zip_are_rebuilt_with_one_warning(cache_dir, capsys):
    images, labels = probe_set()
    good = load_concept_masks(images, labels)
    assert good.masks.any()
    (path,) = (cache_dir / "concepts").glob("*.pt")
    before = torch.load(path, weights_only=True)["packed"]
    garble_largest_entry(path)
    # torch itself reads the garbled masks without complaint (what made every unit "unlabelled").
    after = torch.load(path, weights_only=True)["packed"]
    assert after.shape == before.shape and not torch.equal(after, before)
    capsys.readouterr()
    again = load_concept_masks(images, labels)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "damaged" in err[0] and "checksum" in err[0] and "rebuilding" in err[0], err
    assert torch.equal(again.masks, good.masks)
    load_concept_masks(images, labels)  # the rebuilt entry is trusted again: no warning
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("change", [
    lambda p: p.update(packed=p["packed"].to(torch.int64)),  # right size, wrong type
    lambda p: p.update(levels=["1"] * len(p["levels"])),
    lambda p: p.update(shape=p["shape"].to(torch.float32)),
])
def test_entry_of_the_wrong_types_is_rebuilt_even_with_a_matching_checksum(cache_dir, capsys, change):
    images, labels = probe_set()
    good = load_concept_masks(images, labels)
    (path,) = (cache_dir / "concepts").glob("*.pt")
    payload = torch.load(path, weights_only=True)
    del payload[CHECKSUM_KEY]
    change(payload)
    torch.save({**payload, CHECKSUM_KEY: checksum(payload)}, path)  # as if written so: the checksum matches
    capsys.readouterr()
    again = load_concept_masks(images, labels)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rebuilding" in err[0]
    assert torch.equal(again.masks, good.masks)


def test_an_entry_without_a_checksum_is_rebuilt(cache_dir, capsys):
    images, labels = probe_set()
    good = load_concept_masks(images, labels)
    (path,) = (cache_dir / "concepts").glob("*.pt")
    payload = torch.load(path, weights_only=True)
    del payload[CHECKSUM_KEY]
    torch.save(payload, path)  # as an older replearn wrote it
    capsys.readouterr()
    assert torch.equal(load_concept_masks(images, labels).masks, good.masks)
    assert "no checksum" in capsys.readouterr().err
