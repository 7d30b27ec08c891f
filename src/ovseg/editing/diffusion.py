"""The diffusion edit backend: Stable Diffusion 2 inpainting (diffusers) for remove, replace and style.

Loaded with ``StableDiffusionInpaintPipeline.from_pretrained`` from a local folder (never
the network at run time); on CUDA in fp16 with SDPA attention and, on cards under 10 GB,
with CPU offload so it fits a 6 GB GPU.
"""

from __future__ import annotations

from ovseg.config import EditSettings
from ovseg.editing.backend import EditRequest, Painter
from ovseg.errors import OvsegError, one_line
from ovseg.weights.registry import INPAINT, model_fingerprint, resolve_model_dir

SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "pndm": "PNDMScheduler",
}
OFFLOAD_MODES = ("auto", "none", "model", "sequential")


def load_inpaint_pipeline(name: str, device: str, offload: str = "auto"):
    """`StableDiffusionInpaintPipeline.from_pretrained` from the local checkpoint folder.

    On CUDA: fp16 weights and PyTorch SDPA attention; with ``offload: auto`` a card with
    less than 10 GB keeps only the running sub-model on the GPU (model CPU offload) and
    one with less than 8 GB also slices attention, which is how it fits 6 GB.
    """
    import torch
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


def diffusion_painter(pipe, request: EditRequest, settings: EditSettings) -> Painter:
    """Wrap the pipeline as crop image + crop mask -> painted crop, seeded for determinism."""

    import torch

    def paint(image, mask):
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


class DiffusionBackend:
    """SD 2 inpainting: paints anything a prompt describes, so every edit mode."""

    name = "diffusion"
    modes = ("remove", "replace", "style")
    resizes_to_model = True
    weights_setting, weights_kind = "model", INPAINT

    def check(self, settings: EditSettings) -> None:
        if settings.scheduler != "default" and settings.scheduler not in SCHEDULERS:
            names = ", ".join(["default", *SCHEDULERS])
            raise OvsegError(f"edit.scheduler must be one of {names}, got {settings.scheduler!r}")
        if settings.offload not in OFFLOAD_MODES:
            raise OvsegError(f"edit.offload must be one of {', '.join(OFFLOAD_MODES)}, got {settings.offload!r}")

    def min_crop_side(self, settings: EditSettings) -> int:
        return settings.resolution // 2  # SD 2 sees at least half its own size of the photo around a hole

    def fingerprint(self, settings: EditSettings) -> str:
        return model_fingerprint(settings.model, INPAINT)

    def load(self, settings: EditSettings, device: str):
        pipe = load_inpaint_pipeline(settings.model, device, settings.offload)
        set_scheduler(pipe, settings.scheduler)
        pipe.set_progress_bar_config(leave=False, desc="denoising")
        return pipe

    def painter(self, model, settings: EditSettings, request: EditRequest) -> Painter:
        return diffusion_painter(model, request, settings)
