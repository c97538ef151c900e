"""ConvNeXt-style blocks: large-kernel depthwise conv, then an inverted 1x1 MLP, residual.

BatchNorm stands in for LayerNorm (it folds into the conv and prunes cleanly). When the stage
downsamples or changes width, the first block starts with a 2x2 stride-2 (or 1x1) conv-BN, as
ConvNeXt's separate downsampling layers do.
"""
from __future__ import annotations

from torch import nn

from space.layers.conv import BlockFamily, ConvBN, conv_bn_params, conv_flops, conv_out, make_act


def downsample(cin: int, cout: int, stride: int) -> nn.Module:
    return ConvBN(cin, cout, stride, stride, padding=0) if stride != 1 or cin != cout else nn.Identity()


def downsample_params(cin: int, cout: int, stride: int) -> int:
    return conv_bn_params(cin, cout, stride) if stride != 1 or cin != cout else 0


def downsample_flops(cin: int, cout: int, stride: int, size: int) -> tuple[int, int]:
    if stride == 1 and cin == cout:
        return 0, size
    out = conv_out(size, stride, stride, 0)
    return conv_flops(cin, cout, stride, out), out


class ConvNeXtBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, kernel: int, hidden: int, se_hidden: int, act: str):
        super().__init__()
        self.down = downsample(cin, cout, stride)
        self.dw = ConvBN(cout, cout, kernel, groups=cout)
        self.pw1 = nn.Conv2d(cout, hidden, 1)
        self.act = make_act(act)
        self.pw2 = nn.Conv2d(hidden, cout, 1)

    def forward(self, x):
        x = self.down(x)
        return x + self.pw2(self.act(self.pw1(self.dw(x))))


def convnext_params(cin: int, cout: int, stride: int, kernel: int, hidden: int, se_hidden: int = 0) -> int:
    return (downsample_params(cin, cout, stride) + conv_bn_params(cout, cout, kernel, groups=cout)
            + cout * hidden + hidden + hidden * cout + cout)


def convnext_flops(cin: int, cout: int, stride: int, kernel: int, hidden: int, se_hidden: int,
                   size: int) -> tuple[int, int]:
    flops, out = downsample_flops(cin, cout, stride, size)
    return flops + conv_flops(cout, cout, kernel, out, groups=cout) + 2 * cout * hidden * out * out, out


CONVNEXT = BlockFamily("convnext", ConvNeXtBlock, convnext_params, convnext_flops, out_layer=lambda b: b.pw2,
                       hidden_layer=lambda b: b.pw1, title="ConvNeXt", short="cnx")
