"""DVC stage `select` (named topk.py: a stages/select.py would hide Python's own `select` module from the
script): top-K candidates merged into one region per image.

Reads: cache/scores, cache/masks, params preset + select. Writes per image under
data/output/segment/<name>/: mask.png, overlay.png, selection.json (COCO RLE, scores,
boxes), selection.zarr; and summary.json.
"""

import _ovseg_env  # noqa: F401  (must come first: a clear error outside the venv)

from ovseg.dag.runner import run_stage

if __name__ == "__main__":
    run_stage("select")
