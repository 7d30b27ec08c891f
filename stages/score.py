"""DVC stage `score`: similarity of every candidate to the text prompt.

Reads: cache/embeddings, params prompt + preset + score. Writes: cache/scores/<key>.zarr
(score, similarity, negative_similarity per candidate) and manifest.json.
"""

import _ovseg_env  # noqa: F401  (must come first: a clear error outside the venv)

from ovseg.dag.runner import run_stage

if __name__ == "__main__":
    run_stage("score")
