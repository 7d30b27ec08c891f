"""``ovseg benchmark-track`` and ``benchmark-video-remove``: the video benchmarks' commands (what they run lives in
:mod:`ovseg.benchmarks.track`, :mod:`ovseg.benchmarks.track_stress` and :mod:`ovseg.benchmarks.video_remove`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from ovseg.cli.common import PRESET_HELP, app, console, fail
from ovseg.errors import OvsegError
from ovseg.evaluation.sources import dataset_folder, default_help

if TYPE_CHECKING:
    from ovseg.config import Settings

DAVIS_DEFAULT = default_help("davis")


def _video_benchmark_settings(config: str, sets: list[str], asked: list[str], variants) -> Settings:
    """The video benchmarks' settings (the preset on CPU, with ``--set``s), once the asked variants are known ones."""
    from ovseg.config import apply_overrides, settings_from_params

    unknown = [v for v in asked if v not in variants]
    if unknown:
        raise OvsegError(f"unknown variant {unknown[0]!r}; choose from {', '.join(variants)}")
    return settings_from_params(apply_overrides({"preset": config, "device": "cpu"}, sets))


@app.command("benchmark-track")
def benchmark_track(
    dataset: Path | None = typer.Option(None, "--dataset", help="Videos in DAVIS's layout." + DAVIS_DEFAULT),
    config: str = typer.Option("cpu", "--config", "-c", help=PRESET_HELP),
    sequence: list[str] = typer.Option([], "--sequence", help="Only these sequences (repeatable)."),
    frames: int = typer.Option(0, "--frames", help="The first N frames of each sequence (0: all)."),
    variant: list[str] = typer.Option(
        [], "--variant", help="copy | reprompt | flow, no excl. | flow-sam, no memory | flow-sam (repeatable)"
    ),
    stress: bool = typer.Option(
        False, "--stress", help="Also each sequence with an occluder, with a look-alike, and leaving the frame."
    ),
    sets: list[str] = typer.Option([], "--set", help="Any setting, e.g. video.negative_ring=16 (repeatable)."),
    out: Path = typer.Option(Path("benchmarks/track.json"), "--out"),
) -> None:
    """Following variants side by side on DAVIS sequences: J, F, seconds per frame, and the ratio to the masks stage
    (with --stress: also J after the object comes back, and how often its presence is wrong)."""
    from ovseg.benchmarks.track import PLAIN, VARIANTS, run_track_benchmark
    from ovseg.storage.locations import write_json

    try:
        dataset = dataset_folder("davis", dataset)
        settings = _video_benchmark_settings(config, sets, variant, VARIANTS)
        report = run_track_benchmark(settings, dataset, list(sequence) or None, frames or None, list(variant) or None,
                                     log=console.print, stress=stress)  # fmt: skip
    except OvsegError as exc:
        fail(exc)
    write_json(out, report)
    plain = [row for row in report["rows"] if row["case"] == PLAIN]
    names = sorted({row["sequence"] for row in plain})
    table = Table(title=f"Following on {dataset.name} ({frames or 'all'} frames a sequence), J per sequence")
    for column in ("variant", *names, "mean J", "mean F", "s/frame", "x masks stage"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, summary in report["variants"].items():
        per = {r["sequence"]: r["J"] for r in plain if r["variant"] == name}
        table.add_row(name, *(f"{per[n]:.3f}" for n in names), f"{summary['J']:.3f}", f"{summary['F']:.3f}",
                      f"{summary['seconds_per_frame']:.2f}", f"{summary['vs_masks_stage']:.2f}")  # fmt: skip
    console.print(table)
    if stress:
        hard = Table(title="What breaks: each sequence made harder (means over sequences)")
        for column in ("variant", "case", "J", "F", "J after return", "presence wrong", "s/frame", "x masks stage"):
            hard.add_column(column, justify="left" if column in ("variant", "case") else "right")
        for name, summary in report["variants"].items():
            for case, figures in summary["cases"].items():
                after = "-" if figures["J_after"] is None else f"{figures['J_after']:.3f}"
                hard.add_row(name, case, f"{figures['J']:.3f}", f"{figures['F']:.3f}", after,
                             f"{figures['presence_wrong']:.1%}", f"{figures['seconds_per_frame']:.2f}",
                             f"{figures['vs_masks_stage']:.2f}")  # fmt: skip
        console.print(hard)
    console.print(f"masks stage: {report['masks_stage_seconds_per_frame']:.2f} s/frame; report: {out}", highlight=False)


@app.command("benchmark-video-remove")
def benchmark_video_remove(
    dataset: Path | None = typer.Option(None, "--dataset", help="Videos in DAVIS's layout." + DAVIS_DEFAULT),
    config: str = typer.Option("cpu", "--config", "-c", help=PRESET_HELP),
    seed: int = typer.Option(0, "--seed", help="Which sequence's object goes over which sequence's frames."),
    frames: int = typer.Option(0, "--frames", help="The first N frames of each case (0: all)."),
    variant: list[str] = typer.Option(
        [], "--variant", help="temporal | temporal, no shadow step | chained | frame fsr | frame telea"
    ),  # fmt: skip
    shadows: bool = typer.Option(True, "--shadow-cases/--no-shadow-cases", help="Each case again, casting a shadow."),
    short_side: int = typer.Option(
        0, "--short-side", help="Frames resized to N px on the short side (0: as they are; 240: ProPainter's protocol)."
    ),  # fmt: skip
    sets: list[str] = typer.Option([], "--set", help="Any setting, e.g. video.fill_window=20 (repeatable)."),
    out: Path = typer.Option(Path("benchmarks/video_remove.json"), "--out"),
) -> None:
    """Removal from videos against the true background: temporal fills and per-frame fills on the same moving holes."""
    from ovseg.benchmarks.video_remove import VARIANTS, run_video_remove_benchmark
    from ovseg.storage.locations import write_json

    try:
        dataset = dataset_folder("davis", dataset)
        settings = _video_benchmark_settings(config, sets, variant, VARIANTS)
        if short_side < 0 or 0 < short_side < 16:
            raise OvsegError("--short-side must be 0 or at least 16")
        report = run_video_remove_benchmark(settings, dataset, seed, frames or None, list(variant) or None,
                                            console.print, shadows, short_side or None)  # fmt: skip
    except OvsegError as exc:
        fail(exc)
    write_json(out, report)
    table = Table(title=f"Removal from {dataset.name}: moving object-shaped holes, seed {seed}")
    columns = ("variant", "PSNR (dB)", "vs FSR", "carried", "invented", "SSIM", "flicker", "vs FSR ", "ms/frame",
               "shadow PSNR", "changed PSNR")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "variant" else "right")

    def db(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for name, row in report["variants"].items():
        if "psnr" not in row:  # timed with random weights only
            table.add_row(name, row["quality"], "", "", "", "", "", "", f"{row['ms_per_frame']:.0f}", "", "")
            continue
        invented = "-" if row["invented_share"] is None else f"{db(row['psnr_invented'])} ({row['invented_share']:.0%})"
        gain, calmer = f"{row.get('psnr_vs_fsr_db', 0):+.2f}", f"{row.get('flicker_vs_fsr', 1):.2f}x"
        table.add_row(name, f"{row['psnr']:.2f}", gain, db(row["psnr_carried"]), invented, f"{row['ssim']:.3f}",
                      f"{row['flicker']:.2f}", calmer, f"{row['ms_per_frame']:.0f}", db(row.get("psnr_shadow")),
                      f"{row['psnr_changed']:.2f}")  # fmt: skip
    console.print(table)
    masks_s = report["masks_stage_seconds_per_frame"]
    if masks_s is not None:
        ratios = ", ".join(f"{name} {row['vs_masks_stage']:.2f}x" for name, row in report["variants"].items())
        console.print(f"masks stage: {masks_s:.2f} s/frame; per frame against it: {ratios}", highlight=False)
    console.print(f"report: {out}", highlight=False)


@app.command("benchmark-page-video")
def benchmark_page_video(
    clip: Path = typer.Option(Path("data/videos/bunny.mp4"), "--clip", help="A clip or a folder of frames."),
    frames: int = typer.Option(60, "--frames", help="Its first N frames."),
    point: str = typer.Option("190,200", "--point", help="X,Y: the click on the object on frame 0 (the bunny)."),
    config: str = typer.Option("cpu", "--config", "-c", help=PRESET_HELP),
    sets: list[str] = typer.Option([], "--set", help="Any setting, for both sides."),
    out: Path = typer.Option(Path("benchmarks/page_video.json"), "--out", help="Where to write the JSON report."),
) -> None:
    """The Video tab's cost over the same following on the command line, and its first click against the photo
    tab's, in one run (needs the ui extra)."""
    from ovseg.storage.locations import write_json
    from ovseg.web.measure import run_page_video_benchmark

    try:
        x, y = (float(v) for v in point.split(","))
    except ValueError:
        fail(OvsegError(f"--point is X,Y, got {point!r}"))
    try:
        report = run_page_video_benchmark(clip, frames, (x, y), config, sets, log=console.print)
    except OvsegError as exc:
        fail(exc)
    write_json(out, report)
    console.print(
        f"{report['frames']} frames {report['frame_size'][0]}x{report['frame_size'][1]}: command line "
        f"{report['cli_s']} s, page {report['page_s']} s ({report['page_over_cli']}x), page peak RSS "
        f"{report['page_peak_rss_mb']} MB; first mask after a click: video tab {report['video_click_s']} s, photo tab "
        f"{report['photo_click_s']} s ({report['video_click_over_photo']}x); a correction from frame "
        f"{report['corrected_from']}: {report['correct_s']} s ({report['correct_over_follow']}x the follow); "
        f"report: {out}"
    )
