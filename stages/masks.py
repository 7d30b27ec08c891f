"""DVC stage `masks`: SAM 2 mask candidates for every image in `images` (params.yaml).

Reads: data/images, params preset + masks. Writes: cache/masks/<key>.zarr per image
(bool N x H x W masks, boxes, areas, predicted IoU, stability), <key>.candidates.png,
manifest.json.
"""

import _ovseg_env  # noqa: F401  (must come first: a clear error outside the venv)

from ovseg.dag.runner import run_stage

if __name__ == "__main__":
    run_stage("masks")
