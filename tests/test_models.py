"""The DIP skip network: parameter count, sizes, structure (PROTOCOL "Network")."""

import pytest
import torch
from torch import nn

from bpdip.models import SkipNet, build_model, count_parameters
from conftest import SLIM


def expected_parameters(c_in=32, down=128, up=128, skip=4, scales=5, c_out=3) -> int:
    """Hand count per PROTOCOL: conv weights + biases, BatchNorm weight + bias."""
    conv = lambda i, o, k: i * o * k * k + o  # noqa: E731
    bn = lambda c: 2 * c  # noqa: E731
    total = 0
    for s in range(scales):
        i = c_in if s == 0 else down
        total += conv(i, skip, 1) + bn(skip)  # skip branch
        total += conv(i, down, 3) + bn(down) + conv(down, down, 3) + bn(down)  # down path
        k = down if s == scales - 1 else up
        total += bn(skip + k) + conv(skip + k, up, 3) + bn(up) + conv(up, up, 1) + bn(up)
    return total + conv(up, c_out, 1)


def test_paper_configuration_parameter_count():
    net = SkipNet()
    assert count_parameters(net) == expected_parameters() == 2_217_831


def test_layer_inventory_matches_protocol():
    net = SkipNet()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert sum(c.stride == (2, 2) for c in convs) == 5  # stride-2 downsampling per scale
    assert {c.kernel_size for c in convs} == {(1, 1), (3, 3)}
    pads = [m for m in net.modules() if isinstance(m, nn.ReflectionPad2d)]
    assert len(pads) == sum(c.kernel_size == (3, 3) for c in convs)
    ups = [m for m in net.modules() if isinstance(m, nn.Upsample)]
    assert len(ups) == 5 and all(u.mode == "bilinear" and u.scale_factor == 2 for u in ups)
    acts = [m for m in net.modules() if isinstance(m, nn.LeakyReLU)]
    assert acts and all(a.negative_slope == 0.2 for a in acts)
    assert isinstance(net.head[-1], nn.Sigmoid)


@pytest.mark.parametrize("hw", [(250, 361), (529, 656)])
def test_output_size_equals_input_size_paper_net(hw):
    net = SkipNet()
    with torch.no_grad():
        out = net(torch.rand(1, 32, *hw))
    assert out.shape == (1, 3, *hw)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


@pytest.mark.parametrize("hw", [(9, 9), (13, 20), (31, 17)])
def test_odd_sizes_slim_net(hw):
    net = SkipNet(in_channels=4, **SLIM)
    assert net(torch.rand(2, 4, *hw)).shape == (2, 3, *hw)


def test_centre_crop_of_odd_concat():
    """At an odd size the upsampled branch is one pixel larger; the crop keeps its centre."""
    from bpdip.models.skip import center_crop_to

    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    torch.testing.assert_close(center_crop_to(x, 5, 5), x[..., 0:5, 0:5])
    torch.testing.assert_close(center_crop_to(x, 4, 3), x[..., 1:5, 1:4])


def test_too_small_image_gives_clear_error():
    net = SkipNet()
    assert net.min_size == 33
    net.check_size(33, 40)
    with pytest.raises(ValueError, match="too small for a 5-scale network.*at least 33x33"):
        net.check_size(32, 100)
    with pytest.raises((RuntimeError, ValueError)):  # why: 1x1 maps break BN and padding
        net(torch.rand(1, 32, 32, 32))


def test_build_model_registry():
    assert isinstance(build_model("skip", **SLIM), SkipNet)
    with pytest.raises(ValueError, match="unknown model.name 'unet'"):
        build_model("unet")


def test_head_runs_in_float32_under_bf16_autocast():
    net = SkipNet(in_channels=4, **SLIM)
    z = torch.rand(1, 4, 24, 24)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(z)
        body = net.body(z)
    assert body.dtype == torch.bfloat16 and out.dtype == torch.float32
    torch.testing.assert_close(out, net.head(body.float()))
