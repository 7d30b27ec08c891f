"""Video stage 2, ``follow``: each clip's objects followed through every frame, one clip at a time, in order.

Writes ``cache/tracks/<key>.files/``: ``masks/NNNNN.png`` (one indexed PNG per frame, 0 background,
k object k, DAVIS's format) and ``tracks.json`` (:class:`TracksIndex`). What is followed:

* **words** (the prompt, or several classes): the photo stages (masks, embed, score) run on the
  clip's keyframes, under ``cache/video/``, cached as for any photo, so a new prompt reruns no mask
  model; every instance found there is followed (:func:`ovseg.video.tracking.follow`);
* **clicks or a box** on one frame (``--point X,Y --frame N``, ``--box``), or **a first mask**
  (``--mask first.png``: an indexed PNG, one object per id, DAVIS's semi-supervised start);
* and **corrections** (``--correct N:X,Y``): one object followed again from a later frame, the frames before it
  and the other objects kept (:mod:`ovseg.pipeline.seeds`).

The key is ``hash(version, the frames, what is followed (clicks, box, the mask's bytes; the
keyframes' scores keys for words), the video settings, the propagation backend and its
weights)``: a click change reruns this stage alone (and the video writer), never the decoder or
a mask model of the keyframes.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovseg.errors import OvsegError
from ovseg.media.fileio import content_key, sha256_bytes
from ovseg.pipeline import embed, frames, masks, score, seeds
from ovseg.pipeline.common import Engine, Item, LazyModel, ModelPool, Plan, Result, Run, Stage, StageReport, run_stages
from ovseg.pipeline.found import candidates
from ovseg.pipeline.plans import record_fields, warn_skipped
from ovseg.request import RunRequest
from ovseg.storage.folders import StageFolder
from ovseg.storage.store import files_name
from ovseg.weights.registry import model_fingerprint

VERSION = "follow-v2"  # v2: flow-sam's memory; seeds placed on the clip's own frame numbers
FOLDER = "tracks"
KEYFRAMES_CACHE = "video"  # the photo stages' folders for keyframes: <cache>/video/{masks,embeddings,scores}
TRACKS_INDEX = "tracks.json"
CHECKPOINT = "checkpoint.pkl"  # in a clip's partial store while it is followed: where to go on from after a stop
CHECKPOINT_EVERY = 10  # frames


@dataclass
class TracksIndex:
    """``tracks.json`` of a tracks store: the clip's frames, and per object what it is and what happened to it.

    ``objects``: per object ``id``, ``label`` (the prompt or class, ``click``, ``box``, ``mask k``),
    ``category`` (1-based class, words only), ``first_frame``, and per frame ``score``, ``present``,
    ``box`` (XYWH or None), ``area``. Following's seconds per frame are the store's marker's (a store holds
    no timings, so every engine writes the same bytes): :func:`seconds_per_frame`.
    """

    clip: str
    frames: int
    size: list[int]
    fps: float
    propagator: str
    objects: list[dict[str, Any]] = field(default_factory=list)
    classes: list[str] | None = None


def query_of(request: RunRequest) -> tuple[str, ...] | None:
    """What words ask for, as classes (one prompt is one class), or None for clicks, a box or a mask."""
    if request.classes:
        return tuple(request.classes)
    return (request.prompt,) if request.prompt else None


def keyframes_of(count: int, cuts: list[int], every: int) -> list[int]:
    """The first frame, every ``every``-th, and the scene cuts: where words are looked for."""
    return sorted({0, *range(0, count, max(1, every)), *(c for c in cuts if c < count)})


def _keyframe_run(run: Run, photos: tuple[str, ...]) -> Run:
    """The photo stages' run on a clip's keyframes: their own cache root, nothing pruned, no pictures."""
    request = RunRequest(images=photos)
    cache = f"{str(run.cache).rstrip('/')}/{KEYFRAMES_CACHE}"
    return dataclasses.replace(run, request=request, cache=cache, prune=False, visualize=False)


def score_keyframes(run: Run, engine: Engine, entry: frames.FramesEntry, query: tuple[str, ...]) -> dict[int, dict]:
    """The photo stages on one clip's keyframes (cached like any photo): keyframe -> its masks and scores keys."""
    keyframes = keyframes_of(entry.count, entry.cuts or [], run.settings.video.keyframe_every)
    store = run.stage_folder(frames.FOLDER)
    photos = tuple(store.join(f"{files_name(entry.frames)}/{k:05d}.jpg") for k in keyframes)
    sub = _keyframe_run(run, photos)
    run_stages(sub, engine, [masks.STAGE, embed.STAGE])
    per_photo = score.scores_for(sub, engine, [query])[query]
    return {k: {"masks": per_photo[f"{k:05d}"].masks, "scores": per_photo[f"{k:05d}"].scores} for k in keyframes}


def follow_key(run: Run, entry: frames.FramesEntry, placed: dict[str, Any], keyframes: dict, query) -> str:
    from ovseg.video import propagator_name, tracker_weights

    name = propagator_name(run.settings)
    return content_key(
        VERSION, entry.frames, placed, keyframes, list(query or []), run.settings.section("video"),
        run.settings.section("instances"), name,
        *(tracker_weights(run.settings, name) or [model_fingerprint(run.settings.masks.model, None)]),
    )  # fmt: skip


def seed_record(request: RunRequest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What the user gave to follow, as plain values for the key and the workers (the mask by its bytes), and the
    corrections on later frames (:mod:`ovseg.pipeline.seeds`); ``{}`` when words say what to follow."""
    asked = request.seeds
    if asked is None:
        return {}, []
    record = dataclasses.asdict(asked)
    fixes = record.pop("corrections")
    if not asked.given:
        return {}, fixes
    if asked.mask:
        data = Path(asked.mask).read_bytes()
        record["mask_sha256"] = sha256_bytes(data)
    return record, fixes


@dataclass
class ClipTracks:
    """One clip's entry in ``cache/tracks/manifest.json`` (under ``clips``): its frames store and tracks store."""

    frames: str
    tracks: str


@dataclass
class TracksItem(Item):
    """A clip whose tracks are made into something (a video, a fill): its frames store and tracks store."""

    frames: str = ""
    tracks: str = ""


@dataclass
class FollowItem(Item):
    """A clip to follow: its frames store, what was given to follow and where, each keyframe's masks and scores
    keys (following words), the classes, the corrections on later frames, and the tracks store without the last
    correction when it is in the cache (``base``: copied, not followed again)."""

    frames: str = ""
    seeds: dict[str, Any] = field(default_factory=dict)
    keyframes: dict[int, dict[str, str]] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    corrections: list[dict[str, Any]] = field(default_factory=list)
    base: str = ""


@dataclass
class FollowState:
    """What ``finish`` needs: each clip's entry, and the clips left out and why."""

    entries: dict[str, ClipTracks] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def plan(run: Run, engine: Engine) -> Plan[FollowState]:
    entries = frames.clip_entries(run.cache)
    given, fixes = seed_record(run.request)
    query = None if given else query_of(run.request)  # clicks, a box or a mask replace the prompt
    if not given and query is None:
        raise OvsegError('say what to follow: --prompt "the dog", --point X,Y [--frame N], --box or --mask first.png')
    done = run.stage_folder(FOLDER).done_keys()
    plan = Plan(state=FollowState())
    for name, entry in entries.items():
        placed, corrected = given, []
        try:
            placed = seeds.place_seeds(run, name, entry, given) if given else given
            corrected = seeds.place_corrections(run, name, entry, fixes)
        except OvsegError as exc:  # a click off this clip: the run stops on one clip, a batch goes on
            if run.settings.strict or len(entries) == 1:
                raise
            warn_skipped(entry.video, str(exc))
            plan.state.skipped[name] = str(exc)
            continue
        keyframes = score_keyframes(run, engine, entry, query) if query else {}
        key = follow_key(run, entry, with_corrections(placed, corrected), keyframes, query)
        plan.state.entries[name] = ClipTracks(entry.frames, key)
        if key in done:
            plan.reused.append(name)
            continue
        base = follow_key(run, entry, with_corrections(placed, corrected[:-1]), keyframes, query) if corrected else ""
        plan.items.append(FollowItem(name, key, entry.frames, placed, keyframes, list(query or []), corrected,
                                     base if base in done else ""))  # fmt: skip
    if not plan.state.entries:
        first = next(iter(plan.state.skipped.values()))
        raise OvsegError(f"nothing to follow in any of the {len(entries)} videos (first: {first})")
    return plan


def with_corrections(placed: dict[str, Any], fixes: list[dict[str, Any]]) -> dict[str, Any]:
    """What is followed, as the key hashes it: the seeds, and the corrections when there are any (so a run without
    corrections keeps the key it always had)."""
    return {**placed, "corrections": fixes} if fixes else placed


def instance_finder(run: Run, keyframes: dict[int, dict[str, str]], shape: tuple[int, int]):
    """A function keyframe -> the instances words found there (the photo stages' stores under ``cache/video``)."""
    from ovseg.media.viz import resize_mask
    from ovseg.ranking.selection import select_instances
    from ovseg.video.tracking import Found

    cache = f"{str(run.cache).rstrip('/')}/{KEYFRAMES_CACHE}"

    def find(frame: int) -> list[Found]:
        keys = keyframes[frame]
        proposals = candidates(StageFolder(cache, masks.FOLDER), StageFolder(cache, score.FOLDER), keys["masks"],
                               keys["scores"])  # fmt: skip
        class_scores = StageFolder(cache, score.FOLDER).read_store(keys["scores"], ["class_scores"])[0]["class_scores"]
        settings = run.settings
        found = select_instances(class_scores, proposals.masks, settings.instances, settings.select.min_area_frac)
        return [
            Found(resize_mask(proposals.masks[i], shape[::-1]), c, s)
            for i, c, s in zip(found.indices, found.classes, found.scores, strict=True)
        ]

    return find


def load(run: Run):
    from ovseg.video import load_propagator

    return load_propagator(run.settings, run.device)


def model_key(run: Run) -> str:
    return ModelPool.key(
        "propagator", [run.settings.section("video"), run.settings.masks.model, run.settings.find.sam3_model]
    )


def compute(run: Run, shared: None, model: LazyModel, item: FollowItem) -> Result:
    from ovseg.media.videoio import FrameFolder
    from ovseg.video.tracking import TrackInfo

    started = time.perf_counter()
    store = run.stage_folder(FOLDER)
    with run.stage_folder(frames.FOLDER).files(item.frames) as path, store.partial(item.key) as partial:
        video = FrameFolder(path)
        height, width = video[0].shape[:2]
        propagator = model.get()
        fixes, earlier = item.corrections, 0.0
        if item.base:  # the clip without the last correction is in the cache: its frames are copied
            base = seeds.copy_base(store, item.base, partial, TRACKS_INDEX)
            tracks = {o["id"]: TrackInfo(o["id"], o["label"], o["category"], o["first_frame"]) for o in base["objects"]}
            per_frame = {f: {o["id"]: o["frames"][f] for o in base["objects"]} for f in range(len(video))}
            fixes, earlier = fixes[-1:], seconds_per_frame(run, item.base) * len(video)
        else:
            tracks, per_frame, earlier = _follow_all(run, item, propagator, video, partial)
        for fix in fixes:
            seed = seeds.apply_correction(run, propagator, video, partial / "masks", fix, per_frame, _frame_record)
            tracks.setdefault(seed.obj, TrackInfo(seed.obj, seed.label, None, seed.frame))
        seconds = earlier + time.perf_counter() - started
        index = TracksIndex(
            clip=item.stem, frames=len(video), size=[width, height], fps=video.fps, propagator=propagator.name,
            objects=_objects(tracks, per_frame, len(video)),
            classes=item.classes or None,
        )  # fmt: skip
        (partial / TRACKS_INDEX).write_text(json.dumps(dataclasses.asdict(index), indent=1))
        per_frame_s = round(seconds / len(video), 4)
        record = {"seconds": round(seconds, 3), "seconds_per_frame": per_frame_s, "engine": run.engine}
        store.publish_files(item.key, partial, record)
    return Result(item.stem)


def _follow_all(run: Run, item: FollowItem, propagator, video, partial: Path) -> tuple[dict, dict, float]:
    """Every frame of the clip followed from its seeds or words, each frame's ids PNG written into ``partial`` as it
    comes (going on from a checkpoint a stopped run kept): the objects, their per-frame records, and the seconds a
    stopped run had spent. A Stop (``run.stopping``) keeps a checkpoint, so following again goes on from there."""
    from tqdm import tqdm

    from ovseg.errors import Stopped
    from ovseg.media.viz import label_image
    from ovseg.video.tracking import Following, FollowPlan, label_map

    started = time.perf_counter()
    height, width = video[0].shape[:2]
    plan = FollowPlan(
        frames=len(video),
        seeds=seeds.seeds_for(item.seeds, (height, width)),
        keyframes=sorted(item.keyframes),
        find=instance_finder(run, item.keyframes, (height, width)) if item.keyframes else None,
        classes=item.classes,
    )
    saved = _checkpoint(partial, item.key)
    tracks: dict[int, Any] = {}
    per_frame: dict[int, dict[int, Any]] = saved["per_frame"] if saved else {}
    earlier = saved["seconds"] if saved else 0.0
    following = Following(propagator, video, plan, tracks, resume=saved["following"] if saved else None)
    if saved:
        print(f"ovseg: {item.stem}: going on from the {following.done} frames followed before the stop",
              file=sys.stderr)  # fmt: skip
    (partial / "masks").mkdir(exist_ok=True)
    steps = tqdm(following, desc=f"follow {item.stem}", total=len(video), initial=following.done,
                 unit="frame", leave=False)  # fmt: skip
    for frame, found in steps:
        labels = label_map(found, (height, width))
        label_image(labels, max(1, int(labels.max()))).save(partial / "masks" / f"{frame:05d}.png")
        per_frame[frame] = {obj: _frame_record(o) for obj, o in found.items()}
        stopping = run.stopping and following.done < len(video)
        if stopping or (following.done % CHECKPOINT_EVERY == 0 and following.done < len(video)):
            seconds = earlier + time.perf_counter() - started
            _keep_checkpoint(partial, item.key, following.checkpoint(), per_frame, seconds)
        if stopping:
            then = (
                "following again goes on from its last checkpoint"
                if (partial / CHECKPOINT).is_file()
                else "following again starts over"
            )
            raise Stopped(f"stopped after {following.done} of {len(video)} frames of {item.stem}: {then}")
    (partial / CHECKPOINT).unlink(missing_ok=True)
    return tracks, per_frame, earlier


def _checkpoint(partial: Path, key: str) -> dict[str, Any] | None:
    """What a stopped run of ``key`` kept in its partial store (:func:`_keep_checkpoint`), or None (none, another
    version's, or unreadable: then following starts again from the first frame)."""
    import pickle

    path = partial / CHECKPOINT
    if not path.is_file():
        return None
    try:
        saved = pickle.loads(path.read_bytes())  # our own file, in the cache folder this run writes to
    except Exception:  # noqa: BLE001 - a checkpoint that cannot be read is only work to redo
        return None
    if not isinstance(saved, dict) or saved.get("version") != VERSION or saved.get("key") != key:
        return None
    return saved if saved.get("following") is not None else None


def _keep_checkpoint(partial: Path, key: str, following, per_frame: dict, seconds: float) -> None:
    """Where following stands (:meth:`~ovseg.video.tracking.Following.checkpoint`), written whole beside the masks
    written so far: a run killed after it goes on from there. Nothing when the propagator cannot snapshot."""
    import pickle

    from ovseg.storage.locations import atomic_path

    if following is None:
        return
    data = {"version": VERSION, "key": key, "following": following, "per_frame": per_frame, "seconds": seconds}
    with atomic_path(partial / CHECKPOINT) as tmp:
        tmp.write_bytes(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))


def seconds_per_frame(run: Run, key: str) -> float:
    """How long following took per frame for the tracks store ``key`` (from its marker; 0 if unknown)."""
    return float(run.stage_folder(FOLDER).marker(key).get("seconds_per_frame") or 0.0)


def _frame_record(found) -> dict[str, Any]:
    from ovseg.media.rle import box_xywh

    present = bool(found.present and found.mask.any())
    return {
        "score": round(float(found.score), 4),
        "present": present,
        "box": box_xywh(found.mask) if present else None,
        "area": int(found.mask.sum()) if present else 0,
    }


def _objects(tracks: dict[int, Any], per_frame: dict[int, dict[int, Any]], count: int) -> list[dict[str, Any]]:
    absent = {"score": 0.0, "present": False, "box": None, "area": 0}
    objects = []
    for obj, info in sorted(tracks.items()):
        frames_of = [per_frame.get(f, {}).get(obj, absent) for f in range(count)]
        objects.append({"id": obj, "label": info.label, "category": info.category, "first_frame": info.first_frame,
                        "frames": frames_of})  # fmt: skip
    return objects


def finish(run: Run, plan: Plan[FollowState], results: list[Result]) -> StageReport:
    report = plan.report("follow", results, list(plan.state.skipped))
    clips = {name: dataclasses.asdict(entry) for name, entry in plan.state.entries.items()}
    manifest = {"clips": clips, "skipped": plan.state.skipped, "run": report.record(run.engine)}
    run.stage_folder(FOLDER).update_json(manifest, ignore=("run",))
    return report


def tracks_entries(cache: str) -> dict[str, ClipTracks]:
    """Clip -> its frames and tracks keys, from the follow stage's latest run."""
    manifest = StageFolder(str(cache), FOLDER).read_json()
    if manifest is None:
        raise OvsegError("tracks/manifest.json not found: run the follow stage first (`dvc repro` or `ovseg run`)")
    return {name: ClipTracks(**record_fields(ClipTracks, entry)) for name, entry in manifest["clips"].items()}


def skipped_clips(cache: str) -> dict[str, str]:
    """The clips the follow stage's latest run left out, and why (a click off the clip, a frame not taken)."""
    return (StageFolder(str(cache), FOLDER).read_json() or {}).get("skipped", {})


def describe(run: Run) -> str:
    from ovseg.video import propagator_name

    return f"follow ({propagator_name(run.settings)})"


STAGE = Stage.of(__name__, "follow", cache=FOLDER)
