"""DVC stage `fill` (docs/videos.md, "Remove from a video"): see src/ovseg/pipeline/fill.py.

Does nothing unless params.yaml has `videos` and `mode: remove`.
"""

import _ovseg_env  # noqa: F401  (must come first: a clear error outside the venv)

from ovseg.dag.runner import run_stage

if __name__ == "__main__":
    run_stage("fill")
