"""A light self-attention block for late, low-resolution stages: global context at little cost.

Pre-norm multi-head self-attention over the stage's tokens (heads of ~32 channels), then a 1x1 MLP,
both residual; BatchNorm as the norm (it folds and prunes like the conv blocks). Downsampling as in
the ConvNeXt block.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from space.layers.conv import BlockFamily, make_act
from space.layers.convnext import downsample, downsample_flops, downsample_params


def num_heads(channels: int) -> int:
    heads = max(1, channels // 32)
    while channels % heads:
        heads -= 1
    return heads


class TokenAttention(nn.Module):
    """Scaled dot-product attention of q, k, v given as [B, 3C, H, W] -> [B, C, H, W]."""

    def __init__(self, channels: int):
        super().__init__()
        self.heads = num_heads(channels)

    def forward(self, qkv):
        b, c3, h, w = qkv.shape
        c = c3 // 3
        q, k, v = qkv.reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, HW, d]
        return out.transpose(-1, -2).reshape(b, c, h, w)


class AttentionBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, kernel: int, hidden: int, se_hidden: int, act: str):
        super().__init__()
        self.down = downsample(cin, cout, stride)
        self.norm1 = nn.BatchNorm2d(cout)
        self.qkv = nn.Conv2d(cout, 3 * cout, 1)
        self.attn = TokenAttention(cout)
        self.proj = nn.Conv2d(cout, cout, 1)
        self.norm2 = nn.BatchNorm2d(cout)
        self.mlp = nn.Sequential(nn.Conv2d(cout, hidden, 1), make_act(act), nn.Conv2d(hidden, cout, 1))

    def forward(self, x):
        x = self.down(x)
        x = x + self.proj(self.attn(self.qkv(self.norm1(x))))
        return x + self.mlp(self.norm2(x))


def attention_params(cin: int, cout: int, stride: int, kernel: int, hidden: int, se_hidden: int = 0) -> int:
    c = cout
    return (downsample_params(cin, c, stride) + 4 * c + (3 * c * c + 3 * c) + (c * c + c) + (c * hidden + hidden)
            + (hidden * c + c))


def attention_flops(cin: int, cout: int, stride: int, kernel: int, hidden: int, se_hidden: int,
                    size: int) -> tuple[int, int]:
    flops, out = downsample_flops(cin, cout, stride, size)
    tokens, c = out * out, cout
    return flops + tokens * (3 * c * c + c * c + 2 * c * hidden) + 2 * tokens * tokens * c, out


ATTENTION = BlockFamily("attention", AttentionBlock, attention_params, attention_flops, out_layer=lambda b: b.proj,
                        hidden_layer=lambda b: b.mlp[0], kept_whole=lambda b: [b.qkv, b.proj],
                        kept_whole_why="attention qkv/proj (whole heads; fixes the stage width)", title="Attention",
                        short="attn", kernel=False, late_only=True)
