"""Evaluate segmentation quality against ground truth: IoU, mIoU, top-1 precision/recall.

The labelled sets are read by :mod:`ovseg.evaluation.datasets`. IoU conventions: pixels labelled
255 count neither as hits nor misses; when both the prediction and the ground truth are
empty the IoU is 1 (nothing to find, nothing found). Per class, intersections and unions
are summed over images (VOC style) and mIoU is the mean over classes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ovseg.config import Settings
from ovseg.errors import OvsegError
from ovseg.evaluation.datasets import Sample
from ovseg.media.viz import resize_mask
from ovseg.storage.locations import atomic_path, write_json


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


def evaluate_proposals(samples: list[Sample], run) -> tuple[dict[str, Any], list[RegionQuality]]:
    """Proposal metrics from the masks stage's artifacts (run it first): independent of CLIP."""
    from ovseg.pipeline import masks

    folder = run.stage_folder(masks.FOLDER)
    entries = (folder.read_json() or {}).get("images", {})
    regions, per_image = [], {}
    for sample in samples:
        entry = entries.get(sample.image.stem)
        if entry is None:  # unreadable: the masks stage skipped it and said why
            continue
        proposals, attrs = folder.proposals(entry["masks"])
        stats = attrs.get("stats", {})
        per_image[sample.name] = {
            "candidates": len(proposals),
            "seconds": folder.marker(entry["masks"]).get("seconds"),
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
    Each (photo, class) pair is selected as the select stage would (``selection.select_masks``
    on the cached candidates and scores), without writing result folders.
    """

    from ovseg.engines.local import LocalEngine
    from ovseg.pipeline import embed, masks, score
    from ovseg.pipeline.common import Run, run_stages
    from ovseg.ranking.selection import select_masks
    from ovseg.request import RunRequest

    run = Run(
        settings, RunRequest(images=tuple(str(s.image) for s in samples)), str(cache), str(Path(cache) / "output")
    )
    engine = LocalEngine()
    run_stages(run, engine, [masks.STAGE])
    proposal_metrics, regions = evaluate_proposals(samples, run)
    skipped = masks.skipped_images(run.cache)
    if proposals_only:
        return {"proposals": proposal_metrics, "images": len(samples) - len(skipped), "skipped": skipped}, [], regions
    run_stages(run, engine, [embed.STAGE])
    prompts = sorted({t.prompt for s in samples for t in s.targets})
    if not prompts:
        raise OvsegError("the dataset has no labelled objects to evaluate")
    per_prompt = score.scores_for(run, engine, list(prompts))  # its manifest names every pair: gc keeps them
    pairs = []
    for sample in samples:
        if sample.image.stem not in per_prompt[prompts[0]]:
            continue  # unreadable: skipped by the masks stage
        size = run.load_photo(str(sample.image)).size
        for target in sample.targets:
            if target.mask.shape != (size[1], size[0]):
                raise OvsegError(f"ground truth for {sample.name} is {target.mask.shape[::-1]}, image is {size}")
            proposals, scores = score.scored_candidates(run, per_prompt[target.prompt][sample.image.stem])
            selection = select_masks(scores, proposals.masks, settings.select)
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
    bar_chart(per_class, metrics.get("miou", 0.0), "mIoU", folder / "per_class_iou.png", clip_title)
    proposals = metrics["proposals"]
    per_class = {name: stats["oracle_iou"] for name, stats in proposals["classes"].items()}
    bar_chart(
        per_class, proposals["oracle_miou"], "oracle mIoU", folder / "proposals_oracle_iou.png", f"{title}: candidates"
    )


def bar_chart(per_class: dict[str, float], mean: float, label: str, path: Path, title: str) -> None:
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
