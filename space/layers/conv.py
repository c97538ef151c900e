"""Convolution + BatchNorm (+ activation) and the stems; each with its exact parameter and FLOP count.

FLOPs count one multiply-add as one FLOP (fvcore's convention); BatchNorm, activations, pooling and
additions are not counted.
"""
from __future__ import annotations

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}


def make_act(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class ConvBN(nn.Sequential):
    """Conv2d without bias, BatchNorm, optional activation; padding k//2 unless given."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: str | None = None, padding: int | None = None):
        layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2 if padding is None else padding, groups=groups, bias=False),
                  nn.BatchNorm2d(cout)]
        if act:
            layers.append(make_act(act))
        super().__init__(*layers)


def conv_bn_params(cin: int, cout: int, kernel: int, groups: int = 1) -> int:
    return cin // groups * cout * kernel * kernel + 2 * cout


def conv_flops(cin: int, cout: int, kernel: int, out_size: int, groups: int = 1) -> int:
    return cin // groups * cout * kernel * kernel * out_size * out_size


class Stem(nn.Module):
    """conv: kxk stride-2 conv-BN-act. patchify: kxk stride-k conv (with bias) + BN, non-overlapping."""

    def __init__(self, kind: str, width: int, kernel: int, act: str):
        super().__init__()
        if kind == "conv":
            self.body = ConvBN(3, width, kernel, 2, act=act)
        else:
            self.body = nn.Sequential(nn.Conv2d(3, width, kernel, kernel), nn.BatchNorm2d(width))

    def forward(self, x):
        return self.body(x)


def stem_out(kind: str, kernel: int, size: int) -> int:
    return conv_out(size, kernel, 2, kernel // 2) if kind == "conv" else conv_out(size, kernel, kernel, 0)


def stem_params(kind: str, width: int, kernel: int) -> int:
    return conv_bn_params(3, width, kernel) + (width if kind == "patchify" else 0)


def stem_flops(kind: str, width: int, kernel: int, size: int) -> int:
    return conv_flops(3, width, kernel, stem_out(kind, kernel, size))
