"""COCO run-length encoding of masks (pycocotools), as JSON-friendly dicts."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode(mask: np.ndarray) -> dict[str, object]:
    """Encode a (H, W) bool mask as COCO RLE with a str ``counts`` so it fits in JSON."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode(rle: dict[str, object]) -> np.ndarray:
    """Decode a COCO RLE dict (str or bytes counts) back to a (H, W) bool mask."""
    counts = rle["counts"]
    coco = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(coco).astype(bool)
