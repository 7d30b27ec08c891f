"""Optical flow between frames (OpenCV's DIS) and what is carried along it: masks, logits, pixels.

DIS (Kroeger et al., ECCV 2016) is dense, runs on a CPU in tens of milliseconds at half of 480p,
and needs no weights. Flows here are *backward*: for each pixel of the frame being filled, where it
was in the frame the values come from, so warping is one ``cv2.remap``; a pixel whose source lies
outside that frame gets ``outside``.
"""

from __future__ import annotations

import numpy as np

PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}


def gray(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2GRAY)


def backward_flow(target: np.ndarray, source: np.ndarray, scale: float = 0.5, preset: str = "medium") -> np.ndarray:
    """(H, W, 2) float32: for each pixel of ``target``, the (dx, dy) to where it was in ``source``.

    Both are grayscale (H, W) uint8. Computed at ``scale`` of the size (half by default: four times
    cheaper, and DIS's patches then see more context), then resized back with the vectors scaled.
    """
    import cv2

    height, width = target.shape[:2]
    if scale != 1.0:
        size = (max(8, round(width * scale)), max(8, round(height * scale)))
        target = cv2.resize(target, size, interpolation=cv2.INTER_AREA)
        source = cv2.resize(source, size, interpolation=cv2.INTER_AREA)
    dis = cv2.DISOpticalFlow_create(PRESETS[preset])
    flow = dis.calc(target, source, None)
    if scale != 1.0:
        flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
        flow[..., 0] *= width / target.shape[1]
        flow[..., 1] *= height / target.shape[0]
    return flow


def sample_grid(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The source coordinates (map_x, map_y) a backward flow points at."""
    height, width = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return xs + flow[..., 0], ys + flow[..., 1]


def warp(values: np.ndarray, flow: np.ndarray, outside: float = 0.0, nearest: bool = False) -> np.ndarray:
    """``values`` of the source frame carried to the target frame along the backward ``flow``."""
    import cv2

    map_x, map_y = sample_grid(flow)
    mode = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.remap(
        np.asarray(values, np.float32), map_x, map_y, mode, borderMode=cv2.BORDER_CONSTANT, borderValue=outside
    )


def warp_mask(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """A boolean mask carried along the flow (a pixel is in when more than half of its source is)."""
    return warp(mask.astype(np.float32), flow) > 0.5


def sample(values: np.ndarray, xs: np.ndarray, ys: np.ndarray, nearest: bool = False) -> np.ndarray:
    """``values`` (h, w[, c]) at float positions (bilinear; nearest for masks), out-of-range read as 0."""
    import cv2

    count = len(xs)
    if count == 0:
        return np.zeros((0, *values.shape[2:]), values.dtype)
    mode = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    width = 4096  # remap's maps are images: lay the points out in rows (a side must stay under 32767)
    rows = -(-count // width)
    map_x = np.zeros(rows * width, np.float32)
    map_y = np.zeros(rows * width, np.float32)
    map_x[:count], map_y[:count] = xs, ys
    source = np.ascontiguousarray(values)
    out = cv2.remap(source, map_x.reshape(rows, width), map_y.reshape(rows, width), mode,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip
    return out.reshape(rows * width, *values.shape[2:])[:count]
