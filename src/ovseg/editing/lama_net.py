"""LaMa's generator (big-lama: fast Fourier convolutions), written out so its *architecture* can be built
with random weights and saved in the TorchScript form ``big-lama.pt`` has.

Why: ``ovseg benchmark-remove`` and the tests time and check the ``lama`` backend where the real weights
cannot be had (offline, CI). A random network of the real shape costs what the real one costs (time,
memory) and takes and gives what the real file does: ``model(image, mask)`` with the image in [0, 1]
(1, 3, H, W), the mask (1, 1, H, W) with 1 in the hole, H and W multiples of 8; out, (1, 3, H, W) in
[0, 1] with the known pixels kept. The layout follows the paper's big-lama (Suvorov et al., WACV 2022):
a 7x7 stem, three stride-2 downsamplings, 18 residual blocks whose channels are 3/4 spectral (a 1x1
convolution in the 2-D Fourier domain sees the whole image at once), three transposed-convolution
upsamplings and a sigmoid. Nothing here loads weights: real LaMa comes only as the TorchScript file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


class FourierUnit(nn.Module):
    """A 1x1 convolution on the real and imaginary parts of the feature map's 2-D FFT: a global receptive field."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * channels_in, 2 * channels_out, 1, bias=False)
        self.norm = nn.BatchNorm2d(2 * channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        spectrum = torch.fft.rfftn(x.float(), dim=(-2, -1), norm="ortho")
        stacked = torch.cat([spectrum.real, spectrum.imag], dim=1)
        stacked = torch.relu(self.norm(self.conv(stacked)))
        real, imag = stacked.chunk(2, dim=1)
        return torch.fft.irfftn(torch.complex(real, imag), s=(height, width), dim=(-2, -1), norm="ortho")


class SpectralTransform(nn.Module):
    """Halve the channels, add the Fourier unit's global view to them, and widen back."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.down = nn.AvgPool2d(2, 2) if stride == 2 else nn.Identity()
        half = channels_out // 2
        self.narrow = nn.Sequential(nn.Conv2d(channels_in, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU())
        self.fourier = FourierUnit(half, half)
        self.widen = nn.Conv2d(half, channels_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.narrow(self.down(x))
        return self.widen(x + self.fourier(x))


class FastFourierConv(nn.Module):
    """A convolution whose channels are split into a local part (ordinary kernels) and a global part
    (spectral), with the four paths between them; then batch norm and an activation on each part."""

    def __init__(
        self,
        channels_in: int,
        channels_out: int,
        kernel: int,
        ratio_in: float,
        ratio_out: float,
        stride: int = 1,
        padding: int = 0,
        activation: bool = True,
    ) -> None:
        super().__init__()
        global_in, global_out = int(channels_in * ratio_in), int(channels_out * ratio_out)
        local_in, local_out = channels_in - global_in, channels_out - global_out
        self.global_in = global_in

        def conv(a: int, b: int) -> nn.Module:
            if a == 0 or b == 0:
                return _Zero(b)
            return nn.Conv2d(a, b, kernel, stride, padding, bias=False, padding_mode="reflect")

        self.local_to_local = conv(local_in, local_out)
        self.local_to_global = conv(local_in, global_out)
        self.global_to_local = conv(global_in, local_out)
        self.global_to_global = (
            SpectralTransform(global_in, global_out, stride) if global_in and global_out else _Zero(global_out)
        )
        act = nn.ReLU if activation else nn.Identity
        self.local_post = nn.Sequential(nn.BatchNorm2d(local_out), act()) if local_out else nn.Identity()
        self.global_post = nn.Sequential(nn.BatchNorm2d(global_out), act()) if global_out else nn.Identity()

    def forward(self, local: torch.Tensor, glob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        new_local = self.local_to_local(local) + self.global_to_local(glob)
        new_global = self.local_to_global(local) + self.global_to_global(glob)
        return self.local_post(new_local), self.global_post(new_global)


class _Zero(nn.Module):
    """A path with no channels at one end: contributes nothing, with the right shape (broadcast)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros((), dtype=x.dtype, device=x.device)


class ResidualBlock(nn.Module):
    """Two 3x3 fast Fourier convolutions with a skip connection on each part."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__()
        self.first = FastFourierConv(channels, channels, 3, ratio, ratio, padding=1)
        self.second = FastFourierConv(channels, channels, 3, ratio, ratio, padding=1)

    def forward(self, local: torch.Tensor, glob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.first(local, glob)
        a, b = self.second(a, b)
        return local + a, glob + b


class LamaGenerator(nn.Module):
    """big-lama's generator: 4 channels in (masked image, mask), 3 out, in [0, 1]."""

    def __init__(self, width: int = 64, downsamplings: int = 3, blocks: int = 18, ratio: float = 0.75) -> None:
        super().__init__()
        self.stem = FastFourierConv(4, width, 7, 0.0, 0.0, padding=3)
        self.down = nn.ModuleList()
        for i in range(downsamplings):
            last = i == downsamplings - 1
            self.down.append(
                FastFourierConv(width * 2**i, width * 2 ** (i + 1), 3, 0.0, ratio if last else 0.0, stride=2, padding=1)
            )
        deep = width * 2**downsamplings
        self.blocks = nn.ModuleList(ResidualBlock(deep, ratio) for _ in range(blocks))
        up: list[nn.Module] = []
        for i in range(downsamplings):
            channels = deep // 2**i
            up += [
                nn.ConvTranspose2d(channels, channels // 2, 3, stride=2, padding=1, output_padding=1),
                nn.BatchNorm2d(channels // 2),
                nn.ReLU(),
            ]
        self.up = nn.Sequential(*up, nn.ReflectionPad2d(3), nn.Conv2d(width, 3, 7), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        empty = x[:, :0]
        local, glob = self.stem(x, empty)
        for layer in self.down:
            local, glob = layer(local, glob)
        for block in self.blocks:
            local, glob = block(local, glob)
        return self.up(torch.cat([local, glob], dim=1))


class LamaInpainter(nn.Module):
    """What ``big-lama.pt`` computes: the generator on the masked image, known pixels kept as they were."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        masked = image * (1 - mask)
        predicted = self.generator(torch.cat([masked, mask], dim=1))
        return mask * predicted + (1 - mask) * image


def save_random_lama(path: Path, *, width: int = 64, blocks: int = 18, seed: int = 0) -> Path:
    """A random-weight LaMa saved as TorchScript at ``path`` (the defaults: big-lama's size, ~51M weights)."""
    torch.manual_seed(seed)
    model = LamaInpainter(LamaGenerator(width=width, blocks=blocks)).eval()
    example = (torch.rand(1, 3, 64, 64), (torch.rand(1, 1, 64, 64) > 0.7).float())
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice: the real file is TorchScript
        traced = torch.jit.trace(model, example, check_trace=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    traced.save(str(path))
    return path
