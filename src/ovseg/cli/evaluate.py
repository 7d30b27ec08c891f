"""``ovseg evaluate`` and ``make-eval-set``: quality against labelled photos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ovseg.cli.common import PRESET_HELP, app, console, fail, given, with_settings
from ovseg.errors import OvsegError


@app.command()
def evaluate(
    dataset: Path | None = typer.Option(
        None, "--dataset", "-d", help="Labelled photos (VOC, binary masks, or a benchmark's mmseg layout)."
    ),
    config: str | None = typer.Option(None, "--config", "-c", help=PRESET_HELP + " Default: params.yaml's."),
    params: Path = typer.Option(Path("params.yaml"), "--params"),
    cache: Path = typer.Option(Path("cache/eval"), "--cache"),
    out: Path = typer.Option(Path("metrics"), "--out", help="Folder for metrics.json, TSVs and the charts."),
    protocol: str | None = typer.Option(
        None,
        "--protocol",
        help="prompt: each labelled class found by its name, top-K (default) | semantic: every pixel one class of "
        "a class list, mIoU the mmseg way, as the zero-shot papers report (docs/evaluation.md, 'Compare with the "
        "papers').",
    ),
    proposals_only: bool = typer.Option(
        False, "--proposals-only", help="Judge only the mask candidates (oracle IoU, recall); needs no CLIP weights."
    ),
    classes: Path | None = typer.Option(
        None, "--classes", help="semantic: class-name file, one class per line, synonyms separated by commas."
    ),
    background_threshold: float | None = typer.Option(
        None, "--background-threshold", help="semantic: pixels whose best class probability is below it are background."
    ),
    short_side: int | None = typer.Option(
        None, "--short-side", help="semantic: resize photos to this shorter side first (the papers: 336, 448, 560)."
    ),
    layout: str | None = typer.Option(
        None, "--layout", help="semantic: voc | context | cityscapes | ade20k | coco-stuff | coco-object (detected)."
    ),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N photos (videos: sequences)."),
    video_start: str | None = typer.Option(
        None,
        "--video-start",
        help="videos (DAVIS layout): mask (the first frame's, default) | click (one click on "
        "each object's innermost point).",
    ),
    sets: list[str] = typer.Option(
        [], "--set", help="Override a setting, e.g. --set masks.sampling=grid (repeatable)."
    ),
) -> None:
    """Judge ovseg against labelled photos: by prompt (IoU, top-1) or the papers' semantic protocol (mIoU)."""
    from ovseg.config import load_params, settings_from_params
    from ovseg.evaluation.protocols import evaluate_dataset, options_from_params

    try:
        base = load_params(params) if params.is_file() else {}
        merged = with_settings({**base, **given(preset=config)}, sets)
        settings = settings_from_params(merged)
        options = options_from_params(
            merged,
            dataset=dataset,
            protocol=protocol,
            proposals_only=proposals_only or None,
            classes=classes,
            background_threshold=background_threshold,
            short_side=short_side,
            layout=layout,
            limit=limit,
            video_start=video_start,
        )
        metrics = evaluate_dataset(settings, options, cache, out)
    except OvsegError as exc:
        fail(exc)
    if metrics["protocol"] == "video":
        _print_video(metrics, out)
        return
    if metrics["protocol"] == "semantic":
        _print_semantic(metrics, out)
        return
    _print_proposals(metrics["proposals"])
    if metrics.get("pairs"):
        _print_metrics(metrics, out)
    else:
        console.print(f"CLIP not evaluated (--proposals-only); written to {out}/")


def _print_video(metrics: dict[str, Any], out: Path) -> None:
    from ovseg.evaluation.video import describe

    table = Table(title=f"DAVIS measures ({metrics['start']} start), frames 1..n-2 of each sequence")
    for column in ("sequence", "J", "F", "J&F", "frames", "s/frame"):
        table.add_column(column, justify="left" if column == "sequence" else "right")
    for name, s in metrics["sequences"].items():
        table.add_row(name, f"{s['J']:.3f}", f"{s['F']:.3f}", f"{s['JF']:.3f}", str(s["frames"]),
                      f"{s['seconds_per_frame']:.2f}")  # fmt: skip
    table.add_row("mean", f"{metrics['J']:.3f}", f"{metrics['F']:.3f}", f"{metrics['JF']:.3f}", "", "")
    console.print(table)
    console.print(describe(metrics), highlight=False)
    console.print(f"written to {out}/", highlight=False)


def _print_semantic(metrics: dict[str, Any], out: Path) -> None:
    from ovseg.evaluation.protocols import describe

    table = Table(title=f"semantic protocol: mIoU {metrics['miou']:.3f} over {metrics['images']} images")
    for column in ("class", "IoU", "Acc", "pixels"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, stats in metrics["classes"].items():
        show = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        label = name if stats.get("in_mean", True) else f"{name} (never labelled: not in the mean)"
        table.add_row(label, show(stats["iou"]), show(stats["acc"]), str(stats["pixels"]))
    console.print(table)
    console.print(describe(metrics)[0], highlight=False)
    console.print(f"written to {out}/", highlight=False)


def _print_proposals(proposals: dict[str, Any]) -> None:
    from ovseg.evaluation.prompt import describe_proposals

    table = Table(title="mask candidates on their own (no CLIP): the best any chooser could do")
    for column in ("class", "oracle IoU", "union oracle IoU", "recall@0.5", "regions"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, stats in proposals["classes"].items():
        table.add_row(
            name,
            f"{stats['oracle_iou']:.3f}",
            f"{stats['union_oracle_iou']:.3f}",
            f"{stats['recall_at_50']:.3f}",
            str(stats["regions"]),
        )
    console.print(table)
    console.print(describe_proposals(proposals), highlight=False)


def _print_metrics(metrics: dict[str, Any], out: Path) -> None:
    table = Table(
        title=f"mIoU {metrics['miou']:.3f} over {metrics['pairs']} (image, class) pairs, {metrics['images']} images"
    )
    table.add_column("class")
    table.add_column("IoU", justify="right")
    table.add_column("pairs", justify="right")
    for name, stats in metrics["classes"].items():
        table.add_row(name, f"{stats['iou']:.3f}", str(stats["pairs"]))
    console.print(table)
    console.print(
        f"top-1 precision {metrics['top1_precision']:.3f}, recall {metrics['top1_recall']:.3f}, "
        f"hit rate {metrics['top1_hit_rate']:.3f}; written to {out}/"
    )


@app.command("make-eval-set")
def make_eval_set(
    folder: Path = typer.Argument(Path("data/eval"), help="Where to write the dataset."),
    count: int = typer.Option(6, "--count", "-n"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write a small synthetic VOC-layout dataset of coloured shapes with exact labels."""
    from ovseg.evaluation.datasets import make_synthetic_dataset

    console.print(f"wrote {make_synthetic_dataset(folder, count, seed)}")
