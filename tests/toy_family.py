"""A block family that exists only for the tests, declared in this one file the way `space/layers/*.py` declare
theirs: a depthwise-separable block (kxk depthwise conv with the stride, 1x1 pointwise conv, optional
squeeze-excitation on its output). `register_family(TOY)` is all it takes for spec validation, sampling, counting,
building, training, the report and the paper to know it."""
from __future__ import annotations

from torch import nn

from space.layers.conv import BlockFamily, ConvBN, conv_bn_params, conv_flops, conv_out
from space.layers.mbconv import SqueezeExcite, se_flops, se_layer, se_params


class SeparableBlock(nn.Module):
    """kxk depthwise conv (stride) -> 1x1 conv to the stage width -> [SE]; residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, kernel: int, hidden: int, se_hidden: int, act: str):
        super().__init__()
        self.dw = ConvBN(cin, cin, kernel, stride, groups=cin, act=act)
        self.pw = ConvBN(cin, hidden, 1, act=act)
        self.se = SqueezeExcite(hidden, se_hidden, act) if se_hidden else nn.Identity()
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.se(self.pw(self.dw(x)))
        return x + y if self.residual else y


def separable_params(cin: int, cout: int, stride: int, kernel: int, hidden: int, se_hidden: int) -> int:
    return conv_bn_params(cin, cin, kernel, groups=cin) + conv_bn_params(cin, hidden, 1) + se_params(hidden, se_hidden)


def separable_flops(cin: int, cout: int, stride: int, kernel: int, hidden: int, se_hidden: int,
                    size: int) -> tuple[int, int]:
    out = conv_out(size, kernel, stride, kernel // 2)
    convs = conv_flops(cin, cin, kernel, out, groups=cin) + conv_flops(cin, hidden, 1, out)
    return convs + se_flops(hidden, se_hidden), out


TOY = BlockFamily("toysep", SeparableBlock, separable_params, separable_flops, out_layer=lambda b: b.pw[0],
                  hidden_layer=lambda b: b.pw[0], se_layer=se_layer, title="Toy separable", short="tsep",
                  expansion=False, se_channels=lambda width, hidden: width)
"""Its hidden width is its output width (no expansion), so one layer holds both; its SE acts on that width."""
