"""``video.fill: propainter``: removal by ProPainter (Zhou et al., ICCV 2023), for users who have its weights.

ProPainter completes the flow inside the holes with a recurrent network, propagates pixels and
features along it (image and feature domains), and paints what no frame saw with a sparse video
transformer; it is the reference video removers are measured against. Its architecture and
streaming driver come from ``pytorchcv`` (the ``propainter`` extra), which publishes the authors'
weights converted to its layout in its model store; ``ovseg weights download propainter`` fetches
them through pytorchcv's own store (sha1-checked) into ``checkpoints/propainter/``.

The weights are under the NTU S-Lab License 1.0: non-commercial use only. The licence is shown by
``ovseg weights list`` and in one line by each run that loads them.

It works at ``video.fill_short_side`` px on the frames' short side (ProPainter was trained at
432x240), both sides multiples of 8, and at least :data:`MIN_SIDE` (RAFT's four-level
correlation pyramid needs it); the result is brought back to the frames' size and pasted inside
the holes only, so every pixel outside them stays as it was. Same interface as
:class:`~ovseg.video.fill.TemporalFiller`: :meth:`ProPainterFiller.run` yields each frame filled.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ovseg.errors import OvsegError
from ovseg.video.fill import FillStats, blend

MIN_SIDE = 128  # RAFT's coarsest correlation level must keep two cells: 128 px at 1/64
LICENCE_NOTE = "ProPainter's weights are under the NTU S-Lab License 1.0: non-commercial use only."


@dataclass
class ProPainterNets:
    """ProPainter's three networks, loaded and in eval mode on ``device``."""

    raft: Any
    flow: Any
    paint: Any
    device: str


def _architectures() -> tuple[Any, Any, Any]:
    try:
        from pytorchcv.models.propainter import propainter
        from pytorchcv.models.propainter_rfc import propainter_rfc
        from pytorchcv.models.raft import raft_things
    except ImportError:
        raise OvsegError("video.fill: propainter needs pytorchcv: pip install 'ovseg[propainter]'") from None
    # RAFT as ProPainter drives it: inputs already in [-1, 1], 20 refinement steps.
    return raft_things(in_normalize=False, iters=20), propainter_rfc(), propainter()


def _file(folder: Path, part: str) -> Path:
    found = sorted(folder.glob(f"{part}-*.pth"))
    if not found:
        raise OvsegError(f"{folder} has no {part}-*.pth: run `ovseg weights download propainter`")
    return found[0]


def load_propainter(name: str, device: str, log=print) -> ProPainterNets:
    """ProPainter's networks from model folder ``name`` (``propainter`` or a path), on ``device``."""
    import torch

    from ovseg.weights.registry import PROPAINTER, resolve_model_dir

    folder = resolve_model_dir(name, PROPAINTER)
    nets = _architectures()
    for net, part in zip(nets, ("raft_things", "propainter_rfc", "propainter"), strict=True):
        state = torch.load(_file(folder, part), map_location="cpu", weights_only=True)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise OvsegError(f"{_file(folder, part)} is not pytorchcv's {part}: {str(exc).splitlines()[0]}") from None
        net.eval().requires_grad_(False).to(device)
    log(LICENCE_NOTE)  # each run that loads them, once
    return ProPainterNets(*nets, device=device)


def save_random_propainter(folder: Path, seed: int = 0) -> Path:
    """ProPainter's real architecture with random weights, saved as the download's files (tests, timings)."""
    import torch

    from ovseg.weights.registry import PROPAINTER_FILES

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for net, filename in zip(_architectures(), PROPAINTER_FILES, strict=True):
        torch.save(net.state_dict(), folder / filename)
    return folder


def working_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(width, height) ProPainter runs at: the short side at ``short_side`` (never above the frame's own, never
    below :data:`MIN_SIDE`), both sides rounded down to multiples of 8."""
    side = max(MIN_SIDE, min(short_side, min(height, width)))
    factor = side / min(height, width)
    return max(MIN_SIDE, int(width * factor) // 8 * 8), max(MIN_SIDE, int(height * factor) // 8 * 8)


class ProPainterFiller:
    """Fills a clip's holes with ProPainter; :meth:`run` yields each frame filled, in order, with its stats."""

    def __init__(
        self, frames: list[np.ndarray], holes: list[np.ndarray], nets: ProPainterNets, short_side: int = 240,
        feather_px: int = 2,
    ) -> None:  # fmt: skip
        if len(frames) != len(holes):
            raise ValueError(f"{len(frames)} frames but {len(holes)} holes")
        self.frames, self.holes, self.nets = frames, holes, nets
        self.short_side, self.feather_px = short_side, feather_px

    def _sequencers(self, size: tuple[int, int]) -> tuple[Any, Any]:
        import cv2
        import torch
        from pytorchcv.models.common.stream import BufferedSequencer

        device = self.nets.device

        class Frames(BufferedSequencer):
            def _calc_data_items(self, chunks):
                small = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in chunks[0]])
                return (torch.from_numpy(small).permute(0, 3, 1, 2).float() / 127.5 - 1).to(device)

            def _expand_buffer_by(self, chunk):
                self.buffer = torch.cat([self.buffer, chunk])

        class Masks(BufferedSequencer):
            def _calc_data_items(self, chunks):
                small = [cv2.resize(h.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) for h in chunks[0]]
                return torch.from_numpy(np.stack(small)[:, None].astype(np.float32)).to(device)

            def _expand_buffer_by(self, chunk):
                self.buffer = torch.cat([self.buffer, chunk])

        return Frames(np.stack(self.frames)), Masks(np.stack(self.holes))

    def run(self) -> Iterator[tuple[int, np.ndarray, FillStats]]:
        import cv2
        import torch
        from pytorchcv.models.propainter_stream import ProPainterIterator

        height, width = self.frames[0].shape[:2]
        size = working_size(height, width, self.short_side)
        frames, masks = self._sequencers(size)
        nets = self.nets
        iterator = ProPainterIterator(frames, masks, raft_model=nets.raft, pprfc_model=nets.flow, pp_model=nets.paint,
                                      use_cuda=nets.device.startswith("cuda"))  # fmt: skip
        index = 0
        started = time.perf_counter()
        with torch.inference_mode():
            for chunk in iterator:
                painted = ((chunk.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
                seconds = (time.perf_counter() - started) / len(painted)
                for small in painted:
                    full = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
                    hole = self.holes[index]
                    hole_px = int(hole.sum())
                    stats = FillStats(index, hole_px, 0.0, 1.0 if hole_px else 0.0, round(seconds, 4))
                    yield index, blend(self.frames[index], full.astype(np.float32), hole, self.feather_px), stats
                    index += 1
                started = time.perf_counter()
