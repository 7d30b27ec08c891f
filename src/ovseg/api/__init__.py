"""ovseg from Python, as short as LangSAM's: ``Segmenter(...).segment(photo, "the red car")``.

:class:`~ovseg.api.segmenter.Segmenter` finds and edits; it returns
:class:`~ovseg.api.results.SegmentResult` (arrays and pictures, written to disk by the stages'
own writers).
"""

from ovseg.api.results import SegmentDetails, SegmentResult
from ovseg.api.segmenter import Segmenter
from ovseg.api.video import VideoResult

__all__ = ["SegmentDetails", "SegmentResult", "Segmenter", "VideoResult"]
