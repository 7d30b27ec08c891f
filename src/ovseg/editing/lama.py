"""The LaMa edit backend: removal by big-lama (Suvorov et al., WACV 2022), the fill IOPaint and
Inpaint-Anything use, from its TorchScript file ``big-lama.pt``.

Why: OpenCV's fills smear the hole's border inwards; LaMa's Fourier convolutions see the whole crop
at once and continue its texture and structure (a wall's bricks, a fence). It works at the photo's
own pixels (it copes with any size), on a crop of about twice the hole's box (``edit.context``), at
least :data:`MIN_CROP` pixels for context around small holes and at most ``edit.learned_max_side``
(a larger crop is painted smaller, :func:`~ovseg.editing.geometry.fill_at_most`). The file's contract:
``model(image, mask)``, image (1, 3, H, W) in [0, 1], mask (1, 1, H, W) with 1 in the hole, H and W
multiples of 8; out, (1, 3, H, W) in [0, 1].
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

from ovseg.config import EditSettings
from ovseg.editing.backend import EditRequest, Painter
from ovseg.editing.geometry import fill_at_most
from ovseg.errors import OvsegError, one_line
from ovseg.weights.registry import LAMA, check_hashes, model_fingerprint, pinned_hashes, resolve_model_dir

MIN_CROP = 256  # LaMa was trained on 256 px crops: around a small hole, it wants that much of the photo
MULTIPLE = 8  # three stride-2 downsamplings


def pad_to_multiple(array: np.ndarray, multiple: int = MULTIPLE) -> np.ndarray:
    """Mirror-pad the bottom and right of an (H, W[, C]) array up to multiples of ``multiple``."""
    height, width = array.shape[:2]
    pads = [(0, -height % multiple), (0, -width % multiple)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pads, mode="symmetric")


def load_lama(name: str, device: str):
    """The TorchScript LaMa in model folder ``name`` (registry name or path), its pinned digest checked."""
    import torch

    folder = resolve_model_dir(name, LAMA)
    check_hashes(folder, pinned_hashes(folder, name))
    path = sorted(folder.glob("*.pt"))[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's deprecation notice: the file is what LaMa ships
            model = torch.jit.load(str(path), map_location=device)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file fails in many ways
        raise OvsegError(f"cannot load LaMa from {path}: {one_line(exc)}") from None
    return model.eval()


def lama_fill(model, device: str):
    """(rgb uint8, holes bool) -> rgb uint8, through ``model`` at a size padded to multiples of 8."""
    import torch

    def fill(rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
        height, width = holes.shape
        image = torch.from_numpy(pad_to_multiple(rgb).transpose(2, 0, 1).copy()).float().div(255)[None]
        mask = torch.from_numpy(pad_to_multiple(holes.astype(np.float32)))[None, None]
        with torch.inference_mode():
            out = model(image.to(device), mask.to(device))
        out = out[0, :, :height, :width].permute(1, 2, 0).float().cpu().numpy()
        return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)

    return fill


class LamaBackend:
    """big-lama: learned removal (no prompt), so remove only."""

    name = "lama"
    modes = ("remove",)
    resizes_to_model = False  # resolution-robust: painted at the photo's pixels, up to edit.learned_max_side
    weights_setting, weights_kind = "lama_model", LAMA

    def check(self, settings: EditSettings) -> None:
        return None  # its one setting, learned_max_side, is checked with the others (config)

    def min_crop_side(self, settings: EditSettings) -> int:
        return MIN_CROP

    def fingerprint(self, settings: EditSettings) -> str:
        return model_fingerprint(settings.lama_model, LAMA)

    def load(self, settings: EditSettings, device: str):
        return load_lama(settings.lama_model, device)

    def painter(self, model, settings: EditSettings, request: EditRequest) -> Painter:
        weight = next(iter(model.parameters()), None)
        fill = lama_fill(model, str(weight.device) if weight is not None else "cpu")

        def paint(image: Image.Image, mask: Image.Image) -> Image.Image:
            return fill_at_most(image, mask, settings.learned_max_side, fill)

        return paint
