"""What a user asks of a run, apart from how the models are set: which photos, what to find, what to do.

Why apart from :class:`~ovseg.config.Settings`: the model settings (presets, per-stage
knobs) make sense without any prompt (a web page before its first question, a benchmark,
an evaluation that brings its own class names), while a request makes sense only with
them. Keeping the two apart means no caller has to invent a placeholder prompt to build
the settings, and a request is checked on its own terms (an empty prompt, an unknown mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ovseg.errors import OvsegError

MODES = ("segment", "remove", "replace", "style")
EMPTY_PROMPT = 'the prompt is empty: say what to find, e.g. --prompt "the red car"'


def prompt_synonyms(prompt: str) -> list[str]:
    """``"sofa|couch"`` -> ``["sofa", "couch"]``: a mask's score is its best over the synonyms."""
    names = [part.strip() for part in prompt.split("|") if part.strip()]
    if not names:
        raise OvsegError(EMPTY_PROMPT)
    return names


def parse_point(text: str, option: str = "--point") -> tuple[float, float, int]:
    """``X,Y`` or ``X,Y,LABEL`` (1 include, 0 exclude) as numbers, or one line saying what is wrong."""
    parts = str(text).split(",")
    try:
        values = [float(v) for v in parts]
    except ValueError:
        values = []
    if len(values) not in (2, 3) or (len(values) == 3 and values[2] not in (0, 1)):
        raise OvsegError(f"{option} {text!r}: expected X,Y or X,Y,LABEL with LABEL 1 (include) or 0 (exclude)")
    return values[0], values[1], int(values[2]) if len(values) == 3 else 1


def parse_box(text: str, option: str = "--box") -> tuple[float, float, float, float]:
    """``X1,Y1,X2,Y2`` as numbers with X2 > X1 and Y2 > Y1, or one line saying what is wrong."""
    try:
        x1, y1, x2, y2 = (float(v) for v in str(text).split(","))
    except ValueError:
        raise OvsegError(f"{option} {text!r}: expected X1,Y1,X2,Y2 (pixels of the photo)") from None
    if x2 <= x1 or y2 <= y1:
        raise OvsegError(f"{option} {text!r}: X2 must be right of X1 and Y2 below Y1")
    return x1, y1, x2, y2


def outside_frame(
    points: tuple[tuple[float, float, int], ...], box: tuple[float, float, float, float] | None, width: int, height: int
) -> str | None:
    """What of the clicks and box lies outside a ``width`` x ``height`` picture, as one line, or None (the photos'
    rule: a click is a pixel, ``0 <= x < width``; a box's corners may touch the far edges)."""
    for x, y, _ in points:
        if not (0 <= x < width and 0 <= y < height):
            return f"point ({x:g}, {y:g}) is outside the {width}x{height} frame"
    if box is not None:
        x1, y1, x2, y2 = box
        if min(x1, y1) < 0 or x2 > width or y2 > height:
            return f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) goes outside the {width}x{height} frame"
    return None


@dataclass(frozen=True)
class Correction:
    """Clicks (or a box) on a later frame that put one object right from there on.

    Object ``obj`` is followed again from ``frame`` (the clip's own frame number), its mask there made from these
    clicks as a first click's is; the frames before it and every other object stay as they were, so a correction
    costs the frames after it only, not the whole clip (what SAM 2's demo does with a click on a later frame).
    """

    frame: int
    points: tuple[tuple[float, float, int], ...] = ()
    box: tuple[float, float, float, float] | None = None
    obj: int = 1

    def __post_init__(self) -> None:
        if self.frame < 0:
            raise OvsegError(f"a correction's frame must be 0 or more, got {self.frame}")
        if self.obj < 1:
            raise OvsegError(f"a correction's object must be 1 or more, got {self.obj}")
        if self.box is None and not any(label == 1 for *_, label in self.points):
            raise OvsegError(f"the correction on frame {self.frame} needs an include click (X,Y or X,Y,1) or a box")


def parse_corrections(texts: list[str], option: str = "--correct") -> tuple[Correction, ...]:
    """``FRAME:X,Y[,LABEL]`` or ``K@FRAME:X,Y[,LABEL]`` (object K, 1 when not said), one click each, as corrections:
    the clicks of one object on one frame make one correction, in the order first given."""
    grouped: dict[tuple[int, int], list[tuple[float, float, int]]] = {}
    for text in texts:
        head, sep, click = str(text).partition(":")
        obj, _, frame = head.rpartition("@") if "@" in head else ("1", "", head)
        try:
            number, which = int(frame), int(obj)
        except ValueError:
            number = which = -1
        if not sep or number < 0 or which < 1:
            raise OvsegError(f"{option} {text!r}: expected FRAME:X,Y[,LABEL] or OBJECT@FRAME:X,Y[,LABEL]")
        grouped.setdefault((which, number), []).append(parse_point(click, option))
    return tuple(Correction(frame, tuple(points), None, obj) for (obj, frame), points in grouped.items())


@dataclass(frozen=True)
class VideoSeeds:
    """What to follow in a video besides words: clicks (x, y, label) or a box on ``frame``, or a first mask; and
    corrections on later frames (also of what words found, when the seeds hold nothing else).

    ``mask``: an indexed PNG (0 background, one object per other value: DAVIS's annotations), on ``frame``.
    """

    points: tuple[tuple[float, float, int], ...] = ()
    box: tuple[float, float, float, float] | None = None
    frame: int = 0
    mask: str | None = None
    corrections: tuple[Correction, ...] = ()

    @property
    def given(self) -> bool:
        """Whether the seeds say what to follow (clicks, a box, a mask), rather than only correct what words found."""
        return bool(self.points) or self.box is not None or self.mask is not None

    def __post_init__(self) -> None:
        if self.frame < 0:
            raise OvsegError(f"--frame must be 0 or more, got {self.frame}")
        if self.mask is not None:
            from pathlib import Path

            if self.points or self.box is not None:
                raise OvsegError("give a first mask, or clicks and a box, not both")
            if not Path(self.mask).is_file():
                raise OvsegError(f"mask not found: {self.mask}")
        elif not self.points and self.box is None:
            if not self.corrections:
                raise OvsegError("say what to follow: --point X,Y, --box X1,Y1,X2,Y2 or --mask first.png")
        elif self.box is None and not any(label == 1 for *_, label in self.points):
            raise OvsegError("a click to follow needs at least one include point (X,Y or X,Y,1) or a box")


@dataclass(frozen=True)
class RunRequest:
    """One run's question.

    ``images``: a photo, or a folder of photos (path or URL), or a tuple of photos (an
    evaluation's labelled images, which need not be all of their folder). ``prompt``: what to find, in
    plain language (``"sofa|couch"`` lists synonyms). ``mode``: segment, or remove / replace /
    style the region found. ``edit_prompt``: what replace and style paint. ``recursive``: read
    sub-folders too.
    """

    images: str | tuple[str, ...] = "data/images"
    prompt: str = ""
    mode: str = "segment"
    edit_prompt: str = ""
    recursive: bool = False  # also the photos in sub-folders, their results mirroring the folders
    classes: tuple[str, ...] = ()  # several classes at once (labelling): each may list synonyms, "sofa|couch"
    videos: str | None = None  # a clip, a folder of frames, or a folder of clips: the run is on videos
    seeds: VideoSeeds | None = None  # videos: clicks, a box or a first mask to follow (besides words)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise OvsegError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.prompt:
            prompt_synonyms(self.prompt)  # "|" alone names nothing: say so now, not after the models load
        if self.classes:
            check_classes(self.classes)
            if self.prompt:
                raise OvsegError("give one prompt or a list of classes, not both")
        if self.seeds is not None and self.videos is None:
            raise OvsegError("--frame and --mask are for videos (--video); clicks on a photo go with --image")
        if self.videos is not None and self.mode not in ("segment", "remove"):
            raise OvsegError(f"videos can be segmented or have things removed, not {self.mode} (yet)")

    @property
    def title(self) -> str:
        """What the run looks for, as people read it: the prompt, or the classes joined by " + "."""
        return self.prompt or " + ".join(self.classes)

    @property
    def edits(self) -> bool:
        """Whether the run paints (remove, replace, style) after segmenting."""
        return self.mode != "segment"

    def require_prompt(self) -> str:
        """The prompt (or the classes' title), or one line saying that a run on words needs one."""
        if not self.prompt and not self.classes:
            raise OvsegError(EMPTY_PROMPT)
        return self.title


def check_classes(classes: tuple[str, ...]) -> None:
    """Each class names something, and no class is given twice (its instances would be split at random)."""
    seen: dict[str, str] = {}
    for name in classes:
        for synonym in prompt_synonyms(name):
            bare = synonym.lower()
            if bare in seen:
                raise OvsegError(f"class {synonym!r} is given twice (in {seen[bare]!r} and {name!r})")
            seen[bare] = name


def split_prompt(value: Any) -> tuple[str, tuple[str, ...]]:
    """params.yaml's ``prompt``: one text (one thing to find) or a list (several classes, labelled apart).

    A list of one is the same run as that text alone, so its results and caches are shared.
    """
    if isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value]
        if any(not item for item in items):
            raise OvsegError(f"the prompt list has an empty class: {list(value)!r}")
        if len(items) == 1:
            return items[0], ()
        return "", tuple(items)
    return str(value or "").strip(), ()


def request_from_params(params: dict[str, Any]) -> RunRequest:
    """The request part of params.yaml (or of ``ovseg run``'s options merged into it)."""
    prompt, classes = split_prompt(params.get("prompt"))
    videos = params.get("videos")
    return RunRequest(
        images=str(params.get("images") or "data/images"),
        prompt=prompt,
        classes=classes,
        mode=str(params.get("mode") or "segment"),
        edit_prompt=str(params.get("edit_prompt") or "").strip(),
        recursive=_flag(params.get("recursive", False)),
        videos=str(videos) if videos else None,
        seeds=seeds_from_params(params.get("follow")) if videos else None,
    )


def seeds_from_params(follow: Any) -> VideoSeeds | None:
    """params.yaml's ``follow`` section (``points``, ``box``, ``frame``, ``mask``, ``corrections``: a list of
    ``FRAME:X,Y[,LABEL]`` as ``--correct`` takes), or None when it gives nothing."""
    if not follow:
        return None
    if not isinstance(follow, dict):
        raise OvsegError(f"parameter follow must be a mapping (points, box, frame, mask), got {follow!r}")
    unknown = sorted(set(follow) - {"points", "box", "frame", "mask", "corrections"})
    if unknown:
        raise OvsegError(f"unknown parameter follow.{unknown[0]} (known: box, corrections, frame, mask, points)")
    points = tuple(parse_point(p, "follow.points") for p in follow.get("points") or [])
    box = parse_box(follow["box"], "follow.box") if follow.get("box") else None
    listed = follow.get("corrections") or []
    if not isinstance(listed, list):
        raise OvsegError(f'parameter follow.corrections must be a list of "FRAME:X,Y[,LABEL]", got {listed!r}')
    corrections = parse_corrections([str(c) for c in listed], "follow.corrections")
    if not points and box is None and not follow.get("mask") and not corrections:
        return None
    frame = follow.get("frame") or 0
    if isinstance(frame, bool) or not isinstance(frame, int):
        raise OvsegError(f"parameter follow.frame must be a frame number, got {frame!r}")
    return VideoSeeds(points, box, frame, str(follow["mask"]) if follow.get("mask") else None, corrections)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise OvsegError(f"parameter recursive must be true or false, got {value!r}")
    return value
