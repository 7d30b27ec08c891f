"""DVC stage `follow` (docs/videos.md): see src/ovseg/pipeline/follow.py.

Does nothing while params.yaml's `videos` is null.
"""

import _ovseg_env  # noqa: F401  (must come first: a clear error outside the venv)

from ovseg.dag.runner import run_stage

if __name__ == "__main__":
    run_stage("follow")
