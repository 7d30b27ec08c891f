from __future__ import annotations

import json

import numpy as np
import pytest

from ovseg.errors import OvsegError
from ovseg.media import rle
from ovseg.media.fileio import load_image
from ovseg.storage.locations import atomic_path, list_images, list_photos
from ovseg.storage.store import MaskProposals, read_arrays, write_arrays


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (64, 33)])
def test_rle_round_trip_is_exact_and_json_safe(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    for mask in (rng.random(shape) > 0.5, np.zeros(shape, bool), np.ones(shape, bool)):
        encoded = json.loads(json.dumps(rle.encode(mask)))
        assert encoded["size"] == list(shape)
        np.testing.assert_array_equal(rle.decode(encoded), mask)


def test_mask_proposals_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(1)
    masks = rng.random((3, 20, 30)) > 0.6
    proposals = MaskProposals(
        masks,
        rng.random((3, 4)).astype(np.float32),
        masks.reshape(3, -1).sum(1),
        rng.random(3).astype(np.float32),
        rng.random(3).astype(np.float32),
    )
    write_arrays(tmp_path / "a.zarr", proposals.arrays(), {"image": "x.png"})
    loaded, attrs = MaskProposals.load(tmp_path / "a.zarr")
    assert attrs == {"image": "x.png"}
    np.testing.assert_array_equal(loaded.masks, masks)
    assert loaded.masks.dtype == bool and len(loaded) == 3


def test_empty_proposals_round_trip(tmp_path) -> None:
    empty = MaskProposals(
        np.zeros((0, 5, 6), bool),
        np.zeros((0, 4), np.float32),
        np.zeros(0, np.int64),
        np.zeros(0, np.float32),
        np.zeros(0, np.float32),
    )
    write_arrays(tmp_path / "e.zarr", empty.arrays(), {})
    loaded, _ = MaskProposals.load(tmp_path / "e.zarr")
    assert loaded.masks.shape == (0, 5, 6)


def test_atomic_path_leaves_nothing_on_failure(tmp_path) -> None:
    target = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        write_arrays(tmp, {"x": np.ones(3)}, {})
        raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_missing_artifact_names_the_fix(tmp_path) -> None:
    with pytest.raises(OvsegError, match="dvc repro"):
        read_arrays(tmp_path / "nope.zarr")


def test_unreadable_image_and_empty_folder(tmp_path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(OvsegError, match="cannot read image"):
        load_image(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OvsegError, match="no images"):
        list_images(empty)
    (empty / "a.png").write_bytes(b"")
    (empty / "a.jpg").write_bytes(b"")
    (empty / "a.jpg.png").write_bytes(b"")  # its stem is another's whole name
    names = [photo.name for photo in list_photos(empty)]
    assert names == ["a.jpg", "a.jpg.png", "a.png"] and len(set(names)) == 3
