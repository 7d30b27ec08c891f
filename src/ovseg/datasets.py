"""Labelled photo sets, read into samples: what ``evaluate`` and ``benchmark-masks`` measure against.

Two layouts are read:

* PASCAL VOC: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (label map, palette
  or grayscale; 0 = background, 255 = ignore) and ``classes.txt`` (one class name per
  line, line i = label i, line 0 = background). Every class present in an image becomes
  one (image, prompt) pair, the class name being the prompt.
* Binary masks per prompt: ``images/<id>.<ext>`` and ``masks/<id>/<prompt>.png``
  (white = the object). The file name (underscores read as spaces) is the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ovseg.errors import OvsegError
from ovseg.locations import IMAGE_SUFFIXES, atomic_path

IGNORE_LABEL = 255


@dataclass
class Target:
    """One thing to find in one image."""

    prompt: str
    mask: np.ndarray  # (H, W) bool, ground truth
    ignore: np.ndarray  # (H, W) bool, pixels that do not count


@dataclass
class Sample:
    name: str
    image: Path
    targets: list[Target] = field(default_factory=list)


def _find_image(folder: Path, stem: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    raise OvsegError(f"no image for {stem!r} in {folder}")


def read_label_map(path: Path) -> np.ndarray:
    """Label indices of a VOC mask: palette PNGs give indices directly, grayscale gives values."""
    with Image.open(path) as img:
        if img.mode not in ("P", "L", "I", "I;16"):
            raise OvsegError(f"{path} must be a palette or grayscale label map, not {img.mode}")
        return np.asarray(img).astype(np.int64)


def read_dataset(root: Path) -> list[Sample]:
    """Read a VOC-style or binary-mask dataset into samples (see the module docstring)."""
    root = Path(root)
    if (root / "SegmentationClass").is_dir():
        return _read_voc(root)
    if (root / "masks").is_dir():
        return _read_binary(root)
    raise OvsegError(
        f"{root} is not a dataset: expected SegmentationClass/ + JPEGImages/ + classes.txt "
        "(VOC) or masks/<id>/<prompt>.png + images/"
    )


def _read_voc(root: Path) -> list[Sample]:
    classes_file = root / "classes.txt"
    if not classes_file.is_file():
        raise OvsegError(f"{classes_file} is missing: one class name per line, line 0 = background")
    classes = [line.strip() for line in classes_file.read_text().splitlines() if line.strip()]
    samples = []
    for label_path in sorted((root / "SegmentationClass").glob("*.png")):
        labels = read_label_map(label_path)
        image_path = _find_image(root / "JPEGImages", label_path.stem)
        ignore = labels == IGNORE_LABEL
        sample = Sample(label_path.stem, image_path)
        for value in sorted(set(np.unique(labels).tolist()) - {0, IGNORE_LABEL}):
            if value >= len(classes):
                raise OvsegError(f"{label_path} uses label {value} but classes.txt lists {len(classes)} classes")
            sample.targets.append(Target(classes[value], labels == value, ignore))
        samples.append(sample)
    if not samples:
        raise OvsegError(f"no label maps in {root / 'SegmentationClass'}")
    return samples


def _read_binary(root: Path) -> list[Sample]:
    samples = []
    for folder in sorted(p for p in (root / "masks").iterdir() if p.is_dir()):
        image_path = _find_image(root / "images", folder.name)
        sample = Sample(folder.name, image_path)
        for mask_path in sorted(folder.glob("*.png")):
            mask = np.asarray(Image.open(mask_path).convert("L")) > 127
            sample.targets.append(Target(mask_path.stem.replace("_", " "), mask, np.zeros_like(mask)))
        samples.append(sample)
    if not samples:
        raise OvsegError(f"no mask folders in {root / 'masks'}")
    return samples


def make_synthetic_dataset(root: Path, count: int = 6, seed: int = 0) -> Path:
    """A small VOC-layout set of shapes (red disc, blue square, green triangle) with exact labels.

    Useful to check the evaluation end to end and as a sanity test for real weights:
    CLIP should tell "a red circle" from "a blue square".
    """
    rng = np.random.default_rng(seed)
    classes = ["background", "a red circle", "a blue square", "a green triangle"]
    colours = {1: (220, 40, 40), 2: (40, 70, 220), 3: (40, 190, 60)}
    root = Path(root)
    with atomic_path(root) as tmp:
        (tmp / "JPEGImages").mkdir(parents=True)
        (tmp / "SegmentationClass").mkdir()
        (tmp / "classes.txt").write_text("\n".join(classes) + "\n")
        for index in range(count):
            height, width = 120, 160
            yy, xx = np.mgrid[0:height, 0:width]
            base = rng.integers(90, 200, 3)
            image = np.clip(base + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)
            labels = np.zeros((height, width), np.uint8)
            slots = rng.permutation(3)  # one column each, so shapes never overlap
            for slot, label in zip(slots, rng.permutation([1, 2, 3])[: rng.integers(1, 4)], strict=False):
                r = int(rng.integers(12, 22))
                cx = int(width * (2 * slot + 1) / 6 + rng.integers(-4, 5))
                cy = int(rng.integers(r + 4, height - r - 4))
                if label == 1:
                    shape = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
                elif label == 2:
                    shape = (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
                else:
                    shape = (yy - cy <= r) & (yy - cy >= -r) & (abs(xx - cx) <= (yy - cy + r) / 2)
                image[shape] = colours[int(label)]
                labels[shape] = label
            edge = (labels != np.roll(labels, 1, axis=1)) | (labels != np.roll(labels, 1, axis=0))
            labels[edge] = IGNORE_LABEL  # VOC marks object borders as "don't care"
            Image.fromarray(image).save(tmp / "JPEGImages" / f"shapes_{index:03d}.png")
            Image.fromarray(labels, mode="L").save(tmp / "SegmentationClass" / f"shapes_{index:03d}.png")
    return root
