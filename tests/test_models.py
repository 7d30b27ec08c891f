"""Tiny models saved in real formats and loaded through the user-facing loaders."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_photo

from ovseg.clip.features import (
    crop_embeddings,
    dense_embeddings,
    dense_patch_features,
    load_clip,
    mask_embeddings,
    pool_in_masks,
    scaled_square_boxes,
)
from ovseg.config import settings_from_params
from ovseg.errors import OvsegError, WeightsMissingError
from ovseg.masks.sam2_backend import load_sam2, make_generator, propose_masks
from ovseg.media.fileio import working_image
from ovseg.ranking.scoring import encode_texts


def _tiny():
    return settings_from_params({"preset": "tiny"})


def test_sam2_loads_via_build_sam2_and_proposes_masks(tiny_checkpoints) -> None:
    model = load_sam2("tiny-random-sam2", "cpu")
    assert model.image_size == 256
    generator = make_generator(model, dataclasses.replace(_tiny().masks, box_nms_thresh=1.0))
    image = working_image(synthetic_photo(300, 200), 256)
    assert max(image.size) == 256
    proposals = propose_masks(generator, image, max_masks=7)
    assert 1 <= len(proposals) <= 7
    assert proposals.masks.shape[1:] == (image.height, image.width) and proposals.masks.dtype == bool
    np.testing.assert_array_equal(proposals.areas, proposals.masks.reshape(len(proposals), -1).sum(1))
    quality = proposals.predicted_iou * proposals.stability_score
    assert np.all(np.diff(quality) <= 1e-6)  # best first


def test_missing_and_corrupt_weights_give_clear_errors(tiny_checkpoints, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OVSEG_CHECKPOINTS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsMissingError, match="ovseg weights download sam2.1-hiera-small"):
        load_sam2("sam2.1-hiera-small", "cpu")
    with pytest.raises(WeightsMissingError, match="ovseg weights make-tiny"):
        load_clip("tiny-random-clip", "cpu")
    broken = tmp_path / "tiny-random-sam2"
    broken.mkdir()
    (broken / "config.yaml").write_text((tiny_checkpoints / "tiny-random-sam2" / "config.yaml").read_text())
    (broken / "model.pt").write_bytes(b"truncated")
    with pytest.raises(OvsegError, match="cannot load SAM 2 weights"):
        load_sam2("tiny-random-sam2", "cpu")
    with pytest.raises(OvsegError, match="unknown sam2 model"):
        load_sam2("sam3-giant", "cpu")


def test_scaled_square_boxes() -> None:
    boxes = scaled_square_boxes(np.array([[10, 20, 40, 10]], np.float32), 2.0)
    np.testing.assert_allclose(boxes, [[-10, -15, 70, 65]])


def test_pool_in_masks_is_an_area_weighted_mean() -> None:
    features = torch.zeros(2, 2, 3)
    features[0, 0] = torch.tensor([1.0, 0, 0])
    features[0, 1] = torch.tensor([0, 1.0, 0])
    features[1, :] = torch.tensor([0, 0, 1.0])
    masks = np.zeros((3, 4, 4), bool)
    masks[0, :2, :2] = True  # exactly patch (0, 0)
    masks[1, :2, :] = True  # both top patches, equally
    masks[2, :2, :3] = True  # all of (0,0), half of (0,1): weights 1 and 0.5
    pooled = pool_in_masks(features, masks).numpy()
    np.testing.assert_allclose(pooled[0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(pooled[1], [np.sqrt(0.5), np.sqrt(0.5), 0], atol=1e-6)
    expected = np.array([1.0, 0.5, 0]) / np.linalg.norm([1.0, 0.5, 0])
    np.testing.assert_allclose(pooled[2], expected, atol=1e-6)


def test_clip_features_are_unit_norm_deterministic_and_multiscale(tiny_checkpoints) -> None:
    bundle = load_clip("tiny-random-clip", "cpu")
    image = synthetic_photo(160, 120)
    masks = np.zeros((3, 120, 160), bool)
    masks[0, 30:90, 20:80] = True
    masks[1, 24:84, 96:144] = True
    masks[2, 100:104, 150:154] = True  # tiny mask near the border
    boxes = np.array([[20, 30, 60, 60], [96, 24, 48, 60], [150, 100, 4, 4]], np.float32)
    crop = crop_embeddings(bundle, image, masks, boxes, [1.0, 2.0], 0.5, batch_size=2)
    dense = dense_embeddings(bundle, image, masks, [1.0, 1.5], max_tokens=4096)
    for emb in (crop, dense):
        assert emb.shape == (3, 32)
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # Multi-scale = normalised mean of the per-scale features.
    single = [dense_embeddings(bundle, image, masks, [s], 4096) for s in (1.0, 1.5)]
    mean = single[0] + single[1]
    np.testing.assert_allclose(dense, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(crop, crop_embeddings(bundle, image, masks, boxes, [1.0, 2.0], 0.5, 3), atol=1e-5)
    grid = dense_patch_features(bundle, image, 1.0, 4096)
    assert grid.shape[:2] == (8, 11)  # short side 64 px / 8 px patches, aspect kept
    settings = dataclasses.replace(_tiny().embed, strategy="ensemble")
    both = mask_embeddings(bundle, image, masks, boxes, settings)
    avg = mask_embeddings(
        bundle, image, masks, boxes, dataclasses.replace(settings, strategy="crop")
    ) + mask_embeddings(bundle, image, masks, boxes, dataclasses.replace(settings, strategy="dense"))
    np.testing.assert_allclose(both, avg / np.linalg.norm(avg, axis=1, keepdims=True), atol=1e-5)


def test_text_encoder_loads_alone(tiny_checkpoints) -> None:
    bundle = load_clip("tiny-random-clip", "cpu", text_only=True)
    assert bundle.model.visual is None


def test_the_onnx_text_encoder_gives_open_clips_features(tiny_checkpoints, tmp_path) -> None:
    """The text tower exported once to ONNX encodes as open_clip does (same tokens, features within float error);
    a second load reuses the export; encode_texts averages the templates into unit vectors."""
    from ovseg.clip.text import TorchTextEncoder, load_text_encoder

    texts = ["a photo of a cat.", "there is the red car in the background in the scene.", "naïve café 東京"]
    encoder = load_text_encoder("tiny-random-clip", tmp_path)
    assert encoder.kind == "onnx" and list(tmp_path.glob("*/text.onnx"))
    reference = TorchTextEncoder(load_clip("tiny-random-clip", "cpu", text_only=True))
    np.testing.assert_allclose(encoder.encode(texts), reference.encode(texts), atol=1e-5)
    assert encoder.logit_scale == pytest.approx(reference.logit_scale)
    stamp = next(tmp_path.glob("*/text.onnx")).stat().st_mtime_ns
    again = load_text_encoder("tiny-random-clip", tmp_path)
    assert next(tmp_path.glob("*/text.onnx")).stat().st_mtime_ns == stamp and again.kind == "onnx"
    # A models folder that cannot be made (here: under a file) still gives the same encoder, exported for the
    # process alone in a temporary folder that is gone once the session is open.
    (tmp_path / "a-file").write_text("")
    scratch = len(list(Path(tempfile.gettempdir()).glob("ovseg-text-*")))
    alone = load_text_encoder("tiny-random-clip", tmp_path / "a-file" / "models")
    assert alone.kind == "onnx" and len(list(Path(tempfile.gettempdir()).glob("ovseg-text-*"))) == scratch
    np.testing.assert_array_equal(alone.encode(texts), encoder.encode(texts))
    emb = encode_texts(encoder, ["a cat", "a dog"], templates=True)
    assert emb.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    with pytest.raises(OvsegError, match="prompt is empty"):
        encode_texts(encoder, ["  "], templates=True)


@pytest.mark.slow
def test_real_architectures_load_through_registry_names(tmp_path, monkeypatch) -> None:
    """SAM 2.1 Hiera-T and CLIP ViT-B/32 as released (random weights): packaged configs, dense path."""
    from ovseg.weights.tiny import build_random_like

    monkeypatch.setenv("OVSEG_CHECKPOINTS", str(tmp_path))
    build_random_like("sam2.1-hiera-tiny", tmp_path / "sam2.1-hiera-tiny")
    build_random_like("clip-vit-b-32", tmp_path / "clip-vit-b-32")
    assert (tmp_path / "sam2.1-hiera-tiny" / "sam2.1_hiera_tiny.pt").is_file()
    sam = load_sam2("sam2.1-hiera-tiny", "cpu")  # the config that ships inside the sam2 package
    assert sam.image_size == 1024
    bundle = load_clip("clip-vit-b-32", "cpu")
    assert bundle.input_size == 224
    image = synthetic_photo(300, 200)
    masks = np.zeros((2, 200, 300), bool)
    masks[0, 50:150, 40:140] = True
    masks[1, 20:60, 200:280] = True
    grid = dense_patch_features(bundle, image, 1.5, max_tokens=4096)
    assert grid.shape == (10, 16, 512)  # short side 224 x 1.5 = 336 px / 32 px patches, aspect 3:2
    emb = dense_embeddings(bundle, image, masks, [1.0, 1.5], 4096)
    assert emb.shape == (2, 512) and np.isfinite(emb).all()
