"""Layer families, one file each; every family exports its module and its exact parameter/FLOP count."""
from __future__ import annotations

from space.layers.attention import AttentionBlock, attention_flops, attention_params
from space.layers.convnext import ConvNeXtBlock, convnext_flops, convnext_params
from space.layers.mbconv import MBConvBlock, mbconv_flops, mbconv_params
from space.layers.residual import ResidualBlock, residual_flops, residual_params

# block name -> (module class, params(cin, cout, stride, kernel, hidden, se_hidden), flops(..., size) -> (flops, out))
BLOCK_FAMILIES = {
    "residual": (ResidualBlock, residual_params, residual_flops),
    "mbconv": (MBConvBlock, lambda cin, cout, stride, k, h, se: mbconv_params(cin, cout, k, h, se), mbconv_flops),
    "convnext": (ConvNeXtBlock, convnext_params, convnext_flops),
    "attention": (AttentionBlock, attention_params, attention_flops),
}
