"""SAM 3 and EdgeTAM with random weights, saved as transformers saves the real ones.

Why here: no SAM 3 or EdgeTAM weights can be fetched offline, so tests and benchmarks build them through
transformers' own config classes and ``save_pretrained``. The folder then has the layout of the hub's
``facebook/sam3`` (one ``Sam3VideoModel`` checkpoint, from which ``Sam3Model`` and ``Sam3TrackerVideoModel`` both
load, and one processor config with its tokenizer) and of ``yonigozlan/EdgeTAM-hf``, and loads through the
same code a user's download goes through. ``tiny=True`` gives small models (tests); ``tiny=False`` the real
architectures (the benchmarks' speed and memory, which do not depend on the weights' values).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ovseg.storage.locations import atomic_path

SAM3_TINY_SIDE = 112  # 8 x 8 patches of 14 px
EDGETAM_TINY_SIDE = 256


def _sam3_config(tiny: bool):
    from transformers import Sam3VideoConfig
    from transformers.models.sam3.configuration_sam3 import Sam3VisionConfig, Sam3ViTConfig

    if not tiny:
        return Sam3VideoConfig(), 1008
    side, patch = SAM3_TINY_SIDE, 14
    grid = side // patch
    backbone = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=side,
        patch_size=patch, window_size=4, global_attn_indexes=[1], pretrain_image_size=56,
    )  # fmt: skip
    sizes = [[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]]

    def vision():
        return Sam3VisionConfig(backbone_config=Sam3ViTConfig(**backbone), backbone_feature_sizes=sizes)

    detector = dict(
        vision_config=vision(),
        text_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, projection_dim=32,
            vocab_size=520, max_position_embeddings=32, bos_token_id=512, eos_token_id=513, pad_token_id=513,
        ),
        geometry_encoder_config=dict(num_layers=1, intermediate_size=64),
        detr_encoder_config=dict(num_layers=1, intermediate_size=64),
        detr_decoder_config=dict(num_layers=2, num_queries=20, intermediate_size=64),
    )  # fmt: skip
    tracker = dict(
        image_size=side, vision_config=vision(), prompt_encoder_config=dict(image_size=side, patch_size=patch),
        memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[grid, grid], memory_fuser_intermediate_dim=64, memory_fuser_num_layers=1,
    )  # fmt: skip
    return Sam3VideoConfig(detector_config=detector, tracker_config=tracker), side


def build_sam3(folder: Path, seed: int = 0, tiny: bool = True) -> Path:
    """A random SAM 3 (detector and tracker, one checkpoint) and its processor, as ``facebook/sam3`` has them."""
    from transformers import CLIPTokenizer, Sam2VideoVideoProcessor, Sam3VideoModel, Sam3VideoProcessor
    from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor

    torch.manual_seed(seed)
    config, side = _sam3_config(tiny)
    model = Sam3VideoModel(config).eval()
    with atomic_path(Path(folder)) as tmp:
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp)
        vocab = tmp / "tokenizer-src"
        write_byte_level_tokenizer(vocab)
        tokenizer = CLIPTokenizer(str(vocab / "vocab.json"), str(vocab / "merges.txt"), model_max_length=32)
        size = {"height": side, "width": side}
        Sam3VideoProcessor(
            image_processor=Sam3ImageProcessor(size=size),
            video_processor=Sam2VideoVideoProcessor(size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3),
            tokenizer=tokenizer,
            target_size=side,
        ).save_pretrained(tmp)
        shutil.rmtree(vocab)
    return Path(folder)


def _edgetam_config(tiny: bool):
    from transformers import EdgeTamVideoConfig, TimmWrapperConfig
    from transformers.models.edgetam.configuration_edgetam import EdgeTamVisionConfig

    side = EDGETAM_TINY_SIDE if tiny else 1024
    # RepViT-M1 through timm, as the published checkpoint has it (transformers' default spells its key wrongly).
    backbone = TimmWrapperConfig(
        architecture="repvit_m1", model_args={"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]}
    )
    sizes = [[side // 4] * 2, [side // 8] * 2, [side // 16] * 2]
    vision = EdgeTamVisionConfig(backbone_config=backbone, backbone_feature_sizes=sizes)
    config = EdgeTamVideoConfig(
        vision_config=vision,
        image_size=side,
        prompt_encoder_config={"image_size": side},
        memory_attention_rope_feat_sizes=[side // 16, side // 16],
    )
    return config, side


def build_edgetam(folder: Path, seed: int = 0, tiny: bool = True) -> Path:
    """A random EdgeTAM and its ``Sam2VideoProcessor``, as ``yonigozlan/EdgeTAM-hf`` has them."""
    from transformers import EdgeTamVideoModel, Sam2ImageProcessor, Sam2VideoProcessor, Sam2VideoVideoProcessor

    torch.manual_seed(seed)
    config, side = _edgetam_config(tiny)
    model = EdgeTamVideoModel(config).eval()
    size = {"height": side, "width": side}
    with atomic_path(Path(folder)) as tmp:
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp)
        Sam2VideoProcessor(
            image_processor=Sam2ImageProcessor(size=size),
            video_processor=Sam2VideoVideoProcessor(size=size),
            target_size=side,
        ).save_pretrained(tmp)
    return Path(folder)


def write_byte_level_tokenizer(folder: Path) -> None:
    """A CLIP BPE tokenizer with only byte-level tokens and no merges (vocab.json + merges.txt)."""
    byte_chars = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    byte_chars += list(range(ord("®"), ord("ÿ") + 1))
    chars = [chr(c) for c in byte_chars]
    n = 0
    for b in range(256):
        if b not in byte_chars:
            chars.append(chr(256 + n))
            n += 1
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
