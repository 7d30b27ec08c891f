"""``ovseg run``: the whole pipeline on a photo or a folder, or clicks and boxes on one photo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ovseg.cli.common import PRESET_HELP, app, console, fail, given, with_settings
from ovseg.errors import OvsegError, from_os_error


@app.command()
def run(
    image: str | None = typer.Option(None, "--image", help="One photo to process."),
    images: str | None = typer.Option(
        None, "--images", help="A folder of photos to process (also s3://, gs://: docs/ray.md)."
    ),
    prompts: list[str] = typer.Option(
        [],
        "--prompt",
        "-p",
        help='What to find, e.g. "the red car". Repeat it for several classes at once (labelling): '
        "--prompt car --prompt person gives every instance of each, a label map and COCO with both.",
    ),
    mode: str | None = typer.Option(None, "--mode", "-m", help="segment | remove | replace | style"),
    edit: str | None = typer.Option(None, "--edit", "-e", help="replace/style: what to paint."),
    top_k: int | None = typer.Option(None, "--top-k", "-k", help="How many candidates to merge."),
    config: str | None = typer.Option(None, "--config", "-c", help=PRESET_HELP),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda | mps"),
    params: Path = typer.Option(Path("params.yaml"), "--params", help="Base parameters (used if it exists)."),
    cache: str = typer.Option("cache", "--cache", help="Where stage artifacts are cached (a folder or s3://...)."),
    output: str = typer.Option("data/output", "--output", "-o", help="Where results are written (or s3://...)."),
    visualize: bool = typer.Option(True, "--visualize/--no-visualize", help="Write overlay pictures."),
    engine: str | None = typer.Option(None, "--engine", help="local | ray (docs/ray.md)."),
    strict: bool | None = typer.Option(
        None, "--strict/--no-strict", help="Stop at an unreadable image (default: skip it with a warning)."
    ),
    recursive: bool | None = typer.Option(
        None, "--recursive/--no-recursive", help="Also the photos in sub-folders (results mirror the folders)."
    ),
    sets: list[str] = typer.Option(
        [], "--set", help="Override any stage setting, e.g. --set masks.sampling=grid (repeatable)."
    ),
    dvc: bool = typer.Option(False, "--dvc", help="Write the options into params.yaml and run `dvc repro`."),
    points: list[str] = typer.Option(
        [], "--point", help="A click X,Y[,LABEL] on --image (label 1 include, 0 exclude; repeatable)."
    ),
    box: str | None = typer.Option(None, "--box", help="A box X1,Y1,X2,Y2 around what to find on --image."),
    video: str | None = typer.Option(
        None,
        "--video",
        help="A video (mp4, mov, webm, mkv) or a folder of frames: follow what --prompt, --point, "
        "--box or --mask names through every frame (docs/videos.md).",
    ),
    videos: str | None = typer.Option(None, "--videos", help="A folder of videos (or of frame folders)."),
    frame: int | None = typer.Option(None, "--frame", help="Videos: the frame --point, --box or --mask are on."),
    mask: str | None = typer.Option(
        None, "--mask", help="Videos: a first mask to follow (an indexed PNG: one object per id, as DAVIS's)."
    ),
    corrections: list[str] = typer.Option(
        [],
        "--correct",
        help="Videos: a click FRAME:X,Y[,LABEL] (or OBJECT@FRAME:X,Y) that follows that object again "
        "from that frame on, the frames before kept (repeatable; the clicks of one frame go together).",
    ),
    start: str | None = typer.Option(None, "--start", help="Videos: from this frame (12) or time (1.5s)."),
    end: str | None = typer.Option(None, "--end", help="Videos: up to this frame (12) or time (1.5s)."),
    every: int | None = typer.Option(None, "--every", help="Videos: take every N-th frame."),
    fps: float | None = typer.Option(None, "--fps", help="Videos: take so many frames a second."),
) -> None:
    """Find PROMPT (or what --point / --box show) in the photos and (optionally) edit it: the whole pipeline."""
    from ovseg.config import apply_overrides, load_params, parse_override, settings_from_params
    from ovseg.request import request_from_params

    try:
        sources = [name for name, given_ in (("--image", image), ("--images", images), ("--video", video),
                                              ("--videos", videos)) if given_ is not None]  # fmt: skip
        if len(sources) > 1:
            raise OvsegError(f"give one of --image, --images, --video, --videos, not {' and '.join(sources)}")
        if video is None and videos is None and (mask or frame is not None or start or end or every or fps or
                                                 corrections):  # fmt: skip
            raise OvsegError(
                "--frame, --mask, --correct, --start, --end, --every and --fps are for videos: give --video"
            )
        base = load_params(params) if params.is_file() else {}
        source = image or images
        prompt: str | list[str] | None = (prompts[0] if len(prompts) == 1 else list(prompts)) if prompts else None
        updates = given(
            images=str(source) if source else None,
            prompt=prompt,
            mode=mode,
            edit_prompt=edit,
            preset=config,
            device=device,
            strict=strict,
            recursive=recursive,
        )
        if engine is not None:
            sets = [*sets, f"engine.kind={engine}"]
        cut = {"start": start, "end": end, "every": every, "fps": fps}
        sets = [*sets, *(f"video.{k}={v}" for k, v in cut.items() if v is not None)]
        merged = apply_overrides({**base, **updates}, sets) if dvc else with_settings({**base, **updates}, sets)
        if top_k is not None:
            merged["select"] = {**(merged.get("select") or {}), "top_k": top_k}
        settings = settings_from_params(merged)  # validate before touching anything
        if video is not None or videos is not None:
            if dvc:
                raise OvsegError("--dvc runs params.yaml's pipeline: set videos: (and follow:) there instead")
            from ovseg.cli.videos import run_videos, video_request

            request = video_request(merged, video or videos, points, box, frame, mask, prompts, corrections)
            run_videos(settings, request, cache, output, visualize)
            return
        clicks, labels, region = parse_clicks(points, box)
        if clicks or region is not None:
            if image is None:
                raise OvsegError("--point and --box are places on one photo: give them with --image, not --images")
            if dvc:
                raise OvsegError("--point and --box are not pipeline parameters: run them without --dvc")
            # Only --prompt counts here: params.yaml's prompt belongs to the DAG.
            if isinstance(prompt, list):
                raise OvsegError("--point and --box refine one prompt: give --prompt once with them")
            request = request_from_params({**merged, "prompt": prompt or ""})
            run_clicks(merged, request, clicks, labels, region, top_k, cache, output, visualize)
            return
        request = request_from_params(merged)
        request.require_prompt()
        if dvc:
            changes = {
                ("select.top_k" if k == "top_k" else k): v
                for k, v in {**updates, "top_k": top_k}.items()
                if v is not None
            }
            changes.update(dict(parse_override(item) for item in sets))
            run_dvc(params, changes)
            return
        run_in_process(settings, request, cache, output, visualize)
    except OvsegError as exc:
        fail(exc)
    except OSError as exc:  # a full disk or a folder that turned read-only mid-run
        fail(from_os_error(exc))


def parse_clicks(
    points: list[str], box: str | None
) -> tuple[list[tuple[float, float]], list[int], tuple[float, float, float, float] | None]:
    """``--point X,Y[,LABEL]`` and ``--box X1,Y1,X2,Y2`` as numbers, or one line saying which is malformed."""
    from ovseg.request import parse_box, parse_point

    parsed = [parse_point(text) for text in points]
    clicks, labels = [(x, y) for x, y, _ in parsed], [label for *_, label in parsed]
    return clicks, labels, parse_box(box) if box is not None else None


def run_clicks(params: dict[str, Any], request, clicks, labels, region, top_k, cache, output, visualize) -> None:
    """Clicks and boxes, alone or correcting a prompt: the Python API's path, written where `run` writes."""
    from ovseg.api import Segmenter
    from ovseg.config import SECTION_TYPES
    from ovseg.pipeline import edit, select
    from ovseg.storage.locations import image_stem

    overrides = {k: v for k, v in params.items() if k in SECTION_TYPES or k == "strict"}
    seg = Segmenter(
        preset=params.get("preset") or "balanced", device=params.get("device") or "auto", cache=cache, **overrides
    )
    image, stem = request.images, image_stem(request.images)
    result = seg.segment(
        image, request.prompt or None, points=clicks or None, labels=labels or None, box=region, top_k=top_k
    )
    folder = result.save(Path(output) / select.RESULTS / stem, visualize=visualize)
    console.print(f"segment: {len(result.masks)} mask(s), {int(result.merged.sum())} px -> {folder}")
    if request.edits:
        if not result.merged.any():
            raise OvsegError("nothing was selected, so there is nothing to edit; click inside the object")
        target = Path(output) / edit.RESULTS / stem
        seg.save_edit(target, image, result, request.mode, request.edit_prompt)
        console.print(f"{request.mode}: {target / 'before_after.png'}")


def run_dvc(params: Path, changes: dict[str, Any]) -> None:
    """Write the options into params.yaml (comments kept) and let DVC rerun what changed."""
    from ovseg.dag.params_text import update_params_text
    from ovseg.storage.locations import atomic_path

    if not params.is_file():
        raise OvsegError(f"--dvc needs the project's {params}; run it in the ovseg project folder")
    text = update_params_text(params.read_text(), changes)
    with atomic_path(params) as tmp:
        tmp.write_text(text)
    console.print(f"updated {params} ({', '.join(f'{k}={v!r}' for k, v in changes.items())}); running dvc repro")
    code = subprocess.call([sys.executable, "-m", "dvc", "repro"])
    if code:
        raise typer.Exit(code)


def run_in_process(settings, request, cache: str, output: str, visualize: bool) -> None:
    """Every stage with the engine the settings name, then one table: per photo what was found and where."""
    from ovseg.engines import run_pipeline
    from ovseg.media.viz import shorten
    from ovseg.pipeline import edit, masks, new_run, score, select
    from ovseg.storage.folders import OutputFolder
    from ovseg.storage.locations import list_photos

    run = new_run(settings, request, cache=cache, output=output, visualize=visualize)
    score.check_prompt(run)
    reports = run_pipeline(run)
    for report in reports:
        console.print(report.line(), highlight=False)
    segment, edits = OutputFolder(f"{output}/{select.RESULTS}"), OutputFolder(f"{output}/{edit.RESULTS}")
    title = f"{request.mode}: {shorten(request.title)!r}"
    if request.edit_prompt and request.edits:
        title += f" -> {shorten(request.edit_prompt)!r}"
    table = Table(title=title)
    table.add_column("image")
    table.add_column("selected", justify="right")
    table.add_column("top score", justify="right")
    table.add_column("result")
    skipped = masks.skipped_images(cache)
    summary = (segment.read_json(select.SUMMARY_FILE) or {}).get("images", {})
    photos = list_photos(request.images, request.recursive)
    for photo in photos:
        name, stem = photo.file, photo.name
        if name in skipped or stem not in summary:
            table.add_row(name, "-", "-", f"[yellow]skipped: {skipped.get(name, 'not processed')}[/]")
            continue
        row = summary[stem]
        result = (
            edits.join(f"{stem}/before_after.png")
            if request.edits
            else segment.join(f"{stem}/{'overlay.png' if visualize else 'mask.png'}")
        )
        top = f"{row['top_score']:.3f}" if row["top_score"] is not None else "-"
        counts = row.get("instances")
        found = ", ".join(f"{n.split('|')[0]} {c}" for n, c in counts.items()) if counts else row["selected"]
        table.add_row(name, str(found), top, result)
    console.print(table)
    if request.classes:
        console.print(
            f"every instance of {len(request.classes)} classes: label maps in {segment.join('<photo>/labels.png')}, "
            f"COCO (one category per class) in {segment.join(select.COCO_FILE)}",
            highlight=False,
        )
    if skipped:
        console.print(f"[yellow]{len(skipped)} of {len(photos)} files could not be read and were skipped[/]")
