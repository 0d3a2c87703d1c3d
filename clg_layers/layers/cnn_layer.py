"""The CNN layer of the coupling block: local features with residual learning."""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_divisible, check_input, check_int
from ._shapes import holds_result, hooked, reusable_output
from .channel_attention import ChannelAttention
from .layer_scale import LayerScale2d

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
    ``γ`` is a learnable per-channel scale (ConvNeXt's layer scale, NAFNet's β)
    that starts at one; the branch's last convolution (``conv_b``, its
    pointwise 1×1 convolution when grouped) starts at zero instead. A fresh
    layer is then the identity, yet that convolution gets a gradient at the
    first step and the rest of the branch from the second (a zero ``γ`` would
    scale every branch weight's gradient by zero). The channel attention's
    reduction bias starts at zero too, so its ReLU units are not dead while
    its input is still near zero.

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
        self.scale = LayerScale2d(dim, init_values=1.0)
        last = self.conv_b[-1] if isinstance(self.conv_b, nn.Sequential) else self.conv_b
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        # The channel attention then first sees a near-zero map, where each reduction unit is just its
        # bias: a zero bias (not a random one, negative for half the units) keeps its ReLUs from all
        # starting dead.
        nn.init.zeros_(self.attn.fc1.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer.

        Args:
            x: Feature map of shape ``(B, C, H, W)``.

        Returns:
            Tensor of shape ``(B, C, H, W)``.
        """
        check_input("CNNLayer", x, self.dim)
        h = self.conv_a(x)
        # Eager inference writes the GELU, the channel rescaling and the residual
        # sum into buffers the layer itself created (when no hook holds them):
        # fewer fresh full-size maps per call (fresh large buffers cost page faults).
        if reusable_output(self.conv_a) and not hooked(self.act):
            h = torch.ops.aten.gelu_(h, approximate=self.act.approximate)
        else:
            h = self.act(h)
        y = self.conv_b(h)
        del h
        # The channel rescaling in place on conv_b's output, unless a hook could see
        # either (a hook on `attn` receives that buffer as its input).
        y = self.attn(y, inplace=reusable_output(self.conv_b) and not hooked(self.attn))
        # x + γ ⊙ y in one fused pass. Not into y under autocast, where y is half
        # precision and x is not: that would drop the residual stream to half precision.
        return self.scale(y, x, out=y if holds_result(y, x) and reusable_output(self.attn) else None)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, kernel_size={self.kernel_size}, groups={self.groups}"
