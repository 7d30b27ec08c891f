"""SAM 2 in torch: loaded with sam2's own `build_sam2`; used two ways.

* :class:`Sam2Prompter`, the :class:`~ovseg.masks.backend.PromptModel` for ovseg's mask
  engine: sam2's image predictor encodes the image, its prompt encoder and mask decoder
  turn point prompts into low-resolution logits (nothing is upsampled here).
* :class:`Sam2AutoGenerator`: sam2's own `SAM2AutomaticMaskGenerator`, kept selectable
  (``masks.generator: sam2-amg``) so the two can be compared.

A model folder holds the checkpoint (`*.pt`, sam2's format: ``{"model": state_dict}``)
and, for custom or test models, a `config.yaml` in sam2's hydra format. Registry
models use the config that ships inside the sam2 package.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ovseg.config import MasksSettings
from ovseg.errors import OvsegError, one_line
from ovseg.storage.store import MaskProposals
from ovseg.weights.registry import REGISTRY, SAM2, resolve_model_dir


def _checkpoint_in(folder: Path, name: str) -> Path:
    spec = REGISTRY.get(name)
    if spec is not None:
        for filename in spec.files:
            if (folder / filename).is_file() and filename.endswith(".pt"):
                return folder / filename
    checkpoints = sorted(folder.glob("*.pt"))
    if not checkpoints:
        raise OvsegError(f"no SAM 2 checkpoint (*.pt) in {folder}")
    return checkpoints[0]


def load_sam2(name: str, device: str) -> torch.nn.Module:
    """Build SAM 2 through sam2's `build_sam2` and load its checkpoint on ``device``."""
    from sam2.build_sam import build_sam2

    return build_with(build_sam2, name, device, "SAM 2 weights")


def build_with(builder, name: str, device: str, what: str) -> Any:
    """``builder`` (sam2's ``build_sam2`` or ``build_sam2_video_predictor``) on the mask model ``name``: a registry
    SAM 2 by its config in sam2's package, or a folder with its own ``config.yaml``; one line when it fails."""
    import sam2  # noqa: F401 - initialises sam2's hydra config module

    folder = resolve_model_dir(name, SAM2)
    checkpoint = _checkpoint_in(folder, name)
    spec = REGISTRY.get(name)
    # sam2 scripts a helper with torch.jit at build time; newer torch warns about that on every run. Without sam2's
    # optional CUDA extension (a CPU install) small holes in video masks are not filled; it says so on every frame.
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message="cannot import name '_C' from 'sam2'", category=UserWarning)
    try:
        if (folder / "config.yaml").is_file():  # a config outside the sam2 package (custom or test models)
            with hydra_config_dir(folder):
                return builder("config.yaml", str(checkpoint), device=device)
        if spec is None or spec.sam2_config is None:
            raise OvsegError(f"{folder} has no config.yaml and {name!r} is not a registry model")
        return builder(spec.sam2_config, str(checkpoint), device=device)
    except OvsegError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt or mismatched file fails in many ways
        raise OvsegError(f"cannot load {what} from {checkpoint}: {one_line(exc)}") from None


@contextlib.contextmanager
def hydra_config_dir(folder: Path):
    """sam2 composes configs from its own hydra module; for one build hydra looks in ``folder`` instead, then
    sam2's module is put back (the image model and the video predictor are built the same way)."""
    from hydra import initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(folder).resolve()), version_base="1.2"):
            yield
    finally:
        GlobalHydra.instance().clear()
        initialize_config_module("sam2", version_base="1.2")


def _fix_feature_sizes(predictor, model: torch.nn.Module) -> None:
    """sam2's image predictor hard-codes feature sizes for 1024 px models; derive them from the
    model so configs with another image_size work too (same values at 1024)."""
    side = int(model.image_size)
    predictor._bb_feat_sizes = [(side // 4, side // 4), (side // 8, side // 8), (side // 16, side // 16)]


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


class Sam2Prompter:
    """SAM 2 behind the :class:`~ovseg.masks.backend.PromptModel` interface.

    SAM 2 resizes the image to a square (no padding), so its low-resolution logits cover
    the whole image and upscaling is a single resize, done by sam2's own transforms.
    """

    def __init__(self, model: torch.nn.Module, name: str) -> None:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self.name = name
        self.calls = 0
        self.model = model
        self.predictor = SAM2ImagePredictor(model)
        _fix_feature_sizes(self.predictor, model)
        self.device = next(model.parameters()).device
        self._low_res = (0, 0)

    def set_image(self, image: np.ndarray) -> None:
        with torch.inference_mode(), _autocast(self.device):
            self.predictor.set_image(np.array(image))  # a writable copy: torchvision warns on read-only arrays
        self.calls = 0

    @torch.inference_mode()
    def predict(self, coords: np.ndarray, labels: np.ndarray, multimask: bool) -> tuple[np.ndarray, np.ndarray]:
        predictor = self.predictor
        points = torch.as_tensor(np.asarray(coords, np.float32), device=self.device)
        points = predictor._transforms.transform_coords(points, normalize=True, orig_hw=predictor._orig_hw[-1])
        point_labels = torch.as_tensor(np.asarray(labels), dtype=torch.int, device=self.device)
        with _autocast(self.device):
            sparse, dense = self.model.sam_prompt_encoder(points=(points, point_labels), boxes=None, masks=None)
            high_res = [level[-1].unsqueeze(0) for level in predictor._features["high_res_feats"]]
            logits, iou, _, _ = self.model.sam_mask_decoder(
                image_embeddings=predictor._features["image_embed"][-1].unsqueeze(0),
                image_pe=self.model.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
                repeat_image=points.shape[0] > 1,
                high_res_features=high_res,
            )
        self.calls += points.shape[0]
        self._low_res = tuple(logits.shape[-2:])
        return logits.float().clamp(-32.0, 32.0).cpu().numpy(), iou.float().cpu().numpy()

    def candidates(self, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        single, single_iou = self.predict(np.asarray(coords)[None], np.asarray(labels)[None], multimask=False)
        several, several_iou = self.predict(np.asarray(coords)[None], np.asarray(labels)[None], multimask=True)
        return np.concatenate([single[0], several[0]]), np.concatenate([single_iou[0], several_iou[0]])

    @property
    def low_res_valid(self) -> tuple[int, int]:
        return self._low_res

    @torch.inference_mode()
    def upscale(self, logits: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, logits.shape[0], 16):
            chunk = torch.from_numpy(np.ascontiguousarray(logits[start : start + 16])).to(self.device).unsqueeze(1)
            full = self.predictor._transforms.postprocess_masks(chunk, self.predictor._orig_hw[-1])
            out.append(full[:, 0].float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, *self.predictor._orig_hw[-1]), np.float32)

    def image_features(self) -> tuple[np.ndarray, tuple[float, float]] | None:
        """The image embedding (C, rows, cols) and its cells' size (y, x) in image pixels (SAM 2 squashes the image
        to a square, so every cell shows it): what a tracker's memory describes an object by."""
        features = getattr(self.predictor, "_features", None)
        if not features:
            return None
        embedding = features["image_embed"][-1].float().cpu().numpy()
        height, width = self.predictor._orig_hw[-1]
        return embedding, (height / embedding.shape[1], width / embedding.shape[2])


def make_generator(model: torch.nn.Module, settings: MasksSettings):
    """SAM2AutomaticMaskGenerator with the knobs from params.yaml."""
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    generator = SAM2AutomaticMaskGenerator(
        model,
        points_per_side=settings.points_per_side,
        points_per_batch=settings.points_per_batch,
        pred_iou_thresh=settings.pred_iou_thresh,
        stability_score_thresh=settings.stability_score_thresh,
        stability_score_offset=settings.stability_score_offset,
        box_nms_thresh=settings.box_nms_thresh,
        crop_n_layers=settings.crop_n_layers,
        crop_n_points_downscale_factor=settings.crop_n_points_downscale_factor,
        min_mask_region_area=settings.min_mask_region_area,
        use_m2m=settings.use_m2m,
        multimask_output=settings.multimask_output,
        output_mode="binary_mask",
    )
    _fix_feature_sizes(generator.predictor, model)
    return generator


def propose_masks(generator, image: Image.Image, max_masks: int) -> MaskProposals:
    """Run the automatic generator; keep the ``max_masks`` best by predicted IoU x stability."""
    array = np.array(image.convert("RGB"))  # a writable copy: torchvision warns on read-only arrays
    device = next(generator.predictor.model.parameters()).device
    with torch.inference_mode(), _autocast(device):
        records = generator.generate(array)
    records.sort(key=lambda r: r["predicted_iou"] * r["stability_score"], reverse=True)
    records = records[:max_masks]
    height, width = array.shape[:2]
    if not records:
        return MaskProposals.empty(height, width)
    return MaskProposals(
        masks=np.stack([r["segmentation"] for r in records]).astype(bool),
        boxes=np.array([r["bbox"] for r in records], np.float32),
        areas=np.array([r["area"] for r in records], np.int64),
        predicted_iou=np.array([r["predicted_iou"] for r in records], np.float32),
        stability_score=np.array([r["stability_score"] for r in records], np.float32),
    )


class Sam2AutoGenerator:
    """sam2's own `SAM2AutomaticMaskGenerator` behind the same ``generate`` call as :class:`MaskEngine`."""

    def __init__(self, model: torch.nn.Module, settings: MasksSettings) -> None:
        self.generator = make_generator(model, settings)
        self.max_masks = settings.max_masks

    def generate(self, image: Image.Image) -> tuple[MaskProposals, dict]:
        started = time.perf_counter()
        proposals = propose_masks(self.generator, image, self.max_masks)
        # One prompt per grid point and crop: layer i has 4**i crops (sam2's generate_crop_boxes).
        calls = sum(len(grid) * 4**layer for layer, grid in enumerate(self.generator.point_grids))
        passes = sum(4**layer for layer in range(len(self.generator.point_grids)))  # one per crop box
        seconds = round(time.perf_counter() - started, 3)
        return proposals, {"decoder_calls": int(calls), "encoder_passes": passes, "seconds": seconds}
