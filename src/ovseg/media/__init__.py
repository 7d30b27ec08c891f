"""Pictures and videos in and out: reading photos (``fileio``), decoding clips and writing MP4s (``videoio``),
overlays and label maps (``viz``), COCO RLE (``rle``), COCO files (``coco``) and label maps from candidates
(``labelmaps``). Base layer: it knows files and pixels, not stages or models.
"""
