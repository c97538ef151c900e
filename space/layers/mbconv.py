"""Inverted residual (MBConv) blocks and squeeze-excitation."""
from __future__ import annotations

import torch
from torch import nn

from space.layers.conv import BlockFamily, ConvBN, conv_bn_params, conv_flops, conv_out, make_act


class SqueezeExcite(nn.Module):
    """Channel attention: global average -> 1x1 conv -> act -> 1x1 conv -> sigmoid gate."""

    def __init__(self, channels: int, hidden: int, act: str):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = make_act(act)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(s))))


def se_params(channels: int, hidden: int) -> int:
    return 0 if not hidden else 2 * channels * hidden + hidden + channels


def se_flops(channels: int, hidden: int) -> int:
    return 2 * channels * hidden


def se_layer(block: nn.Module) -> nn.Module | None:
    """The first conv of a block's squeeze-excitation (`block.se`), None when it has none."""
    return block.se.fc1 if isinstance(block.se, SqueezeExcite) else None


class MBConvBlock(nn.Module):
    """1x1 expand -> kxk depthwise (stride) -> [SE] -> 1x1 project; residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, kernel: int, hidden: int, se_hidden: int, act: str):
        super().__init__()
        self.expand = ConvBN(cin, hidden, 1, act=act)
        self.dw = ConvBN(hidden, hidden, kernel, stride, groups=hidden, act=act)
        self.se = SqueezeExcite(hidden, se_hidden, act) if se_hidden else nn.Identity()
        self.project = ConvBN(hidden, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.residual else y


def mbconv_params(cin: int, cout: int, stride: int, kernel: int, hidden: int, se_hidden: int) -> int:
    return (conv_bn_params(cin, hidden, 1) + conv_bn_params(hidden, hidden, kernel, groups=hidden)
            + se_params(hidden, se_hidden) + conv_bn_params(hidden, cout, 1))


def mbconv_flops(cin: int, cout: int, stride: int, kernel: int, hidden: int, se_hidden: int,
                 size: int) -> tuple[int, int]:
    out = conv_out(size, kernel, stride, kernel // 2)
    flops = (conv_flops(cin, hidden, 1, size) + conv_flops(hidden, hidden, kernel, out, groups=hidden)
             + se_flops(hidden, se_hidden) + conv_flops(hidden, cout, 1, out))
    return flops, out


MBCONV = BlockFamily("mbconv", MBConvBlock, mbconv_params, mbconv_flops, out_layer=lambda b: b.project[0],
                     hidden_layer=lambda b: b.expand[0], se_layer=se_layer, title="MBConv", short="mb",
                     se_channels=lambda width, hidden: hidden)
