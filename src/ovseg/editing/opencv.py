"""The OpenCV edit backend: removal without diffusion weights (Telea or Navier-Stokes inpainting).

Why: `remove` should give a real result offline and on a CPU in well under a second.
OpenCV fills the masked pixels from their surroundings (fast marching, Telea 2004, or a
Navier-Stokes transport, Bertalmio 2001). It cannot paint new content, so `replace` and
`style` need the diffusion backend. It runs through the same dilate / crop / paste /
feather path as diffusion (:func:`ovseg.editing.geometry.edit_image`), so what it leaves
untouched is the same.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ovseg.config import EditSettings
from ovseg.editing.backend import EditRequest, Painter
from ovseg.errors import OvsegError

METHODS = ("telea", "ns")


class OpenCVBackend:
    """cv2.inpaint: fills from the surroundings, so removal only."""

    name = "opencv"
    modes = ("remove",)

    def check(self, settings: EditSettings) -> None:
        if settings.opencv_method not in METHODS or settings.opencv_radius < 1:
            raise OvsegError("edit.opencv_method must be telea or ns, and edit.opencv_radius >= 1")

    def fingerprint(self, settings: EditSettings) -> str:
        import cv2

        return f"opencv-{cv2.__version__}"

    def load(self, settings: EditSettings, device: str) -> None:
        return None  # nothing heavy: OpenCV is a library call

    def painter(self, model, settings: EditSettings, request: EditRequest) -> Painter:
        import cv2

        flag = cv2.INPAINT_TELEA if settings.opencv_method == "telea" else cv2.INPAINT_NS

        def paint(image: Image.Image, mask: Image.Image) -> Image.Image:
            rgb = np.asarray(image.convert("RGB"))
            holes = (np.asarray(mask.convert("L")) > 0).astype(np.uint8) * 255
            return Image.fromarray(cv2.inpaint(rgb, holes, float(settings.opencv_radius), flag))

        return paint
