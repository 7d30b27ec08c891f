"""`ovseg` command line, one module per command group.

| module        | commands                                                              |
| ------------- | --------------------------------------------------------------------- |
| :mod:`.run`       | ``run`` (words, clicks, boxes; ``--dvc``; ``--engine ray``)       |
| :mod:`.inspect`   | ``inspect``                                                       |
| :mod:`.weights`   | ``weights list / download / verify / make-tiny``                  |
| :mod:`.data`      | ``data list / download`` (DAVIS, CamVid)                          |
| :mod:`.settings`  | ``settings``: every knob, its values, default, presets and doc    |
| :mod:`.cache`     | ``cache gc``, ``sync``                                            |
| :mod:`.benchmark` | ``benchmark``, ``benchmark-masks / -engines / -embed / -score``   |
| :mod:`.benchmark_video` | ``benchmark-track``, ``benchmark-video-remove``             |
| :mod:`.evaluate`  | ``evaluate``, ``make-eval-set``                                   |
| :mod:`.ui`        | ``ui``                                                            |

Commands parse options and print; what they run lives below the faces (pipeline, engines,
benchmarks, evaluation), so the CLI builds no record of its own.
"""

from ovseg.cli import benchmark, benchmark_video, cache, data, evaluate, inspect, run, settings, ui, weights  # noqa: F401
from ovseg.cli.common import app


def main() -> None:  # pragma: no cover - console script entry
    app()


__all__ = ["app", "main"]
