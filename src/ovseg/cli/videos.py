"""``ovseg run --video``: the video stages on a clip, a folder of frames or a folder of clips, and their table."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from ovseg.cli.common import console
from ovseg.errors import OvsegError


def video_request(
    params: dict[str, Any],
    location: str,
    points: list[str],
    box: str | None,
    frame,
    mask,
    prompts: list[str],
    corrections: list[str] | None = None,
):
    """The request of a run on videos: what to follow (words, clicks, a box, a first mask), its corrections on
    later frames (``--correct``), and where.

    Clicks, a box or a mask on the command line replace params.yaml's ``prompt`` for the run (the prompt there
    is the pipeline's, as for clicks on photos); only a ``--prompt`` given with them is a mistake."""
    from ovseg.request import RunRequest, VideoSeeds, parse_box, parse_corrections, parse_point, split_prompt

    fixes = parse_corrections(list(corrections or []))
    seeds = VideoSeeds(corrections=fixes) if fixes else None
    if points or box or mask:
        if prompts:
            raise OvsegError("follow words, or clicks / a box / a mask: not both (give --prompt alone, or none)")
        seeds = VideoSeeds(tuple(parse_point(p) for p in points), parse_box(box) if box else None, frame or 0, mask,
                           fixes)  # fmt: skip
        prompt, classes = "", ()
    elif frame is not None:
        raise OvsegError("--frame says where --point, --box or --mask are: give one of them")
    else:
        prompt, classes = split_prompt(params.get("prompt"))
    mode = str(params.get("mode") or "segment")
    return RunRequest(
        images=str(params.get("images") or "data/images"), prompt=prompt, classes=classes, mode=mode,
        videos=str(location), seeds=seeds,
    )  # fmt: skip


def run_videos(settings, request, cache: str, output: str, visualize: bool) -> None:
    """The video stages with the engine the settings name, then one row per clip."""
    from ovseg.engines import run_pipeline
    from ovseg.pipeline import follow, frames, new_run, video_out

    if (request.seeds is None or not request.seeds.given) and not (request.prompt or request.classes):
        raise OvsegError('say what to follow: --prompt "the dog", --point X,Y [--frame N], --box or --mask first.png')
    run = new_run(settings, request, cache=cache, output=output, visualize=visualize)
    if request.prompt or request.classes:
        from ovseg.pipeline import score

        score.check_prompt(run)
    for report in run_pipeline(run):
        console.print(report.line(), highlight=False)
    records = video_out.video_records(output)
    table = Table(title=f"follow: {request.title or 'clicks, box or mask'!r}")
    for column in ("clip", "frames", "objects", "frames present, per object", "s/frame", "result"):
        table.add_column(column, justify="left" if column in ("clip", "result") else "right")
    skipped = {**frames.skipped_clips(cache), **follow.skipped_clips(cache)}
    for clip, record in records.items():
        objects = record.get("objects", [])
        present = ", ".join(f"#{o['id']} {o['label']}: {o['present']}" for o in objects) or "-"
        result = f"{output}/{video_out.RESULTS}/{clip}/{video_out.OVERLAY if visualize else 'masks/'}"
        if len(objects) > 4:
            present = ", ".join(present.split(", ")[:4]) + f", ... ({len(objects) - 4} more)"
        table.add_row(clip, str(record.get("frames")), str(len(objects)), present,
                      f"{record.get('seconds_per_frame', 0):.2f}", result)  # fmt: skip
    for name, reason in skipped.items():
        table.add_row(name, "-", "-", "-", "-", f"[yellow]skipped: {reason}[/]")
    console.print(table)
    if request.mode == "remove":
        from ovseg.pipeline import edit, fill
        from ovseg.storage.folders import OutputFolder

        out = OutputFolder(f"{output}/{fill.RESULTS}")
        for clip in records:
            record = out.record(f"{clip}/{edit.EDIT_RECORD}") or {}
            if record:
                console.print(
                    f"{clip}: removed; {record['from_frames']:.0%} of the hole pixels from other frames, "
                    f"{record['from_image']:.0%} painted ({record['backend']}), {record['seconds_per_frame']:.2f} s "
                    f"per frame -> {out.join(f'{clip}/edited.mp4')}, {out.join(f'{clip}/before_after.mp4')}",
                    highlight=False,
                )
