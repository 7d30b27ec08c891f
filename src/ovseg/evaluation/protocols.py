"""Which evaluation protocol a run of ``ovseg evaluate`` (or the DVC ``evaluate`` stage) follows, chosen here only.

* ``prompt`` (the default): every labelled class of every photo is segmented with its name as
  the prompt and top-K selection, as a user's run would (:mod:`ovseg.evaluation.prompt`), after the
  mask candidates are judged on their own.
* ``semantic``: the zero-shot papers' protocol, every pixel one class of a fixed list, mIoU
  accumulated the mmseg way (:mod:`ovseg.evaluation.semantic`), so numbers sit beside CorrCLIP's.

Both read the same params (``eval_*``) and write the same files under ``metrics/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovseg.config import Settings
from ovseg.errors import OvsegError

PROTOCOLS = ("prompt", "semantic", "video")


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate on, and how (params.yaml's ``eval_*``, or ``ovseg evaluate``'s options)."""

    dataset: Path = Path("data/eval")
    protocol: str = "prompt"
    proposals_only: bool = False  # prompt protocol: judge only the mask candidates
    classes: Path | None = None  # semantic: the class-name file (default: the dataset's classes.txt)
    background_threshold: float = 0.0  # semantic: pixels less sure than this are background
    short_side: int | None = None  # semantic: resize photos to this shorter side first
    layout: str | None = None  # semantic: voc | context | cityscapes | ade20k | coco-stuff | coco-object (auto)
    limit: int | None = None  # only the first N photos (videos: sequences)
    video_start: str = "mask"  # video: follow from the first frame's mask, or from one click on each object

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise OvsegError(f"unknown protocol {self.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        if self.limit is not None and self.limit < 1:
            raise OvsegError(f"the limit must be at least 1, got {self.limit}")


def options_from_params(params: dict[str, Any], **given: Any) -> EvalOptions:
    """params.yaml's ``eval_*`` entries, each overridden by a ``given`` value that is not None."""

    def pick(name: str, key: str, default: Any) -> Any:
        value = given.get(name)
        if value is not None:
            return value
        value = params.get(key)
        return default if value is None else value

    classes = pick("classes", "eval_classes", None)
    try:
        return EvalOptions(
            dataset=_dataset(pick("dataset", "eval_dataset", "data/eval")),
            protocol=str(pick("protocol", "eval_protocol", "prompt")),
            proposals_only=bool(pick("proposals_only", "eval_proposals_only", False)),
            classes=Path(classes) if classes else None,
            background_threshold=float(pick("background_threshold", "eval_background_threshold", 0.0)),
            short_side=_optional_int(pick("short_side", "eval_short_side", None)),
            layout=pick("layout", "eval_layout", None),
            limit=_optional_int(pick("limit", "eval_limit", None)),
            video_start=str(pick("video_start", "eval_video_start", "mask")),
        )
    except (TypeError, ValueError) as exc:
        raise OvsegError(f"evaluation parameters: {exc}") from None


def _dataset(value: Any) -> Path:
    """A folder, or the name of a data set ``ovseg data download`` fetches (``davis``, ``camvid``) when no folder
    of that name is here: then it is read from ``$OVSEG_DATA``."""
    from ovseg.evaluation.sources import SOURCES, dataset_folder

    path = Path(value)
    if not path.exists() and str(value) in SOURCES:
        return dataset_folder(str(value))
    return path


def _optional_int(value: Any) -> int | None:
    return None if value in (None, "", 0) else int(value)


def evaluate_dataset(settings: Settings, options: EvalOptions, cache: Path, out: Path) -> dict[str, Any]:
    """Run the chosen protocol, write its reports under ``out``, return its metrics (``metrics.json``)."""
    title = f"{options.dataset} — preset {settings.preset}"
    from ovseg.evaluation.video import evaluate_video, is_davis

    if options.protocol == "video" or is_davis(options.dataset):  # DAVIS's layout: the video protocol
        return evaluate_video(settings, options.dataset, cache, out, options.video_start, options.limit)
    from ovseg.masks import finder_name, finds_by_words

    if finds_by_words(settings):  # its candidates exist only per prompt: no prompt-free proposals or CLIP features
        raise OvsegError(
            f"ovseg evaluate on photos measures masks + CLIP (their candidates, then the words' choice); with "
            f"find.finder {finder_name(settings)} there is neither: run it with --set find.finder=clip"
        )
    if options.protocol == "semantic":
        return _semantic(settings, options, cache, out, title)
    return _prompt(settings, options, cache, out, title)


def _prompt(settings: Settings, options: EvalOptions, cache: Path, out: Path, title: str) -> dict[str, Any]:
    from ovseg.evaluation.datasets import read_dataset
    from ovseg.evaluation.prompt import evaluate, write_reports

    samples = read_dataset(options.dataset)[: options.limit]
    metrics, pairs, regions = evaluate(settings, samples, cache, proposals_only=options.proposals_only)
    write_reports(metrics, pairs, regions, out, title)
    return {"protocol": "prompt", **metrics}


def _semantic(settings: Settings, options: EvalOptions, cache: Path, out: Path, title: str) -> dict[str, Any]:
    from ovseg.evaluation.datasets import read_class_names, semantic_samples
    from ovseg.evaluation.semantic import SemanticProtocol, evaluate_semantic, write_semantic_reports

    classes_file = options.classes or options.dataset / "classes.txt"
    if options.classes is None and not classes_file.is_file():
        raise OvsegError(f"{options.dataset} has no classes.txt: give the class-name file with --classes")
    protocol = SemanticProtocol(read_class_names(classes_file), options.background_threshold, options.short_side)
    samples = semantic_samples(options.dataset, options.layout, options.limit)
    metrics = evaluate_semantic(settings, samples, protocol, cache)
    metrics["classes_file"] = str(classes_file)
    write_semantic_reports(metrics, out, title)
    return metrics


def describe(metrics: dict[str, Any]) -> list[str]:
    """The lines a log shows for a protocol's metrics."""
    if metrics.get("protocol") == "video":
        from ovseg.evaluation.video import describe as describe_video

        return [describe_video(metrics)]
    if metrics.get("protocol") == "semantic":
        return [
            f"semantic: mIoU {metrics['miou']:.4f}, mAcc {metrics['macc']:.4f}, aAcc {metrics['aacc']:.4f} "
            f"over {metrics['images']} images, {len(metrics['classes'])} classes "
            f"({metrics['seconds_per_image']:.2f} s per image after the cached stages)"
        ]
    from ovseg.evaluation.prompt import describe_proposals

    lines = [describe_proposals(metrics["proposals"])]
    if metrics.get("pairs"):
        lines.append(
            f"evaluate: mIoU {metrics['miou']:.4f}, top-1 precision {metrics['top1_precision']:.4f}, "
            f"recall {metrics['top1_recall']:.4f} over {metrics['pairs']} pairs"
        )
    return lines
