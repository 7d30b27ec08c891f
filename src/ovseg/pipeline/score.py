"""Stage 3, ``score``: every candidate's score for the prompt, ``cache/scores/<key>.zarr``.

Each distinct text (the prompt, its synonyms, the negatives) is encoded once per run, or
not at all when its embedding is cached (``cache/text/<key>.zarr``, keyed by CLIP weights,
text and templates); then each photo that needs scores gets them from its cached features
and those vectors in a few small matrix products. CLIP's text tower is loaded only if some
text is new. The key is ``hash(version, embeddings key, prompt, score settings)``.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from ovseg.config import Settings
from ovseg.errors import OvsegError
from ovseg.masks import finder_name, finds_by_words
from ovseg.media.fileio import content_key
from ovseg.pipeline import embed, masks
from ovseg.pipeline.common import (
    Engine,
    Item,
    LazyModel,
    ModelPool,
    Plan,
    Result,
    Run,
    Stage,
    StageReport,
    carry_out,
    pooled,
)
from ovseg.pipeline.found import candidates, find_for, found_key
from ovseg.pipeline.plans import entries_of, record_fields
from ovseg.request import EMPTY_PROMPT, prompt_synonyms
from ovseg.storage.claims import Claims
from ovseg.storage.folders import StageFolder
from ovseg.storage.locations import user_models_folder
from ovseg.storage.store import MaskProposals
from ovseg.weights.registry import CLIP, model_fingerprint, resolve_model_dir

VERSION = "score-v1"
TEXT_VERSION = "text-v2"  # v2: encoded by the ONNX export of the text tower (ovseg.clip.text)
FOLDER = "scores"
TEXT_FOLDER = "text"
TEXT_CLAIM = "encoding"  # one claim on the text folder while a run encodes the texts it lacks


@dataclass
class ScoreEntry(embed.EmbedEntry):
    """One photo's entry in ``cache/scores/manifest.json``: its embeddings entry plus

    ``scores``: the key of its scores store, ``cache/scores/<scores>.zarr`` (``score``: the
    prompt's probability against the negatives per candidate; ``similarity`` and
    ``negative_similarity``: the cosines it came from). ``prompt``: what was scored.
    The manifest also holds the run's ``prompt`` and ``run`` record.
    """

    scores: str = ""
    prompt: str = ""
    classes: list[str] | None = None  # a run with several classes: them, in order (the store has a class axis)

    def __post_init__(self) -> None:
        if self.classes is not None:  # an engine may hand the list back as another sequence type
            self.classes = [str(name) for name in self.classes]


Query = str | tuple[str, ...]
"""What a photo is scored against: one prompt, or several classes at once."""

CLASSES_VERSION = "classes-v1"


def score_key(settings: Settings, embeddings: str, prompt: str) -> str:
    """The scores store's key: the embeddings key, the prompt, score settings (every engine names it so)."""
    return content_key(VERSION, embeddings, prompt.strip(), settings.section("score"))


def query_key(settings: Settings, embeddings: str, query: Query) -> str:
    """The scores store's key for a prompt (:func:`score_key`) or for a list of classes (order counts: ids)."""
    if isinstance(query, str):
        return score_key(settings, embeddings, query)
    return content_key(CLASSES_VERSION, embeddings, [c.strip() for c in query], settings.section("score"))


def query_title(query: Query) -> str:
    return query.strip() if isinstance(query, str) else " + ".join(c.strip() for c in query)


def request_query(run: Run) -> Query:
    """What this run's request scores: its classes, or its one prompt."""
    return tuple(run.request.classes) if run.request.classes else run.request.require_prompt()


def prompt_texts(settings: Settings, prompt: Query) -> list[str]:
    """Every text a prompt (or each class) is scored with: synonyms and the negatives that name none of them."""
    from ovseg.ranking.scoring import negatives_for, negatives_for_classes

    if isinstance(prompt, str):
        return prompt_synonyms(prompt) + negatives_for(prompt, settings.score.negatives)
    synonyms = [t for name in prompt for t in prompt_synonyms(name)]
    return synonyms + negatives_for_classes(list(prompt), settings.score.negatives)


def text_embeddings(run: Run, model_name: str, texts: list[str]) -> tuple[dict[str, np.ndarray], float]:
    """Unit-norm CLIP text embeddings (template-averaged) of ``texts``, and the scoring temperature.

    Cached per (CLIP weights, text, templates) in ``<cache>/text`` (a folder or a bucket): a
    prompt used before, or the negatives every run shares, costs no encoder call. The
    temperature is ``score.temperature``, or CLIP's own logit scale when that is unset.
    """
    settings = run.settings
    fingerprint = model_fingerprint(model_name, CLIP)
    templates = settings.score.template_set if settings.score.templates else None
    from ovseg.clip.text import encoder_kind

    kind = encoder_kind(model_name, user_models_folder())
    keys = {t: content_key(TEXT_VERSION, fingerprint, t, templates, kind) for t in texts}
    folder = run.stage_folder(TEXT_FOLDER)
    if not set(keys.values()) <= folder.done_keys():
        folder.ensure_writable()
        # Two runs on one cache encode a new text once: the second waits, then finds it done. (Unclaimed, both
        # published the same key, and one could read a store while the other replaced it.)
        with Claims(folder.url).wait(TEXT_CLAIM):
            done = folder.done_keys()
            _encode(run, model_name, [t for t in texts if keys[t] not in done], keys, folder)
    vectors, scale = {}, 100.0
    for text in texts:
        arrays, attrs = folder.read_store(keys[text], ["embedding"])
        vectors[text], scale = arrays["embedding"], float(attrs["logit_scale"])
    temperature = settings.score.temperature if settings.score.temperature is not None else scale
    return vectors, temperature


def _encode(run: Run, model_name: str, missing: list[str], keys: dict[str, str], folder: StageFolder) -> None:
    """Encode the texts not in ``cache/text`` yet (CLIP's text tower loads only if there are some) and store them."""
    if not missing:
        return
    settings = run.settings
    from ovseg.ranking.scoring import encode_texts

    with pooled(run, ModelPool.key("clip-text", model_name), lambda: text_encoder(run, model_name)) as encoder:
        encoded = encode_texts(encoder, missing, settings.score.templates, template_set=settings.score.template_set)
        logit_scale = encoder.logit_scale
    for text, vector in zip(missing, encoded, strict=True):
        attrs = {"text": text, "model": model_name, "templates": settings.score.templates}
        attrs["logit_scale"] = logit_scale
        folder.publish(keys[text], {"embedding": vector.astype(np.float32)}, attrs, {})


def text_encoder(run: Run, model_name: str):
    """CLIP's text encoder for this run (:func:`ovseg.clip.text.load_text_encoder`): exports kept in the user's
    models folder, shared by every project on the machine."""
    from ovseg.clip.text import load_text_encoder

    return load_text_encoder(model_name, user_models_folder(), run.settings.device)


def score_store(
    settings: Settings, prompt: str, features: np.ndarray, vectors: dict[str, np.ndarray], temperature: float
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One photo's scores store (arrays, attrs) from its candidates' features and the run's text vectors."""
    from ovseg.ranking.scoring import negatives_for, score_synonyms

    negatives = negatives_for(prompt, settings.score.negatives)
    negative = np.stack([vectors[n] for n in negatives]) if negatives else np.zeros((0, 0), np.float32)
    synonyms = np.stack([vectors[t] for t in prompt_synonyms(prompt)])
    scores = score_synonyms(features.astype(np.float32), synonyms, negative, temperature)
    arrays = {
        "score": scores.score,
        "similarity": scores.similarity,
        "negative_similarity": scores.negative_similarity,
    }
    attrs = {"prompt": prompt.strip(), "negatives": settings.score.negatives, "settings": settings.section("score")}
    return arrays, attrs


def class_store(
    settings: Settings, classes: list[str], features: np.ndarray, vectors: dict[str, np.ndarray], temperature: float
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One photo's scores store for several classes: ``class_scores`` (N, C) and ``score``, each candidate's best.

    ``class_similarity`` (N, C) and ``negative_similarity`` (N, M): the cosines they came from.
    """
    from ovseg.ranking.scoring import negatives_for_classes, score_classes

    negatives = negatives_for_classes(classes, settings.score.negatives)
    negative = np.stack([vectors[n] for n in negatives]) if negatives else np.zeros((0, 0), np.float32)
    per_class = [np.stack([vectors[t] for t in prompt_synonyms(name)]) for name in classes]
    scores = score_classes(features.astype(np.float32), per_class, negative, temperature)
    arrays = {
        "score": scores.probability.max(axis=1) if len(classes) else np.zeros(len(features), np.float32),
        "class_scores": scores.probability,
        "class_similarity": scores.similarity,
        "negative_similarity": scores.negative_similarity,
    }
    attrs = {"classes": list(classes), "negatives": negatives, "settings": settings.section("score")}
    return arrays, attrs


@dataclass
class ScoreItem(Item):
    """One (photo, prompt) pair to score: its CLIP features' store, the prompt or the classes, and the CLIP."""

    label: str = ""  # what reports name it: the photo, with the prompt when a run scores several
    prompt: str = ""
    embeddings: str = ""
    clip_model: str = ""
    classes: list[str] | None = None
    masks: str = ""  # the masks store's key: a finder's (SAM 3's) image features

    @property
    def name(self) -> str:
        return self.label


@dataclass
class ScoreShared:
    """What every item needs, sent to the workers once: each text's unit vector, and the scoring temperature."""

    vectors: dict[str, np.ndarray]
    temperature: float


@dataclass
class ScoreState:
    """What ``finish`` and the stage's callers read: prompt (or tuple of classes) -> photo stem -> its entry."""

    per_prompt: dict[Query, dict[str, ScoreEntry]]


def plan_prompts(run: Run, prompts: list[Query]) -> Plan[ScoreState]:
    """A plan scoring every photo of the embeddings manifest against each of ``prompts``.

    A prompt is a text, or a tuple of classes scored together (one store with a class axis).
    Items are (photo, prompt) pairs whose scores are not cached; the texts of all prompts are
    encoded (or read from the text cache) once, here, and shipped to the workers as ``shared``.
    """
    for prompt in prompts:
        if not query_title(prompt):
            raise OvsegError(EMPTY_PROMPT)
    settings = run.settings
    by_words = finds_by_words(settings)
    source = entries_of(run.stage_folder(embed.FOLDER).read_json(), embed.FOLDER, "embed")
    done = run.stage_folder(FOLDER).done_keys()
    plan = Plan(state=ScoreState({}))
    queued: set[str] = set()
    queued_prompts: set[Query] = set()  # prompts with some photo to score: only their texts are needed
    for prompt in prompts:
        plan.state.per_prompt[prompt] = entries = {}
        for stem, data in source.items():
            entry = ScoreEntry(**record_fields(embed.EmbedEntry, data))
            key = (
                found_key(settings, entry.masks, prompt) if by_words else query_key(settings, entry.embeddings, prompt)
            )
            entry.scores, entry.prompt = key, query_title(prompt)
            entry.classes = None if isinstance(prompt, str) else list(prompt)
            entries[stem] = entry
            label = stem if len(prompts) == 1 else f"{stem}:{query_title(prompt)}"
            if entry.scores in done or entry.scores in queued:
                plan.reused.append(label)
            else:
                queued.add(entry.scores)
                queued_prompts.add(prompt)
                plan.items.append(
                    ScoreItem(
                        stem, entry.scores, label, entry.prompt, entry.embeddings, entry.clip_model, entry.classes,
                        entry.masks,
                    )
                )  # fmt: skip
    if by_words:  # the finder reads the words itself: no CLIP text vectors
        return plan
    models = sorted({item.clip_model for item in plan.items})
    if len(models) > 1:
        raise OvsegError(f"the embeddings come from several CLIP models ({', '.join(models)}): run the embed stage")
    if models:
        texts = sorted({t for p in queued_prompts for t in prompt_texts(settings, p)})
        plan.shared = ScoreShared(*text_embeddings(run, models[0], texts))
    return plan


def scores_for(run: Run, engine: Engine, queries: list[Query]) -> dict[Query, dict[str, ScoreEntry]]:
    """Every photo of the run's embeddings scored against each query: query -> photo stem -> its entry.

    The score stage itself (plan, compute what is missing, finish), for faces that need scores for their own
    queries (the API, evaluation, a clip's keyframes) rather than the request's: the cache folder is checked for
    writing before any work, and the manifest names every (photo, query) pair, so ``ovseg cache gc`` keeps them.
    """
    plan = plan_prompts(run, queries)
    carry_out(run, engine, STAGE, plan)
    return plan.state.per_prompt


_WARNED: set[tuple[str, str]] = set()


def check_prompt(run: Run) -> None:
    """Warn (once per process) when the prompt is longer than CLIP reads, saying what CLIP keeps.

    Only CLIP's tokenizer is built (:func:`ovseg.clip.text.clip_tokenizer`: no torch, no weights),
    so faces call this before any model loads.
    """
    from ovseg.clip.text import clip_tokenizer
    from ovseg.ranking.scoring import clip_reads

    model, prompt = run.settings.embed.model, run.request.title
    if not prompt or (model, prompt) in _WARNED or finds_by_words(run.settings):
        return
    _WARNED.add((model, prompt))
    folder = resolve_model_dir(model, CLIP)
    tokenizer = clip_tokenizer(folder)
    if tokenizer is None:  # a CLIP with another tokenizer: only open_clip knows it
        import open_clip

        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder.resolve()}")
    score = run.settings.score
    for synonym in [t for name in (run.request.classes or (prompt,)) for t in prompt_synonyms(name)]:
        kept = clip_reads(tokenizer, synonym, score.templates, score.template_set)
        if kept is not None:
            print(f"ovseg: warning: the prompt is longer than CLIP reads; it sees only {kept!r}", file=sys.stderr)


def plan(run: Run, engine: Engine) -> Plan[ScoreState]:
    check_prompt(run)
    return plan_prompts(run, [request_query(run)])


def load(run: Run):
    """The finder (SAM 3), when it finds the words: the one the masks stage encoded with (same pool key)."""
    from ovseg.masks import load_finder

    return load_finder(run.settings, run.device)


def model_key(run: Run) -> str:
    return masks.finder_key(run.settings)


def needs_model(run: Run) -> bool:
    """Only a finder's run loads a model here (CLIP's text tower is loaded, when a text is new, by the plan)."""
    return finds_by_words(run.settings)


def compute(run: Run, shared: ScoreShared, model: LazyModel, item: ScoreItem) -> Result:
    if finds_by_words(run.settings):
        classes = item.classes or [item.prompt]
        arrays, attrs = find_for(model.get(), run.stage_folder(masks.FOLDER), item.masks, classes)
        run.stage_folder(FOLDER).publish(item.key, arrays, {**attrs, "prompt": item.prompt}, {})
        return Result(item.label)
    features = run.stage_folder(embed.FOLDER).read_store(item.embeddings, ["embeddings"])[0]["embeddings"]
    if item.classes:
        arrays, attrs = class_store(run.settings, item.classes, features, shared.vectors, shared.temperature)
    else:
        arrays, attrs = score_store(run.settings, item.prompt, features, shared.vectors, shared.temperature)
    run.stage_folder(FOLDER).publish(item.key, arrays, attrs, {})
    return Result(item.label)


def finish(run: Run, plan: Plan[ScoreState], results: list[Result]) -> StageReport:
    """The manifest: with one query (a run's request) its prompt or classes and each photo's entry, which the
    select stage reads; with several (evaluation), each (photo, query) pair's entry as ``<stem>:<query>``."""
    report = plan.report("score", results)
    if finds_by_words(run.settings):  # no text vectors: the folder DVC tracks as this stage's output still exists
        run.stage_folder(TEXT_FOLDER).ensure_writable()
    per_prompt = plan.state.per_prompt
    if len(per_prompt) == 1:
        query, entries = next(iter(per_prompt.items()))
        images = {stem: dataclasses.asdict(e) for stem, e in entries.items()}
        manifest: dict[str, Any] = {"prompt": query_title(query), "images": images, "run": report.record(run.engine)}
        if not isinstance(query, str):
            manifest["classes"] = list(query)
    else:
        titles = [query_title(q) for q in per_prompt]
        images = {
            f"{stem}:{query_title(q)}": dataclasses.asdict(e) for q, by in per_prompt.items() for stem, e in by.items()
        }
        manifest = {"prompts": titles, "images": images, "run": report.record(run.engine)}
    run.stage_folder(FOLDER).update_json(manifest, ignore=("run",))
    return report


def describe(run: Run) -> str:
    return f"score ({finder_name(run.settings)})" if finds_by_words(run.settings) else "score"


def scored_candidates(run: Run, entry: ScoreEntry) -> tuple[MaskProposals, np.ndarray]:
    """One photo's mask candidates (:class:`~ovseg.storage.store.MaskProposals`) and their scores, from the cache."""
    proposals = candidates(run.stage_folder(masks.FOLDER), run.stage_folder(FOLDER), entry.masks, entry.scores)
    scores = run.stage_folder(FOLDER).read_store(entry.scores, ["score"])[0]["score"]
    return proposals, scores


def scored_classes(run: Run, entry: ScoreEntry) -> tuple[MaskProposals, np.ndarray]:
    """One photo's mask candidates and their (N, C) class probabilities, from the cache (several classes)."""
    proposals = candidates(run.stage_folder(masks.FOLDER), run.stage_folder(FOLDER), entry.masks, entry.scores)
    scores = run.stage_folder(FOLDER).read_store(entry.scores, ["class_scores"])[0]["class_scores"]
    return proposals, scores


STAGE = Stage.of(__name__, "score", cache=FOLDER)
