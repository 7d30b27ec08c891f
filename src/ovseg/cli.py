"""`ovseg` command line: run the pipeline, inspect artifacts, manage weights and cache, benchmark.

`ovseg run` calls the same stage functions as the DVC stages, in one process, one
heavy model at a time, sharing the same content-addressed cache; `ovseg run --dvc`
instead writes the options into params.yaml and runs `dvc repro`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ovseg.errors import OvsegError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
weights_app = typer.Typer(no_args_is_help=True, help="List, download, verify or build model weights.")
app.add_typer(weights_app, name="weights")
cache_app = typer.Typer(no_args_is_help=True, help="Manage the content-addressed stage cache.")
app.add_typer(cache_app, name="cache")
console = Console()
err_console = Console(stderr=True)


def _fail(exc: OvsegError) -> None:
    err_console.print(f"[bold red]ovseg: error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _overrides(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@app.command()
def run(
    image: str | None = typer.Option(None, "--image", help="One photo to process."),
    images: str | None = typer.Option(
        None, "--images", help="A folder of photos to process (with --engine ray also s3://, gs://)."
    ),
    prompt: str | None = typer.Option(None, "--prompt", "-p", help='What to find, e.g. "the red car".'),
    mode: str | None = typer.Option(None, "--mode", "-m", help="segment | remove | replace | style"),
    edit: str | None = typer.Option(None, "--edit", "-e", help="replace/style: what to paint."),
    top_k: int | None = typer.Option(None, "--top-k", "-k", help="How many candidates to merge."),
    config: str | None = typer.Option(None, "--config", "-c", help="Preset: fast | balanced | quality | tiny."),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda | mps"),
    params: Path = typer.Option(Path("params.yaml"), "--params", help="Base parameters (used if it exists)."),
    cache: str = typer.Option("cache", "--cache", help="Where stage artifacts are cached (ray: may be s3://...)."),
    output: str = typer.Option(
        "data/output", "--output", "-o", help="Where results are written (ray: may be s3://...)."
    ),
    visualize: bool = typer.Option(True, "--visualize/--no-visualize", help="Write overlay pictures."),
    engine: str | None = typer.Option(None, "--engine", help="local | ray (README 'Many machines')."),
    strict: bool | None = typer.Option(
        None, "--strict/--no-strict", help="Stop at an unreadable image (default: skip it with a warning)."
    ),
    sets: list[str] = typer.Option(
        [], "--set", help="Override any stage setting, e.g. --set masks.sampling=grid (repeatable)."
    ),
    dvc: bool = typer.Option(False, "--dvc", help="Write the options into params.yaml and run `dvc repro`."),
    points: list[str] = typer.Option(
        [], "--point", help="A click X,Y[,LABEL] on --image (label 1 include, 0 exclude; repeatable)."
    ),
    box: str | None = typer.Option(None, "--box", help="A box X1,Y1,X2,Y2 around what to find on --image."),
) -> None:
    """Find PROMPT (or what --point / --box show) in the photos and (optionally) edit it: the whole pipeline."""
    from ovseg.config import apply_overrides, load_params, parse_override, settings_from_params

    try:
        if image is not None and images is not None:
            raise OvsegError("give --image or --images, not both")
        base = load_params(params) if params.is_file() else {}
        source = image or images
        updates = _overrides(
            images=str(source) if source else None,
            prompt=prompt,
            mode=mode,
            edit_prompt=edit,
            preset=config,
            device=device,
            strict=strict,
        )
        if engine is not None:
            sets = [*sets, f"engine.kind={engine}"]
        merged = apply_overrides({**base, **updates}, sets)
        if top_k is not None:
            merged["select"] = {**(merged.get("select") or {}), "top_k": top_k}
        clicks, labels, region = _parse_clicks(points, box)
        if clicks or region is not None:
            if image is None:
                raise OvsegError("--point and --box are places on one photo: give them with --image, not --images")
            if dvc:
                raise OvsegError("--point and --box are not pipeline parameters: run them without --dvc")
            settings_from_params({**merged, "prompt": merged.get("prompt") or "-"})  # validate first
            _run_clicks(
                {**merged, "prompt": prompt},
                Path(image),
                clicks,
                labels,
                region,
                top_k,
                Path(cache),
                Path(output),
                visualize,
            )
            return
        settings = settings_from_params(merged)  # validate before touching anything
        if not settings.prompt:
            raise OvsegError('the prompt is empty: pass --prompt "what to find"')
        if dvc:
            changes = {
                ("select.top_k" if k == "top_k" else k): v
                for k, v in {**updates, "top_k": top_k}.items()
                if v is not None
            }
            changes.update(dict(parse_override(item) for item in sets))
            _run_dvc(params, changes)
            return
        _run_in_process(settings, cache, output, visualize)
    except OvsegError as exc:
        _fail(exc)


def _parse_clicks(
    points: list[str], box: str | None
) -> tuple[list[tuple[float, float]], list[int], tuple[float, float, float, float] | None]:
    """``--point X,Y[,LABEL]`` and ``--box X1,Y1,X2,Y2`` as numbers, or one line saying which is malformed."""
    clicks, labels = [], []
    for text in points:
        parts = text.split(",")
        try:
            values = [float(v) for v in parts]
        except ValueError:
            values = []
        if len(values) not in (2, 3) or (len(values) == 3 and values[2] not in (0, 1)):
            raise OvsegError(f"--point {text!r}: expected X,Y or X,Y,LABEL with LABEL 1 (include) or 0 (exclude)")
        clicks.append((values[0], values[1]))
        labels.append(int(values[2]) if len(values) == 3 else 1)
    region = None
    if box is not None:
        try:
            x1, y1, x2, y2 = (float(v) for v in box.split(","))
        except ValueError:
            raise OvsegError(f"--box {box!r}: expected X1,Y1,X2,Y2 (pixels of the photo)") from None
        if x2 <= x1 or y2 <= y1:
            raise OvsegError(f"--box {box!r}: X2 must be right of X1 and Y2 below Y1")
        region = (x1, y1, x2, y2)
    return clicks, labels, region


def _run_clicks(params: dict[str, Any], image: Path, clicks, labels, region, top_k, cache, output, visualize) -> None:
    """Clicks and boxes, alone or correcting a prompt: the Python API's path, written where `run` writes."""
    from ovseg.api import Segmenter
    from ovseg.pipeline import write_edit
    from ovseg.remote import OutputFolder

    params = dict(params)
    seg = Segmenter(preset=params.pop("preset", "balanced"), device=params.pop("device", "auto"), cache=cache, **params)
    prompt = params.get("prompt") or None  # only --prompt: params.yaml's prompt belongs to the DAG
    result = seg.segment(image, prompt, points=clicks or None, labels=labels or None, box=region, top_k=top_k)
    folder = result.save(output / "segment" / image.stem, visualize=visualize)
    console.print(f"segment: {len(result.masks)} mask(s), {int(result.merged.sum())} px -> {folder}")
    mode = params.get("mode", "segment")
    if mode != "segment":
        if not result.merged.any():
            raise OvsegError("nothing was selected, so there is nothing to edit; click inside the object")
        edited = seg.edit(image, result, mode, params.get("edit_prompt") or "")
        record = {
            "image": str(image),
            "mode": mode,
            "edit_prompt": params.get("edit_prompt"),
            "clicks": result.details["clicks"],
            "segment_prompt": prompt,
        }
        write_edit(OutputFolder(str(output / "edit")), image.stem, result.image, edited, record)
        console.print(f"{mode}: {output / 'edit' / image.stem / 'before_after.png'}")


def _run_dvc(params: Path, changes: dict[str, Any]) -> None:
    """Write the options into params.yaml (comments kept) and let DVC rerun what changed."""
    from ovseg.config import update_params_text
    from ovseg.fileio import atomic_path

    if not params.is_file():
        raise OvsegError(f"--dvc needs the project's {params}; run it in the ovseg project folder")
    text = update_params_text(params.read_text(), changes)
    with atomic_path(params) as tmp:
        tmp.write_text(text)
    console.print(f"updated {params} ({', '.join(f'{k}={v!r}' for k, v in changes.items())}); running dvc repro")
    code = subprocess.call([sys.executable, "-m", "dvc", "repro"])
    if code:
        raise typer.Exit(code)


def _run_in_process(settings, cache: str, output: str, visualize: bool) -> None:
    from ovseg.engines import run_pipeline
    from ovseg.pipeline import skipped_images
    from ovseg.remote import OutputFolder, image_name, image_stem, list_image_urls

    reports = run_pipeline(settings, cache, output, visualize)
    for report in reports:
        console.print(report.line(), highlight=False)
    segment, edit = OutputFolder(f"{output}/segment"), OutputFolder(f"{output}/edit")
    table = Table(
        title=f"{settings.mode}: {settings.prompt!r}"
        + (f" -> {settings.edit_prompt!r}" if settings.edit_prompt and settings.mode != "segment" else "")
    )
    table.add_column("image")
    table.add_column("selected", justify="right")
    table.add_column("top score", justify="right")
    table.add_column("result")
    skipped = skipped_images(cache)
    summary = (segment.read_json("summary.json") or {}).get("images", {})
    images = list_image_urls(settings.images)
    for image in images:
        name, stem = image_name(image), image_stem(image)
        if name in skipped or stem not in summary:
            table.add_row(name, "-", "-", f"[yellow]skipped: {skipped.get(name, 'not processed')}[/]")
            continue
        row = summary[stem]
        result = (
            edit.join(f"{stem}/before_after.png")
            if settings.mode != "segment"
            else segment.join(f"{stem}/{'overlay.png' if visualize else 'mask.png'}")
        )
        top = f"{row['top_score']:.3f}" if row["top_score"] is not None else "-"
        table.add_row(name, str(row["selected"]), top, result)
    console.print(table)
    if skipped:
        console.print(f"[yellow]{len(skipped)} of {len(images)} files could not be read and were skipped[/]")


def _known_images(paths) -> dict[str, dict[str, Any]]:
    """Image name -> artifact keys, from the latest manifests and every selection on disk."""
    from ovseg.fileio import read_json
    from ovseg.store import load_manifest

    entries: dict[str, dict[str, Any]] = {}
    for selection_file in sorted(paths.segment.glob("*/selection.json")):
        record = read_json(selection_file)
        entries[selection_file.parent.name] = {"image": record["image"], **record.get("artifacts", {})}
    for folder in (paths.masks, paths.embeddings, paths.scores):
        try:
            manifest = load_manifest(folder)
        except OvsegError:
            continue
        for stem, entry in manifest.items():
            entries.setdefault(stem, {}).update(entry)
    return entries


@app.command()
def inspect(
    name: str | None = typer.Argument(None, help="Image name (file stem); all images if omitted."),
    cache: Path = typer.Option(Path("cache"), "--cache"),
    output: Path = typer.Option(Path("data/output"), "--output", "-o"),
) -> None:
    """Show what artifacts exist for each image: masks, embeddings, scores, selection, edit."""
    from ovseg.fileio import read_json
    from ovseg.pipeline import Paths
    from ovseg.store import read_arrays, read_marker

    paths = Paths(cache=cache, output=output)
    entries = _known_images(paths)
    if not entries:
        _fail(OvsegError(f"no artifacts under {cache} or {output}: run `ovseg run` or `dvc repro` first"))
    if name is not None and name not in entries:
        _fail(OvsegError(f"no artifacts for image {name!r}; known: {', '.join(sorted(entries))}"))
    for stem, entry in sorted(entries.items()):
        if name is not None and stem != name:
            continue
        table = Table(title=f"{stem}  ({entry.get('image', '?')})")
        for column in ("artifact", "details", "path"):
            table.add_column(column, overflow="fold")
        store = paths.masks / f"{entry.get('masks')}.zarr"
        if store.is_dir():
            arrays, attrs = read_arrays(store, ["predicted_iou"])
            size = "x".join(map(str, attrs["working_size"]))
            details = f"{len(arrays['predicted_iou'])} candidates at {size} px, {attrs['model']}"
            stats = {**(attrs.get("stats") or {}), **read_marker(paths.masks, entry["masks"])}
            if stats.get("decoder_calls") is not None:
                details += f", {stats['decoder_calls']} decoder calls, {stats.get('seconds') or 0:.1f} s"
            table.add_row("masks", details, str(store))
            table.add_row(
                "candidates", "picture of all candidates", str(paths.masks / f"{entry['masks']}.candidates.png")
            )
        store = paths.embeddings / f"{entry.get('embeddings')}.zarr"
        if store.is_dir():
            arrays, attrs = read_arrays(store, ["embeddings"])
            count, dim = arrays["embeddings"].shape
            table.add_row("embeddings", f"{count}x{dim} {attrs['settings']['strategy']}, {attrs['model']}", str(store))
        store = paths.scores / f"{entry.get('scores')}.zarr"
        if store.is_dir():
            arrays, attrs = read_arrays(store, ["score"])
            top = ", ".join(f"{t:.3f}" for t in sorted(arrays["score"].tolist(), reverse=True)[:5])
            table.add_row("scores", f"prompt {attrs['prompt']!r}; top {top}", str(store))
        selection_file = paths.segment / stem / "selection.json"
        if selection_file.is_file():
            selection = read_json(selection_file)
            picked = ", ".join(f"#{s['index']} ({s['score']:.3f})" for s in selection["selected"]) or "none"
            details = f"{picked}; merged area {selection['merged']['area']} px"
            table.add_row("selection", details, str(selection_file.parent))
        edit_file = paths.edit / stem / "edit.json"
        if edit_file.is_file():
            record = read_json(edit_file)
            table.add_row("edit", f"{record['mode']}: {record['edit_prompt']!r}", str(edit_file.parent))
        console.print(table)


@weights_app.command("list")
def weights_list() -> None:
    """Every model ovseg knows, whether its weights are on disk, and where."""
    from ovseg.weights import REGISTRY, model_size, resolve_model_dir

    table = Table()
    table.add_column("name", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    for column in ("on disk", "size", "source", "description"):
        table.add_column(column, overflow="fold", justify="right" if column == "size" else "left")
    for spec in REGISTRY.values():
        try:
            folder = resolve_model_dir(spec.name, spec.kind)
            where, size = str(folder), f"{model_size(folder) / 2**20:,.0f} MiB"
        except OvsegError:
            where, size = "[red]missing[/]", "-"
        table.add_row(spec.name, spec.kind, where, size, spec.source, spec.description)
    console.print(table)


@weights_app.command("download")
def weights_download(
    names: list[str] = typer.Argument(None, help="Models to fetch; default: those of --preset."),
    preset: str = typer.Option("balanced", "--preset", help="Fetch the models this preset uses."),
    force: bool = typer.Option(False, "--force", help="Download again even if present."),
) -> None:
    """Fetch real weights from the Hugging Face hub into checkpoints/ (needs internet)."""
    from ovseg.weights import download

    try:
        for name in names or _preset_models(preset):
            console.print(f"downloading {name} ...")
            console.print(f"  -> {download(name, force=force)}")
    except OvsegError as exc:
        _fail(exc)


@weights_app.command("verify")
def weights_verify(
    names: list[str] = typer.Argument(None, help="Models to check; default: those of --preset."),
    preset: str = typer.Option("balanced", "--preset"),
) -> None:
    """Check the weights a preset needs are present and readable; exit 1 if not."""
    from ovseg.weights import verify

    try:
        wanted = names or _preset_models(preset)
    except OvsegError as exc:
        _fail(exc)
    bad = False
    for name in wanted:
        problems = verify(name)
        bad = bad or bool(problems)
        console.print(
            f"{name}: " + ("[green]ok[/]" if not problems else "[red]" + "; ".join(problems) + "[/]"),
            highlight=False,
            soft_wrap=True,
        )
    if bad:
        raise typer.Exit(1)


@weights_app.command("make-tiny")
def weights_make_tiny(
    root: Path | None = typer.Option(None, "--root", help="Folder to write into (default: checkpoints/)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Build random-weight tiny models (preset `tiny`) for offline smoke runs; outputs are meaningless."""
    from ovseg.tiny import build_all
    from ovseg.weights import download_root

    for name, folder in build_all(root or download_root(), seed).items():
        console.print(f"{name} -> {folder}")


@cache_app.command("gc")
def cache_gc(
    cache: Path = typer.Option(Path("cache"), "--cache", help="The stage cache to clean."),
    output: list[Path] = typer.Option(
        [Path("data/output")], "--output", "-o", help="Result folders whose selections keep their inputs alive."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Only list what would be removed."),
) -> None:
    """Delete cached masks, features and scores that no manifest or selection uses any more."""
    from ovseg.cache_gc import collect_garbage

    if not cache.is_dir():
        _fail(OvsegError(f"cache folder {cache} not found"))
    report = collect_garbage(cache, output, dry_run=dry_run)
    for path in report.removed:
        console.print(f"{'would remove' if dry_run else 'removed'} {path}", highlight=False)
    verb = "would free" if dry_run else "freed"
    console.print(
        f"unused: {report.unused} ({verb} {report.freed_bytes / 2**20:.1f} MiB); in use, kept: {report.kept}",
        highlight=False,
    )


@app.command()
def sync(
    source: str = typer.Argument(..., help="A folder or bucket URL to copy from (a cache, results, run records)."),
    target: str = typer.Argument(..., help="Where to copy to (a folder or bucket URL)."),
) -> None:
    """Copy a cache or results between a bucket and a folder (files missing or different there; markers last)."""
    from ovseg.remote import sync_folder

    try:
        copied, kept = sync_folder(source, target)
    except (OvsegError, OSError) as exc:
        _fail(exc if isinstance(exc, OvsegError) else OvsegError(f"cannot sync {source} to {target}: {exc}"))
    console.print(f"copied {copied} files, {kept} already there: {target}", highlight=False)


@app.command()
def benchmark(
    image: Path = typer.Option(Path("data/images/chelsea.png"), "--image", help="Photo to benchmark on."),
    config: str | None = typer.Option(None, "--config", "-c", help="Preset (default: params.yaml's)."),
    prompt: str = typer.Option("the cat", "--prompt", "-p"),
    mode: str = typer.Option("remove", "--mode", "-m", help="Edit mode to time (segment = skip the edit)."),
    runs: int = typer.Option(2, "--runs", help="Warm runs per stage after the cold one."),
    device: str | None = typer.Option(None, "--device"),
    params: Path = typer.Option(Path("params.yaml"), "--params"),
    out: Path = typer.Option(Path("benchmarks/latest.json"), "--out", help="Where to write the JSON report."),
    random_weights: bool = typer.Option(
        False, "--random-weights", help="Time the preset's real architectures with random weights (no download)."
    ),
) -> None:
    """Time every stage (model load, cold, warm) and its peak memory on one photo; print a table."""
    from ovseg.benchmark import run_benchmark, run_benchmark_random_weights
    from ovseg.config import load_params, settings_from_params
    from ovseg.fileio import write_json

    try:
        base = load_params(params) if params.is_file() else {}
        merged = {
            **base,
            **_overrides(preset=config, device=device),
            "prompt": prompt,
            "mode": mode,
            "edit_prompt": base.get("edit_prompt") or "",
        }
        settings = settings_from_params(merged)
        if random_weights:
            report = run_benchmark_random_weights(settings, image, runs, mode != "segment", log=console.print)
        else:
            report = run_benchmark(settings, image, runs=runs, edit=mode != "segment")
    except OvsegError as exc:
        _fail(exc)
    write_json(out, report)
    table = Table(
        title=f"ovseg benchmark: preset {report['preset']} on {report['device']} "
        f"({report['device_name']}), image {report['image_size'][0]}x{report['image_size'][1]}"
    )
    columns = ("stage", "load_s", "cold_s", "warm_s", "peak_rss_mb", "peak_cuda_mb")
    for column in columns:
        table.add_column(column, justify="left" if column == "stage" else "right")
    for row in report["stages"]:
        table.add_row(*(str(row.get(c)) if row.get(c) is not None else "-" for c in columns))
    console.print(table)
    masks = report["stages"][0]["masks"]
    console.print(
        f"{masks} mask candidates; total warm time {report['total_warm_s']} s; weights: "
        f"{report['weights']}; report: {out}"
    )


@app.command("benchmark-masks")
def benchmark_masks(
    dataset: Path = typer.Option(
        Path("../shared/data/camvid-val"),
        "--dataset",
        "-d",
        help="A labelled set (VOC layout: oracle mIoU is reported too) or a folder of photos.",
    ),
    limit: int = typer.Option(6, "--limit", "-n", help="How many photos (spread evenly over the set)."),
    variants: list[str] = typer.Option(
        [], "--variant", help="Which generators to compare (repeatable; default: all). See the README."
    ),
    config: str = typer.Option("cpu", "--config", "-c", help="Preset whose masks settings the variants start from."),
    device: str | None = typer.Option(None, "--device"),
    out: Path = typer.Option(Path("benchmarks/masks.json"), "--out", help="Where to write the JSON report."),
) -> None:
    """Compare mask generators on the same photos in one run: seconds, decoder calls, candidates, oracle mIoU."""
    from ovseg.benchmark import MASK_VARIANTS, run_masks_benchmark
    from ovseg.config import settings_from_params
    from ovseg.evaluation import read_dataset
    from ovseg.fileio import list_images, write_json

    try:
        settings = settings_from_params({"preset": config, "prompt": "-", **_overrides(device=device)})
        labelled = (dataset / "SegmentationClass").is_dir() or (dataset / "masks").is_dir()
        samples = read_dataset(dataset) if labelled else None
        images = [s.image for s in samples] if samples else list_images(dataset)
        if limit < 1:
            raise OvsegError("--limit must be at least 1")
        picks = sorted({round(i * (len(images) - 1) / max(1, limit - 1)) for i in range(min(limit, len(images)))})
        images = [images[i] for i in picks]
        report = run_masks_benchmark(settings, images, variants or list(MASK_VARIANTS), samples, log=console.print)
    except OvsegError as exc:
        _fail(exc)
    write_json(out, report)
    table = Table(
        title=f"masks stage on {len(images)} photos of {dataset}, {report['device']}, {report['cpu_threads']} threads"
    )
    columns = (
        "variant",
        "s/image",
        "time ratio",
        "decoder calls",
        "candidates",
        "oracle mIoU",
        "union oracle",
        "recall@0.5",
        "load s",
        "peak RSS MB",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "variant" else "right")
    ratio_key = f"time_vs_{report['reference']}"
    for row in report["variants"]:
        table.add_row(
            row["label"],
            f"{row['seconds_per_image']:.2f}",
            f"{row[ratio_key]:.3f}" if row.get(ratio_key) is not None else "-",
            f"{row['decoder_calls_per_image']:.0f}",
            f"{row['candidates_per_image']:.0f}",
            *(
                f"{row[k]:.3f}" if row[k] is not None else "-"
                for k in ("oracle_miou", "union_oracle_miou", "recall_at_50")
            ),
            f"{row['load_s']:.1f}",
            f"{row['peak_rss_mb']:.0f}",
        )
    console.print(table)
    console.print(f"time ratio: seconds per image / those of {report['reference']}; report: {out}", highlight=False)


@app.command("benchmark-engines")
def benchmark_engines(
    dataset: Path = typer.Option(
        Path("../shared/data/camvid-val"), "--dataset", "-d", help="Photos (VOC or a folder)."
    ),
    limit: int = typer.Option(50, "--limit", "-n", help="How many photos (the first N, sorted)."),
    workers: list[int] = typer.Option([1, 2], "--workers", help="Ray actor counts to try (repeatable)."),
    cpus: int = typer.Option(2, "--cpus", help="CPUs of the local Ray cluster (shared by its actors)."),
    config: str = typer.Option("cpu", "--config", "-c", help="Preset whose masks settings are used."),
    sets: list[str] = typer.Option([], "--set", help="Override a setting, e.g. --set masks.max_prompts=16."),
    all_stages: bool = typer.Option(
        False, "--all-stages", help="Time the whole run (masks to edit; --set mode=remove), not the masks stage."
    ),
    out: Path = typer.Option(Path("benchmarks/engines.json"), "--out"),
) -> None:
    """Images/s of the masks stage (or every stage): local engine and Ray Data with 1, 2, ... actors, side by side."""
    from ovseg.benchmark_engines import run_engine_benchmark
    from ovseg.config import apply_overrides, settings_from_params
    from ovseg.fileio import list_images, write_json

    try:
        base = {"preset": config, "prompt": "the road" if all_stages else "-", "device": "cpu"}
        settings = settings_from_params(apply_overrides(base, sets))
        folder = dataset / "JPEGImages" if (dataset / "JPEGImages").is_dir() else dataset
        images = list_images(folder)[:limit]
        if limit < 1 or not workers or min(workers) < 1:
            raise OvsegError("--limit and every --workers must be at least 1")
        report = run_engine_benchmark(settings, images, workers, cpus, log=console.print, all_stages=all_stages)
    except OvsegError as exc:
        _fail(exc)
    except ImportError as exc:
        _fail(OvsegError(f'the engine benchmark needs the ray extra ({exc.name} is missing): pip install -e ".[ray]"'))
    write_json(out, report)
    what = "every stage" if all_stages else "masks stage"
    table = Table(
        title=f"{what}, {report['images']} photos, {report['model']} ({report['sampling']}), {report['cpus']} CPUs"
    )
    for column in ("engine", "seconds", "images/s", "throughput vs local"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for row in report["variants"]:
        table.add_row(
            row["variant"], f"{row['seconds']:.1f}", f"{row['images_per_s']:.3f}", f"{row['throughput_vs_local']:.2f}"
        )
    console.print(table)
    console.print(f"identical stores from every engine: {report['same_stores']}; report: {out}", highlight=False)


@app.command("benchmark-embed")
def benchmark_embed(
    image: Path = typer.Option(Path("data/images/chelsea.png"), "--image", help="Photo to embed."),
    candidates: int = typer.Option(150, "--candidates", "-n", help="How many (synthetic) mask candidates."),
    config: str = typer.Option("balanced", "--config", "-c", help="Preset: its CLIP, dense scales, image size."),
    variants: list[str] = typer.Option([], "--variant", help="crops | dense-identity | dense-mask | dense-mask+tokens"),
    device: str | None = typer.Option(None, "--device"),
    out: Path = typer.Option(Path("benchmarks/embed.json"), "--out"),
) -> None:
    """CLIP features per candidate: crops versus dense variants and per-mask class tokens, side by side."""
    from ovseg.benchmark import run_embed_benchmark
    from ovseg.config import settings_from_params
    from ovseg.fileio import write_json

    try:
        settings = settings_from_params({"preset": config, "prompt": "-", **_overrides(device=device)})
        report = run_embed_benchmark(settings, image, candidates, variants or None, log=console.print)
    except OvsegError as exc:
        _fail(exc)
    write_json(out, report)
    table = Table(
        title=f"embed: {report['candidates']} candidates on {image} ({report['working_size'][0]}x"
        f"{report['working_size'][1]}), {report['clip']} ({report['weights']}), {report['device']}"
    )
    ratio = next(k for k in report["variants"][0] if k.startswith("time_vs_"))
    for column in ("variant", "load s", "embed s", "time ratio", "peak RSS MB", "peak CUDA MB"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row in report["variants"]:
        table.add_row(
            row["stage"],
            f"{row['load_s']:.2f}",
            f"{row['cold_s']:.2f}",
            f"{row[ratio]:.3f}",
            f"{row['peak_rss_mb']:.0f}",
            f"{row['peak_cuda_mb']:.0f}" if row["peak_cuda_mb"] is not None else "-",
        )
    console.print(table)
    console.print(f"report: {out}", highlight=False)


@app.command("benchmark-score")
def benchmark_score(
    images: int = typer.Option(100, "--images", "-n", help="How many photos' candidates to score."),
    config: str = typer.Option("cpu", "--config", "-c", help="Preset (its CLIP and score settings)."),
    prompt: str = typer.Option("the red car", "--prompt", "-p"),
    device: str | None = typer.Option(None, "--device"),
    out: Path = typer.Option(Path("benchmarks/score.json"), "--out"),
) -> None:
    """The score stage for N photos: texts encoded per photo (before) versus once per run (now), in one run."""
    from ovseg.benchmark import run_score_benchmark
    from ovseg.config import settings_from_params
    from ovseg.fileio import write_json

    try:
        if images < 1:
            raise OvsegError("--images must be at least 1")
        settings = settings_from_params({"preset": config, "prompt": prompt, **_overrides(device=device)})
        report = run_score_benchmark(settings, images, log=console.print)
    except OvsegError as exc:
        _fail(exc)
    write_json(out, report)
    console.print(
        f"{report['images']} images x {report['candidates_per_image']} candidates, {report['texts']} texts, "
        f"{report['clip']} ({report['weights']}) on {report['device']}: before {report['before_s']:.2f} s, "
        f"now {report['now_s']:.3f} s, {report['speedup']}x faster; same scores: {report['same_scores']}; "
        f"report: {out}",
        highlight=False,
    )


@app.command()
def evaluate(
    dataset: Path = typer.Option(Path("data/eval"), "--dataset", "-d", help="VOC or binary-mask dataset folder."),
    config: str | None = typer.Option(None, "--config", "-c", help="Preset (default: params.yaml's)."),
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
    from ovseg.evaluation import evaluate as run_evaluation
    from ovseg.evaluation import read_dataset, write_reports

    try:
        base = load_params(params) if params.is_file() else {}
        merged = apply_overrides({**base, **_overrides(preset=config), "prompt": "-"}, sets)
        settings = settings_from_params(merged)
        only = proposals_only or bool(merged.get("eval_proposals_only"))
        metrics, pairs, regions = run_evaluation(settings, read_dataset(dataset), cache, proposals_only=only)
    except OvsegError as exc:
        _fail(exc)
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
    from ovseg.evaluation import make_synthetic_dataset

    console.print(f"wrote {make_synthetic_dataset(folder, count, seed)}")


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on (127.0.0.1: this computer only)."),
    port: int = typer.Option(7860, "--port"),
    config: str | None = typer.Option(
        None, "--config", "-c", help="Preset selected at start (default: balanced if its weights exist, else cpu)."
    ),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps"),
    cache: Path = typer.Option(Path("cache"), "--cache", help="The stage cache shared with `ovseg run`."),
    sets: list[str] = typer.Option([], "--set", help="Override any stage setting, e.g. --set embed.model=..."),
    open_browser: bool = typer.Option(False, "--open", help="Open the page in the default browser."),
) -> None:
    """Serve the web page: drop a photo, say what to find, click to correct, remove / replace / style it."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline by default: no usage reports
    try:
        from ovseg.ui import Workbench, serve
    except ImportError as exc:
        _fail(OvsegError(f'the web page needs the ui extra ({exc.name} is missing): pip install -e ".[ui]"'))
    from ovseg.config import apply_overrides, preset_names, settings_from_params
    from ovseg.weights import verify

    try:
        if config is None:
            config = "balanced" if not any(verify(name) for name in _preset_models("balanced")) else "cpu"
        if config not in preset_names():
            raise OvsegError(f"unknown preset {config!r}; choose from {', '.join(preset_names())}")
        settings_from_params(apply_overrides({"preset": config, "prompt": "-", "device": device}, sets))
    except OvsegError as exc:
        _fail(exc)
    missing = [name for name in _preset_models(config) if verify(name)]
    if missing and not sets:
        console.print(f"[yellow]note: preset {config} is missing weights for {', '.join(missing)}[/]", highlight=False)
    console.print(f"ovseg ui: http://{host}:{port}  (preset {config}, cache {cache}; Ctrl+C stops it)")
    serve(Workbench(cache, device, sets), config, host, port, open_browser)


def _preset_models(preset: str) -> list[str]:
    from ovseg.config import settings_from_params

    settings = settings_from_params({"preset": preset, "prompt": "-"})
    return [settings.masks.model, settings.embed.model, settings.edit.model]


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
