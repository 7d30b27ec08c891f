"""The MI-GAN edit backend: removal by MI-GAN (Sargsyan et al., ICCV 2023), its authors' ONNX pipeline
``migan_pipeline_v2.onnx``, on onnxruntime (no torch).

Why: MI-GAN is built to be fast on phones and CPUs (~6M weights against LaMa's 51M), for a learned
fill in well under a second. The pipeline squeezes what it is given to 512 x 512, paints, and scales
back, so it gets the square crop the shared path cuts (at least :data:`MIN_CROP` pixels, at most
``edit.learned_max_side``). The file's contract: ``image`` (1, 3, H, W) uint8 and ``mask`` (1, 1, H,
W) uint8 with 255 where the pixels are *known*; out, ``result`` (1, 3, H, W) uint8.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ovseg.config import EditSettings
from ovseg.editing.backend import EditRequest, Painter
from ovseg.editing.geometry import fill_at_most
from ovseg.errors import OvsegError, one_line
from ovseg.weights.onnx_sessions import session_options
from ovseg.weights.registry import MIGAN, check_hashes, model_fingerprint, pinned_hashes, resolve_model_dir

MIN_CROP = 256  # half the pipeline's 512: a small hole gets that much of the photo around it


def load_migan(name: str, device: str):
    """An onnxruntime session on the MI-GAN pipeline in model folder ``name``, its pinned digest checked."""
    import onnxruntime as ort

    folder = resolve_model_dir(name, MIGAN)
    check_hashes(folder, pinned_hashes(folder, name))
    path = sorted(folder.glob("*.onnx"))[0]
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if str(device).startswith("cuda") else []
    available = set(ort.get_available_providers())
    try:
        return ort.InferenceSession(
            str(path), session_options(), providers=[p for p in providers if p in available] or ["CPUExecutionProvider"]
        )
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file fails in many ways
        raise OvsegError(f"cannot load MI-GAN from {path}: {one_line(exc)}") from None


def migan_fill(session):
    """(rgb uint8, holes bool) -> rgb uint8, through the pipeline's session."""
    image_input, mask_input = (item.name for item in session.get_inputs()[:2])

    def fill(rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
        image = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
        known = np.where(holes, 0, 255).astype(np.uint8)[None, None]
        result = session.run(None, {image_input: image, mask_input: known})[0]
        return np.ascontiguousarray(result[0].transpose(1, 2, 0)).astype(np.uint8)

    return fill


class MiganBackend:
    """MI-GAN: fast learned removal (no prompt), so remove only."""

    name = "migan"
    modes = ("remove",)
    resizes_to_model = False  # the pipeline resizes to its 512 px itself, and keeps the known pixels at theirs
    weights_setting, weights_kind = "migan_model", MIGAN

    def check(self, settings: EditSettings) -> None:
        return None

    def min_crop_side(self, settings: EditSettings) -> int:
        return MIN_CROP

    def fingerprint(self, settings: EditSettings) -> str:
        return model_fingerprint(settings.migan_model, MIGAN)

    def load(self, settings: EditSettings, device: str):
        return load_migan(settings.migan_model, device)

    def painter(self, model, settings: EditSettings, request: EditRequest) -> Painter:
        fill = migan_fill(model)

        def paint(image: Image.Image, mask: Image.Image) -> Image.Image:
            return fill_at_most(image, mask, settings.learned_max_side, fill)

        return paint
