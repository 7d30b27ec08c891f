"""MI-GAN's generator and the ONNX pipeline its authors publish, written out so the *architecture* can be
built with random weights and exported in the same ONNX form as ``migan_pipeline_v2.onnx``.

Why: ``ovseg benchmark-remove`` and the tests time and check the ``migan`` backend where the real weights
cannot be had (offline, CI). The published pipeline takes ``image`` (1, 3, H, W) uint8 and ``mask``
(1, 1, H, W) uint8 with 255 where the pixels are *known*, squeezes both to 512 x 512, runs the generator
and returns ``result`` (1, 3, H, W) uint8 with the known pixels kept. The generator (Sargsyan et al., ICCV
2023) is a small U-shaped network of depthwise-separable convolutions: an encoder from 512 px down to
4 px whose features are added into a synthesis path back up, with an RGB output summed across scales
(StyleGAN2's skip generator without styles), ~6M weights at 512 px.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

SIDE = 512
_BLUR = (1.0, 3.0, 3.0, 1.0)


def _channels(resolution: int) -> int:
    return min(32768 // resolution, 512)


def _activation(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU scaled by sqrt(2) and clamped at 256, as StyleGAN2-style generators use."""
    return (F.leaky_relu(x, 0.2) * math.sqrt(2)).clamp(-256, 256)


def _blur_kernel(channels: int, gain: float) -> torch.Tensor:
    taps = torch.tensor(_BLUR)
    kernel = torch.outer(taps, taps)
    kernel = kernel / kernel.sum() * gain
    return kernel.expand(channels, 1, 4, 4).clone()


class Down(nn.Module):
    """Halve the resolution with a fixed [1, 3, 3, 1] blur (depthwise, stride 2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("kernel", _blur_kernel(channels, 1.0))
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, stride=2, padding=1, groups=self.channels)


class Up(nn.Module):
    """Double the resolution: insert zeros, then the same blur with gain 4."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("kernel", _blur_kernel(channels, 4.0))
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        spread = torch.zeros(batch, channels, height, 2, width, 2, dtype=x.dtype, device=x.device)
        spread[:, :, :, 0, :, 0] = x
        spread = spread.reshape(batch, channels, 2 * height, 2 * width)
        return F.conv2d(F.pad(spread, (2, 1, 2, 1)), self.kernel, groups=self.channels)


class SeparableConv(nn.Module):
    """Depthwise 3x3 then pointwise 1x1, each followed by the activation; optionally resampled in between."""

    def __init__(self, channels_in: int, channels_out: int, down: bool = False, up: bool = False) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels_in, channels_in, 3, padding=1, groups=channels_in)
        self.pointwise = nn.Conv2d(channels_in, channels_out, 1, bias=False)
        self.down = Down(channels_in) if down else nn.Identity()
        self.up = Up(channels_out) if up else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(_activation(self.depthwise(x)))
        return _activation(self.up(self.pointwise(x)))


class MiganGenerator(nn.Module):
    """4 channels in (mask - 0.5, the masked image in [-1, 1]), an RGB image in [-1, 1] out, at ``side`` px."""

    def __init__(self, side: int = SIDE) -> None:
        super().__init__()
        levels = [2**i for i in range(int(math.log2(side)), 1, -1)]  # side ... 4
        self.levels = levels
        self.from_rgb = nn.Conv2d(4, _channels(side), 1)
        self.encode = nn.ModuleList()
        for here, below in zip(levels[:-1], levels[1:], strict=False):
            keep = SeparableConv(_channels(here), _channels(here))
            self.encode.append(nn.ModuleList([keep, SeparableConv(_channels(here), _channels(below), down=True)]))
        bottom = _channels(4)
        self.bottom = nn.ModuleList([SeparableConv(bottom, bottom), SeparableConv(bottom, bottom)])
        self.bottom_in = SeparableConv(bottom, bottom)
        self.bottom_out = SeparableConv(bottom, bottom)
        self.bottom_rgb = nn.Conv2d(bottom, 3, 1)
        self.decode = nn.ModuleList()
        for here, above in zip(levels[::-1][:-1], levels[::-1][1:], strict=False):
            self.decode.append(
                nn.ModuleList(
                    [
                        SeparableConv(_channels(here), _channels(above), up=True),
                        SeparableConv(_channels(above), _channels(above)),
                        nn.Conv2d(_channels(above), 3, 1),
                        Up(3),
                    ]
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        h = _activation(self.from_rgb(x))
        for keep, shrink in self.encode:
            kept = keep(h)
            features.append(kept)
            h = shrink(kept)
        bottom_feature = self.bottom[0](h)
        h = self.bottom[1](bottom_feature)
        h = self.bottom_out(self.bottom_in(h) + bottom_feature)
        image = self.bottom_rgb(h)
        for (grow, refine, to_rgb, up_rgb), skip in zip(self.decode, reversed(features), strict=True):
            h = refine(grow(h) + skip)
            image = up_rgb(image) + to_rgb(h)
        return image


class MiganPipeline(nn.Module):
    """What ``migan_pipeline_v2.onnx`` computes: uint8 image and known-mask in, uint8 result out, any size."""

    def __init__(self, generator: nn.Module, side: int = SIDE) -> None:
        super().__init__()
        self.generator = generator
        self.side = side

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[2], image.shape[3]
        small = F.interpolate(image.float(), size=(self.side, self.side), mode="bilinear", align_corners=False)
        known = F.interpolate(mask.float(), size=(self.side, self.side), mode="nearest") / 255
        small = small * 2 / 255 - 1
        out = self.generator(torch.cat([known - 0.5, small * known], dim=1))
        out = ((out * 0.5 + 0.5) * 255).clamp(0, 255)
        out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)
        keep = mask.float() / 255
        return (image.float() * keep + out * (1 - keep)).clamp(0, 255).to(torch.uint8)


def save_random_migan(path: Path, *, side: int = SIDE, seed: int = 0) -> Path:
    """A random-weight MI-GAN pipeline exported to ONNX at ``path`` (inputs ``image``, ``mask``; output ``result``)."""
    torch.manual_seed(seed)
    pipeline = MiganPipeline(MiganGenerator(side), side).eval()
    for module in pipeline.modules():  # small random weights: a signal that neither vanishes nor saturates
        if isinstance(module, nn.Conv2d) and module.weight.requires_grad:
            nn.init.normal_(module.weight, std=0.5 / math.sqrt(module.weight[0].numel()))
    image = torch.randint(0, 256, (1, 3, 96, 128), dtype=torch.uint8)
    mask = torch.full((1, 1, 96, 128), 255, dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes are not the user's business
        torch.onnx.export(
            pipeline,
            (image, mask),
            str(path),
            input_names=["image", "mask"],
            output_names=["result"],
            dynamic_axes={"image": {2: "height", 3: "width"}, "mask": {2: "height", 3: "width"}},
            opset_version=17,
            dynamo=False,
        )
    return path
