"""ovseg: open-vocabulary segmentation and editing of images by plain language.

SAM 2 proposes masks, CLIP scores them against a text prompt, the best ones are
selected, and Stable Diffusion 2 inpainting edits the selected region. Every step
is a small stage that writes its artifacts to disk, so DVC can cache and rerun
only what a change invalidates.
"""

__version__ = "0.1.0"

__all__ = ["SegmentResult", "Segmenter", "VideoResult", "__version__"]


def __getattr__(name: str):
    """``from ovseg import Segmenter`` without importing torch for every ``import ovseg``."""
    if name in ("Segmenter", "SegmentResult", "VideoResult"):
        from ovseg import api

        return getattr(api, name)
    raise AttributeError(f"module 'ovseg' has no attribute {name!r}")
