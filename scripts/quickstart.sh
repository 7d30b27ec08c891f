#!/usr/bin/env bash
# Install, then run segment mode on the bundled photo (data/images/chelsea.png, "the cat").
#
# With real weights in checkpoints/ (`ovseg weights download`, needs internet) it runs
# the `balanced` preset. Without them it builds tiny random-weight models and runs the
# `tiny` preset: that checks the whole install offline, but its masks are meaningless.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
OVSEG=.venv/bin/ovseg

if [ "${1:-}" = "--download" ]; then
  "$OVSEG" weights download --preset balanced
fi
if "$OVSEG" weights verify --preset balanced >/dev/null 2>&1; then
  preset=balanced
else
  echo "Real weights not found in checkpoints/ (run: .venv/bin/ovseg weights download)."
  echo "Running the offline smoke test with tiny RANDOM weights: the result is not a real segmentation."
  "$OVSEG" weights make-tiny
  preset=tiny
fi
"$OVSEG" run --images data/images --prompt "the cat" --mode segment --config "$preset"
echo "Open data/output/segment/chelsea/overlay.png to see the result."
