"""DVC stage `embed`: CLIP features for every mask candidate, independent of the prompt.

Reads: cache/masks, params preset + embed. Writes: cache/embeddings/<key>.zarr
(N x D float16, unit norm) per image and manifest.json.
"""

import _ovseg_env  # noqa: F401  (must come first: a clear error outside the venv)

from ovseg.dag.runner import run_stage

if __name__ == "__main__":
    run_stage("embed")
