"""SAM 3 as a :class:`~ovseg.masks.finder.Finder`: words to every instance, through transformers' ``Sam3Model``.

The cached half is the ViT backbone's output (``get_vision_features``' ``last_hidden_state``): 72 x 72 tokens
of 1024 values for the 1008 px input, 10.6 MB in float16. The FPN neck that turns it into the detector's four
scales is a few convolutions, so it runs again per prompt rather than caching five times the bytes. A prompt then
runs the text encoder, the DETR encoder and decoder and the mask head on those features
(``Sam3Model(vision_embeds=...)``), and transformers' own post-processing gives the masks and scores.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ovseg.masks.finder import FoundSet

MASK_THRESHOLD = 0.5  # SAM 3's own: a pixel is in an instance where its mask probability passes this


def load_sam3_finder(folder: Path, device: str, min_score: float) -> Sam3Finder:
    """SAM 3's detector and processor from a transformers folder (the hub's ``facebook/sam3`` layout)."""
    import torch
    from transformers import Sam3Model, Sam3Processor

    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    model = Sam3Model.from_pretrained(str(folder), dtype=dtype).to(device).eval()
    processor = Sam3Processor.from_pretrained(str(folder))
    return Sam3Finder(model, processor, str(device), min_score)


class Sam3Finder:
    """SAM 3's image encoder and its per-prompt detector, split where the DAG caches."""

    name = "sam3"

    def __init__(self, model: Any, processor: Any, device: str, min_score: float) -> None:
        self.model, self.processor, self.device, self.min_score = model, processor, device, min_score
        self.encoder_calls = 0

    def encode(self, image: Image.Image) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        import torch

        inputs = self.processor(images=image.convert("RGB"), return_tensors="pt")
        pixels = inputs.pixel_values.to(self.device, self.model.dtype)
        with torch.inference_mode():
            hidden = self.model.get_vision_features(pixel_values=pixels).last_hidden_state[0]
        self.encoder_calls += 1
        side = int(pixels.shape[-1])
        return {"vision": hidden.float().cpu().numpy().astype(np.float16)}, {"input_side": side}

    def find(self, features: dict[str, np.ndarray], size: tuple[int, int], texts: list[str]) -> list[FoundSet]:
        import torch
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        tokens = torch.from_numpy(features["vision"].astype(np.float32)).to(self.device, self.model.dtype)[None]
        grid = math.isqrt(tokens.shape[1])
        width, height = size
        found = []
        with torch.inference_mode():
            spatial = tokens.view(1, grid, grid, -1).permute(0, 3, 1, 2)
            fpn, positions = self.model.vision_encoder.neck(spatial)
            vision = Sam3VisionEncoderOutput(
                last_hidden_state=tokens, fpn_hidden_states=fpn, fpn_position_encoding=positions
            )
            for text in texts:
                words = self.processor(text=[text], return_tensors="pt").to(self.device)
                outputs = self.model(
                    vision_embeds=vision, input_ids=words.input_ids, attention_mask=words.attention_mask
                )
                result = self.processor.post_process_instance_segmentation(
                    outputs, threshold=self.min_score, mask_threshold=MASK_THRESHOLD, target_sizes=[(height, width)]
                )[0]
                found.append(_found_set(result, height, width))
        return found


def _found_set(result: dict[str, Any], height: int, width: int) -> FoundSet:
    """transformers' post-processed instances as arrays, best first, without empty masks; boxes from the masks."""
    masks = result["masks"].cpu().numpy().astype(bool).reshape(-1, height, width)
    scores = result["scores"].float().cpu().numpy().astype(np.float32).reshape(-1)
    keep = masks.any(axis=(1, 2))
    masks, scores = masks[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    masks, scores = masks[order], scores[order]
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, mask in enumerate(masks):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        boxes[i] = (cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1)
    return FoundSet(masks, boxes, scores)
