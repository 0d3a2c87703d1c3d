"""The CNN layer of the coupling block: local features with residual learning."""

from __future__ import annotations

from typing import Any

import torch
from timm.layers import LayerScale2d
from torch import nn

from ._checks import check_divisible, check_input, check_int
from ._inference import ChildSpec, use_inference_path
from ._init import factory_kwargs, reset_children, zero_
from ._shapes import holds_result
from .channel_attention import ChannelAttention

__all__ = ["CNNLayer"]


def _spatial_conv(dim: int, kernel_size: int, groups: int, dd: dict[str, Any]) -> nn.Module:
    """A ``k×k`` convolution; grouped ones get a 1×1 pointwise conv after them.

    With ``groups == dim`` this is a depthwise-separable convolution, the light
    variant a small model wants: channels still mix through the pointwise conv.
    """
    conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=groups, **dd)
    if groups == 1:
        return conv
    return nn.Sequential(conv, nn.Conv2d(dim, dim, 1, **dd))


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

    In eager inference a separate path (:meth:`_forward_inference`) applies
    the GELU in place and writes the channel rescaling and the residual sum in
    one pass into the layer's own fresh buffer: two full-size maps fewer per
    call.

    Args:
        dim: Number of channels ``C``.
        kernel_size: Odd size ``k`` of both spatial convolutions.
        reduction: Reduction ratio of the channel attention.
        groups: Groups of the ``k×k`` convolutions; must divide ``dim``. With
            ``groups > 1`` each is followed by a 1×1 pointwise convolution, so
            ``groups=dim`` gives the depthwise-separable variant for light models.
        device: Device of the parameters (``"meta"`` builds them without memory).
        dtype: Floating-point dtype of the parameters.

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: ``(B, C, H, W)``
    """

    #: Whether eager inference may take :meth:`_forward_inference`
    #: (see :func:`clg_layers.layers.set_fast_inference`).
    fast_inference: bool = True

    def __init__(
        self,
        dim: int,
        *,
        kernel_size: int = 3,
        reduction: int = 16,
        groups: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = factory_kwargs("CNNLayer", device, dtype)
        self.dim = check_int("CNNLayer", "dim", dim)
        self.kernel_size = check_int("CNNLayer", "kernel_size", kernel_size, odd=True)
        self.groups = check_int("CNNLayer", "groups", groups)
        check_divisible("CNNLayer", "dim", dim, "groups", groups)
        self.conv_a = _spatial_conv(dim, kernel_size, groups, dd)
        self.act = nn.GELU()
        self.conv_b = _spatial_conv(dim, kernel_size, groups, dd)
        self.attn = ChannelAttention(dim, reduction=reduction, **dd)
        self.scale = LayerScale2d(dim, init_values=1.0, **dd)
        # What the inference path assumes: it applies the GELU, the channel weights and γ
        # itself, and writes into the fresh outputs of the two convolutions.
        self._inference_children: dict[str, ChildSpec] = {
            "act": nn.GELU,
            "attn": ChannelAttention,
            "scale": LayerScale2d,
        }
        for name in ("conv_a", "conv_b"):
            if groups == 1:
                self._inference_children[name] = (nn.Conv2d, self.kernel_size)
            else:
                self._inference_children.update(
                    {
                        name: nn.Sequential,
                        f"{name}.0": (nn.Conv2d, self.kernel_size),
                        f"{name}.1": (nn.Conv2d, 1),
                    }
                )
        self._zero_init()

    def _zero_init(self) -> None:
        # The branch's last convolution starts at zero: the layer starts as the identity.
        zero_(self.conv_b[-1] if isinstance(self.conv_b, nn.Sequential) else self.conv_b)
        # The channel attention then first sees a near-zero map, where each reduction unit is just its
        # bias: a zero bias (not a random one, negative for half the units) keeps its ReLUs from all
        # starting dead.
        fc1 = getattr(self.attn, "fc1", None)
        if isinstance(getattr(fc1, "bias", None), torch.Tensor):
            with torch.no_grad():
                fc1.bias.zero_()

    def reset_parameters(self) -> None:
        """Re-initialise as the constructor does: PyTorch's defaults, then the zero-started ``conv_b``.

        The last convolution of the branch and the channel attention's first
        bias are zero, the layer scale ``γ`` is one.
        """
        reset_children(self)
        self._zero_init()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer: ``y = x + γ ⊙ CA(conv_b(GELU(conv_a(x))))``.

        Args:
            x: Feature map of shape ``(B, C, H, W)``.

        Returns:
            Tensor of shape ``(B, C, H, W)``.
        """
        check_input("CNNLayer", x, self.dim)
        if use_inference_path(self, x, self._inference_children):
            return self._forward_inference(x)
        h = self.act(self.conv_a(x))
        h = self.attn(self.conv_b(h))
        return x + self.scale(h)

    def _forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` in eager inference, with two full-size maps fewer.

        The GELU runs in place on the buffer ``conv_a`` just returned, the
        channel weights and ``γ`` multiply first, on ``(B, C, 1, 1)`` tensors,
        and ``x + y ⊙ (w ⊙ γ)`` is one fused ``addcmul`` written into the buffer
        ``conv_b`` just returned (nothing else holds either: no hook is
        registered), unless autocast made it narrower than ``x`` (the sum would
        then be rounded). A fresh full-size map costs page faults on every
        call (glibc returns large freed blocks to the system): at 256² the
        out-of-place GELU alone took about 28 ms of ``clginet-base``'s 1.1 s.
        """
        # aten's in-place GELU: nn.GELU has no in-place form. `act` is the stock
        # nn.GELU here (see _inference_children), so this is exactly self.act.
        h = torch.ops.aten.gelu_(self.conv_a(x), approximate=self.act.approximate)
        y = self.conv_b(h)
        del h
        weights = self.attn.weights(y) * self.scale.gamma.view(1, -1, 1, 1)
        return torch.addcmul(x, y, weights, out=y if holds_result(y, x, weights) else None)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, kernel_size={self.kernel_size}, groups={self.groups}"
