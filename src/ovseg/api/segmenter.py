"""ovseg from Python, as short as LangSAM's: ``Segmenter(...).segment(photo, "the red car")``.

A face like the CLI: it runs the same stage contracts (:mod:`ovseg.pipeline`) on the same
content-addressed cache, so a photo segmented here is not recomputed by ``ovseg run`` and
the other way round. What it adds is keeping models loaded between calls (a
:class:`~ovseg.pipeline.ModelPool`), clicks and boxes, and results as arrays and pictures
instead of files (which :meth:`SegmentResult.save` and :meth:`Segmenter.save_edit` write
through the stages' own writers).

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

import dataclasses
import hashlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ovseg.api.results import SegmentDetails, SegmentResult, one_line_errors
from ovseg.api.video import DecodedClip, VideoResult, decode_clip, follow_clip, video_request, with_part
from ovseg.config import Settings, apply_overrides, settings_from_params
from ovseg.editing import check_backend, load_painting_model, painter_for, request_for, resolve_backend
from ovseg.engines.local import LocalEngine
from ovseg.errors import OvsegError
from ovseg.masks import finds_by_words
from ovseg.media.fileio import MIN_IMAGE_SIDE, working_image
from ovseg.media.rle import box_xywh
from ovseg.media.viz import resize_mask
from ovseg.pipeline import ModelPool, Run, edit, embed, masks, new_run, score, select
from ovseg.pipeline.common import run_stages
from ovseg.ranking.selection import refine_with_clicks
from ovseg.request import Correction, RunRequest, check_classes, split_prompt
from ovseg.storage.folders import OutputFolder
from ovseg.storage.locations import atomic_path, image_stem, is_url

ImageLike = str | Path | Image.Image | np.ndarray


class Segmenter:
    """Open-vocabulary segmentation and editing with models that load on first use and stay loaded."""

    def __init__(
        self, preset: str = "balanced", device: str = "auto", cache: str | Path = "cache", **overrides: Any
    ) -> None:
        """``overrides``: any stage setting as ``section={key: value}`` or ``"section.key"``-style ``set=[...]``."""
        sets = overrides.pop("set", [])
        self.params = apply_overrides({"preset": preset, "device": device, **overrides}, list(sets))
        self.settings = settings_from_params(self.params)  # fail now on a bad preset or setting
        self.cache = Path(cache)
        self.pool = ModelPool()

    def warm_up(self) -> None:
        """Load the preset's mask model and CLIP (or its finder, SAM 3) now (what a server does at start), not on
        the first request."""
        from ovseg.clip.features import load_clip

        run = Run(self.settings, RunRequest(), cache=str(self.cache), pool=self.pool)
        self.pool.get(masks.model_key(run), lambda: masks.load(run))  # a finder (SAM 3): the one model it needs
        if not finds_by_words(self.settings):
            self.pool.get(embed.model_key(run), lambda: load_clip(self.settings.embed.model, run.device))

    def _run(self, settings: Settings, location: str, prompt: str = "", classes: tuple[str, ...] = ()) -> Run:
        request = RunRequest(images=location, prompt=prompt, classes=classes)
        return new_run(settings, request, cache=str(self.cache), output=str(self.cache / "api"), pool=self.pool)

    def _with_top_k(self, section: str, top_k: int | None) -> Settings:
        """The settings with ``section``'s ``top_k`` set (``select`` for a prompt, ``instances`` for classes)."""
        if top_k is None:
            return self.settings
        if top_k < 1:
            raise OvsegError(f"top_k must be at least 1, got {top_k}")
        return dataclasses.replace(
            self.settings, **{section: dataclasses.replace(getattr(self.settings, section), top_k=top_k)}
        )

    def _scored(self, run: Run, location: str, query: str | tuple[str, ...]) -> score.ScoreEntry:
        """The photo's scores for a prompt or a tuple of classes: the masks, embed and score stages, cached."""
        engine = LocalEngine()
        run_stages(run, engine, [masks.STAGE, embed.STAGE])
        return score.scores_for(run, engine, [query])[query][image_stem(location)]

    # --- segmentation -------------------------------------------------------------------

    @one_line_errors
    def segment(
        self,
        image: ImageLike,
        prompt: str | list[str] | tuple[str, ...] | None = None,
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

        A list of classes (``["car", "person|pedestrian"]``, each may list synonyms): every instance
        of each class, as ``ovseg run --prompt car --prompt person`` finds them, with its class in
        :attr:`SegmentResult.categories` and a label map in :attr:`SegmentResult.labels`; ``top_k``
        then caps each class. A list of one is that prompt alone.
        """
        prompt, classes = split_prompt(prompt) if isinstance(prompt, (list, tuple)) else ((prompt or "").strip(), ())
        if classes:
            if points or box is not None:
                raise OvsegError("clicks and boxes refine one prompt: give one prompt with them, not a list of classes")
            check_classes(classes)
            return self._segment_classes(image, classes, top_k, candidates)
        if not prompt and not points and box is None:
            raise OvsegError("say what to find (a prompt) or click on it (points=[(x, y)], labels=[1])")
        location = self._location(image)
        settings = self._with_top_k("select", top_k)
        run = self._run(settings, location, prompt)
        photo = run.load_photo(location)
        work = working_image(photo, settings.masks.max_image_side)
        scale = work.width / photo.width
        clicks = np.asarray(points or [], np.float32).reshape(-1, 2) * scale
        click_labels = np.asarray(labels if labels is not None else [1] * len(clicks), np.int64)
        work_box = None if box is None else tuple(float(v) * scale for v in box)
        clicks_given = {
            "points": [list(map(float, p)) for p in points or []],
            "labels": click_labels.tolist(),
            "box": list(box) if box is not None else None,
        }
        details = SegmentDetails(image=location, preset=settings.preset, clicks=clicks_given)
        if prompt:
            score.check_prompt(run)
            entry = self._scored(run, location, prompt)
            selection, proposals, scores = select.select_for(run, entry)
            indices = refine_with_clicks(selection.indices, proposals.masks, scores, clicks, click_labels)
            masks_found = proposals.masks[indices]
            chosen = scores[indices] if indices else np.zeros(0, np.float32)
            merged = masks_found.any(0) if len(indices) else np.zeros(proposals.masks.shape[1:], bool)
            details.indices = list(indices)
            details.predicted_iou = [float(proposals.predicted_iou[i]) for i in indices]
            details.num_candidates = len(proposals)
            details.select_settings = settings.section("select")
            details.artifacts = {"masks": entry.masks, "embeddings": entry.embeddings, "scores": entry.scores}
            if (len(clicks) or work_box is not None) and merged.any():
                redrawn = self._reprompt(run, work, merged, clicks, click_labels, work_box)
                if not np.array_equal(redrawn, merged):  # one mask now: the region the clicks re-drew
                    masks_found, chosen, merged = redrawn[None], np.asarray(chosen[:1], np.float32), redrawn
                    details.indices, details.predicted_iou = [None], [None]
            best = np.argsort(-scores, kind="stable")[:candidates]
            others = (proposals.masks[best], scores[best])
            details.candidate_indices = [int(i) for i in best]
            details.candidate_iou = proposals.predicted_iou[best].tolist()
        else:
            found = masks.prompt_engine(run).segment_prompt(
                work, points=clicks if len(clicks) else None, labels=click_labels, box=work_box
            )
            masks_found, chosen, merged = found.mask[None], np.array([found.score], np.float32), found.mask
            details.indices, details.predicted_iou = [None], [found.score]
            others = (masks_found[:0], chosen[:0])
        full = np.array([resize_mask(m, photo.size) for m in masks_found], bool).reshape(-1, photo.height, photo.width)
        return SegmentResult(
            image=photo,
            prompt=prompt or None,
            masks=full,
            scores=np.asarray(chosen, np.float32),
            boxes=np.array([box_xywh(m) for m in full], np.float32).reshape(-1, 4),
            merged=resize_mask(merged, photo.size),
            candidates=np.array([resize_mask(m, photo.size) for m in others[0]], bool).reshape(
                -1, photo.height, photo.width
            ),
            candidate_scores=np.asarray(others[1], np.float32),
            details=details,
        )

    def _segment_classes(
        self, image: ImageLike, classes: tuple[str, ...], top_k: int | None, candidates: int
    ) -> SegmentResult:
        """Every instance of each class in the photo (``segment`` with a list of classes)."""
        location = self._location(image)
        settings = self._with_top_k("instances", top_k)
        run = self._run(settings, location, classes=classes)
        photo = run.load_photo(location)
        score.check_prompt(run)
        entry = self._scored(run, location, classes)
        found, proposals, class_scores = select.instances_for(run, entry)
        full = np.array([resize_mask(proposals.masks[i], photo.size) for i in found.indices], bool)
        full = full.reshape(-1, photo.height, photo.width)
        best = class_scores.max(axis=1) if len(class_scores) else np.zeros(0, np.float32)
        shown = np.argsort(-best, kind="stable")[:candidates]
        details = SegmentDetails(
            image=location,
            preset=settings.preset,
            indices=list(found.indices),
            predicted_iou=[float(proposals.predicted_iou[i]) for i in found.indices],
            num_candidates=len(proposals),
            select_settings=settings.section("instances"),
            artifacts={"masks": entry.masks, "embeddings": entry.embeddings, "scores": entry.scores},
            candidate_indices=[int(i) for i in shown],
            candidate_iou=proposals.predicted_iou[shown].tolist(),
            candidate_categories=[int(np.argmax(class_scores[i])) + 1 for i in shown],
        )
        return SegmentResult(
            image=photo,
            prompt=None,
            masks=full,
            scores=np.asarray(found.scores, np.float32),
            boxes=np.array([box_xywh(m) for m in full], np.float32).reshape(-1, 4),
            merged=resize_mask(found.merged, photo.size),
            details=details,
            candidates=np.array([resize_mask(proposals.masks[i], photo.size) for i in shown], bool).reshape(
                -1, photo.height, photo.width
            ),
            candidate_scores=np.asarray(best[shown], np.float32),
            classes=classes,
            categories=np.asarray([c + 1 for c in found.classes], np.int64),
        )

    def _reprompt(self, run: Run, work, merged, clicks, click_labels, box) -> np.ndarray:
        """The selection re-drawn by the mask model from its box and the clicks, if that agrees with it."""
        ys, xs = np.nonzero(merged)
        region = box or (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        drawn = (
            masks.prompt_engine(run)
            .segment_prompt(work, points=clicks if len(clicks) else None, labels=click_labels, box=region)
            .mask
        )
        overlap = (drawn & merged).sum() / max(1, (drawn | merged).sum())
        return drawn if overlap >= 0.5 else merged

    # --- videos ---------------------------------------------------------------------------

    @one_line_errors
    def track(
        self,
        video: str | Path,
        prompt: str | list[str] | None = None,
        *,
        points: list[tuple[float, float]] | None = None,
        labels: list[int] | None = None,
        box: tuple[float, float, float, float] | None = None,
        frame: int = 0,
        mask: str | Path | None = None,
        part: dict[str, Any] | None = None,
        corrections: Sequence[Correction | dict[str, Any]] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> VideoResult:
        """Follow what ``prompt`` names (words found at keyframes), clicks or a box on ``frame`` (the clip's own
        frame number, whatever is taken of it), or a first ``mask`` (an indexed PNG, one object per id) through
        every frame of ``video`` (a clip or a folder of frames). The same stages and cache as ``ovseg run --video``.
        ``part``: which frames, as ``video`` settings (``{"start": "2s", "end": 40, "every": 2}``).
        ``corrections``: clicks on later frames, ``{"frame": 8, "points": [(x, y)], "obj": 1}``, each following
        that object again from there, the frames before kept (what was followed without it is reused from the cache).
        ``stop``: asked between frames; True ends the call with :class:`~ovseg.errors.Stopped`."""
        from ovseg.pipeline import follow, frames

        request = video_request(video, prompt, points, labels, box, frame, mask, corrections=corrections)
        return self._follow(request, [frames.STAGE, follow.STAGE], part, stop)

    @one_line_errors
    def remove_from_video(
        self,
        video: str | Path,
        prompt: str | list[str] | None = None,
        *,
        points: list[tuple[float, float]] | None = None,
        labels: list[int] | None = None,
        box: tuple[float, float, float, float] | None = None,
        frame: int = 0,
        mask: str | Path | None = None,
        part: dict[str, Any] | None = None,
        corrections: Sequence[Correction | dict[str, Any]] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> tuple[VideoResult, Path]:
        """What :meth:`track` follows, removed through time (``ovseg run --video ... --mode remove``): the followed
        result and the folder holding ``edited.mp4`` and ``before_after.mp4`` (following is reused from the cache)."""
        from ovseg.pipeline import VIDEO_STAGES, fill

        request = video_request(video, prompt, points, labels, box, frame, mask, "remove", corrections)
        result = self._follow(request, list(VIDEO_STAGES), part, stop)
        return result, self.cache / "api" / fill.RESULTS / result.clip

    @one_line_errors
    def decode(self, video: str | Path, part: dict[str, Any] | None = None) -> DecodedClip:
        """The frames of ``video`` that following would take (``part``: as for :meth:`track`), decoded once into the
        cache by the frames stage, so following them later decodes nothing again."""
        return decode_clip(self.settings, self.cache, video, part)

    def _follow(self, request: RunRequest, stages: list, part: dict[str, Any] | None, stop=None) -> VideoResult:
        run = new_run(with_part(self.settings, part), request, cache=str(self.cache), output=str(self.cache / "api"),
                      pool=self.pool, stop=stop)  # fmt: skip
        if request.prompt or request.classes:
            score.check_prompt(run)
        return follow_clip(run, stages)

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

    @one_line_errors
    def edit(self, image: ImageLike, result: SegmentResult, mode: str, prompt: str = "") -> Image.Image:
        """``mode`` (remove | replace | style) applied to the result's region; what the three methods above call."""
        return self._edit(image, result, mode, prompt)[1]

    @one_line_errors
    def save_edit(
        self, folder: str | Path, image: ImageLike, result: SegmentResult, mode: str, prompt: str = ""
    ) -> Image.Image:
        """Edit as :meth:`edit` does and write the folder the edit stage writes (``edited.png``,
        ``before_after.png``, ``edit.json``), all at once; returns the edited photo."""
        folder = Path(folder)
        photo, edited, record = self._edit(image, result, mode, prompt)
        edit.write_edit(OutputFolder(str(folder.parent)), folder.name, photo, edited, record)
        return edited

    def _edit(
        self, image: ImageLike, result: SegmentResult, mode: str, prompt: str
    ) -> tuple[Image.Image, Image.Image, edit.EditRecord]:
        settings = dataclasses.replace(self.settings, edit=resolve_backend(self.settings.edit, mode))
        check_backend(settings.edit, mode)
        request = request_for(mode, prompt.strip(), settings.edit)
        location = self._location(image)
        run = self._run(settings, location)
        photo = run.load_photo(location)
        if result.merged.shape != (photo.height, photo.width):
            raise OvsegError(f"the result is for a {result.merged.shape[::-1]} photo, this one is {photo.size}")
        key = ModelPool.key("painter", settings.edit)

        def painter():
            model = self.pool.get(key, lambda: load_painting_model(settings.edit, run.device))
            return painter_for(model, settings.edit, request)

        clicks = result.record().clicks
        edited, record = edit.edit_photo(
            settings,
            mode,
            prompt,
            photo,
            result.merged,
            painter,
            image=location,
            segment_prompt=result.prompt,
            clicks=clicks,
        )
        if _small_gpu(run.device):
            self.pool.drop("painter")  # a 6 GB card needs the room for SAM and CLIP again
        return photo, edited, record

    # --- inputs ---------------------------------------------------------------------------

    def open(self, image: ImageLike) -> Image.Image:
        """The photo as this Segmenter reads it (RGB, EXIF-rotated, ``max_image_pixels`` applied), or one line."""
        location = self._location(image)
        return self._run(self.settings, location).load_photo(location)

    def _location(self, image: ImageLike) -> str:
        """Where ``image`` is: its path or URL, or, for pixels in memory, a PNG in the cache named by its content.

        Keys hash the file's bytes, so in-memory images are stored once as PNG and then
        reused like any photo (the same array twice is one cached set of masks).
        """
        if isinstance(image, (str, Path)):
            if is_url(image):
                return str(image)
            path = Path(image)
            if not path.is_file():
                raise OvsegError(f"image not found: {path}")
            return str(path)
        if isinstance(image, np.ndarray):
            array = image
            if array.ndim == 2:
                array = np.stack([array] * 3, -1)
            if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
                raise OvsegError(f"an image array must be H x W x 3 uint8, got {image.shape} {image.dtype}")
            if min(array.shape[:2]) < MIN_IMAGE_SIDE:
                raise OvsegError(f"an image array must be at least {MIN_IMAGE_SIDE} pixels a side, got {image.shape}")
            image = Image.fromarray(array[..., :3])
        if not isinstance(image, Image.Image):
            kind = type(image).__name__
            raise OvsegError(f"an image must be a path, a URL, a PIL image or a numpy array, got {kind}")
        if min(image.size) < MIN_IMAGE_SIDE:
            raise OvsegError(f"an image must be at least {MIN_IMAGE_SIDE} x {MIN_IMAGE_SIDE} pixels, got {image.size}")
        buffer = io.BytesIO()
        # From the pixels alone (no metadata carried over), so the same picture always gives the same bytes.
        Image.fromarray(np.asarray(image.convert("RGB"))).save(buffer, format="PNG")
        data = buffer.getvalue()
        path = self.cache / "inputs" / f"{hashlib.sha256(data).hexdigest()[:24]}.png"
        if not path.is_file():
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        return str(path)


def _small_gpu(device: str) -> bool:
    if not str(device).startswith("cuda"):
        return False
    import torch

    return torch.cuda.get_device_properties(torch.device(device)).total_memory < 10 * 2**30


__all__ = ["SegmentResult", "Segmenter"]
