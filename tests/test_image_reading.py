"""The one rule for every image read, as a property: ``load_image`` gives an RGB photo or an OvsegError, nothing else.

Hypothesis builds images of every size, mode and format Pillow writes, then cuts them short or
flips their bytes; whatever comes out, reading it must end in one of those two ways.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from conftest import load_run, stages, synthetic_photo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ovseg.errors import OvsegError
from ovseg.media.fileio import MIN_IMAGE_SIDE, load_image

pillow_heif.register_heif_opener()  # so the tests can write HEIC; ovseg registers it itself when it reads one

MODES = ("RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I", "F", "CMYK")
FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF", "AVIF", "HEIF")


@st.composite
def image_files(draw) -> bytes:
    """An encoded picture (any size, mode, format), perhaps cut short, perhaps with bytes flipped."""
    width, height = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    mode, fmt = draw(st.sampled_from(MODES)), draw(st.sampled_from(FORMATS))
    seed = draw(st.integers(0, 2**16))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode) if mode not in ("I;16",) else Image.fromarray(pixels[..., 0])
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):  # this format cannot hold this mode: write it as PNG instead
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    change = draw(st.sampled_from(("none", "cut", "flip", "cut and flip")))
    if "flip" in change:
        for _ in range(draw(st.integers(1, 8))):
            position = draw(st.integers(0, len(data) - 1))
            data[position] = draw(st.integers(0, 255))
    if "cut" in change:
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@given(image_files())
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_load_image_gives_an_rgb_photo_or_one_ovseg_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "photo.png"
        path.write_bytes(data)
        try:
            image = load_image(path)
        except OvsegError as exc:
            assert "photo.png" in str(exc) and "\n" not in str(exc)
            return
    assert image.mode == "RGB" and min(image.size) >= MIN_IMAGE_SIDE
    assert np.asarray(image).shape == (image.height, image.width, 3)


def _phone_photo(path: Path, fmt: str) -> np.ndarray:
    """A photo saved as a phone would (HEIC or AVIF), lying on its side with an EXIF turn; its upright pixels."""
    upright = np.asarray(synthetic_photo(96, 64))
    stored = Image.fromarray(np.rot90(upright, 1))  # rotated 90° anticlockwise on disk; orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, format=fmt, quality=95, exif=exif.tobytes())
    return upright


@pytest.mark.parametrize("fmt, suffix", [("HEIF", ".heic"), ("AVIF", ".avif")])
def test_phone_photos_are_read_upright(tmp_path: Path, fmt: str, suffix: str) -> None:
    upright = _phone_photo(tmp_path / f"phone{suffix}", fmt)
    image = load_image(tmp_path / f"phone{suffix}")
    assert image.size == (96, 64)
    assert np.abs(np.asarray(image).astype(int) - upright).mean() < 12  # lossy, but the same picture, upright


def test_heic_and_avif_go_through_the_masks_stage_and_a_truncated_heic_is_one_line(workspace, capsys) -> None:
    folder = workspace / "data" / "images"
    for name in list(folder.iterdir()):
        name.unlink()
    _phone_photo(folder / "iphone.heic", "HEIF")
    _phone_photo(folder / "android.avif", "AVIF")
    data = (folder / "iphone.heic").read_bytes()
    (folder / "cut.heic").write_bytes(data[: len(data) // 2])
    run = load_run()
    report = stages(run, "masks")[0]
    assert sorted(report.computed) == ["android", "iphone"] and report.skipped == ["cut.heic"]
    warning = [line for line in capsys.readouterr().err.splitlines() if "cut.heic" in line]
    assert len(warning) == 1 and warning[0].startswith("ovseg: warning: skipping")
    with pytest.raises(OvsegError, match="cut.heic") as error:
        load_image(folder / "cut.heic")
    assert "\n" not in str(error.value)
