"""Plain residual (basic) blocks."""
from __future__ import annotations

from torch import nn

from space.layers.conv import BlockFamily, ConvBN, conv_bn_params, conv_flops, conv_out, make_act
from space.layers.mbconv import SqueezeExcite, se_flops, se_layer, se_params


class ResidualBlock(nn.Module):
    """kxk conv (stride) -> kxk conv -> [SE] + shortcut (1x1 conv when the shape changes) -> act."""

    def __init__(self, cin: int, cout: int, stride: int, kernel: int, hidden: int, se_hidden: int, act: str):
        super().__init__()
        self.conv1 = ConvBN(cin, hidden, kernel, stride, act=act)
        self.conv2 = ConvBN(hidden, cout, kernel)
        self.se = SqueezeExcite(cout, se_hidden, act) if se_hidden else nn.Identity()
        self.shortcut = ConvBN(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        self.act = make_act(act)

    def forward(self, x):
        return self.act(self.se(self.conv2(self.conv1(x))) + self.shortcut(x))


def residual_params(cin: int, cout: int, stride: int, kernel: int, hidden: int, se_hidden: int) -> int:
    shortcut = conv_bn_params(cin, cout, 1) if stride != 1 or cin != cout else 0
    return (conv_bn_params(cin, hidden, kernel) + conv_bn_params(hidden, cout, kernel) + se_params(cout, se_hidden)
            + shortcut)


def residual_flops(cin: int, cout: int, stride: int, kernel: int, hidden: int, se_hidden: int,
                   size: int) -> tuple[int, int]:
    out = conv_out(size, kernel, stride, kernel // 2)
    shortcut = conv_flops(cin, cout, 1, out) if stride != 1 or cin != cout else 0
    convs = conv_flops(cin, hidden, kernel, out) + conv_flops(hidden, cout, kernel, out)
    return convs + se_flops(cout, se_hidden) + shortcut, out


RESIDUAL = BlockFamily("residual", ResidualBlock, residual_params, residual_flops, out_layer=lambda b: b.conv2[0],
                       hidden_layer=lambda b: b.conv1[0], se_layer=se_layer, title="Residual", short="res",
                       expansion=False, se_channels=lambda width, hidden: width)
