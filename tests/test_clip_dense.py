"""The mathematics of the dense CLIP variants and per-mask class tokens, on tiny random open_clip ViTs.

No real CLIP weights exist here, so these tests prove the computations instead: against
open_clip's own modules run with an attention mask, against NumPy, and against properties
that must hold whatever the weights (a whole-image mask is no restriction; a patch's
feature does not see pixels outside its masks).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from conftest import synthetic_photo

from ovseg.clip.dense import (
    embed_patches,
    last_block_patch_features,
    mask_token_features,
    patch_membership,
    run_blocks,
)
from ovseg.clip.features import ClipBundle, dense_patch_features, mask_embeddings, windowed_patch_features
from ovseg.config import settings_from_params
from ovseg.ranking.scoring import expand_templates, negatives_for, prompt_synonyms, score_synonyms

SIDE, PATCH = 64, 8
GRID = SIDE // PATCH


def _vit(layers: int = 2, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = open_clip.CLIP(
        embed_dim=16,
        vision_cfg={"image_size": SIDE, "layers": layers, "width": 32, "head_width": 16, "patch_size": PATCH},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    ).eval()
    visual = model.visual
    with torch.no_grad():  # make the blocks' biases and scales non-trivial
        for block in visual.transformer.resblocks:
            block.attn.in_proj_bias.normal_(0, 0.2)
            block.ln_1.weight.normal_(1, 0.2)
    return model


def _pixels(seed: int = 3) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(1, 3, SIDE, SIDE)).astype(np.float32))


def _bundle(model) -> ClipBundle:
    return ClipBundle(
        model=model,
        tokenizer=None,
        input_size=SIDE,
        mean=torch.zeros(3),
        std=torch.ones(3),
        device=torch.device("cpu"),
        dtype=torch.float32,
    )


@torch.no_grad()
def test_mask_attention_with_one_whole_image_mask_is_plain_attention() -> None:
    visual = _vit().visual
    x = run_blocks(visual, embed_patches(visual, _pixels(), GRID, GRID), visual.transformer.resblocks[:-1])[-1]
    everything = torch.ones((1, GRID * GRID), dtype=torch.bool)
    ours = last_block_patch_features(visual, x, GRID, GRID, "mask", everything)
    block = visual.transformer.resblocks[-1]
    y = block.ln_1(x[:, 1:])
    plain = block.attn(y, y, y, need_weights=False)[0]  # torch's own attention over the patches
    expected = F.normalize(visual.ln_post(block.ls_1(plain[0])) @ visual.proj, dim=-1)
    torch.testing.assert_close(ours.reshape(-1, ours.shape[-1]), expected, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_a_whole_image_mask_token_is_the_class_token() -> None:
    model = _vit(layers=3)
    visual = model.visual
    pixels = _pixels()
    states = run_blocks(visual, embed_patches(visual, pixels, GRID, GRID), visual.transformer.resblocks)
    token = mask_token_features(visual, states, torch.ones((1, GRID * GRID), dtype=torch.bool))
    ordinary = F.normalize(model.encode_image(pixels).float(), dim=-1)
    torch.testing.assert_close(token, ordinary, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_mask_tokens_equal_one_pass_with_an_attention_mask_and_separate_passes() -> None:
    """CorrCLIP's formulation, computed by open_clip's own blocks: extra tokens + an attention mask."""
    visual = _vit(layers=3).visual
    x0 = embed_patches(visual, _pixels(), GRID, GRID)
    masks = torch.zeros((3, SIDE, SIDE), dtype=torch.bool)
    masks[0, :32, :32] = True
    masks[1, 16:, 8:56] = True
    masks[2, 40:60, 40:60] = True
    member = patch_membership(masks, GRID, GRID)
    states = run_blocks(visual, x0, visual.transformer.resblocks)
    together = mask_token_features(visual, states, member, chunk=64)
    separately = torch.cat([mask_token_features(visual, states, member[i : i + 1], chunk=1) for i in range(3)])
    torch.testing.assert_close(together, separately, atol=1e-6, rtol=1e-5)

    count, patches = len(member), GRID * GRID
    length = 1 + patches + count
    allowed = torch.zeros((length, length), dtype=torch.bool)
    allowed[: 1 + patches, : 1 + patches] = True  # class token and patches: the ordinary pass
    for i in range(count):
        row = 1 + patches + i
        allowed[row, row] = True
        allowed[row, 1 : 1 + patches] = member[i]
    attn_mask = torch.zeros((length, length)).masked_fill(~allowed, float("-inf"))
    x = torch.cat([x0, x0[:, :1].expand(1, count, -1)], 1)
    for block in visual.transformer.resblocks:
        x = block(x, attn_mask=attn_mask)
    joint = F.normalize(visual.ln_post(x[0, 1 + patches :]) @ visual.proj, dim=-1)
    torch.testing.assert_close(together, joint, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(x[0, : 1 + patches], states[-1][0], atol=1e-5, rtol=1e-4)  # patches untouched


@torch.no_grad()
def test_under_mask_attention_a_patch_ignores_pixels_outside_its_masks() -> None:
    """One block: the last block's mixing is the only place patches meet, and it stays inside the masks."""
    model = _vit(layers=1)
    bundle = _bundle(model)
    image = synthetic_photo(SIDE, SIDE, seed=2)
    masks = np.zeros((2, SIDE, SIDE), bool)
    masks[0, :, :32] = True  # left half
    masks[1, :32, :16] = True  # inside the left half
    before = dense_patch_features(bundle, image, 1.0, 4096, "mask", masks)
    changed = np.asarray(image).copy()
    changed[:, 32:] = 255 - changed[:, 32:]  # the right half only
    from PIL import Image

    after = dense_patch_features(bundle, Image.fromarray(changed), 1.0, 4096, "mask", masks)
    torch.testing.assert_close(after[:, : GRID // 2], before[:, : GRID // 2], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(after[:, GRID // 2 :], before[:, GRID // 2 :], atol=1e-3)
    plain = dense_patch_features(bundle, Image.fromarray(changed), 1.0, 4096, "clearclip", masks)
    assert not torch.allclose(
        plain[:, : GRID // 2], before[:, : GRID // 2], atol=1e-3
    )  # unrestricted: it does see them


def _numpy_layer_norm(x: np.ndarray, ln: torch.nn.LayerNorm) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + ln.eps) * ln.weight.numpy() + ln.bias.numpy()


@pytest.mark.parametrize("attention", ["clearclip", "naclip", "identity"])
@torch.no_grad()
def test_clearclip_and_naclip_match_numpy(attention: str) -> None:
    visual = _vit(layers=1).visual
    grid = 3  # a small hand-made case: 3 x 3 patches
    x = torch.from_numpy(np.random.default_rng(5).normal(size=(1, 1 + grid * grid, 32)).astype(np.float32))
    ours = last_block_patch_features(visual, x, grid, grid, attention).reshape(grid * grid, -1).numpy()

    block = visual.transformer.resblocks[-1]
    heads, width = block.attn.num_heads, 32
    y = _numpy_layer_norm(x[0, 1:].numpy(), block.ln_1)
    w, b = block.attn.in_proj_weight.numpy(), block.attn.in_proj_bias.numpy()
    q, k, v = (y @ w[i * width : (i + 1) * width].T + b[i * width : (i + 1) * width] for i in range(3))
    if attention == "identity":
        mixed = v
    else:
        out = []
        hd = width // heads
        rr, cc = np.divmod(np.arange(grid * grid), grid)
        distance2 = (rr[:, None] - rr[None]) ** 2 + (cc[:, None] - cc[None]) ** 2
        for h in range(heads):
            qh, kh, vh = (t[:, h * hd : (h + 1) * hd] for t in (q, k, v))
            if attention == "clearclip":
                logits = qh @ qh.T / np.sqrt(hd)
            else:
                logits = kh @ kh.T / np.sqrt(hd) + np.exp(-distance2 / (2 * 5.0**2))
            weights = np.exp(logits - logits.max(1, keepdims=True))
            weights /= weights.sum(1, keepdims=True)
            out.append(weights @ vh)
        mixed = np.concatenate(out, 1)
    projected = mixed @ block.attn.out_proj.weight.numpy().T + block.attn.out_proj.bias.numpy()
    feats = _numpy_layer_norm(projected, visual.ln_post) @ visual.proj.numpy()
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    np.testing.assert_allclose(ours, feats, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_one_window_the_size_of_the_image_is_one_pass() -> None:
    bundle = _bundle(_vit())
    image = synthetic_photo(SIDE, SIDE, seed=4)
    masks = np.zeros((1, SIDE, SIDE), bool)
    masks[0, 8:40, 8:40] = True
    for attention in ("identity", "mask"):
        one = dense_patch_features(bundle, image, 1.0, 4096, attention, masks)
        windows = windowed_patch_features(bundle, image, 1.0, SIDE, SIDE // 2, attention, masks)
        torch.testing.assert_close(windows, one, atol=1e-5, rtol=1e-4)
    # A wider image: windows cover it, each at the model's own grid, overlaps averaged.
    wide = synthetic_photo(2 * SIDE, SIDE, seed=4)
    feats = windowed_patch_features(bundle, wide, 1.0, SIDE, SIDE // 2, "identity", masks)
    assert feats.shape[:2] == (GRID, 2 * GRID)
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(GRID, 2 * GRID), atol=1e-5, rtol=1e-5)


def test_every_option_is_selectable_and_embeds(tiny_checkpoints) -> None:
    from ovseg.clip.features import load_clip

    bundle = load_clip("tiny-random-clip", "cpu")
    image = synthetic_photo(96, 64)
    masks = np.zeros((4, 64, 96), bool)
    masks[0, :32] = masks[1, 32:] = masks[2, :, :48] = masks[3, 10:20, 10:20] = True
    boxes = np.array([[0, 0, 96, 32], [0, 32, 96, 32], [0, 0, 48, 64], [10, 10, 10, 10]], np.float32)
    base = settings_from_params({"preset": "tiny"}).embed
    for attention in ("identity", "clearclip", "naclip", "mask"):
        for tokens in (False, True):
            for window in (0, 64):
                settings = dataclasses.replace(
                    base, strategy="dense", dense_attention=attention, mask_tokens=tokens, dense_window=window
                )
                feats = mask_embeddings(bundle, image, masks, boxes, settings)
                assert feats.shape == (4, 32) and np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-5)
    params = settings_from_params({"preset": "tiny", "embed": {"dense_attention": "naclip", "mask_tokens": False}})
    assert params.embed.dense_attention == "naclip" and not params.embed.mask_tokens


def test_text_side_templates_synonyms_and_stuff_negatives() -> None:
    assert len(expand_templates("a cat", True, "imagenet80")) == 80
    assert len(expand_templates("a cat", True, "ovseg7")) == 7 and expand_templates("a cat", False) == ["a cat"]
    assert prompt_synonyms(" sofa | couch ") == ["sofa", "couch"]
    stuff = settings_from_params({"preset": "balanced"}).score.negatives
    assert {"sky", "wall", "road", "grass", "tree"} <= set(stuff)
    assert "sky" not in negatives_for("the sky", stuff) and "sky" in negatives_for("the red car", stuff)
    assert "tree" not in negatives_for("a bush|tree", stuff)
    # The mask that matches either synonym best wins.
    sofa, couch = np.eye(3, dtype=np.float32)[:2]
    masks = np.stack([sofa, couch, np.eye(3, dtype=np.float32)[2]])
    scores = score_synonyms(masks, np.stack([sofa, couch]), np.zeros((0, 0)), 100.0)
    np.testing.assert_allclose(scores.score, [1.0, 1.0, 0.0], atol=1e-6)
