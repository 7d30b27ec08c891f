"""What the user gave the follow stage, placed on the clip: seeds on one frame, and corrections on later ones.

Seeds (clicks, a box, a first mask) are checked against the clip and placed on the frames taken
(:func:`place_seeds`), then handed to following as :class:`~ovseg.video.tracking.Seed` objects.

Corrections: one object followed again from a later frame, everything else kept. A correction
(:class:`ovseg.request.Correction`: clicks or a box on frame N for object K) is part of what is
followed, so it is in the follow key, and a clip followed with corrections is a tracks store like any other: the
video writer and the fill stage read it as they read any. Frames before N and the other objects are the store's
without that correction, byte for byte.

What is reused: when the store without the last correction is in the cache (the page's case: follow, look,
correct), its masks and records are copied and only object K is followed, from frame N on. Otherwise the clip is
followed from its seeds and the corrections are applied in the order given, which gives the same bytes.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ovseg.errors import OvsegError, Stopped, one_line
from ovseg.media.videoio import FRAMES_INDEX
from ovseg.pipeline import frames
from ovseg.pipeline.common import Run
from ovseg.request import outside_frame
from ovseg.storage.folders import StageFolder
from ovseg.storage.store import files_name


def taken_frames(run: Run, entry: frames.FramesEntry) -> tuple[list[int], tuple[int, int]]:
    """The clip's own frame numbers of the frames taken, in order, and their (width, height)."""
    index = run.stage_folder(frames.FOLDER).read_json(f"{files_name(entry.frames)}/{FRAMES_INDEX}") or {}
    width, height = index.get("size") or entry.size
    return [int(f["index"]) for f in index.get("frames", [])], (int(width), int(height))


def taken_position(numbers: list[int], asked: int, clip: str, option: str = "--frame", moved: str = "") -> int:
    """The position among the frames taken of the clip's frame ``asked``: the nearest one taken, with a note saying
    that ``moved`` goes there when it was not taken itself; one line for a frame outside the part taken."""
    if not numbers or not numbers[0] <= asked <= numbers[-1]:
        first, last = (numbers[0], numbers[-1]) if numbers else (0, -1)
        raise OvsegError(f"{option} {asked} is not in the part of {clip} taken: its frames {first} to {last}")
    position = int(np.argmin([abs(n - asked) for n in numbers]))
    if numbers[position] != asked:
        print(f"ovseg: note: frame {asked} of {clip} is not among the frames taken; {moved} goes on frame "
              f"{numbers[position]}, the nearest one taken", file=sys.stderr)  # fmt: skip
    return position


def inside_frame(record: dict[str, Any], width: int, height: int, clip: str, whose: str = "") -> None:
    """One line (``whose`` clicks, before it) when the record's clicks or box lie outside the clip's frame."""
    points = tuple(tuple(p) for p in record.get("points") or ())
    wrong = outside_frame(points, tuple(record["box"]) if record.get("box") else None, width, height)
    if wrong:
        raise OvsegError(f"{whose}{wrong} of {clip}")


def place_seeds(run: Run, clip: str, entry: frames.FramesEntry, seeds: dict[str, Any]) -> dict[str, Any]:
    """The seeds on the frame they were given on, as this clip's frames store numbers it, checked against the clip:
    ``--frame`` is a frame number of the clip itself, whatever ``--start``, ``--every`` or ``--fps`` took; one
    that was not taken goes to the nearest one taken, with a note. One line (an OvsegError) for a frame outside
    the part taken, a click or box outside the frame, or a mask of another size than the frames."""
    numbers, (width, height) = taken_frames(run, entry)
    position = taken_position(numbers, int(seeds.get("frame") or 0), clip, moved="what is given on it")
    inside_frame(seeds, width, height, clip)
    if seeds.get("mask"):
        ids = mask_ids(seeds["mask"])
        if ids.shape != (height, width):
            raise OvsegError(
                f"the mask {seeds['mask']} is {ids.shape[1]}x{ids.shape[0]}; the frames of {clip} are {width}x{height}"
            )
        covered = float((ids != 0).mean())
        if run.request.mode == "remove" and covered >= 0.9:
            print(f"ovseg: warning: the mask covers {covered:.0%} of the frame: removing it repaints nearly every "
                  "pixel, with little of the video left to fill from", file=sys.stderr)  # fmt: skip
    return {**seeds, "taken": position}


def mask_ids(location: str) -> np.ndarray:
    """A first mask's ids (0 background, one object per other value): an indexed or grey PNG as DAVIS's, or any
    picture (read as grey); one line when it cannot be read."""
    try:
        with Image.open(location) as picture:
            return np.asarray(picture if picture.mode in ("P", "L", "I;16", "I") else picture.convert("L"))
    except (OSError, ValueError) as exc:
        raise OvsegError(f"cannot read the mask {location}: {one_line(exc)}") from None


def seeds_for(record: dict[str, Any], shape: tuple[int, int]):
    """The user's clicks, box or first mask as :class:`~ovseg.video.tracking.Seed` objects on their frame (the position
    :func:`place_seeds` found among the frames taken).

    A mask is an indexed PNG (0 background, one object per other value, DAVIS's annotations) of the frames' size."""
    from ovseg.video.tracking import Seed

    if not record:
        return []
    frame = int(record.get("taken", record.get("frame") or 0))
    if record.get("mask"):
        ids = mask_ids(record["mask"])
        if ids.shape != shape:
            raise OvsegError(f"the mask {record['mask']} is {ids.shape[1]}x{ids.shape[0]}, not {shape[1]}x{shape[0]}")
        values = [int(v) for v in np.unique(ids) if v != 0]
        if not values:
            raise OvsegError(f"the mask {record['mask']} is empty: nothing to follow")
        label = "mask" if len(values) == 1 else "mask {}"
        return [Seed(k + 1, label.format(v), frame, mask=ids == v) for k, v in enumerate(values)]
    return [click_seed(1, frame, record)]


def click_seed(obj: int, frame: int, record: dict[str, Any]):
    """Clicks (x, y, label) and a box of ``record`` as object ``obj``'s :class:`~ovseg.video.tracking.Seed` on
    ``frame``: what a first click and a correction both give."""
    from ovseg.video.tracking import Seed

    points = np.asarray(record.get("points") or [], np.float32).reshape(-1, 3)
    box = tuple(record["box"]) if record.get("box") else None
    return Seed(
        obj, "box" if box and not len(points) else "click", frame, points=points[:, :2] if len(points) else None,
        labels=points[:, 2].astype(np.int64) if len(points) else None, box=box,
    )  # fmt: skip


def place_corrections(run: Run, clip: str, entry: frames.FramesEntry, fixes: list[dict[str, Any]]) -> list[dict]:
    """Each correction with the position of its frame among the frames taken (``taken``), checked against the clip:
    one line for a frame outside the part taken, or a click or box outside the frame."""
    numbers, (width, height) = taken_frames(run, entry)
    placed = []
    for fix in fixes:
        position = taken_position(numbers, int(fix["frame"]), clip, "the correction on frame", "its correction")
        inside_frame(fix, width, height, clip, f"the correction on frame {fix['frame']}: ")
        placed.append({**fix, "taken": position})
    return placed


def copy_base(store: StageFolder, base: str, partial: Path, index_name: str) -> dict[str, Any]:
    """The tracks store ``base`` (the clip without the last correction) copied into ``partial``: its masks, and its
    index (returned) from which the objects' records are taken."""
    with store.files(base) as folder:
        if (partial / "masks").exists():
            shutil.rmtree(partial / "masks")
        shutil.copytree(folder / "masks", partial / "masks")
        return json.loads((folder / index_name).read_text())


def apply_correction(
    run: Run, propagator, video, masks: Path, fix: dict[str, Any], per_frame: dict[int, dict[int, Any]], record
) -> Any:
    """Object ``fix['obj']`` followed again from its frame on, written over its old pixels in each frame's ids PNG
    (other objects' ids kept, except under its new mask: the user's word is the latest); ``per_frame`` gets its new
    records (``record``: an ObjectMask -> the tracks index's frame record). Returns the seed (what the object is,
    for a new one)."""
    from tqdm import tqdm

    from ovseg.media.viz import label_image
    from ovseg.video.tracking import refollow

    seed = click_seed(int(fix["obj"]), int(fix["taken"]), fix)
    steps = tqdm(refollow(propagator, video, seed), desc=f"correct #{seed.obj} from frame {fix['frame']}",
                 total=len(video) - seed.frame, unit="frame", leave=False)  # fmt: skip
    for frame, found in steps:
        path = masks / f"{frame:05d}.png"
        with Image.open(path) as picture:
            ids = np.array(picture)
        if seed.obj > np.iinfo(ids.dtype).max:
            ids = ids.astype(np.uint16)
        ids[ids == seed.obj] = 0
        if found.present:
            ids[found.mask] = seed.obj
        label_image(ids, max(1, int(ids.max()))).save(path)
        per_frame.setdefault(frame, {})[seed.obj] = record(found)
        if run.stopping and frame < len(video) - 1:  # after the last frame there is nothing left to stop
            raise Stopped(f"stopped while correcting object {seed.obj} (frame {frame}): follow again to finish")
    return seed
