"""CLIP's text side without torch at run time: CLIP's own tokenizer on `tokenizers`, its text tower on onnxruntime.

Why: a new prompt on a photo whose masks and features are cached needs a few dozen short
sentences encoded (the prompt and the negatives, seven templates each), about 0.1 s of work,
while importing torch and open_clip to do it costs 5-10 s on 2 CPU cores. So the first time a
CLIP's text tower is needed it is loaded as everywhere else (open_clip's
``create_model_and_transforms``, :func:`ovseg.clip.features.load_clip`) and exported once to
ONNX; from then on texts are encoded by onnxruntime from that file.

Token ids are CLIP's: the byte-level BPE of open_clip's ``SimpleTokenizer``, built with Hugging
Face ``tokenizers`` from the vocabulary file open_clip ships (found without importing open_clip)
after CLIP's own text cleaning (ftfy, HTML entities, whitespace, lower case). A CLIP whose config
names another tokenizer (a Hugging Face one) is encoded through open_clip instead
(:class:`TorchTextEncoder`); which encoder made a vector is part of its cache key.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import json
import sys
import tempfile
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from filelock import FileLock

from ovseg.errors import OvsegError, one_line
from ovseg.storage.locations import atomic_path, read_json
from ovseg.weights.onnx_sessions import session_options
from ovseg.weights.registry import CLIP, model_fingerprint, resolve_model_dir

EXPORT_VERSION = "clip-text-onnx-v1"
SPECIAL_TOKENS = ("<start_of_text>", "<end_of_text>")
# CLIP's pre-tokenisation: contractions, runs of letters, single digits, runs of other symbols.
WORDS = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
MERGES = 49152 - 256 - 2  # the merges CLIP's vocabulary uses (the file has a header line and more)


class TextEncoder(Protocol):
    """What scoring asks of CLIP's text side: sentences in, one feature row per sentence out."""

    kind: str  # "onnx" or "torch": vectors from the two differ in their last bits, so caches tell them apart
    logit_scale: float

    def encode(self, sentences: list[str]) -> np.ndarray:
        """(N, D) float32 text features, not normalised (what open_clip's ``encode_text`` returns)."""


def _clean(text: str) -> str:
    """CLIP's text cleaning before BPE: repair mojibake, unescape HTML twice, collapse whitespace, lower case."""
    import ftfy
    import regex

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


def _byte_symbols() -> list[str]:
    """GPT-2/CLIP's reversible byte -> printable character table, in byte order of the vocabulary."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def bpe_vocabulary_file() -> Path:
    """open_clip's BPE merges file, located without importing open_clip (which would import torch)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise OvsegError("open_clip is not installed: run scripts/install.sh")
    return Path(next(iter(spec.submodule_search_locations))) / BPE_FILE


@cache
def _bpe_tokenizer(vocabulary: Path):
    """CLIP's byte-level BPE as a `tokenizers` model: 256 bytes, bytes ending a word, the merges, two specials."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    with gzip.open(vocabulary) as file:
        lines = file.read().decode("utf-8").split("\n")[1 : MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = _byte_symbols()
    vocab = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges), *SPECIAL_TOKENS]
    bpe = models.BPE(
        vocab={token: i for i, token in enumerate(vocab)},
        merges=merges,
        end_of_word_suffix="</w>",
        continuing_subword_prefix="",
        fuse_unk=False,
    )
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(WORDS), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


@dataclass(frozen=True)
class ClipTokenizer:
    """CLIP's tokenizer: ``encode`` / ``decode`` as open_clip's ``SimpleTokenizer``, and a call that pads."""

    context_length: int
    vocabulary: Path

    @property
    def _bpe(self):
        return _bpe_tokenizer(self.vocabulary)

    def encode(self, text: str) -> list[int]:
        """The BPE ids of ``text`` without start and end tokens."""
        return list(self._bpe.encode(_clean(text), add_special_tokens=False).ids)

    def decode(self, ids: list[int]) -> str:
        return self._bpe.decode(list(ids), skip_special_tokens=False).replace("</w>", " ")

    def __call__(self, texts: list[str]) -> np.ndarray:
        """(N, context_length) int64: start, ids, end, zero-padded; a text too long is cut and still ends in end."""
        start, end = (self._bpe.token_to_id(t) for t in SPECIAL_TOKENS)
        rows = np.zeros((len(texts), self.context_length), np.int64)
        for row, text in zip(rows, texts, strict=True):
            ids = [start, *self.encode(text), end][: self.context_length]
            ids[-1] = end
            row[: len(ids)] = ids
        return rows


def clip_tokenizer(model_dir: Path) -> ClipTokenizer | None:
    """CLIP's tokenizer for the open_clip model in ``model_dir``; None when its config names another one."""
    config = read_json(Path(model_dir) / "open_clip_config.json").get("model_cfg", {})
    text = config.get("text_cfg", {})
    kwargs = text.get("tokenizer_kwargs") or {}
    if text.get("hf_tokenizer_name") or any(k != "clean" or v != "lower" for k, v in kwargs.items()):
        return None
    return ClipTokenizer(int(text.get("context_length", 77)), bpe_vocabulary_file())


def tokens_kept(tokenizer: Any, text: str, wrappers: list[str]) -> str | None:
    """What of ``text`` CLIP reads inside the longest of ``wrappers`` (templates with an empty slot), or None: all.

    CLIP reads ``context_length`` tokens (77) including start and end, and a template adds a few
    more, so a long prompt is silently cut; the caller warns with what is kept.
    """
    context = getattr(tokenizer, "context_length", None)
    if not context or not hasattr(tokenizer, "encode"):
        return None  # a tokenizer that cannot count: nothing to say
    room = context - 2 - max(len(tokenizer.encode(w)) for w in wrappers)
    tokens = tokenizer.encode(text.strip())
    if len(tokens) <= room:
        return None
    return tokenizer.decode(tokens[:room]).strip()


class OnnxTextEncoder:
    """CLIP's text tower exported to ONNX, run by onnxruntime with CLIP's tokenizer."""

    kind = "onnx"

    def __init__(self, model: Path, tokenizer: ClipTokenizer, logit_scale: float) -> None:
        import onnxruntime as ort

        self.tokenizer, self.logit_scale = tokenizer, logit_scale
        self.session = ort.InferenceSession(str(model), session_options(), providers=["CPUExecutionProvider"])

    def encode(self, sentences: list[str]) -> np.ndarray:
        tokens = self.tokenizer(sentences)
        return self.session.run(None, {"tokens": tokens})[0].astype(np.float32)


class TorchTextEncoder:
    """The text tower through open_clip itself: for a CLIP whose tokenizer is not CLIP's BPE."""

    kind = "torch"

    def __init__(self, bundle: Any) -> None:
        self.bundle, self.logit_scale = bundle, bundle.logit_scale
        self.tokenizer = bundle.tokenizer

    def encode(self, sentences: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            tokens = self.bundle.tokenizer(sentences).to(self.bundle.device)
            return self.bundle.model.encode_text(tokens).float().cpu().numpy()


def export_name(model_name: str) -> str:
    """The export's folder name: the CLIP's weights (by fingerprint) and the export's version."""
    from ovseg.media.fileio import content_key

    slug = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(model_name).name)
    return f"{slug}-{content_key(EXPORT_VERSION, model_fingerprint(model_name, CLIP))}"


def export_text_tower(bundle: Any, folder: Path) -> None:
    """Write ``folder/text.onnx`` (tokens (N, context) int64 -> features (N, D)) and ``text.json``, atomically."""
    import torch

    class TextTower(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.model.encode_text(tokens).float()

    tower = TextTower(bundle.model).eval().float()
    example = torch.zeros((2, int(getattr(bundle.tokenizer, "context_length", 77))), dtype=torch.long)
    with atomic_path(Path(folder)) as tmp:
        tmp.mkdir(parents=True)
        with torch.no_grad(), warnings.catch_warnings():
            # The exporter's deprecation and tracer warnings are about the exporter, nothing a user can change.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                tower,
                (example,),
                str(tmp / "text.onnx"),
                input_names=["tokens"],
                output_names=["features"],
                dynamic_axes={"tokens": {0: "batch"}, "features": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        (tmp / "text.json").write_text(json.dumps({"logit_scale": bundle.logit_scale, "version": EXPORT_VERSION}))


FAILED = "export-failed.txt"


def encoder_kind(model_name: str, exports: Path) -> str:
    """Which encoder :func:`load_text_encoder` gives for this CLIP: "onnx", or "torch" (another tokenizer, or a
    text tower the exporter could not trace, as a note in the export's folder records), without loading it."""
    if clip_tokenizer(resolve_model_dir(model_name, CLIP)) is None:
        return "torch"
    return "torch" if (Path(exports) / export_name(model_name) / FAILED).is_file() else "onnx"


def load_text_encoder(model_name: str, exports: Path, device: str = "cpu") -> TextEncoder:
    """The text encoder of CLIP ``model_name``: its ONNX export in ``exports`` (made on first use), or open_clip.

    ``exports``: a local folder where exports are kept (the user's models folder, shared by every
    project). ``device``: where open_clip runs when it must (a CLIP that cannot be exported; ``auto``
    as the settings say).
    """
    folder = Path(exports) / export_name(model_name)
    if encoder_kind(model_name, exports) == "torch":
        from ovseg.clip.features import load_clip
        from ovseg.weights.registry import resolve_device

        return TorchTextEncoder(load_clip(model_name, resolve_device(device), text_only=True))
    if (folder / "text.json").is_file():
        return _onnx_encoder(model_name, folder)
    if not _writable(folder.parent):  # a user cache this user cannot write: the same export, for this process only
        with tempfile.TemporaryDirectory(prefix="ovseg-text-") as scratch:
            return _exported(model_name, Path(scratch) / folder.name)
    with FileLock(str(folder.parent / f".{folder.name}.lock")):  # processes starting at once export once
        return _exported(model_name, folder)


def _onnx_encoder(model_name: str, folder: Path) -> OnnxTextEncoder:
    meta = read_json(folder / "text.json")
    tokenizer = clip_tokenizer(resolve_model_dir(model_name, CLIP))
    return OnnxTextEncoder(folder / "text.onnx", tokenizer, float(meta["logit_scale"]))


def _exported(model_name: str, folder: Path) -> TextEncoder:
    """The encoder from ``folder``'s export, made first unless another process made it while this one waited."""
    if not (folder / "text.json").is_file():
        failed = _export(model_name, folder)
        if failed is not None:
            return failed
    return _onnx_encoder(model_name, folder)


def _writable(folder: Path) -> bool:
    """Whether files can be made in ``folder`` (made if missing), by the write test every stage folder gets."""
    from ovseg.storage.folders import Folder

    try:
        Folder(str(folder)).ensure_writable()
    except OvsegError:
        return False
    return True


def _export(model_name: str, folder: Path) -> TextEncoder | None:
    """Export CLIP ``model_name``'s text tower into ``folder``; None when done, or open_clip's encoder when the
    exporter cannot trace this tower (a note in the folder says so, which :func:`encoder_kind` reads)."""
    from ovseg.clip.features import load_clip

    bundle = load_clip(model_name, "cpu", text_only=True)
    try:
        export_text_tower(bundle, folder)
    except Exception as exc:  # noqa: BLE001 - an exporter that cannot trace this tower: open_clip encodes it
        reason = f"CLIP's text tower could not be exported to ONNX ({one_line(exc)}); open_clip encodes its texts"
        print(f"ovseg: note: {reason}", file=sys.stderr)
        with atomic_path(folder / FAILED) as tmp:
            tmp.write_text(reason + "\n")
        return TorchTextEncoder(bundle)
    return None
