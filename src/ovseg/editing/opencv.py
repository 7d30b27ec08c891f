"""The OpenCV edit backend: removal without diffusion weights, by filling the hole from its surroundings.

Why: `remove` should give a real result offline and on a CPU in well under a second. The
methods, ``edit.opencv_method``:

| method     | what                                                                      |
| ---------- | ------------------------------------------------------------------------- |
| `fsr_fast` | frequency-selective reconstruction (Seiler et al.; opencv-contrib xphoto) |
| `fsr_best` | the same, more iterations (seconds per photo)                             |
| `shiftmap` | patches copied from elsewhere in the photo (He & Sun; xphoto)             |
| `telea`    | fast marching (Telea 2004): smooth colours from the border inwards        |
| `ns`       | Navier-Stokes transport (Bertalmio 2001): the same, following edges       |

``ovseg benchmark-remove`` measures them against the true pixels (docs/benchmarks.md, "Removal quality"). None
can paint new content, so `replace` and `style` need the diffusion backend. They run through
the same dilate / crop / paste / feather path as diffusion
(:func:`ovseg.editing.geometry.edit_image`), so what they leave untouched is the same.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ovseg.config import EditSettings
from ovseg.editing.backend import EditRequest, Painter
from ovseg.errors import OvsegError

SMOOTH = ("telea", "ns")  # cv2.inpaint, radius edit.opencv_radius
XPHOTO = ("fsr_fast", "fsr_best", "shiftmap")  # opencv-contrib's cv2.xphoto.inpaint
METHODS = XPHOTO + SMOOTH


class OpenCVBackend:
    """OpenCV's fills: from the surroundings, so removal only."""

    name = "opencv"
    modes = ("remove",)
    resizes_to_model = False  # fills from the photo's own pixels, at their own scale
    weights_setting = weights_kind = None  # a library call

    def check(self, settings: EditSettings) -> None:
        if settings.opencv_method not in METHODS or settings.opencv_radius < 1 or settings.opencv_max_fill_px < 64:
            raise OvsegError(
                f"edit.opencv_method must be one of {', '.join(METHODS)}, edit.opencv_radius >= 1 "
                "and edit.opencv_max_fill_px >= 64"
            )
        if settings.opencv_method in XPHOTO and not _has_xphoto():
            raise OvsegError(
                f"edit.opencv_method {settings.opencv_method} needs opencv-contrib-python-headless "
                "(scripts/install.sh installs it), or use --set edit.opencv_method=telea"
            )

    def min_crop_side(self, settings: EditSettings) -> int:
        return 8  # fills from the hole's border: more context only costs time

    def fingerprint(self, settings: EditSettings) -> str:
        import cv2

        return f"opencv-{cv2.__version__}-photo-pixels"  # unresized; keys of 512 px fills differ

    def load(self, settings: EditSettings, device: str) -> None:
        return None  # nothing heavy: OpenCV is a library call

    def painter(self, model, settings: EditSettings, request: EditRequest) -> Painter:
        import cv2

        def paint(image: Image.Image, mask: Image.Image) -> Image.Image:
            rgb = np.ascontiguousarray(np.asarray(image.convert("RGB")))
            holes = np.asarray(mask.convert("L")) > 0
            scale = min(1.0, float(np.sqrt(settings.opencv_max_fill_px / max(1, int(holes.sum())))))
            if scale >= 1.0:
                filled = _fill(rgb, holes, settings)
            else:  # a hole this large gets no detail from any of these fills, only their time: fill it smaller
                height, width = holes.shape
                size = (max(8, round(width * scale)), max(8, round(height * scale)))
                small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
                small_holes = cv2.resize(holes.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
                filled = cv2.resize(_fill(small, small_holes, settings), (width, height), interpolation=cv2.INTER_CUBIC)
            return Image.fromarray(np.where(holes[..., None], filled, rgb))  # the known pixels stay as they were

        return paint


def _fill(rgb: np.ndarray, holes: np.ndarray, settings: EditSettings) -> np.ndarray:
    """``rgb`` with the ``holes`` pixels filled by ``edit.opencv_method`` from the rest."""
    import cv2

    method = settings.opencv_method
    if method in SMOOTH:
        flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
        return cv2.inpaint(rgb, holes.astype(np.uint8) * 255, float(settings.opencv_radius), flag)
    flag = {
        "fsr_fast": cv2.xphoto.INPAINT_FSR_FAST,
        "fsr_best": cv2.xphoto.INPAINT_FSR_BEST,
        "shiftmap": cv2.xphoto.INPAINT_SHIFTMAP,
    }[method]
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)  # xphoto expects intensity first, then colour
    out = np.zeros_like(lab)
    cv2.xphoto.inpaint(lab, (~holes).astype(np.uint8) * 255, out, flag)  # its mask marks the *known* pixels
    return cv2.cvtColor(out, cv2.COLOR_Lab2RGB)


def _has_xphoto() -> bool:
    import cv2

    return hasattr(cv2, "xphoto")
