"""ovseg's mask engine: "everything" mode and prompted masks over any :class:`PromptModel`.

Everything mode, per image:

1. encode the image once;
2. prompt single points (a regular grid, or with ``sampling: adaptive`` a coarse grid
   followed by rounds of points where no kept mask is yet, see :mod:`.sampling`; when a
   round adds less than ``min_coverage_gain`` of the image, the remaining calls spread
   evenly, farthest from every point tried, to find parts inside the big masks);
3. judge each mask on its **low-resolution** logits: the model's predicted IoU and the
   stability score (IoU of the mask thresholded at ±``stability_score_offset``);
4. NMS over everything that passed, once, at the end (box NMS by predicted IoU, as SAM's
   generator does, or NMS on mask IoU); the rounds in between only need what is covered;
5. upsample **only the survivors** to the image size, optionally remove small islands
   and holes, and return the same :class:`~ovseg.storage.store.MaskProposals` artifact the
   stage has always written.

Steps 3-5 cost a few milliseconds per mask at 256 x 256, which is why thresholds run
before upsampling: a 32 x 32 grid yields ~3,000 raw masks, and upsampling all of them
to a 1024 px photo is most of the time sam2's own generator spends on a CPU.

Prompted masks (points with include/exclude labels, a box) use the same model through
:meth:`MaskEngine.segment_prompt`, which the CLI and the Python API call.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from sam2.utils.amg import batched_mask_to_box, calculate_stability_score, remove_small_regions

from ovseg.config import MasksSettings
from ovseg.errors import OvsegError
from ovseg.masks.backend import PromptModel
from ovseg.masks.sampling import edge_strength, farthest_uncovered_points, grid_points
from ovseg.storage.store import MaskProposals

# An uncovered gap narrower than this share of the low-resolution grid's longer side is
# a border between masks, not an object: adaptive sampling puts no point there.
MIN_GAP_FRACTION = 0.006


@dataclass
class _Candidates:
    """Masks that passed the quality filters, still at low resolution (logits as float16)."""

    logits: np.ndarray  # (K, h, w) cropped to the part of the grid that shows the image
    iou: np.ndarray  # (K,)
    stability: np.ndarray  # (K,)

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> _Candidates:
        return cls(np.zeros((0, *shape), np.float16), np.zeros(0, np.float32), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return int(self.iou.shape[0])

    def extend(self, other: _Candidates) -> _Candidates:
        return _Candidates(
            np.concatenate([self.logits, other.logits]),
            np.concatenate([self.iou, other.iou]),
            np.concatenate([self.stability, other.stability]),
        )

    def take(self, index: np.ndarray) -> _Candidates:
        return _Candidates(self.logits[index], self.iou[index], self.stability[index])

    def coverage(self, logit: float = 0.0) -> np.ndarray:
        """Pixels some kept mask claims with a logit above ``logit`` (0: any of its pixels)."""
        if not len(self):
            return np.zeros(self.logits.shape[1:], bool)
        return (self.logits > logit).any(axis=0)


@dataclass
class PromptedMask:
    """One mask for one prompt, at the size of the image."""

    mask: np.ndarray  # (H, W) bool
    score: float  # the model's predicted IoU
    logits: np.ndarray  # (h, w) low-resolution logits, cropped to the part that shows the image


class MaskEngine:
    """Turns a :class:`PromptModel` into mask candidates (everything mode) or prompted masks."""

    def __init__(self, model: PromptModel, settings: MasksSettings) -> None:
        self.model = model
        self.settings = settings
        self._image_key: str | None = None
        self._image_size = (0, 0)
        self._image: np.ndarray | None = None
        self._edge_map: np.ndarray | None = None

    # --- the encoded image --------------------------------------------------------------

    def set_image(self, image: Image.Image | np.ndarray) -> float:
        """Encode ``image`` unless it is the one already encoded; returns the seconds spent."""
        array = np.ascontiguousarray(np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image))
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise OvsegError(f"an image must be H x W x 3 uint8 RGB, got {array.shape} {array.dtype}")
        key = hashlib.sha256(array.tobytes()).hexdigest() + str(array.shape)
        if key == self._image_key:
            return 0.0
        started = time.perf_counter()
        self.model.set_image(array)
        self._image_key = key
        self._image_size = array.shape[:2]
        self._image, self._edge_map = array, None
        return time.perf_counter() - started

    # --- everything mode ----------------------------------------------------------------

    def generate(self, image: Image.Image) -> tuple[MaskProposals, dict[str, Any]]:
        """Mask candidates for the whole image, plus what it cost (decoder calls, rounds, seconds)."""
        settings = self.settings
        started = time.perf_counter()
        encode_seconds = self.set_image(image)
        self.model.calls = 0
        pool, loop = self._sample(settings.max_prompts if settings.sampling == "adaptive" else None)
        proposals = self._finish(pool)
        stats = {
            "decoder_calls": int(self.model.calls),
            "encoder_passes": 1,
            **loop,
            "coverage": round(float(proposals.masks.any(0).mean()) if len(proposals) else 0.0, 4),
            "encode_s": round(encode_seconds, 3),
            "seconds": round(time.perf_counter() - started, 3),
        }
        return proposals, stats

    def _sample(self, budget: int | None) -> tuple[_Candidates, dict[str, Any]]:
        """Prompt the encoded image (a grid, or adaptive rounds up to ``budget`` calls); the kept candidates."""
        settings = self.settings
        height, width = self._image_size
        adaptive = budget is not None
        points = grid_points(settings.points_per_side, width, height)
        budget = budget if adaptive else len(points)
        pool: _Candidates | None = None
        tried: list[np.ndarray] = []
        rounds, coverage, raw, refining = 0, 0.0, 0, False
        covered: np.ndarray | None = None  # grown with each batch: no pass over the whole pool per round
        while len(points):
            points = points[: max(0, budget - self.model.calls)]
            for start in range(0, len(points), settings.points_per_batch):
                batch = points[start : start + settings.points_per_batch]
                logits, iou = self.model.predict(
                    batch[:, None, :], np.ones((len(batch), 1), np.int64), settings.multimask_output
                )
                raw += logits.shape[0] * logits.shape[1]
                found = self._filter(logits, iou)
                pool = found if pool is None else pool.extend(found)
                if adaptive:
                    new = found.coverage(settings.cover_logit)
                    covered = new if covered is None else covered | new
            tried.append(points)
            rounds += 1
            if not adaptive or self.model.calls >= budget:
                break
            pool = pool if pool is not None else _Candidates.empty(self.model.low_res_valid)
            covered = covered if covered is not None else pool.coverage()
            gain, coverage = float(covered.mean()) - coverage, float(covered.mean())
            # Once gaps stop yielding masks, the rest of the budget refines evenly (parts inside
            # big masks: the cat's eyes and nose), farthest from every point tried so far.
            count = min(settings.points_per_round, budget - self.model.calls)
            refining = refining or (rounds > 1 and gain < settings.min_coverage_gain)
            points = (
                np.zeros((0, 2), np.float32) if refining else self._uncovered(covered, np.concatenate(tried), count)
            )
            if not len(points):  # no gap wide enough for an object is left
                refining = True
                points = self._uncovered(np.zeros_like(covered), np.concatenate(tried), count)
        return self._nms(pool), {"rounds": rounds, "refined": refining, "raw_masks": raw}

    def _filter(self, logits: np.ndarray, iou: np.ndarray) -> _Candidates:
        """Keep masks whose predicted IoU and low-resolution stability pass the thresholds."""
        rows, cols = self.model.low_res_valid
        flat = torch.from_numpy(np.ascontiguousarray(logits[..., :rows, :cols]).reshape(-1, rows, cols))
        scores = iou.reshape(-1)
        stability = calculate_stability_score(flat, 0.0, self.settings.stability_score_offset).numpy()
        stability = np.nan_to_num(stability, nan=0.0)
        nonempty = (flat > 0).flatten(1).any(1).numpy()
        keep = (
            (scores >= self.settings.pred_iou_thresh) & (stability >= self.settings.stability_score_thresh) & nonempty
        )
        return _Candidates(flat.numpy()[keep].astype(np.float16), scores[keep].astype(np.float32), stability[keep])

    def _nms(self, pool: _Candidates | None) -> _Candidates:
        if pool is None:
            return _Candidates.empty(self.model.low_res_valid)
        if len(pool) <= 1:
            return pool
        if self.settings.mask_nms_thresh is not None:
            return pool.take(mask_nms(pool.logits > 0, pool.iou, self.settings.mask_nms_thresh))
        from torchvision.ops import nms  # box NMS only: minisam's cpu preset never imports torchvision (~2 s)

        boxes = batched_mask_to_box(torch.from_numpy(pool.logits > 0)).float()
        keep = nms(boxes, torch.from_numpy(pool.iou), self.settings.box_nms_thresh).numpy()
        return pool.take(np.sort(keep))

    def _uncovered(self, covered: np.ndarray, tried: np.ndarray, count: int) -> np.ndarray:
        """New point prompts (image pixels) in the gaps the kept masks leave."""
        rows, cols = covered.shape
        height, width = self._image_size
        to_grid = np.array([cols / width, rows / height], np.float32)
        weight = None
        if self.settings.edge_prompts > 0:
            weight = 1.0 + self.settings.edge_prompts * self._edges((rows, cols))
        minimum = MIN_GAP_FRACTION * max(rows, cols)
        picks = farthest_uncovered_points(covered, tried * to_grid - 0.5, count, minimum, weight)
        return (picks + 0.5) / to_grid

    def _edges(self, shape: tuple[int, int]) -> np.ndarray:
        """Edge strength of the encoded image at the sampling grid's ``shape`` (rows, cols), computed once."""
        if self._edge_map is None or self._edge_map.shape != shape:
            gray = Image.fromarray(self._image).convert("L").resize(shape[::-1], Image.Resampling.BILINEAR)
            self._edge_map = edge_strength(np.asarray(gray, np.float32))
        return self._edge_map

    def _finish(self, pool: _Candidates) -> MaskProposals:
        """Upsample the survivors, clean small regions, sort by quality, cap the count."""
        height, width = self._image_size
        if not len(pool):
            return MaskProposals.empty(height, width)
        masks = self.model.upscale(pool.logits.astype(np.float32)) > 0
        if self.settings.min_mask_region_area > 0:
            masks = np.stack([_clean(mask, self.settings.min_mask_region_area) for mask in masks])
        areas = masks.reshape(len(masks), -1).sum(1)
        order = [i for i in np.argsort(-(pool.iou * pool.stability), kind="stable") if areas[i] > 0]
        order = order[: self.settings.max_masks]
        if not order:
            return MaskProposals.empty(height, width)
        masks = masks[order]
        boxes = batched_mask_to_box(torch.from_numpy(masks)).numpy().astype(np.float32)
        boxes[:, 2:] = boxes[:, 2:] - boxes[:, :2] + 1  # XYXY (inclusive) -> XYWH
        return MaskProposals(
            masks=masks,
            boxes=boxes,
            areas=areas[order].astype(np.int64),
            predicted_iou=pool.iou[order],
            stability_score=pool.stability[order].astype(np.float32),
        )

    # --- prompted masks -----------------------------------------------------------------

    def segment_prompt(
        self,
        image: Image.Image | np.ndarray,
        points: list[tuple[float, float]] | np.ndarray | None = None,
        labels: list[int] | np.ndarray | None = None,
        box: tuple[float, float, float, float] | None = None,
    ) -> PromptedMask:
        """One mask from clicks (label 1 include, 0 exclude) and/or a box (x1, y1, x2, y2), in image pixels.

        A single include click is ambiguous (the wheel, the car, the car and its shadow),
        so the model gives three masks and the one it rates best is returned; with more
        clicks or a box the prompt is specific and one mask is asked for, as SAM advises.
        """
        self.set_image(image)
        height, width = self._image_size
        coords = np.zeros((0, 2), np.float32) if points is None else np.asarray(points, np.float32).reshape(-1, 2)
        point_labels = np.zeros(0, np.int64) if labels is None else np.asarray(labels, np.int64).reshape(-1)
        if len(coords) != len(point_labels):
            raise OvsegError(f"{len(coords)} points but {len(point_labels)} labels: give one label per point")
        if not np.isin(point_labels, (0, 1)).all():
            raise OvsegError("point labels must be 1 (include) or 0 (exclude)")
        if box is not None:
            x1, y1, x2, y2 = (float(v) for v in box)
            if not (x2 > x1 and y2 > y1):
                raise OvsegError(f"a box is x1,y1,x2,y2 with x2 > x1 and y2 > y1, got {box}")
            coords = np.concatenate([np.array([[x1, y1], [x2, y2]], np.float32), coords])
            point_labels = np.concatenate([np.array([2, 3]), point_labels])
        if not len(coords) or not ((point_labels == 1).any() or box is not None):
            raise OvsegError("a prompt needs at least one include point (label 1) or a box")
        corner = np.isin(point_labels, (2, 3))  # a box may end on the image's far edge
        limit_x, limit_y = np.where(corner, width, width - 1e-3), np.where(corner, height, height - 1e-3)
        outside = (coords[:, 0] < 0) | (coords[:, 0] > limit_x) | (coords[:, 1] < 0) | (coords[:, 1] > limit_y)
        if outside.any():
            x, y = coords[int(np.argmax(outside))]
            raise OvsegError(f"point ({x:g}, {y:g}) is outside the {width}x{height} image")
        multimask = box is None and len(coords) == 1
        logits, iou = self.model.predict(coords[None], point_labels[None], multimask)
        best = int(np.argmax(iou[0]))
        rows, cols = self.model.low_res_valid
        low_res = logits[0, best : best + 1, :rows, :cols]
        return PromptedMask(self.model.upscale(low_res)[0] > 0, float(iou[0, best]), low_res[0])


def mask_nms(masks: np.ndarray, scores: np.ndarray, threshold: float, side: int = 64) -> np.ndarray:
    """Indices (sorted) kept by greedy NMS on mask IoU, best score first.

    Why not boxes: nested regions share their box (the road, and the road without the
    car on it) though their pixels differ; box NMS keeps only one of them. Mask IoU is
    computed on masks area-averaged to at most ``side`` x ``side``, so hundreds of
    candidates cost one small matrix product.
    """
    count = len(masks)
    tensor = torch.from_numpy(masks).float().unsqueeze(1)
    rows, cols = masks.shape[1:]
    if max(rows, cols) > side:
        scale = side / max(rows, cols)
        size = (max(1, round(rows * scale)), max(1, round(cols * scale)))
        tensor = torch.nn.functional.interpolate(tensor, size=size, mode="area")
    flat = tensor.reshape(count, -1)
    inter = flat @ flat.T
    areas = flat.sum(1)
    iou = (inter / (areas[:, None] + areas[None, :] - inter).clamp_min(1e-6)).numpy()
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(iou[i, j] <= threshold for j in kept):
            kept.append(int(i))
    return np.sort(np.array(kept, np.int64))


def _clean(mask: np.ndarray, area: int) -> np.ndarray:
    """Fill holes and drop islands smaller than ``area`` pixels (sam2's own helper, as its generator does)."""
    mask, _ = remove_small_regions(mask, area, "holes")
    mask, _ = remove_small_regions(mask, area, "islands")
    return mask
