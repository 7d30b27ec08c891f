"""Removal without diffusion weights: OpenCV inpainting (Telea or Navier-Stokes).

Why: `remove` should give a real result offline and on a CPU in well under a second.
OpenCV fills the masked pixels from their surroundings (fast marching, Telea 2004, or a
Navier-Stokes transport, Bertalmio 2001). It cannot paint new content, so `replace` and
`style` need the diffusion backend. It runs through the same dilate / crop / paste /
feather path as diffusion (``editing.edit_image``), so what it leaves untouched is the same.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ovseg.config import EditSettings

METHODS = ("telea", "ns")


def opencv_painter(settings: EditSettings):
    """Crop image + crop mask -> the crop with the mask filled from its surroundings."""
    import cv2

    flag = cv2.INPAINT_TELEA if settings.opencv_method == "telea" else cv2.INPAINT_NS

    def paint(image: Image.Image, mask: Image.Image) -> Image.Image:
        rgb = np.asarray(image.convert("RGB"))
        holes = (np.asarray(mask.convert("L")) > 0).astype(np.uint8) * 255
        filled = cv2.inpaint(rgb, holes, float(settings.opencv_radius), flag)
        return Image.fromarray(filled)

    return paint
