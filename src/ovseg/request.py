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

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise OvsegError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.prompt:
            prompt_synonyms(self.prompt)  # "|" alone names nothing: say so now, not after the models load
        if self.classes:
            check_classes(self.classes)
            if self.prompt:
                raise OvsegError("give one prompt or a list of classes, not both")

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
    return RunRequest(
        images=str(params.get("images") or "data/images"),
        prompt=prompt,
        classes=classes,
        mode=str(params.get("mode") or "segment"),
        edit_prompt=str(params.get("edit_prompt") or "").strip(),
        recursive=_flag(params.get("recursive", False)),
    )


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise OvsegError(f"parameter recursive must be true or false, got {value!r}")
    return value
