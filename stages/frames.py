"""DVC stage `frames` (docs/videos.md): see src/ovseg/pipeline/frames.py.

Does nothing while params.yaml's `videos` is null.
"""

import _ovseg_env  # noqa: F401  (must come first: a clear error outside the venv)

from ovseg.dag.runner import run_stage

if __name__ == "__main__":
    run_stage("frames")
