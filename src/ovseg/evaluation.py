"""Evaluate segmentation quality against ground truth: IoU, mIoU, top-1 precision/recall.

Two dataset layouts are read:

* PASCAL VOC: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (label map, palette
  or grayscale; 0 = background, 255 = ignore) and ``classes.txt`` (one class name per
  line, line i = label i, line 0 = background). Every class present in an image becomes
  one (image, prompt) pair, the class name being the prompt.
* Binary masks per prompt: ``images/<id>.<ext>`` and ``masks/<id>/<prompt>.png``
  (white = the object). The file name (underscores read as spaces) is the prompt.

IoU conventions: pixels labelled 255 count neither as hits nor misses; when both the
prediction and the ground truth are empty the IoU is 1 (nothing to find, nothing
found). Per class, intersections and unions are summed over images (VOC style) and
mIoU is the mean over classes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ovseg.config import Settings
from ovseg.errors import OvsegError
from ovseg.fileio import IMAGE_SUFFIXES, atomic_path, load_image, write_json
from ovseg.viz import resize_mask

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


def overlap(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> tuple[int, int, int, int]:
    """(intersection, union, predicted area, true area) over the pixels that count."""
    valid = ~ignore if ignore is not None else np.ones_like(gt, bool)
    pred, gt = pred & valid, gt & valid
    return (int((pred & gt).sum()), int((pred | gt).sum()), int(pred.sum()), int(gt.sum()))


def iou(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
    inter, union, _, _ = overlap(pred, gt, ignore)
    return inter / union if union else 1.0


def precision_recall(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> tuple[float, float]:
    inter, _, pred_area, gt_area = overlap(pred, gt, ignore)
    precision = inter / pred_area if pred_area else (1.0 if gt_area == 0 else 0.0)
    recall = inter / gt_area if gt_area else (1.0 if pred_area == 0 else 0.0)
    return precision, recall


# A candidate "lies mostly inside" a region when more than this share of it is inside.
UNION_INSIDE_FRACTION = 0.5
RECALL_IOU = 0.5


@dataclass
class RegionQuality:
    """How well the mask candidates alone (no CLIP) could cover one labelled region."""

    image: str
    prompt: str
    oracle_iou: float  # best IoU of any single candidate
    union_oracle_iou: float  # IoU of the greedy union of candidates lying mostly inside the region


def proposal_quality(candidates: np.ndarray, target: np.ndarray, ignore: np.ndarray) -> tuple[float, float]:
    """(oracle IoU, union-oracle IoU) of (N, H, W) candidates against one region, ignored pixels left out.

    The union oracle starts from the best single candidate and adds candidates that lie
    mostly inside the region, largest overlap first, while each one still raises the IoU:
    about what a perfect chooser of several masks could reach (several cars, a road split
    into pieces); it is never below the oracle.
    """
    valid = ~ignore.reshape(-1)
    gt = target.reshape(-1)[valid]
    if len(candidates) == 0 or not gt.any():
        return (0.0, 0.0) if gt.any() else (1.0, 1.0)
    flat = candidates.reshape(len(candidates), -1)[:, valid]
    inter = flat.astype(np.float32) @ gt.astype(np.float32)
    areas = flat.sum(1).astype(np.float32)
    ious = inter / np.maximum(areas + gt.sum() - inter, 1)
    first = int(np.argmax(ious))
    merged, best = flat[first], float(ious[first])
    inside = inter > UNION_INSIDE_FRACTION * np.maximum(areas, 1)
    for i in np.argsort(-inter):
        if not inside[i] or i == first:
            continue
        grown = merged | flat[i]
        value = float((grown & gt).sum() / (grown | gt).sum())
        if value > best:
            merged, best = grown, value
    return float(ious[first]), best


def summarize_proposals(regions: list[RegionQuality], per_image: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per class: mean oracle / union-oracle IoU over its regions and recall at IoU 0.5; then means over classes."""
    classes: dict[str, list[RegionQuality]] = {}
    for region in regions:
        classes.setdefault(region.prompt, []).append(region)
    per_class = {
        name: {
            "oracle_iou": round(float(np.mean([r.oracle_iou for r in rs])), 6),
            "union_oracle_iou": round(float(np.mean([r.union_oracle_iou for r in rs])), 6),
            "recall_at_50": round(float(np.mean([r.oracle_iou >= RECALL_IOU for r in rs])), 6),
            "regions": len(rs),
        }
        for name, rs in sorted(classes.items())
    }

    def mean(values: list[float]) -> float:
        return round(float(np.mean(values)), 6) if values else 0.0

    stats = list(per_image.values())
    return {
        "oracle_miou": mean([c["oracle_iou"] for c in per_class.values()]),
        "union_oracle_miou": mean([c["union_oracle_iou"] for c in per_class.values()]),
        "recall_at_50": mean([r.oracle_iou >= RECALL_IOU for r in regions]),
        "candidates_per_image": mean([s["candidates"] for s in stats]),
        "seconds_per_image": mean([s["seconds"] for s in stats if s.get("seconds") is not None]),
        "decoder_calls_per_image": mean([s["decoder_calls"] for s in stats if s.get("decoder_calls") is not None]),
        "regions": len(regions),
        "classes": per_class,
    }


def describe_proposals(metrics: dict[str, Any]) -> str:
    """One line people read in a log: how good the candidates are, and what they cost."""
    return (
        f"candidates: oracle mIoU {metrics['oracle_miou']:.4f}, union oracle {metrics['union_oracle_miou']:.4f}, "
        f"recall@0.5 {metrics['recall_at_50']:.4f}; {metrics['candidates_per_image']:.1f} candidates, "
        f"{metrics['decoder_calls_per_image']:.0f} decoder calls, {metrics['seconds_per_image']:.2f} s per image"
    )


def evaluate_proposals(samples: list[Sample], paths) -> tuple[dict[str, Any], list[RegionQuality]]:
    """Proposal metrics from the masks stage's artifacts (run it first): independent of CLIP."""
    from ovseg.store import MaskProposals, load_manifest, read_marker

    entries = load_manifest(paths.masks)
    regions, per_image = [], {}
    for sample in samples:
        entry = entries.get(sample.image.stem)
        if entry is None:  # unreadable: the masks stage skipped it and said why
            continue
        proposals, attrs = MaskProposals.load(paths.masks / f"{entry['masks']}.zarr")
        stats = attrs.get("stats", {})
        per_image[sample.name] = {
            "candidates": len(proposals),
            "seconds": read_marker(paths.masks, entry["masks"]).get("seconds"),
            "decoder_calls": stats.get("decoder_calls"),
        }
        candidates = proposals.masks
        if sample.targets and candidates.shape[1:] != sample.targets[0].mask.shape:
            size = sample.targets[0].mask.shape[::-1]
            candidates = np.array([resize_mask(m, size) for m in candidates], bool).reshape(-1, size[1], size[0])
        for target in sample.targets:
            oracle, union = proposal_quality(candidates, target.mask, target.ignore)
            regions.append(RegionQuality(sample.name, target.prompt, oracle, union))
    return summarize_proposals(regions, per_image), regions


@dataclass
class PairResult:
    image: str
    prompt: str
    iou: float
    top1_precision: float
    top1_recall: float
    selected: int
    intersection: int
    union: int


def summarize(pairs: list[PairResult]) -> dict[str, Any]:
    """VOC-style per-class IoU (sums over images), mIoU, and means over (image, prompt) pairs."""
    per_class: dict[str, dict[str, float]] = {}
    for pair in pairs:
        stats = per_class.setdefault(pair.prompt, {"intersection": 0, "union": 0, "pairs": 0})
        stats["intersection"] += pair.intersection
        stats["union"] += pair.union
        stats["pairs"] += 1
    classes = {
        name: {"iou": round(s["intersection"] / s["union"], 6) if s["union"] else 1.0, "pairs": int(s["pairs"])}
        for name, s in sorted(per_class.items())
    }

    def mean(values: list[float]) -> float:
        return round(float(np.mean(values)), 6) if values else 0.0

    return {
        "miou": mean([c["iou"] for c in classes.values()]),
        "mean_pair_iou": mean([p.iou for p in pairs]),
        "top1_precision": mean([p.top1_precision for p in pairs]),
        "top1_recall": mean([p.top1_recall for p in pairs]),
        "top1_hit_rate": mean([float(p.top1_precision >= 0.5) for p in pairs]),
        "pairs": len(pairs),
        "images": len({p.image for p in pairs}),
        "classes": classes,
    }


def evaluate(
    settings: Settings, samples: list[Sample], cache: Path, proposals_only: bool = False
) -> tuple[dict[str, Any], list[PairResult], list[RegionQuality]]:
    """Run the pipeline on every sample with each class name as the prompt; score the selections.

    The mask candidates are judged first on their own (``metrics["proposals"]``: oracle
    IoU, union oracle, recall, candidates and seconds per image), which needs no CLIP;
    ``proposals_only`` stops there. Masks and CLIP features come from (and go to) the
    content-addressed cache under ``cache``, so ablations of scoring or selection reuse them.
    """
    from ovseg.pipeline import Paths, run_embed, run_masks, score_prompts, select_for, skipped_images
    from ovseg.store import save_manifest

    paths = Paths(cache=cache, output=cache / "output")
    run_masks(settings, [s.image for s in samples], paths)
    proposal_metrics, regions = evaluate_proposals(samples, paths)
    skipped = skipped_images(paths.cache)
    if proposals_only:
        return {"proposals": proposal_metrics, "images": len(samples) - len(skipped), "skipped": skipped}, [], regions
    run_embed(settings, paths)
    prompts = sorted({t.prompt for s in samples for t in s.targets})
    if not prompts:
        raise OvsegError("the dataset has no labelled objects to evaluate")
    per_prompt, _ = score_prompts(settings, paths, prompts)
    # One manifest over all (image, prompt) pairs, so `ovseg cache gc` knows these scores are in use.
    pairs_in_use = {f"{stem}:{prompt}": e for prompt, by_image in per_prompt.items() for stem, e in by_image.items()}
    save_manifest(paths.scores, pairs_in_use)
    pairs = []
    for sample in samples:
        if sample.image.stem not in per_prompt[prompts[0]]:
            continue  # unreadable: skipped by the masks stage
        size = load_image(sample.image).size
        for target in sample.targets:
            if target.mask.shape != (size[1], size[0]):
                raise OvsegError(f"ground truth for {sample.name} is {target.mask.shape[::-1]}, image is {size}")
            entry = per_prompt[target.prompt][sample.image.stem]
            selection, proposals, _ = select_for(settings, paths, entry)
            merged = resize_mask(selection.merged, size)
            top1 = resize_mask(proposals.masks[selection.indices[0]], size) if selection.indices else merged
            inter, union, _, _ = overlap(merged, target.mask, target.ignore)
            precision, recall = precision_recall(top1, target.mask, target.ignore)
            pairs.append(
                PairResult(
                    sample.name,
                    target.prompt,
                    inter / union if union else 1.0,
                    precision,
                    recall,
                    len(selection.indices),
                    inter,
                    union,
                )
            )
    return {**summarize(pairs), "proposals": proposal_metrics, "skipped": skipped}, pairs, regions


def write_reports(
    metrics: dict[str, Any], pairs: list[PairResult], regions: list[RegionQuality], folder: Path, title: str
) -> None:
    """metrics.json (DVC metrics), per-class / per-pair / proposal TSVs (DVC plots), a bar chart PNG.

    After a proposals-only run the CLIP tables are written with their headers only, so
    the files DVC tracks always exist.
    """
    folder = Path(folder)
    write_json(folder / "metrics.json", metrics)
    with atomic_path(folder / "per_class.tsv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t")
        writer.writerow(["class", "iou", "pairs"])
        for name, stats in metrics.get("classes", {}).items():
            writer.writerow([name, stats["iou"], stats["pairs"]])
    with atomic_path(folder / "proposals_per_class.tsv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t")
        writer.writerow(["class", "oracle_iou", "union_oracle_iou", "recall_at_50", "regions"])
        for name, stats in metrics["proposals"]["classes"].items():
            writer.writerow(
                [name, stats["oracle_iou"], stats["union_oracle_iou"], stats["recall_at_50"], stats["regions"]]
            )
    with atomic_path(folder / "proposals_per_region.tsv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t")
        writer.writerow(["image", "class", "oracle_iou", "union_oracle_iou"])
        for r in regions:
            writer.writerow([r.image, r.prompt, round(r.oracle_iou, 6), round(r.union_oracle_iou, 6)])
    with atomic_path(folder / "per_pair.tsv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t")
        writer.writerow(["image", "prompt", "iou", "top1_precision", "top1_recall", "selected"])
        for p in pairs:
            writer.writerow(
                [p.image, p.prompt, round(p.iou, 6), round(p.top1_precision, 6), round(p.top1_recall, 6), p.selected]
            )
    per_class = {name: stats["iou"] for name, stats in metrics.get("classes", {}).items()}
    clip_title = title if per_class else f"{title}: CLIP not evaluated (proposals only)"
    _bar_chart(per_class, metrics.get("miou", 0.0), "mIoU", folder / "per_class_iou.png", clip_title)
    proposals = metrics["proposals"]
    per_class = {name: stats["oracle_iou"] for name, stats in proposals["classes"].items()}
    _bar_chart(
        per_class, proposals["oracle_miou"], "oracle mIoU", folder / "proposals_oracle_iou.png", f"{title}: candidates"
    )


def _bar_chart(per_class: dict[str, float], mean: float, label: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_class)
    values = [per_class[n] for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.5))
    ax.barh(names, values, color="#3b7dd8")
    ax.axvline(mean, color="#d83b3b", linestyle="--", label=f"{label} {mean:.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU")
    ax.set_title(title)
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


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
