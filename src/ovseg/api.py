"""ovseg from Python, as short as LangSAM's: ``Segmenter(...).segment(photo, "the red car")``.

A face like the CLI: it calls the same stage functions (``run_masks``, ``run_embed``,
``score_prompts``, ``select_for``) on the same content-addressed cache, so a photo
segmented here is not recomputed by ``ovseg run`` and the other way round. What it adds
is keeping models loaded between calls (a :class:`~ovseg.pipeline.ModelPool`), clicks and
boxes, and results as arrays and pictures instead of files.

    from ovseg import Segmenter
    seg = Segmenter(preset="cpu")
    res = seg.segment("photo.jpg", "the red car", top_k=3)
    res.masks, res.scores, res.boxes, res.merged      # at the photo's size
    res.overlay().save("overlay.png")
    seg.segment("photo.jpg", points=[(120, 80)], labels=[1])             # a click instead of words
    seg.segment("photo.jpg", "the car", points=[(300, 40)], labels=[0])  # words, corrected by a click
    seg.remove("photo.jpg", res).save("removed.png")
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ovseg import rle
from ovseg.coco import coco_annotations
from ovseg.config import apply_overrides, settings_from_params
from ovseg.errors import OvsegError
from ovseg.fileio import atomic_path, load_image, mask_image, working_image, write_json
from ovseg.pipeline import (
    ModelPool,
    Paths,
    box_xywh,
    pooled_mask_engine,
    run_embed,
    run_masks,
    score_prompts,
    select_for,
)
from ovseg.selection import refine_with_clicks
from ovseg.viz import overlay, resize_mask
from ovseg.weights import resolve_device

ImageLike = str | Path | Image.Image | np.ndarray


@dataclass
class SegmentResult:
    """What was found in one photo: each selected mask, its score and box, and their union."""

    image: Image.Image
    prompt: str | None
    masks: np.ndarray  # (K, H, W) bool, at the photo's size (clicks that re-draw the region: K = 1)
    scores: np.ndarray  # (K,) the prompt's scores (a click's mask: the model's predicted IoU)
    boxes: np.ndarray  # (K, 4) XYWH in photo pixels
    merged: np.ndarray  # (H, W) bool: what remove / replace / style edit
    details: dict[str, Any] = field(default_factory=dict)
    # The best-scoring mask candidates for the prompt (selected or not), so people can see what
    # else the mask model proposed: (N, H, W) bool at the photo's size and their scores.
    candidates: np.ndarray | None = None
    candidate_scores: np.ndarray | None = None

    def overlay(self) -> Image.Image:
        """The photo with the masks tinted and labelled with their scores: the same picture as overlay.png."""
        labels = [f"#{i + 1} {s:.2f}" for i, s in enumerate(self.scores)]
        return overlay(self.image, list(self.masks), labels, title=self.prompt or "clicks")

    def to_coco(self) -> dict[str, Any]:
        """This result as a COCO dataset (one image, the prompt as category, RLE segmentations)."""
        selected = [
            {"score": float(s), "area": int(m.sum()), "bbox_xywh": [int(v) for v in b], "rle": rle.encode(m)}
            for m, s, b in zip(self.masks, self.scores, self.boxes, strict=True)
        ]
        record = {
            "image": self.details.get("image", "image.png"),
            "image_size": list(self.image.size),
            "selected": selected,
        }
        return coco_annotations([record], self.prompt or "clicks")

    def save(self, folder: str | Path, visualize: bool = True) -> Path:
        """Write the result as the select stage does: ``mask.png``, ``masks/NN.png``, ``overlay.png``,
        ``selection.json`` and ``annotations.json`` (COCO), all at once (a temp folder renamed)."""
        folder = Path(folder)
        selected = [
            {"rank": rank, "score": round(float(s), 6), "bbox_xywh": [int(v) for v in b], "area": int(m.sum())}
            for rank, (m, s, b) in enumerate(zip(self.masks, self.scores, self.boxes, strict=True), start=1)
        ]
        record = {
            "image": self.details.get("image"),
            "prompt": self.prompt,
            "clicks": self.details.get("clicks"),
            "image_size": list(self.image.size),
            "selected": selected,
            "merged": {
                "area": int(self.merged.sum()),
                "bbox_xywh": box_xywh(self.merged),
                "rle": rle.encode(self.merged),
            },
        }
        with atomic_path(folder) as tmp:
            (tmp / "masks").mkdir(parents=True)
            mask_image(self.merged).save(tmp / "mask.png")
            for picked, mask in zip(selected, self.masks, strict=True):
                mask_image(mask).save(tmp / "masks" / f"{picked['rank']:02d}.png")
            if visualize:
                self.overlay().save(tmp / "overlay.png")
            write_json(tmp / "selection.json", record)
            write_json(tmp / "annotations.json", self.to_coco())
        return folder


class Segmenter:
    """Open-vocabulary segmentation and editing with models that load on first use and stay loaded."""

    def __init__(
        self, preset: str = "balanced", device: str = "auto", cache: str | Path = "cache", **overrides: Any
    ) -> None:
        """``overrides``: any stage setting as ``section={key: value}`` or ``"section.key"``-style ``set=[...]``."""
        sets = overrides.pop("set", [])
        self.params = apply_overrides({"preset": preset, "device": device, **overrides}, list(sets))
        settings_from_params({**self.params, "prompt": "-"})  # fail now on a bad preset or setting
        self.cache = Path(cache)
        self.pool = ModelPool()

    # --- segmentation -------------------------------------------------------------------

    def segment(
        self,
        image: ImageLike,
        prompt: str | None = None,
        *,
        points: list[tuple[float, float]] | None = None,
        labels: list[int] | None = None,
        box: tuple[float, float, float, float] | None = None,
        top_k: int | None = None,
        candidates: int = 0,
    ) -> SegmentResult:
        """Find ``prompt`` in ``image`` and/or follow clicks (label 1 include, 0 exclude) and a box (x1, y1, x2, y2).

        Words alone: the top-K candidates for the prompt. Clicks or a box alone: the mask the
        model draws for them. Both: the words' selection, with each include click adding the
        candidate under it and each exclude click dropping the ones under it, then the region
        re-prompted with the clicks so the mask follows them. ``candidates``: also return that
        many of the best-scoring candidates (the web page shows them).
        """
        if not (prompt and prompt.strip()) and not points and box is None:
            raise OvsegError("say what to find (a prompt) or click on it (points=[(x, y)], labels=[1])")
        path = self._as_file(image)
        params = {**self.params, "prompt": (prompt or "-").strip(), "images": str(path)}
        if top_k is not None:
            params["select"] = {**(params.get("select") or {}), "top_k": top_k}
        settings = settings_from_params(params)
        paths = Paths(cache=self.cache, output=self.cache / "api")
        photo = load_image(path)
        work = working_image(photo, settings.masks.max_image_side)
        scale = work.width / photo.width
        clicks = np.asarray(points or [], np.float32).reshape(-1, 2) * scale
        click_labels = np.asarray(labels if labels is not None else [1] * len(clicks), np.int64)
        work_box = None if box is None else tuple(float(v) * scale for v in box)
        if prompt and prompt.strip():
            run_masks(settings, [path], paths, self.pool)
            run_embed(settings, paths, self.pool)
            per_prompt, _ = score_prompts(settings, paths, [settings.prompt], self.pool)
            entry = per_prompt[settings.prompt][path.stem]
            selection, proposals, scores = select_for(settings, paths, entry)
            indices = refine_with_clicks(selection.indices, proposals.masks, scores, clicks, click_labels)
            masks = proposals.masks[indices]
            chosen = scores[indices] if indices else np.zeros(0, np.float32)
            merged = masks.any(0) if len(indices) else np.zeros(proposals.masks.shape[1:], bool)
            if (len(clicks) or work_box is not None) and merged.any():
                redrawn = self._reprompt(settings, work, merged, clicks, click_labels, work_box)
                if not np.array_equal(redrawn, merged):  # one mask now: the region the clicks re-drew
                    masks, chosen, merged = redrawn[None], np.asarray(chosen[:1], np.float32), redrawn
            best = np.argsort(-scores, kind="stable")[:candidates]
            others = (proposals.masks[best], scores[best])
        else:
            engine = pooled_mask_engine(settings, self.pool)
            found = engine.segment_prompt(
                work, points=clicks if len(clicks) else None, labels=click_labels, box=work_box
            )
            masks, chosen, merged = found.mask[None], np.array([found.score], np.float32), found.mask
            others = (masks[:0], chosen[:0])
        full = np.array([resize_mask(m, photo.size) for m in masks], bool).reshape(-1, photo.height, photo.width)
        return SegmentResult(
            image=photo,
            prompt=settings.prompt if prompt else None,
            masks=full,
            scores=np.asarray(chosen, np.float32),
            boxes=np.array([box_xywh(m) for m in full], np.float32).reshape(-1, 4),
            merged=resize_mask(merged, photo.size),
            candidates=np.array([resize_mask(m, photo.size) for m in others[0]], bool).reshape(
                -1, photo.height, photo.width
            ),
            candidate_scores=np.asarray(others[1], np.float32),
            details={
                "image": str(path),
                "preset": settings.preset,
                "clicks": {
                    "points": [list(map(float, p)) for p in points or []],
                    "labels": click_labels.tolist(),
                    "box": list(box) if box is not None else None,
                },
            },
        )

    def _reprompt(self, settings, work, merged, clicks, click_labels, box) -> np.ndarray:
        """The selection re-drawn by the mask model from its box and the clicks, if that agrees with it."""
        ys, xs = np.nonzero(merged)
        region = box or (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        engine = pooled_mask_engine(settings, self.pool)
        drawn = engine.segment_prompt(
            work, points=clicks if len(clicks) else None, labels=click_labels, box=region
        ).mask
        overlap = (drawn & merged).sum() / max(1, (drawn | merged).sum())
        return drawn if overlap >= 0.5 else merged

    # --- editing --------------------------------------------------------------------------

    def remove(self, image: ImageLike, result: SegmentResult) -> Image.Image:
        """The photo with the result's region filled from its surroundings (diffusion or OpenCV, per preset)."""
        return self.edit(image, result, "remove")

    def replace(self, image: ImageLike, result: SegmentResult, prompt: str) -> Image.Image:
        """The photo with the result's region repainted as ``prompt`` ("a bicycle")."""
        return self.edit(image, result, "replace", prompt)

    def style(self, image: ImageLike, result: SegmentResult, prompt: str) -> Image.Image:
        """The photo with the result's region restyled ("impressionist painting, like Monet")."""
        return self.edit(image, result, "style", prompt)

    def edit(self, image: ImageLike, result: SegmentResult, mode: str, prompt: str = "") -> Image.Image:
        """``mode`` (remove | replace | style) applied to the result's region; what the three methods above call."""
        from ovseg.editing import edit_image, load_painting_model, painter_for, request_for

        settings = settings_from_params({**self.params, "prompt": "-", "mode": mode, "edit_prompt": prompt})
        photo = load_image(self._as_file(image))
        if result.merged.shape != (photo.height, photo.width):
            raise OvsegError(f"the result is for a {result.merged.shape[::-1]} photo, this one is {photo.size}")
        device = resolve_device(settings.device)
        model = self.pool.get(
            ModelPool.key("painter", settings.edit), lambda: load_painting_model(settings.edit, device)
        )
        edited = edit_image(
            photo, result.merged, settings.edit, painter_for(model, settings.edit, request_for(settings))
        )
        if _small_gpu(device):
            self.pool.drop("painter")  # a 6 GB card needs the room for SAM and CLIP again
        return edited

    # --- inputs ---------------------------------------------------------------------------

    def _as_file(self, image: ImageLike) -> Path:
        """A path on disk for ``image``: the file itself, or a PNG in the cache named by its content.

        Keys hash the file's bytes, so in-memory images are stored once as PNG and then
        reused like any photo (the same array twice is one cached set of masks).
        """
        if isinstance(image, (str, Path)):
            path = Path(image)
            if not path.is_file():
                raise OvsegError(f"image not found: {path}")
            return path
        if isinstance(image, np.ndarray):
            array = image
            if array.ndim == 2:
                array = np.stack([array] * 3, -1)
            if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
                raise OvsegError(f"an image array must be H x W x 3 uint8, got {image.shape} {image.dtype}")
            image = Image.fromarray(array[..., :3])
        if not isinstance(image, Image.Image):
            raise OvsegError(f"an image must be a path, a PIL image or a numpy array, got {type(image).__name__}")
        buffer = io.BytesIO()
        # From the pixels alone (no metadata carried over), so the same picture always gives the same bytes.
        Image.fromarray(np.asarray(image.convert("RGB"))).save(buffer, format="PNG")
        data = buffer.getvalue()
        path = self.cache / "inputs" / f"{hashlib.sha256(data).hexdigest()[:24]}.png"
        if not path.is_file():
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        return path


def _small_gpu(device: str) -> bool:
    if not str(device).startswith("cuda"):
        return False
    import torch

    return torch.cuda.get_device_properties(torch.device(device)).total_memory < 10 * 2**30


__all__ = ["SegmentResult", "Segmenter"]
