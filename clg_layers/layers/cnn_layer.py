"""The CNN layer of the coupling block: local features with residual learning."""

from __future__ import annotations

import torch
from timm.layers import LayerScale2d
from torch import nn

from ._checks import check_divisible, check_input, check_int, eager_inference
from .channel_attention import ChannelAttention

__all__ = ["CNNLayer"]


def _spatial_conv(dim: int, kernel_size: int, groups: int) -> nn.Module:
    """A ``k×k`` convolution; grouped ones get a 1×1 pointwise conv after them.

    With ``groups == dim`` this is a depthwise-separable convolution, the light
    variant a small model wants: channels still mix through the pointwise conv.
    """
    conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=groups)
    if groups == 1:
        return conv
    return nn.Sequential(conv, nn.Conv2d(dim, dim, 1))


class CNNLayer(nn.Module):
    """Local-feature layer: ``y = x + γ ⊙ CA(conv_b(GELU(conv_a(x))))``.

    Two ``k×k`` convolutions with a GELU between them, then squeeze-and-excitation
    channel attention (:class:`ChannelAttention`), added back to the input.
    ``γ`` is a learnable per-channel scale that starts at zero, so a fresh
    layer is the identity and a deep stack trains from the first step
    (ConvNeXt's layer scale, NAFNet's β).

    Args:
        dim: Number of channels ``C``.
        kernel_size: Odd size ``k`` of both spatial convolutions.
        reduction: Reduction ratio of the channel attention.
        groups: Groups of the ``k×k`` convolutions; must divide ``dim``. With
            ``groups > 1`` each is followed by a 1×1 pointwise convolution, so
            ``groups=dim`` gives the depthwise-separable variant for light models.

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: ``(B, C, H, W)``
    """

    def __init__(self, dim: int, *, kernel_size: int = 3, reduction: int = 16, groups: int = 1) -> None:
        super().__init__()
        self.dim = check_int("CNNLayer", "dim", dim)
        self.kernel_size = check_int("CNNLayer", "kernel_size", kernel_size, odd=True)
        self.groups = check_int("CNNLayer", "groups", groups)
        check_divisible("CNNLayer", "dim", dim, "groups", groups)
        self.conv_a = _spatial_conv(dim, kernel_size, groups)
        self.act = nn.GELU()
        self.conv_b = _spatial_conv(dim, kernel_size, groups)
        self.attn = ChannelAttention(dim, reduction=reduction)
        self.scale = LayerScale2d(dim, init_values=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer.

        Args:
            x: Feature map of shape ``(B, C, H, W)``.

        Returns:
            Tensor of shape ``(B, C, H, W)``.
        """
        check_input("CNNLayer", x, self.dim)
        # Eager inference writes the GELU and the residual sum into the
        # convolutions' own output buffers: two full-size maps per call instead
        # of four (fresh large buffers cost page faults). With autograd on, or
        # under a compiler (which plans buffers itself), the plain ops run.
        inplace = eager_inference()
        h = self.conv_a(x)
        h = torch.ops.aten.gelu_(h, approximate=self.act.approximate) if inplace else self.act(h)
        y = self.conv_b(h)
        del h
        # x + γ ⊙ (y ⊙ CA-weights) as one fused pass over the map: the two
        # per-channel factors multiply first, on (B, C, 1, 1) tensors.
        weights = self.attn.weights(y) * self.scale.gamma.view(1, -1, 1, 1)
        if inplace and y.dtype == torch.promote_types(torch.result_type(x, y), weights.dtype):
            # Not under autocast, where y is half precision and x is not: writing the
            # sum into y would silently drop the residual stream to half precision.
            return torch.addcmul(x, y, weights, out=y)
        return torch.addcmul(x, y, weights)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, kernel_size={self.kernel_size}, groups={self.groups}"
