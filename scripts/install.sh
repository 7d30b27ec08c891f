#!/usr/bin/env bash
# Create .venv and install ovseg with everything it needs, from scratch.
# torch and torchvision must be a matching pair; the defaults below are pairs known
# to install on each architecture (override with TORCH_PACKAGES="torch==X torchvision==Y").
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"

case "$(uname -m)" in
  x86_64) default_torch="torch==2.14.1 torchvision==0.29.1" ;;
  aarch64|arm64) default_torch="torch==2.9.1 torchvision==0.24.1" ;;
  *) default_torch="torch torchvision" ;;
esac
# shellcheck disable=SC2086
$PIP install -q ${TORCH_PACKAGES:-$default_torch}
$PIP install -q setuptools wheel

# sam2 ships as source only; its optional CUDA extension (hole filling for video) is
# not needed for automatic mask generation, so build without it and against the
# torch installed above instead of a fresh one in an isolated build environment.
if ! .venv/bin/python -c "import sam2" 2>/dev/null; then
  SAM2_BUILD_CUDA=0 $PIP install -q --no-build-isolation "sam2==1.1.0"
fi

# opencv-contrib-python-headless (xphoto's removal) and the other opencv wheels all install a
# `cv2` package: an earlier install's opencv-python(-headless) would shadow it, so it goes first.
$PIP uninstall -q -y opencv-python opencv-python-headless opencv-contrib-python 2>/dev/null || true

# Extras: ui (the web page), ray (the Ray engine), s3 / gcs (buckets); dev = tests and ruff.
$PIP install -q -e ".[${OVSEG_EXTRAS:-dev,ui}]"
.venv/bin/python - <<'CHECK'
from importlib import metadata
opencv = sorted({d.metadata["Name"].lower() for d in metadata.distributions() if d.metadata["Name"].lower().startswith("opencv")})
if opencv != ["opencv-contrib-python-headless"]:
    raise SystemExit(f"ovseg: error: exactly one OpenCV wheel must be installed (opencv-contrib-python-headless), found {opencv}")
CHECK
.venv/bin/python -c "import torch, torchvision, sam2, open_clip, diffusers, dvc, cv2; cv2.xphoto; print('ovseg installed: torch', torch.__version__, '| cuda' if torch.cuda.is_available() else '| cpu')"
