"""DVC stage `edit`: remove / replace / style the selected region (SD 2 inpainting).

Reads: data/output/segment, params mode + edit_prompt + preset + edit. Writes per image
under data/output/edit/<name>/: edited.png, before_after.png, edit.json. Does nothing
in segment mode.
"""

import _ovseg_env  # noqa: F401  (must come first: a clear error outside the venv)

from ovseg.dag.runner import run_stage

if __name__ == "__main__":
    run_stage("edit")
