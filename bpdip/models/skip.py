"""The Deep Image Prior "skip" U-Net (Ulyanov et al. 2018), as PROTOCOL "Network" fixes it.

Per scale i (outermost first), for input x with ``c_in`` channels::

    skip_i(x)   = act(BN(conv1x1(x)))                                   -> skip[i] channels
    deeper_i(x) = up2(inner(act(BN(conv3x3(act(BN(conv3x3/2(x))))))))  -> up[i+1] (or down[i])
    out_i(x)    = act(BN(conv1x1(act(BN(conv3x3(BN(cat[skip, deeper])))))))

with reflection padding before every 3x3 conv, stride-2 convs to go down, bilinear x2
upsampling, LeakyReLU(0.2); after the outermost scale a 1x1 conv to 3 channels and a
sigmoid. The paper's configuration (5 scales of 128 / 128 / 4 channels, 32 input
channels) has 2,217,831 parameters. For odd sizes the upsampled branch is one pixel
larger; both concat inputs are centre-cropped to the smaller size (crop start
(larger - smaller) // 2), so the output has the input's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv_bn_act(c_in: int, c_out: int, kernel: int, stride: int = 1, runs: int = 1) -> nn.Sequential:
    """Reflection pad + conv + BatchNorm + LeakyReLU(0.2).

    ``runs`` = K > 1 builds the layer of K independent networks stacked along channels
    (grouped conv, per-channel BatchNorm: bpdip.engine.stacked); K = 1 is the plain layer.
    """
    layers: list[nn.Module] = []
    if kernel > 1:
        layers.append(nn.ReflectionPad2d(kernel // 2))
    layers += [
        nn.Conv2d(runs * c_in, runs * c_out, kernel, stride=stride, groups=runs),
        nn.BatchNorm2d(runs * c_out),
        nn.LeakyReLU(0.2, inplace=True),
    ]
    return nn.Sequential(*layers)


def center_crop_to(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top : top + h, left : left + w]


def concat_runs(a: torch.Tensor, b: torch.Tensor, runs: int = 1) -> torch.Tensor:
    """The skip concat [a, b] along channels, per run when K = ``runs`` networks are
    stacked: (1, K*ca, H, W), (1, K*cb, H, W) -> [a_1, b_1, ..., a_K, b_K]. K = 1 is
    torch.cat([a, b], dim=1)."""
    return torch.cat([a.unflatten(1, (runs, -1)), b.unflatten(1, (runs, -1))], dim=2).flatten(1, 2)


def min_image_size(num_scales: int) -> int:
    """Smallest side: the bottom 3x3 reflection pad needs >= 2 pixels after the last /2."""
    return 2**num_scales + 1


def check_image_size(num_scales: int, h: int, w: int) -> None:
    n = min_image_size(num_scales)
    if min(h, w) < n:
        raise ValueError(
            f"image {h}x{w} is too small for a {num_scales}-scale network "
            f"(needs at least {n}x{n}); use a larger image or fewer scales"
        )


class Scale(nn.Module):
    """One scale of the U-Net; ``inner`` is the next (deeper) scale or None at the bottom.
    ``runs`` = K stacks K independent networks along channels (bpdip.engine.stacked)."""

    def __init__(self, c_in: int, down: int, up: int, skip: int, inner: nn.Module | None, inner_out: int,
                 runs: int = 1):
        super().__init__()
        self.runs = runs
        self.skip = conv_bn_act(c_in, skip, 1, runs=runs) if skip else None
        self.down = nn.Sequential(conv_bn_act(c_in, down, 3, stride=2, runs=runs),
                                  conv_bn_act(down, down, 3, runs=runs))
        self.inner = inner
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear")
        k = inner_out if inner is not None else down
        self.bn_cat = nn.BatchNorm2d(runs * (skip + k))
        self.post = nn.Sequential(conv_bn_act(skip + k, up, 3, runs=runs), conv_bn_act(up, up, 1, runs=runs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deep = self.down(x)
        if self.inner is not None:
            deep = self.inner(deep)
        deep = self.upsample(deep)
        if self.skip is not None:
            s = self.skip(x)
            h, w = min(s.shape[-2], deep.shape[-2]), min(s.shape[-1], deep.shape[-1])
            deep = concat_runs(center_crop_to(s, h, w), center_crop_to(deep, h, w), self.runs)
        return self.post(self.bn_cat(deep))


class SkipNet(nn.Module):
    """DIP skip network; defaults are the paper's configuration (PROTOCOL "Network").

    ``runs`` = K > 1 holds K independent networks stacked along channels (the engine's
    ``StackedSkipNet`` feeds it (1, K*C, H, W)); the default 1 is the paper's network.
    """

    def __init__(
        self,
        in_channels: int = 32,
        out_channels: int = 3,
        channels_down: Sequence[int] = (128, 128, 128, 128, 128),
        channels_up: Sequence[int] = (128, 128, 128, 128, 128),
        channels_skip: Sequence[int] = (4, 4, 4, 4, 4),
        runs: int = 1,
    ):
        super().__init__()
        if not (len(channels_down) == len(channels_up) == len(channels_skip)) or not channels_down:
            raise ValueError("channels_down, channels_up and channels_skip need the same, non-zero length")
        self.in_channels = in_channels
        self.num_scales = len(channels_down)
        inner: nn.Module | None = None
        for i in reversed(range(self.num_scales)):  # build from the bottom up
            c_in = in_channels if i == 0 else channels_down[i - 1]
            inner_out = channels_up[i + 1] if i + 1 < self.num_scales else 0
            inner = Scale(c_in, channels_down[i], channels_up[i], channels_skip[i], inner, inner_out, runs=runs)
        self.body = inner
        self.head = nn.Sequential(nn.Conv2d(runs * channels_up[0], runs * out_channels, 1, groups=runs), nn.Sigmoid())

    @property
    def min_size(self) -> int:
        return min_image_size(self.num_scales)

    def check_size(self, h: int, w: int) -> None:
        check_image_size(self.num_scales, h, w)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.body(z)
        if torch.is_autocast_enabled(z.device.type):
            # the 128 -> 3 head and sigmoid in float32 (negligible work), so the image the
            # loss sees is not rounded to bf16's 8-bit mantissa
            with torch.autocast(device_type=z.device.type, enabled=False):
                return self.head(x.float())
        return self.head(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
