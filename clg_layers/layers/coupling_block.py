"""The coupling block: the CNN → Transformer → CNN "sandwich" with its coupling connection."""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_choice, check_input
from ._shapes import holds_result, reusable_output, to_nchw, to_tokens
from .cnn_layer import CNNLayer
from .transformer_layer import TransformerLayer

__all__ = ["CouplingBlock", "COUPLING_MODES"]

#: Accepted values of ``CouplingBlock(coupling=...)``.
COUPLING_MODES: tuple[str, ...] = ("concat", "none")


class CouplingBlock(nn.Module):
    """CNN → Transformer → CNN "sandwich" with the intra-block coupling connection.

    ``c₁ = CNN₁(x)``, ``t = Transformer(c₁)``, ``u = t + Conv1×1([c₁, t])``,
    ``out = CNN₂(u)``. The coupling connection hands the first CNN layer's
    local features straight to the second, beside the global ones; its 1×1
    convolution starts at zero, so a fresh block is the identity.
    ``coupling="none"`` drops the connection (``u = t``) for ablations.

    Args:
        dim: Number of channels ``C``.
        num_heads: Attention heads of :class:`~clg_layers.DBPA`; must divide ``dim``.
        window_size: Window side of DBPA's spatial projection.
        kernel_size: Depthwise kernel of DBPA's ``qkv``.
        expansion: Expansion ratio of :class:`~clg_layers.GNFF`.
        drop_path: Stochastic-depth probability of the Transformer branches.
        coupling: ``"concat"`` (the paper's connection) or ``"none"``.
        cnn_kernel_size: Kernel size of both :class:`~clg_layers.CNNLayer`.
        cnn_groups: Groups of the CNN layers' convolutions (``dim`` gives the
            depthwise-separable variant used by ``clginet-tiny``).
        reduction: Channel-attention reduction ratio of the CNN layers.
        spatial: Use DBPA's spatial (window) projection.
        channel: Use DBPA's channel (transposed) projection.
        attn_fusion: How DBPA mixes its two projections: ``"gate"`` or ``"sum"``
            (:data:`~clg_layers.DBPA_FUSIONS`).

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: ``(B, C, H, W)``
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 1,
        window_size: int = 8,
        kernel_size: int = 7,
        expansion: float = 2.66,
        drop_path: float = 0.0,
        coupling: str = "concat",
        cnn_kernel_size: int = 3,
        cnn_groups: int = 1,
        reduction: int = 16,
        spatial: bool = True,
        channel: bool = True,
        attn_fusion: str = "gate",
    ) -> None:
        super().__init__()
        self.dim = dim
        self.coupling = check_choice("CouplingBlock", "coupling", coupling, COUPLING_MODES)
        self.cnn1 = CNNLayer(dim, kernel_size=cnn_kernel_size, reduction=reduction, groups=cnn_groups)
        self.transformer = TransformerLayer(
            dim,
            num_heads=num_heads,
            window_size=window_size,
            kernel_size=kernel_size,
            expansion=expansion,
            drop_path=drop_path,
            spatial=spatial,
            channel=channel,
            attn_fusion=attn_fusion,
        )
        # The 1×1 convolution over [c₁, t], as an nn.Linear over the channels of the
        # token layout: a matrix product, whose backward is a plain GEMM too (oneDNN's
        # 1×1 convolution backward took about 5 % of a training step more).
        self.fuse: nn.Linear | None = None
        if coupling == "concat":
            self.fuse = nn.Linear(2 * dim, dim)
            nn.init.zeros_(self.fuse.weight)
            nn.init.zeros_(self.fuse.bias)
        self.cnn2 = CNNLayer(dim, kernel_size=cnn_kernel_size, reduction=reduction, groups=cnn_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: Feature map of shape ``(B, C, H, W)``.

        Returns:
            Tensor of shape ``(B, C, H, W)``.
        """
        check_input("CouplingBlock", x, self.dim)
        c1 = self.cnn1(x)
        t = self.transformer(c1)
        if self.fuse is not None:
            # u = t + Conv1×1([c₁, t]) on channels_last maps: the token views are free,
            # the concatenation one copy, the projection one matrix product.
            y = to_nchw(self.fuse(torch.cat((to_tokens(c1), to_tokens(t)), dim=-1)))
            # Into the projection's fresh output when nothing else holds it; not under
            # autocast (a half-precision y would drop the residual stream's precision).
            t = y.add_(t) if holds_result(y, t) and reusable_output(self.fuse) else t + y
        return self.cnn2(t)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, coupling={self.coupling!r}"
