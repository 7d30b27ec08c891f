"""CLIP features for every mask candidate, two ways, each multi-scale.

* ``crop``: one crop per mask and context scale (the box enlarged 1x, 1.5x, ...), cut
  with ``roi_align`` from the normalised image so out-of-image pixels become the mean
  colour; the background inside the crop is dimmed towards the mean so CLIP looks at
  the masked object. Embeddings are averaged over scales.
* ``dense``: a few full-image passes (one per image scale) that keep a feature for every
  ViT patch, MaskCLIP-style: the last block's value path projected into the joint
  space, which localises far better than the class token. Each mask's feature is its
  area-weighted average over the patches it covers, averaged over scales.

Both only look at the image, never at the prompt, so they are computed once per image
and reused for every prompt.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.ops import roi_align

from ovseg.clip.dense import (
    embed_patches,
    last_block_patch_features,
    mask_token_features,
    patch_membership,
    run_blocks,
)
from ovseg.config import EmbedSettings
from ovseg.errors import OvsegError, one_line
from ovseg.weights.registry import CLIP, resolve_model_dir


@dataclass
class ClipBundle:
    """A loaded open_clip model with what feature extraction needs to know about it."""

    model: torch.nn.Module
    tokenizer: object
    input_size: int
    mean: torch.Tensor  # (3,)
    std: torch.Tensor  # (3,)
    device: torch.device
    dtype: torch.dtype

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp().item())


def load_clip(name: str, device: str, *, text_only: bool = False) -> ClipBundle:
    """Load an open_clip model from its checkpoint folder with `create_model_and_transforms`.

    ``text_only`` drops the vision tower after loading: the scoring stage needs only
    the text encoder, and a 6 GB GPU has no room to spare.
    """
    import open_clip

    folder = resolve_model_dir(name, CLIP)
    precision = "fp16" if str(device).startswith("cuda") else "fp32"
    try:
        model, _, _ = open_clip.create_model_and_transforms(
            f"local-dir:{Path(folder).resolve()}", device=device, precision=precision
        )
        tokenizer = open_clip.get_tokenizer(f"local-dir:{Path(folder).resolve()}")
    except Exception as exc:  # noqa: BLE001 - a corrupt or mismatched file fails in many ways
        raise OvsegError(f"cannot load CLIP model from {folder}: {one_line(exc)}") from None
    model.eval()
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    if text_only:
        model.visual = None
    dtype = torch.float16 if precision == "fp16" else torch.float32
    return ClipBundle(
        model=model,
        tokenizer=tokenizer,
        input_size=int(size),
        mean=torch.tensor(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)), dtype=torch.float32),
        std=torch.tensor(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)), dtype=torch.float32),
        device=torch.device(device),
        dtype=dtype,
    )


def normalised_image(bundle: ClipBundle, image: Image.Image, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(1, 3, H, W) CLIP-normalised tensor; zero means 'the dataset mean colour'."""
    if size is not None:
        image = image.resize(size, Image.Resampling.BICUBIC)
    array = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
    tensor = (array - bundle.mean) / bundle.std
    return tensor.permute(2, 0, 1).unsqueeze(0).to(bundle.device)


def _l2(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else contextlib.nullcontext()


def scaled_square_boxes(boxes_xywh: np.ndarray, scale: float, min_side: float = 8.0) -> np.ndarray:
    """Square boxes (x1, y1, x2, y2) centred on each box, side = longer box side x ``scale``."""
    x, y, w, h = (boxes_xywh[:, i].astype(np.float64) for i in range(4))
    side = np.maximum(np.maximum(w, h) * scale, min_side)
    cx, cy = x + w / 2.0, y + h / 2.0
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1).astype(np.float32)


@torch.inference_mode()
def crop_embeddings(
    bundle: ClipBundle,
    image: Image.Image,
    masks: np.ndarray,
    boxes_xywh: np.ndarray,
    scales: list[float],
    background_dim: float,
    batch_size: int,
) -> np.ndarray:
    """(N, D) unit-norm embeddings: mean over context scales of masked-crop CLIP features."""
    n = masks.shape[0]
    if n == 0:
        return np.zeros((0, _embed_dim(bundle)), np.float32)
    img = normalised_image(bundle, image)
    size = bundle.input_size
    total = torch.zeros((n, _embed_dim(bundle)), dtype=torch.float32)
    for scale in scales:
        boxes = torch.from_numpy(scaled_square_boxes(boxes_xywh, scale)).to(bundle.device)
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            rois = boxes[start:stop]
            index = torch.zeros((stop - start, 1), device=bundle.device)
            crops = roi_align(img, torch.cat([index, rois], 1), (size, size), 1.0, 2, aligned=True)
            mask_t = torch.from_numpy(masks[start:stop]).to(bundle.device, torch.float32).unsqueeze(1)
            local = torch.arange(stop - start, device=bundle.device, dtype=torch.float32).unsqueeze(1)
            mask_crops = roi_align(mask_t, torch.cat([local, rois], 1), (size, size), 1.0, 2, aligned=True)
            # Dim the background towards the mean colour (zero after normalisation).
            crops = crops * (mask_crops + (1.0 - mask_crops) * (1.0 - background_dim))
            with _autocast(bundle.device):
                features = bundle.model.encode_image(crops.to(bundle.dtype))
            total[start:stop] += _l2(features.float()).cpu()
    return _l2(total / len(scales)).numpy()


def _embed_dim(bundle: ClipBundle) -> int:
    proj = getattr(bundle.model.visual, "proj", None)
    if proj is not None:
        return int(proj.shape[1])
    return int(bundle.model.visual.output_dim)


def _check_dense_support(visual: torch.nn.Module) -> None:
    ok = all(hasattr(visual, a) for a in ("conv1", "positional_embedding", "transformer", "ln_post", "proj"))
    ok = (
        ok
        and visual.proj is not None
        and isinstance(getattr(visual.transformer.resblocks[-1], "attn", None), torch.nn.MultiheadAttention)
    )
    if not ok:
        raise OvsegError("embed.strategy dense needs a ViT CLIP model with standard attention; use strategy crop")


def _grid_for(bundle: ClipBundle, width: int, height: int, scale: float, max_tokens: int) -> tuple[int, int]:
    """Patch grid (rows, cols) for a pass whose short side is ``input_size x scale``."""
    patch = bundle.model.visual.patch_size[0]
    short = bundle.input_size * scale
    factor = short / min(width, height)
    rows, cols = max(1, round(height * factor / patch)), max(1, round(width * factor / patch))
    if rows * cols > max_tokens:
        shrink = (max_tokens / (rows * cols)) ** 0.5
        rows, cols = max(1, int(rows * shrink)), max(1, int(cols * shrink))
    return rows, cols


def _pixels(bundle: ClipBundle, image: Image.Image, rows: int, cols: int) -> torch.Tensor:
    patch = bundle.model.visual.patch_size[0]
    return normalised_image(bundle, image, (cols * patch, rows * patch)).to(bundle.dtype)


@torch.inference_mode()
def dense_patch_features(
    bundle: ClipBundle,
    image: Image.Image,
    scale: float,
    max_tokens: int,
    attention: str = "identity",
    masks: np.ndarray | None = None,
) -> torch.Tensor:
    """(rows, cols, D) unit-norm per-patch features in CLIP's joint space, last block per ``attention``."""
    rows, cols, states = _whole_image_pass(bundle, image, scale, max_tokens, last_block=False)
    return _patch_features_from(bundle, states, rows, cols, attention, masks)


@torch.inference_mode()
def _whole_image_pass(
    bundle: ClipBundle, image: Image.Image, scale: float, max_tokens: int, last_block: bool
) -> tuple[int, int, list[torch.Tensor]]:
    """The ViT on the whole image at ``scale``: grid size and the input of every block (the last one too with
    ``last_block``, which the per-mask class tokens need)."""
    visual = bundle.model.visual
    _check_dense_support(visual)
    rows, cols = _grid_for(bundle, image.width, image.height, scale, max_tokens)
    blocks = visual.transformer.resblocks if last_block else visual.transformer.resblocks[:-1]
    with _autocast(bundle.device):
        x = embed_patches(visual, _pixels(bundle, image, rows, cols), rows, cols)
        return rows, cols, run_blocks(visual, x, blocks)


@torch.inference_mode()
def _patch_features_from(
    bundle: ClipBundle, states: list[torch.Tensor], rows: int, cols: int, attention: str, masks: np.ndarray | None
) -> torch.Tensor:
    visual = bundle.model.visual
    last_input = states[len(visual.transformer.resblocks) - 1]
    with _autocast(bundle.device):
        membership = _membership(bundle, masks, rows, cols) if attention == "mask" else None
        return last_block_patch_features(visual, last_input, rows, cols, attention, membership)


def _membership(bundle: ClipBundle, masks: np.ndarray | None, rows: int, cols: int) -> torch.Tensor:
    if masks is None:
        raise OvsegError("embed.dense_attention mask needs the candidate masks")
    return patch_membership(torch.from_numpy(masks).to(bundle.device), rows, cols)


@torch.inference_mode()
def windowed_patch_features(
    bundle: ClipBundle, image: Image.Image, scale: float, window: int, stride: int, attention: str, masks: np.ndarray
) -> torch.Tensor:
    """(rows, cols, D) patch features from ``window`` px squares every ``stride`` px, averaged where they overlap.

    The image is resized so its short side is ``input_size x scale`` (at least the window);
    each window runs at the model's own grid, so no positional interpolation is needed and
    small things are seen at CLIP's native resolution.
    """
    visual = bundle.model.visual
    _check_dense_support(visual)
    patch = visual.patch_size[0]
    win = max(patch, window // patch * patch)
    step = max(patch, stride // patch * patch)
    short = max(win, bundle.input_size * scale)
    factor = short / min(image.width, image.height)
    rows, cols = (
        max(win // patch, round(image.height * factor / patch)),
        max(win // patch, round(image.width * factor / patch)),
    )
    resized = image.resize((cols * patch, rows * patch), Image.Resampling.BICUBIC)
    full_masks = _resize_masks(masks, rows * patch, cols * patch) if attention == "mask" else None
    wr = win // patch
    total = None
    count = torch.zeros((rows, cols, 1), device=bundle.device)
    for top in _starts(rows, wr, step // patch):
        for left in _starts(cols, wr, step // patch):
            box = (left * patch, top * patch, (left + wr) * patch, (top + wr) * patch)
            crop = resized.crop(box)
            crop_masks = full_masks[:, box[1] : box[3], box[0] : box[2]] if full_masks is not None else None
            with _autocast(bundle.device):
                x = embed_patches(visual, _pixels(bundle, crop, wr, wr), wr, wr)
                x = run_blocks(visual, x, visual.transformer.resblocks[:-1])[-1]
                member = _membership(bundle, crop_masks, wr, wr) if crop_masks is not None else None
                feats = last_block_patch_features(visual, x, wr, wr, attention, member)
            if total is None:
                total = torch.zeros((rows, cols, feats.shape[-1]), device=feats.device)
            total[top : top + wr, left : left + wr] += feats
            count[top : top + wr, left : left + wr] += 1
    return F.normalize(total / count.clamp_min(1), dim=-1)


def _starts(length: int, size: int, step: int) -> list[int]:
    """Window starts covering ``length`` cells: every ``step``, the last one flush with the end."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size, max(1, step)))
    return starts + [length - size]


def _resize_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    tensor = torch.from_numpy(masks).float().unsqueeze(1)
    return (F.interpolate(tensor, size=(height, width), mode="area")[:, 0] >= 0.5).numpy()


def pool_in_masks(features: torch.Tensor, masks: np.ndarray, chunk: int = 32) -> torch.Tensor:
    """(N, D) area-weighted mean of ``features`` (rows, cols, D) over each (H, W) mask.

    Each mask is reduced to the patch grid by area averaging, so a patch half covered
    by the mask counts half; the result is L2-normalised.
    """
    rows, cols, dim = features.shape
    flat = features.reshape(rows * cols, dim)
    out = []
    for start in range(0, masks.shape[0], chunk):
        mask_t = torch.from_numpy(masks[start : start + chunk]).to(features.device, torch.float32)
        weights = F.interpolate(mask_t.unsqueeze(1), size=(rows, cols), mode="area").flatten(1)
        pooled = weights @ flat / weights.sum(1, keepdim=True).clamp_min(1e-8)
        out.append(_l2(pooled))
    if not out:
        return torch.zeros((0, dim))
    return torch.cat(out).cpu()


def dense_embeddings(
    bundle: ClipBundle,
    image: Image.Image,
    masks: np.ndarray,
    scales: list[float],
    max_tokens: int,
    settings: EmbedSettings | None = None,
) -> np.ndarray:
    """(N, D) unit-norm embeddings: mean over image scales of mask-pooled patch features.

    With ``settings``: the last block attends per ``dense_attention``, ``dense_window`` > 0
    slides windows instead of one whole-image pass, and ``mask_tokens`` adds each mask's own
    class token, fused as ``token + mask_token_mix x pooled`` (unit vectors, CorrCLIP's 1 : 0.5).
    """
    attention = settings.dense_attention if settings else "identity"
    tokens_wanted = settings is not None and settings.mask_tokens and len(masks) > 0
    windows = settings is not None and settings.dense_window > 0
    total = None
    for scale in scales:
        states = None
        if not windows or tokens_wanted:  # one whole-image pass serves the patches and the mask tokens
            rows, cols, states = _whole_image_pass(bundle, image, scale, max_tokens, last_block=tokens_wanted)
        if windows:
            feats = windowed_patch_features(
                bundle, image, scale, settings.dense_window, settings.dense_stride, attention, masks
            )
        else:
            feats = _patch_features_from(bundle, states, rows, cols, attention, masks)
        pooled = pool_in_masks(feats, masks)
        if tokens_wanted:
            with torch.inference_mode():
                member = _membership(bundle, masks, rows, cols)
                tokens = mask_token_features(bundle.model.visual, states, member, settings.batch_size).cpu()
            pooled = _l2(tokens + settings.mask_token_mix * pooled)
        total = pooled if total is None else total + pooled
    return _l2(total / len(scales)).numpy()


def mask_embeddings(
    bundle: ClipBundle, image: Image.Image, masks: np.ndarray, boxes: np.ndarray, settings: EmbedSettings
) -> np.ndarray:
    """Embeddings with the configured strategy; ``ensemble`` averages crop and dense."""
    parts = []
    if settings.strategy in ("crop", "ensemble"):
        parts.append(
            crop_embeddings(
                bundle, image, masks, boxes, settings.crop_scales, settings.background_dim, settings.batch_size
            )
        )
    if settings.strategy in ("dense", "ensemble"):
        parts.append(dense_embeddings(bundle, image, masks, settings.dense_scales, settings.dense_max_tokens, settings))
    mean = np.mean(parts, axis=0)
    return mean / np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-8)
