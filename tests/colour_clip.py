"""A test-only "colour CLIP": image features that encode a candidate's mean colour, text features that encode
colour names. It stands in for CLIP where a test must know the right answer (no real CLIP exists offline):
a red disc's candidate is "red", a grey background's is "grey", and every later step (scores, instances,
label maps, COCO, the semantic protocol) runs as it does with real weights.

It plugs in where the real one loads (``ovseg.clip.features.load_clip``, and CLIP's text side,
``ovseg.clip.text.load_text_encoder``) and where candidates are embedded
(``ovseg.clip.features.mask_embeddings``); the stages, caches and keys are the real ones.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ovseg.clip.features import ClipBundle

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 70, 220),
    "grey": (128, 128, 128),
}
NAMES = list(COLOURS)
OTHER = len(NAMES)  # texts that name no colour ("background", "something else") point here
SPREAD = 30.0  # how far (RGB) a mean colour may be from a colour and still look like it


class ColourTokenizer:
    """A sentence -> the colour it names (the first colour word in it), as a token tensor."""

    context_length = 77

    def __call__(self, texts: list[str]) -> torch.Tensor:
        ids = []
        for text in texts:
            words = text.lower().replace(".", " ").split()
            ids.append(next((NAMES.index(w) for w in words if w in COLOURS), OTHER))
        return torch.tensor(ids, dtype=torch.long)


class ColourModel(torch.nn.Module):
    """The text tower: a colour's axis. ``logit_scale`` as CLIP's (exp = 100)."""

    def __init__(self) -> None:
        super().__init__()
        self.logit_scale = torch.nn.Parameter(torch.tensor(float(np.log(100.0))))
        self.visual = None

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(tokens, OTHER + 1).float()


class ColourTextEncoder:
    """The text side as scoring sees it (:class:`ovseg.clip.text.TextEncoder`): a sentence -> its colour's axis."""

    kind = "colour"
    logit_scale = 100.0

    def encode(self, sentences: list[str]) -> np.ndarray:
        tokens = ColourTokenizer()(sentences)
        return torch.nn.functional.one_hot(tokens, OTHER + 1).float().numpy()


def colour_features(image: Image.Image, masks: np.ndarray) -> np.ndarray:
    """(N, 5) unit vectors: how close each candidate's mean colour is to each colour (last axis: none)."""
    pixels = np.asarray(image.convert("RGB")).astype(np.float32)
    prototypes = np.array(list(COLOURS.values()), np.float32)
    rows = []
    for mask in masks:
        mean = pixels[mask].mean(axis=0) if mask.any() else np.full(3, 128.0, np.float32)
        closeness = np.exp(-((prototypes - mean) ** 2).sum(1) / (2 * SPREAD**2))
        vector = np.append(closeness, 1e-3)
        rows.append(vector / np.linalg.norm(vector))
    return np.array(rows, np.float32).reshape(len(masks), OTHER + 1)


def bundle() -> ClipBundle:
    return ClipBundle(
        model=ColourModel(),
        tokenizer=ColourTokenizer(),
        input_size=224,
        mean=torch.zeros(3),
        std=torch.ones(3),
        device=torch.device("cpu"),
        dtype=torch.float32,
    )


def install(monkeypatch) -> None:
    """Make every CLIP load in this test the colour CLIP."""
    import ovseg.clip.features as clip_features
    import ovseg.clip.text as clip_text

    monkeypatch.setattr(clip_features, "load_clip", lambda name, device, text_only=False: bundle())
    monkeypatch.setattr(clip_text, "load_text_encoder", lambda name, exports, device="cpu": ColourTextEncoder())
    monkeypatch.setattr(clip_text, "encoder_kind", lambda name, exports: ColourTextEncoder.kind)
    monkeypatch.setattr(
        clip_features, "mask_embeddings", lambda _bundle, image, masks, boxes, settings: colour_features(image, masks)
    )


def scene(seed: int = 0, width: int = 320, height: int = 240) -> tuple[Image.Image, np.ndarray]:
    """Three red discs, a blue square and a green triangle on grey (with noise); and the true labels.

    Labels: 0 grey, 1 red, 2 green, 3 blue (the order of ``[red, green, blue]`` as classes).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.clip(128 + rng.normal(0, 4, (height, width, 3)), 0, 255)
    labels = np.zeros((height, width), np.uint8)
    shapes = [
        (1, (xx - 50) ** 2 + (yy - 60) ** 2 <= 28**2),
        (1, (xx - 160) ** 2 + (yy - 55) ** 2 <= 24**2),
        (1, (xx - 270) ** 2 + (yy - 65) ** 2 <= 30**2),
        (3, (abs(xx - 80) <= 32) & (abs(yy - 170) <= 32)),
        (2, (yy - 170 <= 35) & (yy - 170 >= -35) & (abs(xx - 230) <= (yy - 170 + 35) * 0.6)),
    ]
    for label, shape in shapes:
        image[shape] = COLOURS[NAMES[label - 1]]
        labels[shape] = label
    return Image.fromarray(image.astype(np.uint8)), labels


def write_dataset(root, seeds=(0, 1, 2)):
    """A VOC-layout set of :func:`scene` photos; ``classes.txt`` has a background slot and synonyms."""
    from pathlib import Path

    root = Path(root)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "classes.txt").write_text("background\nred, crimson\ngreen\nnavy, blue\n")
    for seed in seeds:
        image, labels = scene(seed)
        image.save(root / "JPEGImages" / f"scene{seed}.png")
        Image.fromarray(labels).save(root / "SegmentationClass" / f"scene{seed}.png")
    return root
