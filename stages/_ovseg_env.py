"""Stop a stage with a one-line hint when DVC runs it with a Python that lacks ovseg.

DVC runs `python stages/<name>.py` with whatever `python` is first on PATH; outside the
project's virtual environment that is usually one without ovseg installed.
"""

import sys

try:
    import ovseg  # noqa: F401
except ModuleNotFoundError:
    sys.exit(
        f"ovseg: error: ovseg is not installed for {sys.executable}; "
        "activate the project's environment (source .venv/bin/activate) and run dvc repro again"
    )
