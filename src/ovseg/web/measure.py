"""``ovseg benchmark-page-video``: what the page's Video tab costs over the same work on the command line.

In one process, on one clip, each side with a fresh cache:
- the command line's work: what ``ovseg run --video CLIP --point X,Y --end N-1`` runs (the frames, follow and
  video_out stages: decoding, following, overlay.mp4, tracks.json), without starting a new interpreter;
- the page: the Video tab's own actions (:class:`ovseg.web.video_bench.VideoBench`): open (decode), then follow,
  which also writes what the tab offers (overlay.mp4, tracks.json, masks.zip);
- the first mask after a click: the Video tab's click on a frame against the photo tab's first click on the same
  frame saved as a photo, each on a page whose models are loaded;
- a correction from two thirds into the clip (a click there, Correct) against the follow before it: the frames
  before it are reused, so it should cost about the third it follows again.

The peak RSS is sampled while the page follows.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ovseg.benchmarks.kit import PeakMemory, machine


def run_page_video_benchmark(
    clip: Path, frames: int, click: tuple[float, float], config: str, sets: list[str], log: Callable[[str], None]
) -> dict[str, Any]:
    from ovseg.config import apply_overrides, settings_from_params
    from ovseg.engines import run_pipeline
    from ovseg.media.videoio import FrameFolder
    from ovseg.pipeline import VIDEO_STAGES, new_run
    from ovseg.request import RunRequest, VideoSeeds
    from ovseg.web.page import PageState, Workbench
    from ovseg.web.video_bench import VideoBench

    x, y = click
    with tempfile.TemporaryDirectory(prefix="ovseg-page-video-") as tmp:
        root = Path(tmp)
        params = apply_overrides({"preset": config, "device": "cpu", "video": {"end": str(frames - 1)}}, sets)
        request = RunRequest(videos=str(clip), seeds=VideoSeeds(((x, y, 1),), None, 0, None))
        started = time.perf_counter()
        run = new_run(settings_from_params(params), request, cache=str(root / "cli-cache"), output=str(root / "out"))
        run_pipeline(run, list(VIDEO_STAGES[:3]))  # frames, follow, video_out: what `ovseg run --video` writes
        cli_s = time.perf_counter() - started
        log(f"command line: {cli_s:.1f} s")

        bench = Workbench(root / "page-cache", "cpu", sets, root / "scratch")
        videos = VideoBench(bench, max_frames=max(frames, 1))
        with PeakMemory() as memory:
            started = time.perf_counter()
            state = videos.open(str(clip), config, "", str(frames - 1), 1)
            opened = time.perf_counter()
            state = videos.click(state, config, x, y, "include")  # the model loads here: not counted in the follow
            clicked = time.perf_counter()
            state = videos.follow(state, config, "")
            follow_s = time.perf_counter() - clicked
            page_s = (opened - started) + follow_s
        log(f"page: {page_s:.1f} s (open + follow), peak RSS {memory.peak_rss / 2**20:.0f} MB")

        # first clicks, models loaded: a new frame in the Video tab, and the same frame as a photo in the photo tab
        state.shown = len(state.clip) - 1
        started = time.perf_counter()
        videos.click(state, config, x, y, "include")
        video_click_s = time.perf_counter() - started
        photo = root / "frame.png"
        from PIL import Image

        Image.fromarray(FrameFolder(state.clip.folder)[0]).save(photo)
        started = time.perf_counter()
        bench.segment(PageState(photo=str(photo), clicks=[(x, y, 1)]), config, "", 1)
        photo_click_s = time.perf_counter() - started
        log(f"first mask after a click: video tab {video_click_s:.2f} s, photo tab {photo_click_s:.2f} s")

        state.shown = corrected_from = 2 * len(state.clip) // 3
        state = videos.click(state, config, x, y, "include")
        started = time.perf_counter()
        videos.correct(state, config, 1)
        correct_s = time.perf_counter() - started
        log(f"correct from frame {corrected_from}: {correct_s:.1f} s, against {follow_s:.1f} s for the whole follow")
        return {
            "clip": str(clip),
            "frames": len(state.clip),
            "frame_size": list(state.clip.size),
            "preset": config,
            **machine("cpu"),
            "cli_s": round(cli_s, 2),
            "page_s": round(page_s, 2),
            "page_over_cli": round(page_s / cli_s, 3),
            "page_peak_rss_mb": round(memory.peak_rss / 2**20, 1),
            "video_click_s": round(video_click_s, 3),
            "photo_click_s": round(photo_click_s, 3),
            "video_click_over_photo": round(video_click_s / photo_click_s, 3),
            "follow_s": round(follow_s, 2),
            "corrected_from": corrected_from,
            "correct_s": round(correct_s, 2),
            "correct_over_follow": round(correct_s / follow_s, 3),
        }
