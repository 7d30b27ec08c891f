"""Tiny random-weight models in the real on-disk formats.

Tests and offline smoke runs use these instead of real checkpoints (which this
machine cannot download). They are saved exactly like the real ones (sam2's
``{"model": state_dict}`` .pt plus a hydra config; open_clip's
``open_clip_config.json`` + safetensors; a diffusers ``save_pretrained`` folder) and
are loaded by the same code paths as real weights. Their outputs are meaningless.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import torch

from ovseg.storage.locations import atomic_path
from ovseg.weights.tiny_hf import write_byte_level_tokenizer

TINY_SAM2 = "tiny-random-sam2"
TINY_CLIP = "tiny-random-clip"
TINY_SD = "tiny-random-sd"

TINY_CLIP_CONFIG = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    },
    "preprocess_cfg": {
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
    },
}


def build_tiny_sam2(folder: Path, seed: int = 0) -> Path:
    """Write ``config.yaml`` + ``model.pt`` for a 0.6M-parameter SAM 2."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    torch.manual_seed(seed)
    config_text = resources.files("ovseg.weights").joinpath("tiny_sam2.yaml").read_text()
    model = instantiate(OmegaConf.create(config_text).model, _recursive_=True)
    with atomic_path(Path(folder)) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "config.yaml").write_text(config_text)
        torch.save({"model": model.state_dict()}, tmp / "model.pt")
    return Path(folder)


def build_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """Write an open_clip ``local-dir`` model: ``open_clip_config.json`` + safetensors weights."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CLIP_CONFIG["model_cfg"])
    with atomic_path(Path(folder)) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "open_clip_config.json").write_text(json.dumps(TINY_CLIP_CONFIG, indent=2))
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "open_clip_model.safetensors"))
    return Path(folder)


TINY_SD_UNET = {
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "sample_size": 32,
    "in_channels": 9,  # 4 noisy latents + 4 masked-image latents + 1 mask, as in SD 2 inpainting
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": (2, 4),
}
TINY_SD_VAE = {
    "block_out_channels": (32, 64),
    "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
    "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
    "latent_channels": 4,
    "sample_size": 64,
}
TINY_SD_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "vocab_size": 600,
    "projection_dim": 32,
}


def build_tiny_sd_inpaint(folder: Path, seed: int = 0) -> Path:
    """Save a StableDiffusionInpaintPipeline with a 9-channel tiny UNet, tiny VAE and text encoder."""
    torch.manual_seed(seed)
    with atomic_path(Path(folder)) as tmp:
        _save_sd_pipeline(tmp, TINY_SD_UNET, TINY_SD_VAE, TINY_SD_TEXT)
    return Path(folder)


def build_all(root: Path, seed: int = 0) -> dict[str, Path]:
    """Build the tiny models under ``root`` with the registry's names."""
    from ovseg.weights.specs import TINY_EDGETAM, TINY_SAM3
    from ovseg.weights.tiny_hf import build_edgetam, build_sam3

    root = Path(root)
    return {
        TINY_SAM2: build_tiny_sam2(root / TINY_SAM2, seed),
        TINY_CLIP: build_tiny_clip(root / TINY_CLIP, seed),
        TINY_SD: build_tiny_sd_inpaint(root / TINY_SD, seed),
        TINY_SAM3: build_sam3(root / TINY_SAM3, seed),
        TINY_EDGETAM: build_edgetam(root / TINY_EDGETAM, seed),
    }


# --- random weights in the real architectures (benchmarks only) ----------------------------

SD2_INPAINT_UNET = {
    "sample_size": 64,
    "in_channels": 9,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 1024,
    "attention_head_dim": (5, 10, 20, 20),
    "use_linear_projection": True,
}
SD2_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "layers_per_block": 2,
    "sample_size": 512,
}
SD2_TEXT = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "projection_dim": 512,
    "hidden_act": "gelu",
    "vocab_size": 49408,
}


def build_random_like(name: str, folder: Path, seed: int = 0) -> Path:
    """Random weights with the exact architecture of registry model ``name``.

    For speed and memory measurements without downloading (compute does not depend on
    the weight values). Never put these under ``checkpoints/``: they would pass for the
    real model and produce garbage.
    """
    from ovseg.weights.registry import CLIP, EDGETAM, INPAINT, LAMA, MIGAN, REGISTRY, SAM2, SAM3
    from ovseg.weights.tiny_hf import build_edgetam, build_sam3

    spec = REGISTRY[name]
    if spec.kind in (SAM3, EDGETAM):  # transformers' folders: built whole, with their processors
        return (build_sam3 if spec.kind == SAM3 else build_edgetam)(Path(folder), seed, tiny=False)
    torch.manual_seed(seed)
    with atomic_path(Path(folder)) as tmp:
        tmp.mkdir(parents=True)
        if spec.kind == SAM2:
            from hydra.utils import instantiate
            from omegaconf import OmegaConf

            config = resources.files("sam2").joinpath(spec.sam2_config)
            model = instantiate(OmegaConf.create(config.read_text()).model, _recursive_=True)
            torch.save({"model": model.state_dict()}, tmp / spec.files[0])
        elif spec.kind == CLIP:
            import open_clip
            from safetensors.torch import save_file

            model_cfg = open_clip.get_model_config(spec.open_clip_arch)
            model = open_clip.create_model(spec.open_clip_arch)
            config = {"model_cfg": model_cfg, "preprocess_cfg": TINY_CLIP_CONFIG["preprocess_cfg"]}
            (tmp / "open_clip_config.json").write_text(json.dumps(config, indent=2))
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / spec.files[1]))
        elif spec.kind == INPAINT:
            _save_sd_pipeline(tmp, SD2_INPAINT_UNET, SD2_VAE, SD2_TEXT)
        elif spec.kind == LAMA:
            from ovseg.editing.lama_net import save_random_lama

            save_random_lama(tmp / spec.files[0], seed=seed)
        elif spec.kind == MIGAN:
            from ovseg.editing.migan_net import save_random_migan

            save_random_migan(tmp / spec.files[0], seed=seed)
    return Path(folder)


def _save_sd_pipeline(folder: Path, unet_cfg: dict, vae_cfg: dict, text_cfg: dict) -> None:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab_dir = folder.parent / "tokenizer-src"
    write_byte_level_tokenizer(vocab_dir)
    tokenizer = CLIPTokenizer(str(vocab_dir / "vocab.json"), str(vocab_dir / "merges.txt"), model_max_length=77)
    pipe = StableDiffusionInpaintPipeline(
        vae=AutoencoderKL(**vae_cfg),
        text_encoder=CLIPTextModel(CLIPTextConfig(bos_token_id=512, eos_token_id=513, pad_token_id=513, **text_cfg)),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**unet_cfg),
        scheduler=DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder))
    shutil.rmtree(vocab_dir)
