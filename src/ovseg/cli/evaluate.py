"""``ovseg evaluate`` and ``make-eval-set``: quality against labelled photos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ovseg.cli.common import PRESET_HELP, app, console, fail, given
from ovseg.errors import OvsegError


@app.command()
def evaluate(
    dataset: Path = typer.Option(Path("data/eval"), "--dataset", "-d", help="VOC or binary-mask dataset folder."),
    config: str | None = typer.Option(None, "--config", "-c", help=PRESET_HELP + " Default: params.yaml's."),
    params: Path = typer.Option(Path("params.yaml"), "--params"),
    cache: Path = typer.Option(Path("cache/eval"), "--cache"),
    out: Path = typer.Option(Path("metrics"), "--out", help="Folder for metrics.json, TSVs and the charts."),
    proposals_only: bool = typer.Option(
        False, "--proposals-only", help="Judge only the mask candidates (oracle IoU, recall); needs no CLIP weights."
    ),
    sets: list[str] = typer.Option(
        [], "--set", help="Override a setting, e.g. --set masks.sampling=grid (repeatable)."
    ),
) -> None:
    """Judge the mask candidates, then segment every labelled object by its class name: IoU, mIoU, precision/recall."""
    from ovseg.config import apply_overrides, load_params, settings_from_params
    from ovseg.datasets import read_dataset
    from ovseg.evaluation import evaluate as run_evaluation
    from ovseg.evaluation import write_reports

    try:
        base = load_params(params) if params.is_file() else {}
        merged = apply_overrides({**base, **given(preset=config)}, sets)
        settings = settings_from_params(merged)
        only = proposals_only or bool(merged.get("eval_proposals_only"))
        metrics, pairs, regions = run_evaluation(settings, read_dataset(dataset), cache, proposals_only=only)
    except OvsegError as exc:
        fail(exc)
    write_reports(metrics, pairs, regions, out, f"{dataset} — preset {settings.preset}")
    _print_proposals(metrics["proposals"])
    if pairs:
        _print_metrics(metrics, out)
    else:
        console.print(f"CLIP not evaluated (--proposals-only); written to {out}/")


def _print_proposals(proposals: dict[str, Any]) -> None:
    from ovseg.evaluation import describe_proposals

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
    from ovseg.datasets import make_synthetic_dataset

    console.print(f"wrote {make_synthetic_dataset(folder, count, seed)}")
