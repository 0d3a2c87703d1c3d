"""Gated Non-linear Feed-Forward Network (GNFF)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_bool, check_input, check_int, check_positive_float, depthwise_rows, restore_format

__all__ = ["GNFF"]


class GNFF(nn.Module):
    """Gated Non-linear Feed-Forward Network.

    ``h = Conv1×1(x)`` to ``2E`` channels (``E = round(expansion · C)``), split
    into ``a, b``; ``a ← DWConv3×3(a)``, ``b ← DWConv5×5(b)`` (two receptive
    fields: the "mixed" information); ``y = Conv1×1(GELU(a) ⊙ b)`` back to ``C``.

    Args:
        dim: Number of channels ``C``.
        expansion: Hidden expansion ratio ``γ``; ``E = max(round(γ·C), 1)``.
        bias: Whether the convolutions carry a bias.

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: ``(B, C, H, W)``
    """

    def __init__(self, dim: int, *, expansion: float = 2.66, bias: bool = False) -> None:
        super().__init__()
        self.dim = check_int("GNFF", "dim", dim)
        self.expansion = check_positive_float("GNFF", "expansion", expansion)
        check_bool("GNFF", "bias", bias)
        self.hidden = hidden = max(round(self.expansion * dim), 1)
        self.fc1 = nn.Conv2d(dim, 2 * hidden, 1, bias=bias)
        self.dw3 = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=bias)
        self.dw5 = nn.Conv2d(hidden, hidden, 5, padding=2, groups=hidden, bias=bias)
        self.fc2 = nn.Conv2d(hidden, dim, 1, bias=bias)

    #: Rows of context the 5×5 depthwise convolution reads above and below an output row.
    halo = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the feed-forward network.

        Args:
            x: Feature map of shape ``(B, C, H, W)``.

        Returns:
            Tensor of shape ``(B, C, H, W)``, in the input's memory format
            (``channels_last`` in, ``channels_last`` out; otherwise contiguous).
        """
        check_input("GNFF", x, self.dim)
        y = self.forward_tokens(x.permute(0, 2, 3, 1))
        return restore_format(y.permute(0, 3, 1, 2), x)

    def forward_tokens(self, t: torch.Tensor, *, pad_top: int = 2, pad_bottom: int = 2) -> torch.Tensor:
        """The network on a channels-last token map, optionally a band of rows of a larger map.

        Runs in ``(B, H, W, C)`` layout: the 1×1 convolutions are matrix
        products over the channel axis (``fc1`` as two products, one per half,
        so each half is born contiguous) and the depthwise convolutions run on
        ``channels_last`` memory, so no layout copy is made.

        Args:
            t: Tokens of shape ``(B, R, W, C)``.
            pad_top: Zero rows the depthwise convolutions add above ``t`` (``2``
                for a whole map, as their own padding would). A band of a larger
                map passes ``2 − k`` when ``t`` starts with ``k`` context rows.
            pad_bottom: The same below ``t``.

        Returns:
            Tensor of shape ``(B, R + pad_top + pad_bottom − 4, W, C)``.
        """
        h = self.hidden
        w1 = self.fc1.weight.flatten(1)
        b1 = (None, None) if self.fc1.bias is None else self.fc1.bias.split(h)
        z = []
        for part, (conv, bias) in enumerate(((self.dw3, b1[0]), (self.dw5, b1[1]))):
            u = F.linear(t, w1[part * h : (part + 1) * h], bias)  # (B, R, W, E)
            # The 3×3 kernel needs one row of context, not the two a band carries.
            p = conv.padding[0]
            top, bottom = p - (self.halo - pad_top), p - (self.halo - pad_bottom)
            z.append(
                depthwise_rows(u.permute(0, 3, 1, 2), conv.weight, conv.bias, top, bottom).permute(0, 2, 3, 1)
            )
        return F.linear(F.gelu(z[0]) * z[1], self.fc2.weight.flatten(1), self.fc2.bias)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, expansion={self.expansion}, hidden={self.hidden}"
