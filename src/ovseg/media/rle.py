"""Masks as COCO describes them: run-length encoding (pycocotools) and XYWH boxes, JSON-friendly."""

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


def box_xywh(mask: np.ndarray) -> list[int]:
    """XYWH box of a bool mask ([0, 0, 0, 0] when empty), as selection.json and COCO write it."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return [0, 0, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
