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
from ovseg.storage.locations import IMAGE_SUFFIXES, atomic_path

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


# The benchmark protocol (``ovseg evaluate --protocol semantic``) reads label maps one at a time:
# ADE20K's 2000 or COCO-Stuff's 5000 full-size maps would not fit in memory at once.


def parse_class_names(text: str) -> list[list[str]]:
    """An mmseg-style class-name file: one class per line (line i = label i), synonyms separated by commas.

    ``"sofa, couch"`` is one class with two names, each scored, the best counting (max-pooled);
    a background line is a class like any other, often many stuff words (``sky, wall, tree, ...``),
    so pixels of "no listed object" still have somewhere to go. Blank lines and ``#`` comments are
    skipped. The first name of a line names the class in tables.
    """
    classes = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        names = [name.strip() for name in line.split(",") if name.strip()]
        if not names:
            raise OvsegError(f"class-name file line {number} names nothing: {raw.strip()!r}")
        classes.append(names)
    if not classes:
        raise OvsegError("the class-name file lists no classes: one class per line, synonyms separated by commas")
    return classes


def read_class_names(path: Path) -> list[list[str]]:
    """:func:`parse_class_names` of a file, or one line saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise OvsegError(f"class-name file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OvsegError(f"cannot read class-name file {path}: {exc}") from None
    return parse_class_names(text)


@dataclass(frozen=True)
class SemanticLayout:
    """Where a benchmark keeps its photos and label maps (mmseg's folder layouts), as data.

    A photo ``<images>/<id><image_suffix>`` pairs with ``<labels>/<id><label_suffix>`` (sub-folders
    mirrored, as Cityscapes' cities). ``reduce_zero_label``: label 0 is "other" and does not count
    (ADE20K): 0 becomes 255 and every other label moves down by one. ``split``: a file listing the
    ids to use (VOC's ``val.txt``), when present.
    """

    images: str
    labels: str
    image_suffix: str
    label_suffix: str
    reduce_zero_label: bool = False
    split: str | None = None


_VOC_SPLIT = "ImageSets/Segmentation/val.txt"
_CONTEXT_SPLIT = "ImageSets/SegmentationContext/val.txt"
LAYOUTS = {
    "voc": SemanticLayout("JPEGImages", "SegmentationClass", ".jpg", ".png", split=_VOC_SPLIT),  # VOC21
    "voc20": SemanticLayout("JPEGImages", "SegmentationClass", ".jpg", ".png", True, _VOC_SPLIT),  # no background
    "context": SemanticLayout("JPEGImages", "SegmentationClassContext", ".jpg", ".png", split=_CONTEXT_SPLIT),  # 60
    "context59": SemanticLayout("JPEGImages", "SegmentationClassContext", ".jpg", ".png", True, _CONTEXT_SPLIT),
    "cityscapes": SemanticLayout("leftImg8bit/val", "gtFine/val", "_leftImg8bit.png", "_gtFine_labelTrainIds.png"),
    "ade20k": SemanticLayout("images/validation", "annotations/validation", ".jpg", ".png", reduce_zero_label=True),
    "coco-stuff": SemanticLayout("images/val2017", "annotations/val2017", ".jpg", "_labelTrainIds.png"),
    "coco-object": SemanticLayout("images/val2017", "annotations/val2017", ".jpg", "_instanceTrainIds.png"),
}


@dataclass(frozen=True)
class SemanticSample:
    """One photo and its label map, read when needed."""

    name: str
    image: Path
    labels: Path
    reduce_zero_label: bool = False

    def read_labels(self) -> np.ndarray:
        """The label ids as the benchmark counts them (255 = does not count)."""
        labels = read_label_map(self.labels)
        if self.reduce_zero_label:
            labels = np.where(labels == 0, IGNORE_LABEL, labels - 1)
            labels[labels == IGNORE_LABEL - 1] = IGNORE_LABEL
        return labels


def detect_layout(root: Path) -> str:
    """The layout of a benchmark folder, from the folders it has."""
    root = Path(root)
    for name, layout in LAYOUTS.items():
        if (root / layout.images).is_dir() and (root / layout.labels).is_dir():
            if name == "coco-stuff" and not any((root / layout.labels).glob(f"*{layout.label_suffix}")):
                continue  # a COCO folder with instance maps only: coco-object
            return name
    known = ", ".join(f"{n} ({v.images} + {v.labels})" for n, v in LAYOUTS.items())
    raise OvsegError(f"{root} has no benchmark layout ovseg knows: {known}")


def semantic_samples(root: Path, layout: str | None = None, limit: int | None = None) -> list[SemanticSample]:
    """Every (photo, label map) pair of a benchmark folder, sorted by id (the first ``limit`` of them)."""
    root = Path(root)
    name = layout or detect_layout(root)
    if name not in LAYOUTS:
        raise OvsegError(f"unknown layout {name!r}; choose one of {', '.join(LAYOUTS)}")
    spec = LAYOUTS[name]
    label_root = root / spec.labels
    if not label_root.is_dir():
        raise OvsegError(f"{root} is not a {name} folder: {label_root} is missing")
    split = root / spec.split if spec.split else None
    if split is not None and split.is_file():
        ids = [line.strip() for line in split.read_text().splitlines() if line.strip()]
        label_paths = [label_root / f"{i}{spec.label_suffix}" for i in ids]
    else:
        label_paths = sorted(label_root.rglob(f"*{spec.label_suffix}"))
    samples = []
    for label_path in label_paths[:limit] if limit else label_paths:
        relative = str(label_path.relative_to(label_root))[: -len(spec.label_suffix)]
        image_path = root / spec.images / f"{relative}{spec.image_suffix}"
        if not image_path.is_file():
            if spec.image_suffix == ".jpg":
                image_path = _find_image(image_path.parent, image_path.stem)
            else:
                raise OvsegError(f"no photo for {label_path.name}: expected {image_path}")
        if not label_path.is_file():
            raise OvsegError(f"no label map {label_path} for the split's id {relative!r}")
        samples.append(SemanticSample(relative.replace("/", "_"), image_path, label_path, spec.reduce_zero_label))
    if not samples:
        raise OvsegError(f"no label maps in {label_root} ending in {spec.label_suffix}")
    return samples
