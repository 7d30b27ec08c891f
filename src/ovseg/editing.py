"""Edit the selected region with Stable Diffusion 2 inpainting.

SD 2 inpainting works at 512 px, photos do not: we cut a padded square around the
(dilated) mask, resize it to the model's resolution, inpaint, resize back and paste
only the masked, feathered area into the original. Pixels where the paste weight is
zero are copied from the input byte for byte, so everything outside the dilated mask
is untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from ovseg.config import EditSettings, Settings
from ovseg.errors import OvsegError, one_line
from ovseg.weights import INPAINT, resolve_model_dir

SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "pndm": "PNDMScheduler",
}


# --- geometry -------------------------------------------------------------------------


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a mask by a disk of radius ``pixels`` (exact Euclidean distance)."""
    if pixels <= 0 or not mask.any():
        return mask.astype(bool)
    return ndimage.distance_transform_edt(~mask) <= pixels


def feather(region: np.ndarray, pixels: int) -> np.ndarray:
    """Paste weights in [0, 1]: a ramp of ``pixels`` inside ``region``, exactly 0 outside it.

    The ramp runs inwards so the soft edge never leaks past the dilated mask.
    """
    if pixels <= 0:
        return region.astype(np.float32)
    inside = ndimage.distance_transform_edt(region)
    return np.clip(inside / float(pixels), 0.0, 1.0).astype(np.float32)


def bbox_xywh(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


@dataclass(frozen=True)
class CropBox:
    """A square window (may extend past the image; those pixels are edge-padded)."""

    x0: int
    y0: int
    side: int


def crop_box(box: tuple[int, int, int, int], image_size: tuple[int, int], context: float, min_side: int) -> CropBox:
    """Square around ``box`` with ``context`` margin on each side, kept inside the image if it fits."""
    x, y, w, h = box
    width, height = image_size
    side = max(math.ceil(max(w, h) * (1 + 2 * context)), min_side, 8)
    x0 = round(x + w / 2 - side / 2)
    y0 = round(y + h / 2 - side / 2)
    x0 = min(max(x0, 0), width - side) if side <= width else (width - side) // 2
    y0 = min(max(y0, 0), height - side) if side <= height else (height - side) // 2
    return CropBox(x0, y0, side)


def cut(array: np.ndarray, box: CropBox) -> np.ndarray:
    """The ``box`` window of an (H, W[, C]) array, edge-padded where it leaves the image."""
    height, width = array.shape[:2]
    pad_top, pad_left = max(0, -box.y0), max(0, -box.x0)
    pad_bottom = max(0, box.y0 + box.side - height)
    pad_right = max(0, box.x0 + box.side - width)
    pads = [(pad_top, pad_bottom), (pad_left, pad_right)] + [(0, 0)] * (array.ndim - 2)
    padded = np.pad(array, pads, mode="edge")
    y0, x0 = box.y0 + pad_top, box.x0 + pad_left
    return padded[y0 : y0 + box.side, x0 : x0 + box.side]


def paste(original: np.ndarray, generated_crop: np.ndarray, alpha: np.ndarray, box: CropBox) -> np.ndarray:
    """Blend ``generated_crop`` into ``original`` with per-pixel ``alpha``; alpha 0 keeps bytes exact."""
    height, width = original.shape[:2]
    generated = original.astype(np.float32).copy()
    ys0, xs0 = max(0, box.y0), max(0, box.x0)
    ys1, xs1 = min(height, box.y0 + box.side), min(width, box.x0 + box.side)
    generated[ys0:ys1, xs0:xs1] = generated_crop[ys0 - box.y0 : ys1 - box.y0, xs0 - box.x0 : xs1 - box.x0]
    a = alpha[..., None]
    blended = np.rint(original.astype(np.float32) * (1 - a) + generated * a).clip(0, 255).astype(np.uint8)
    return np.where(a > 0, blended, original)


# --- the model ----------------------------------------------------------------------


def load_inpaint_pipeline(name: str, device: str, offload: str = "auto"):
    """`StableDiffusionInpaintPipeline.from_pretrained` from the local checkpoint folder.

    On CUDA: fp16 weights and PyTorch SDPA attention; with ``offload: auto`` a card with
    less than 10 GB keeps only the running sub-model on the GPU (model CPU offload) and
    one with less than 8 GB also slices attention, which is how it fits 6 GB.
    """
    from diffusers import StableDiffusionInpaintPipeline

    folder = resolve_model_dir(name, INPAINT)
    cuda = str(device).startswith("cuda")
    dtype = torch.float16 if cuda else torch.float32
    try:
        pipe = StableDiffusionInpaintPipeline.from_pretrained(
            str(folder),
            dtype=dtype,
            local_files_only=True,
            safety_checker=None,
            requires_safety_checker=False,
        )
    except Exception as exc:  # noqa: BLE001 - a corrupt or mismatched file fails in many ways
        raise OvsegError(f"cannot load the inpainting model from {folder}: {one_line(exc)}") from None
    if not cuda:
        return pipe.to(device)
    total = torch.cuda.get_device_properties(torch.device(device)).total_memory
    mode = offload if offload != "auto" else ("model" if total < 10 * 2**30 else "none")
    if mode == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    if total < 8 * 2**30:
        pipe.enable_attention_slicing()
    return pipe


def set_scheduler(pipe, name: str) -> None:
    if name == "default":
        return
    if name not in SCHEDULERS:
        raise OvsegError(f"edit.scheduler must be one of default, {', '.join(SCHEDULERS)}; got {name!r}")
    import diffusers

    cls = getattr(diffusers, SCHEDULERS[name])
    options = {"use_karras_sigmas": True} if name == "dpm++" else {}
    pipe.scheduler = cls.from_config(pipe.scheduler.config, **options)


@dataclass(frozen=True)
class EditRequest:
    """What to paint, resolved from the mode."""

    prompt: str
    negative_prompt: str
    strength: float


def request_for(settings: Settings) -> EditRequest:
    """remove: background fill; replace: the edit prompt; style: the edit prompt at strength < 1."""
    edit = settings.edit
    if settings.mode == "remove":
        return EditRequest(edit.remove_prompt, edit.remove_negative, edit.strength)
    if not settings.edit_prompt:
        raise OvsegError(f'mode {settings.mode} needs an edit prompt: set edit_prompt (or --edit "...")')
    if settings.mode == "replace":
        return EditRequest(settings.edit_prompt, edit.negative_prompt, edit.strength)
    if settings.mode == "style":
        return EditRequest(settings.edit_prompt, edit.negative_prompt, edit.style_strength)
    raise OvsegError(f"mode {settings.mode} does not edit images")


Painter = Callable[[Image.Image, Image.Image], Image.Image]


def painter_fingerprint(settings: EditSettings) -> str:
    """What identifies the painting model in the edit's cache key."""
    if settings.backend == "opencv":
        import cv2

        return f"opencv-{cv2.__version__}"
    from ovseg.fileio import content_key

    folder = resolve_model_dir(settings.model, INPAINT)
    return content_key(settings.model, sorted((p.name, p.stat().st_size) for p in folder.rglob("*") if p.is_file()))


def _load_diffusion(settings: EditSettings, device: str):
    pipe = load_inpaint_pipeline(settings.model, device, settings.offload)
    set_scheduler(pipe, settings.scheduler)
    pipe.set_progress_bar_config(leave=False, desc="denoising")
    return pipe


def _diffusion(model, settings: EditSettings, request: EditRequest) -> Painter:
    return diffusion_painter(model, request, settings)


def _opencv(model, settings: EditSettings, request: EditRequest) -> Painter:
    from ovseg.editing_opencv import opencv_painter

    return opencv_painter(settings)


# backend -> (load its model once, make a painter for one request from that model)
EDIT_BACKENDS: dict[str, tuple[Callable[[EditSettings, str], Any], Callable[..., Painter]]] = {
    "diffusion": (_load_diffusion, _diffusion),
    "opencv": (lambda settings, device: None, _opencv),
}


def load_painting_model(settings: EditSettings, device: str):
    """The heavy part of ``edit.backend`` (SD's pipeline; nothing for OpenCV), loaded once per run."""
    return EDIT_BACKENDS[settings.backend][0](settings, device)


def painter_for(model, settings: EditSettings, request: EditRequest) -> Painter:
    """A painter for one request (prompt, negative prompt, strength) from a loaded painting model."""
    return EDIT_BACKENDS[settings.backend][1](model, settings, request)


def load_painter(settings: EditSettings, request: EditRequest, device: str) -> Painter:
    """The painter ``edit.backend`` names: the one place an edit backend is chosen."""
    return painter_for(load_painting_model(settings, device), settings, request)


def diffusion_painter(pipe, request: EditRequest, settings: EditSettings) -> Painter:
    """Wrap the pipeline as crop image + crop mask -> painted crop, seeded for determinism."""

    def paint(image: Image.Image, mask: Image.Image) -> Image.Image:
        generator = torch.Generator(device="cpu").manual_seed(settings.seed)
        result = pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            image=image,
            mask_image=mask,
            height=settings.resolution,
            width=settings.resolution,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance_scale,
            strength=request.strength,
            generator=generator,
        )
        return result.images[0]

    return paint


def edit_image(image: Image.Image, mask: np.ndarray, settings: EditSettings, paint: Painter) -> Image.Image:
    """Inpaint ``mask`` (bool, image resolution) of ``image`` with ``paint``; returns a same-size image."""
    if mask.shape != (image.height, image.width):
        raise OvsegError(f"mask size {mask.shape[::-1]} does not match image size {image.size}")
    if not mask.any():
        return image.copy()
    region = dilate(mask, settings.dilate_px)
    alpha = feather(region, settings.feather_px)
    min_side = min(settings.resolution // 2, max(image.size))
    box = crop_box(bbox_xywh(region), image.size, settings.context, min_side)
    original = np.asarray(image.convert("RGB"))
    size = (settings.resolution, settings.resolution)
    crop_image = Image.fromarray(cut(original, box)).resize(size, Image.Resampling.LANCZOS)
    crop_mask = Image.fromarray(cut(region, box).astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)
    crop_mask = crop_mask.point(lambda v: 255 if v > 0 else 0)  # conservative: any touched pixel repaints
    painted = paint(crop_image, crop_mask).convert("RGB").resize((box.side, box.side), Image.Resampling.LANCZOS)
    return Image.fromarray(paste(original, np.asarray(painted), alpha, box))
