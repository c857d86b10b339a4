"""Analytic FLOP count of the skip network (PROTOCOL "Cost, measured").

Counted as PROTOCOL counts them (~0.59 MFLOP per pixel forward, ~1.8 per training
iteration for the paper's network): convolutions only, 2 FLOPs per multiply-add, bias,
BatchNorm, activations, padding and upsampling left out (they are memory traffic, not
arithmetic). A training step is the forward plus the two backward convolutions of each
layer (input gradient "dgrad" and weight gradient "wgrad", each as costly as the forward)
except the input gradient of the layers that read z, which nothing needs.

Sizes follow ``bpdip.models.skip``: a stride-2 3x3 conv after reflection padding 1 maps
n to (n - 1) // 2 + 1; the upsampled branch and the skip branch are centre-cropped to
the smaller of the two, which is the scale's input size.
"""

from __future__ import annotations

from collections.abc import Sequence

PAPER = dict(in_channels=32, out_channels=3, channels_down=(128,) * 5, channels_up=(128,) * 5,
             channels_skip=(4,) * 5)


def conv_flops(c_in: int, c_out: int, kernel: int, h: int, w: int) -> int:
    """2 * multiply-adds of one (ungrouped) convolution producing an h x w output."""
    return 2 * c_in * c_out * kernel * kernel * h * w


def count_flops(
    h: int,
    w: int,
    in_channels: int = 32,
    out_channels: int = 3,
    channels_down: Sequence[int] = PAPER["channels_down"],
    channels_up: Sequence[int] = PAPER["channels_up"],
    channels_skip: Sequence[int] = PAPER["channels_skip"],
    stack: int = 1,
) -> dict[str, int]:
    """Convolution FLOPs of one forward pass and one training step for ``stack`` networks.

    Returns ``forward``, ``backward`` and ``train`` (= forward + backward), totals over the
    stack, and ``per_pixel_forward`` / ``per_pixel_train`` (per network and pixel).
    """
    n = len(channels_down)
    fwd = 0
    first = 0  # forward FLOPs of the convs that read z (no input gradient)

    def scale(i: int, c_in: int, hi: int, wi: int) -> tuple[int, int]:
        nonlocal fwd, first
        hd, wd = (hi - 1) // 2 + 1, (wi - 1) // 2 + 1
        f_down = conv_flops(c_in, channels_down[i], 3, hd, wd)
        fwd += f_down + conv_flops(channels_down[i], channels_down[i], 3, hd, wd)
        if i == 0:
            first += f_down
        if i + 1 < n:
            hu, wu = scale(i + 1, channels_down[i], hd, wd)
            deep = channels_up[i + 1]
        else:
            hu, wu, deep = hd, wd, channels_down[i]
        hu, wu = 2 * hu, 2 * wu
        if channels_skip[i]:
            f_skip = conv_flops(c_in, channels_skip[i], 1, hi, wi)
            fwd += f_skip
            if i == 0:
                first += f_skip
            hu, wu = min(hi, hu), min(wi, wu)
        fwd += conv_flops(channels_skip[i] + deep, channels_up[i], 3, hu, wu)
        fwd += conv_flops(channels_up[i], channels_up[i], 1, hu, wu)
        return hu, wu

    ho, wo = scale(0, in_channels, h, w)
    fwd += conv_flops(channels_up[0], out_channels, 1, ho, wo)
    bwd = 2 * fwd - first  # wgrad everywhere, dgrad everywhere but the layers reading z
    pixels = h * w
    return {
        "forward": stack * fwd,
        "backward": stack * bwd,
        "train": stack * (fwd + bwd),
        "per_pixel_forward": fwd / pixels,
        "per_pixel_train": (fwd + bwd) / pixels,
    }
