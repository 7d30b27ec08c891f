"""The settings of a run, one frozen dataclass per params.yaml section: what each knob is and the values it takes.

A knob with a fixed set of values is a ``Literal``: the annotation is the one list of them, and loading checks it
(:mod:`ovseg.config.loading`). A knob that names an implementation (``masks.generator``, ``edit.backend``,
``video.propagator``, ``engine.kind``) is text checked by that kind's :class:`~ovseg.config.registry.Registry`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class MasksSettings:
    """Knobs of the mask generator (same names as SAM2AutomaticMaskGenerator where they exist)."""

    model: str
    generator: str
    sampling: Literal["grid", "adaptive"]
    max_prompts: int
    points_per_round: int
    min_coverage_gain: float
    cover_logit: float
    edge_prompts: float
    max_image_side: int
    points_per_side: int
    points_per_batch: int
    pred_iou_thresh: float
    stability_score_thresh: float
    stability_score_offset: float
    box_nms_thresh: float
    mask_nms_thresh: float | None
    crop_n_layers: int
    crop_n_points_downscale_factor: int
    min_mask_region_area: int
    use_m2m: bool
    multimask_output: bool
    max_masks: int


@dataclass(frozen=True)
class EmbedSettings:
    """How CLIP features are computed for each mask; independent of the prompt."""

    model: str
    strategy: Literal["crop", "dense", "ensemble"]
    crop_scales: list[float]
    background_dim: float
    dense_scales: list[float]
    dense_max_tokens: int
    dense_attention: Literal["identity", "clearclip", "naclip", "mask"]
    dense_window: int
    dense_stride: int
    mask_tokens: bool
    mask_token_mix: float
    batch_size: int


@dataclass(frozen=True)
class ScoreSettings:
    templates: bool
    template_set: Literal["ovseg7", "imagenet80"]
    negatives: list[str]
    temperature: float | None


@dataclass(frozen=True)
class SelectSettings:
    top_k: int
    threshold: float
    relative_threshold: float
    nms_iou: float
    min_area_frac: float
    merge: Literal["union", "best"]
    mask_pngs: bool


@dataclass(frozen=True)
class InstancesSettings:
    """How a run with several classes picks each class's instances (a one-prompt run uses ``select``).

    Every candidate belongs to the class it scores best for; it is an instance of that class
    when its score (the class's probability against the other classes and the negatives) is at
    least ``threshold``. ``top_k``: at most this many per class, best first (0: every one that
    passes). ``overlap``: a candidate lying this much inside (or around) a better one of its class
    is the same thing again (SAM proposes a car, its door and the car with its shadow) and dropped.
    """

    threshold: float
    top_k: int
    overlap: float


@dataclass(frozen=True)
class EditSettings:
    """How the selected region is edited (docs/pipeline.md, "Editing").

    ``backend``: a backend's name, or ``auto``: removal by the first of ``remove_with`` whose weights
    are on disk, replace and style by diffusion (:func:`ovseg.editing.resolve_backend`). ``model``: SD 2
    inpainting's weights; ``lama_model`` / ``migan_model``: the learned removers'; ``learned_max_side``:
    a crop larger than this is painted smaller by them (their time grows with its area).
    """

    backend: str
    remove_with: list[str]
    model: str
    lama_model: str
    migan_model: str
    learned_max_side: int
    opencv_method: str
    opencv_radius: int
    opencv_max_fill_px: int
    resolution: int
    context: float
    dilate_px: int
    feather_px: int
    steps: int
    guidance_scale: float
    strength: float
    style_strength: float
    seed: int
    scheduler: str
    remove_prompt: str
    remove_negative: str
    negative_prompt: str
    offload: str


@dataclass(frozen=True)
class EngineSettings:
    """How images are scheduled (local process or a Ray cluster); never part of a result's key."""

    kind: str
    address: str | None
    num_gpus: float
    num_cpus: float
    concurrency: int
    batch_size: int


@dataclass(frozen=True)
class VideoSettings:
    """How videos are read and followed (docs/videos.md).

    Reading: ``start`` / ``end`` (a frame number, ``12``, or seconds, ``1.5s``), ``every`` N-th frame or
    ``fps`` frames a second; ``folder_fps``: the rate of a folder of frames (it has none of its own);
    ``cut_threshold``: a frame whose colours differ this much from the previous one's starts a scene.
    Following: words are looked for every ``keyframe_every`` frames and at scene cuts; ``propagator``
    (auto | flow-sam | sam2) carries objects between them; ``box_grow`` ... ``recover_iou`` tune
    ``flow-sam``, and ``memory`` gives it a memory of each object's look (:mod:`ovseg.video.memory`: it
    holds on through occlusion and finds an object again anywhere once it is back). Removal (``mode:
    remove``): pixels are carried up to ``fill_window`` frames each way where forward and backward flow
    agree within ``fill_consistency`` px; ``fill_frames`` also writes the edited frames as PNGs.
    """

    start: str | None
    end: str | None
    every: int
    fps: float | None
    folder_fps: float
    cut_threshold: float
    keyframe_every: int
    propagator: str
    box_grow: float
    negative_ring: int
    flow_scale: float
    lost_area: float
    recover_iou: float
    memory: bool
    fill_window: int
    fill_consistency: float
    fill_frames: bool


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


SECTION_TYPES = {
    "masks": MasksSettings,
    "embed": EmbedSettings,
    "score": ScoreSettings,
    "select": SelectSettings,
    "instances": InstancesSettings,
    "edit": EditSettings,
    "video": VideoSettings,
    "engine": EngineSettings,
}
