"""``ovseg evaluate`` on videos: the DAVIS semi-supervised protocol, through the same video stages a user runs.

A data set in DAVIS's layout (``JPEGImages/480p/<sequence>/NNNNN.jpg`` beside
``Annotations/480p/<sequence>/NNNNN.png``) is found by its folders. Each sequence is followed from
its first frame's mask (``start="mask"``, DAVIS's protocol) or from one click on each object's
innermost point (``start="click"``), by ``ovseg run --video``'s own stages (frames, follow,
video_out) on a cache of its own; then J and F (:mod:`ovseg.video.measures`) are taken per object
and frame against the annotations, averaged over frames 1..n-2 per sequence, then over sequences.

Writes ``metrics.json`` (DVC metrics), ``video_sequences.tsv`` (one row per sequence) and
``video/<sequence>.tsv`` (one row per frame).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ovseg.config import Settings
from ovseg.errors import OvsegError
from ovseg.storage.locations import atomic_path, write_json

STARTS = ("mask", "click")


def is_davis(root: Path) -> bool:
    return (Path(root) / "JPEGImages" / "480p").is_dir() and (Path(root) / "Annotations" / "480p").is_dir()


def davis_sequences(root: Path, limit: int | None = None) -> list[tuple[str, Path, Path]]:
    """(name, frames folder, annotations folder) of each sequence with both, sorted by name.

    DAVIS 2017 as published (``ovseg data download davis``) lists its validation sequences in
    ``ImageSets/2017/val.txt``: only those are read, as the DAVIS toolkit measures.
    """
    frames_root, labels_root = Path(root) / "JPEGImages" / "480p", Path(root) / "Annotations" / "480p"
    names = sorted(p.name for p in frames_root.iterdir() if p.is_dir() and (labels_root / p.name).is_dir())
    split = Path(root) / "ImageSets" / "2017" / "val.txt"
    if split.is_file():
        listed = set(split.read_text().split())
        names = [name for name in names if name in listed]
    if not names:
        raise OvsegError(f"no sequences in {frames_root} with annotations in {labels_root}")
    return [(name, frames_root / name, labels_root / name) for name in names[:limit]]


def _ids(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture if picture.mode in ("P", "L") else picture.convert("L"))


def first_click(mask: np.ndarray) -> tuple[float, float, int]:
    """One include click on the object's innermost pixel (the farthest from its border)."""
    from ovseg.video.prompts import innermost_point

    x, y = innermost_point(mask)
    return x, y, 1


def evaluate_video(
    settings: Settings, root: Path, cache: Path, out: Path, start: str = "mask", limit: int | None = None
) -> dict[str, Any]:
    """Follow every sequence from its first annotation and score it; returns (and writes) the metrics."""
    from ovseg.engines.local import LocalEngine
    from ovseg.pipeline import follow, frames, video_out
    from ovseg.pipeline.common import Run, run_stages
    from ovseg.request import RunRequest, VideoSeeds
    from ovseg.video.measures import sequence_scores

    if start not in STARTS:
        raise OvsegError(f"--video-start must be one of {', '.join(STARTS)}, got {start!r}")
    sequences = davis_sequences(root, limit)
    per_sequence: dict[str, dict[str, Any]] = {}
    out = Path(out)
    for name, images, labels in sequences:
        annotations = sorted(labels.glob("*.png"))
        first = _ids(annotations[0])
        values = [int(v) for v in np.unique(first) if v != 0]
        if start == "click":
            if len(values) != 1:
                raise OvsegError(f"{name}: a click start follows one object, this sequence has {len(values)}")
            seeds = VideoSeeds(points=(first_click(first == values[0]),))
        else:
            seeds = VideoSeeds(mask=str(annotations[0]))
        request = RunRequest(videos=str(images), seeds=seeds)
        run = Run(settings, request, cache=str(cache), output=str(cache / "output"), visualize=False)
        run_stages(run, LocalEngine(), [frames.STAGE, follow.STAGE, video_out.STAGE])
        entry = follow.tracks_entries(run.cache)[name]
        with run.stage_folder(follow.FOLDER).files(entry.tracks) as store:
            index = json.loads((store / follow.TRACKS_INDEX).read_text())
            predicted = [np.asarray(Image.open(store / "masks" / f"{f:05d}.png")) for f in range(index["frames"])]
        truth = [_ids(path) for path in annotations[: len(predicted)]]
        objects = {}
        for number, value in enumerate(values, start=1):
            objects[number] = sequence_scores([p == number for p in predicted], [t == value for t in truth])
        j = float(np.mean([o["J"] for o in objects.values()]))
        f = float(np.mean([o["F"] for o in objects.values()]))
        per_sequence[name] = {
            "J": round(j, 4), "F": round(f, 4), "JF": round((j + f) / 2, 4), "frames": len(predicted),
            "objects": len(values), "seconds_per_frame": follow.seconds_per_frame(run, entry.tracks),
            "propagator": index["propagator"],
            "per_frame": {str(k): {"J": o["J_frames"], "F": o["F_frames"]} for k, o in objects.items()},
        }  # fmt: skip
    metrics = {
        "protocol": "video",
        "start": start,
        "dataset": str(root),
        "preset": settings.preset,
        "J": round(float(np.mean([s["J"] for s in per_sequence.values()])), 4),
        "F": round(float(np.mean([s["F"] for s in per_sequence.values()])), 4),
        "seconds_per_frame": round(float(np.mean([s["seconds_per_frame"] for s in per_sequence.values()])), 3),
        "sequences": {name: {k: v for k, v in s.items() if k != "per_frame"} for name, s in per_sequence.items()},
    }
    metrics["JF"] = round((metrics["J"] + metrics["F"]) / 2, 4)
    write_video_reports(metrics, per_sequence, out)
    return metrics


def write_video_reports(metrics: dict[str, Any], per_sequence: dict[str, dict[str, Any]], out: Path) -> None:
    """``metrics.json``, ``video_sequences.tsv`` and ``video/<sequence>.tsv``, each written whole."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    rows = ["sequence\tJ\tF\tJ&F\tframes\tobjects\tseconds_per_frame"]
    for name, s in per_sequence.items():
        rows.append(f"{name}\t{s['J']}\t{s['F']}\t{s['JF']}\t{s['frames']}\t{s['objects']}\t{s['seconds_per_frame']}")
    with atomic_path(out / "video_sequences.tsv") as tmp:
        tmp.write_text("\n".join(rows) + "\n")
    for name, s in per_sequence.items():
        lines = ["frame\tobject\tJ\tF"]
        for obj, values in s["per_frame"].items():
            lines += [f"{i}\t{obj}\t{j}\t{f}" for i, (j, f) in enumerate(zip(values["J"], values["F"], strict=True))]
        with atomic_path(out / "video" / f"{name}.tsv") as tmp:
            tmp.write_text("\n".join(lines) + "\n")


def describe(metrics: dict[str, Any]) -> str:
    return (
        f"video ({metrics['start']} start): J {metrics['J']:.3f}, F {metrics['F']:.3f}, J&F {metrics['JF']:.3f} over "
        f"{len(metrics['sequences'])} sequences ({metrics['seconds_per_frame']:.2f} s per frame following)"
    )


__all__ = ["STARTS", "davis_sequences", "describe", "evaluate_video", "is_davis"]
