"""``ovseg evaluate --protocol semantic``: the training-free papers' zero-shot protocol, on ovseg's candidates.

CorrCLIP, ProxyCLIP, NACLIP and SCLIP report mIoU the mmseg way: every pixel of every
validation photo gets one class from a fixed class-name file; intersections and unions are
summed per class over the dataset. Here each photo goes through ovseg's cached masks and
embed stages (the same settings as a run), every candidate is scored against every class at
once (:func:`ovseg.ranking.scoring.score_classes`, softmax over the classes), and the pixels take
the class of the surest candidate covering them (:mod:`ovseg.media.labelmaps`).

Background: a line that is just ``background`` is a slot, not a text: it gets the pixels no
candidate covers and, with ``background_threshold``, those whose best class probability is
under it (ProxyCLIP's VOC21 0.2, Context60 0.15, COCO-Object 0.25). A background line of
stuff words (``sky, wall, tree, ...``) is scored like any class, its words max-pooled.
``short_side``: photos are resized to that shorter side first, as the papers' test pipelines
do; the prediction is resized back to the label map.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from ovseg.config import Settings
from ovseg.errors import OvsegError, UnreadableImageError
from ovseg.evaluation.datasets import SemanticSample
from ovseg.media.fileio import DEFAULT_MAX_IMAGE_PIXELS, load_image
from ovseg.media.labelmaps import IGNORE_INDEX, NO_CLASS, IoUAccumulator, pixel_class_scores, predict_labels
from ovseg.storage.locations import atomic_path

BACKGROUND_SLOT = "background"


@dataclass(frozen=True)
class SemanticProtocol:
    """What the papers fix per benchmark: the classes (line i = label i, synonyms), background, input size."""

    classes: list[list[str]]
    background_threshold: float = 0.0
    short_side: int | None = None

    @property
    def names(self) -> list[str]:
        return [names[0] for names in self.classes]

    @property
    def background_slot(self) -> bool:
        """Whether class 0 is the background slot (a line of just "background"), not a text to score."""
        return [n.lower() for n in self.classes[0]] == [BACKGROUND_SLOT]

    @property
    def scored(self) -> list[list[str]]:
        """The classes scored against the candidates (all but the background slot)."""
        return self.classes[1:] if self.background_slot else self.classes

    def check(self) -> None:
        if not 0.0 <= self.background_threshold < 1.0:
            raise OvsegError(f"the background threshold must be in [0, 1), got {self.background_threshold}")
        if self.background_threshold > 0 and not self.background_slot and len(self.classes) < 2:
            raise OvsegError("a background threshold needs class 0 to be the background")
        if not self.scored:
            raise OvsegError("the class-name file lists only the background")
        if self.short_side is not None and self.short_side < 32:
            raise OvsegError(f"the shorter side must be at least 32 pixels, got {self.short_side}")


def model_inputs(
    samples: list[SemanticSample], short_side: int | None, cache: Path, max_pixels: int | None = None
) -> list[Path]:
    """The photos the models see: the originals, or copies resized to ``short_side`` (made once, cached).

    The copies are read by :func:`~ovseg.media.fileio.load_image`, the rule every image read follows
    (EXIF orientation, bombs, broken files); a photo it cannot read keeps its own path, so the
    masks stage skips it with its usual warning.
    """
    if short_side is None:
        return [s.image for s in samples]
    folder = Path(cache) / f"inputs-short{short_side}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for sample in samples:
        path = folder / f"{sample.name}.png"
        if not path.is_file():
            try:
                photo = load_image(sample.image, max_pixels or DEFAULT_MAX_IMAGE_PIXELS)
            except UnreadableImageError:
                paths.append(sample.image)
                continue
            scale = short_side / min(photo.size)
            size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
            with atomic_path(path) as tmp:
                photo.resize(size, Image.Resampling.BICUBIC).save(tmp, format="PNG")
        paths.append(path)
    return paths


def evaluate_semantic(
    settings: Settings, samples: list[SemanticSample], protocol: SemanticProtocol, cache: Path
) -> dict[str, Any]:
    """mIoU, mAcc, aAcc and per-class IoU / Acc over ``samples``; masks and features cached under ``cache``."""
    from ovseg.engines.local import LocalEngine
    from ovseg.pipeline import embed, masks, score
    from ovseg.pipeline.common import Run, run_stages
    from ovseg.pipeline.plans import entries_of
    from ovseg.ranking.scoring import score_classes
    from ovseg.request import RunRequest

    protocol.check()
    inputs = model_inputs(samples, protocol.short_side, cache, settings.max_image_pixels)
    run = Run(settings, RunRequest(images=tuple(str(p) for p in inputs)), str(cache), str(Path(cache) / "output"))
    run_stages(run, LocalEngine(), [masks.STAGE, embed.STAGE])
    entries = entries_of(run.stage_folder(embed.FOLDER).read_json(), embed.FOLDER, "embed")
    texts = sorted({t for names in protocol.scored for t in names})
    vectors, temperature = score.text_embeddings(run, settings.embed.model, texts)
    per_class = [np.stack([vectors[t] for t in names]) for names in protocol.scored]
    offset = 1 if protocol.background_slot else 0
    has_background = protocol.background_slot or protocol.background_threshold > 0
    total = IoUAccumulator(len(protocol.classes))
    seconds, candidates, uncovered = [], [], []
    for sample, path in tqdm(list(zip(samples, inputs, strict=True)), desc="semantic", unit="image"):
        entry = entries.get(path.stem)
        if entry is None:
            continue  # unreadable: the masks stage skipped it and said why
        started = time.perf_counter()
        features = run.stage_folder(embed.FOLDER).read_store(entry["embeddings"], ["embeddings"])[0]["embeddings"]
        proposals, _ = run.stage_folder(masks.FOLDER).proposals(entry["masks"])
        probability = score_classes(features, per_class, np.zeros((0, 0), np.float32), temperature).probability
        pixel = pixel_class_scores(proposals.masks, probability)
        labels = sample.read_labels()
        counted = labels[labels != IGNORE_INDEX]
        if counted.size and int(counted.max()) >= len(protocol.classes):
            raise OvsegError(
                f"{sample.labels} uses label {int(counted.max())} but the class-name file lists "
                f"{len(protocol.classes)} classes (line i names label i)"
            )
        size = (labels.shape[1], labels.shape[0])
        pred = predict_labels(pixel, size, protocol.background_threshold, offset, 0 if has_background else NO_CLASS)
        total.add(pred, labels)
        seconds.append(time.perf_counter() - started)
        candidates.append(len(proposals))
        uncovered.append(float(np.mean(pixel.max(axis=0) < 0)) if pixel.size else 1.0)
    evaluated = len(seconds)
    if not evaluated:
        raise OvsegError("no photo of the benchmark could be read")
    exclude = [0] if protocol.background_slot and total.area_label[0] == 0 else []
    return {
        "protocol": "semantic",
        **total.summary(protocol.names, exclude),
        "images": evaluated,
        "skipped": masks.skipped_images(run.cache),
        "background_threshold": protocol.background_threshold,
        "background": "slot" if protocol.background_slot else ("scored" if has_background else "none"),
        "short_side": protocol.short_side,
        "temperature": round(float(temperature), 4),
        "candidates_per_image": round(float(np.mean(candidates)), 2),
        "uncovered_fraction": round(float(np.mean(uncovered)), 6),  # of each photo's pixels, no candidate covers
        "seconds_per_image": round(float(np.mean(seconds)), 4),
    }


def write_semantic_reports(metrics: dict[str, Any], folder: Path, title: str) -> None:
    """metrics.json (DVC metrics), per_class.tsv (class, iou, acc, pixels: a DVC plot) and a bar chart.

    The prompt protocol's tables (pairs, candidates) are written with their headers only, so
    every file the DVC stage declares exists after either protocol.
    """
    import csv

    from ovseg.evaluation.prompt import bar_chart
    from ovseg.storage.locations import write_json

    folder = Path(folder)
    write_json(folder / "metrics.json", metrics)
    with atomic_path(folder / "per_class.tsv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t")
        writer.writerow(["class", "iou", "acc", "pixels"])
        for name, stats in metrics["classes"].items():
            blank = lambda value: "" if value is None else value  # noqa: E731
            writer.writerow([name, blank(stats["iou"]), blank(stats["acc"]), stats["pixels"]])
    headers = {
        "per_pair.tsv": ["image", "prompt", "iou", "top1_precision", "top1_recall", "selected"],
        "proposals_per_class.tsv": ["class", "oracle_iou", "union_oracle_iou", "recall_at_50", "regions"],
        "proposals_per_region.tsv": ["image", "class", "oracle_iou", "union_oracle_iou"],
    }
    for name, header in headers.items():
        with atomic_path(folder / name) as tmp, open(tmp, "w", newline="") as fh:
            csv.writer(fh, delimiter="\t").writerow(header)
    per_class = {name: stats["iou"] for name, stats in metrics["classes"].items() if stats["iou"] is not None}
    bar_chart(per_class, metrics["miou"], "mIoU", folder / "per_class_iou.png", f"{title}: semantic protocol")
    bar_chart({}, 0.0, "oracle mIoU", folder / "proposals_oracle_iou.png", f"{title}: candidates not judged")
