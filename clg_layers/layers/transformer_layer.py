"""Pre-norm Transformer layer built from DBPA and GNFF."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm2d, LayerScale2d
from torch import nn

from ._checks import check_input, check_positive_float, eager_inference, restore_format
from .dbpa import DBPA
from .gnff import GNFF

__all__ = ["TransformerLayer"]


class TransformerLayer(nn.Module):
    """Pre-norm Transformer layer: DBPA then GNFF, each as a residual branch.

    ``x ← x + DropPath(γ₁ ⊙ DBPA(LN(x)))``, then
    ``x ← x + DropPath(γ₂ ⊙ GNFF(LN(x)))``. ``LN`` normalises over channels at
    every pixel (timm's ``LayerNorm2d``); ``γ₁, γ₂`` are per-channel scales
    that start at zero, so a fresh layer is the identity.

    The layer computes in channels-last token layout ``(B, H, W, C)``, where the
    channel LayerNorm needs no permute copies and the 1×1 convolutions are
    plain matrix products. A ``channels_last`` input is used as it is and the
    output is ``channels_last`` too; a contiguous ``(B, C, H, W)`` input costs
    one layout copy in and one out (so whole networks are best run
    ``channels_last``, as :class:`~clg_layers.CLGINet` does).

    In inference (autograd off) on a large map, both branches run over bands
    of rows. The attention branch makes two passes: the first computes
    ``q, k, v`` band by band (each band with the ``k // 2`` rows of context the
    depthwise kernel needs) and accumulates the image-wide statistics (the
    channel-attention map and the gate's mean); the second runs the window
    attention, the mix, the projection and the residual band by band (bands of
    whole windows). The feed-forward branch runs band by band with the two rows
    of context its 5×5 kernel needs. Apart from ``q, k, v`` and the output, no
    temporary is larger than a band of a few MiB, whatever the image size: that
    saves the page faults of fresh large allocations (glibc maps every
    allocation above 32 MiB afresh) and bounds peak memory. The result is the
    same function; :attr:`band_bytes` sets the band size (``0`` turns banding
    off).

    Args:
        dim: Number of channels ``C``.
        num_heads: Attention heads of :class:`DBPA`; must divide ``dim``.
        window_size: Window side of :class:`DBPA`'s spatial projection.
        kernel_size: Depthwise kernel of :class:`DBPA`'s ``qkv``.
        expansion: Expansion ratio of :class:`GNFF`.
        drop_path: Stochastic-depth probability of both branches.
        spatial: Use DBPA's spatial (window) projection.
        channel: Use DBPA's channel (transposed) projection.

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: ``(B, C, H, W)``
    """

    #: Target size in bytes of the feed-forward hidden map of one band in
    #: inference (see the class docstring); ``0`` disables banding.
    band_bytes: int = 8 * 2**20

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 1,
        window_size: int = 8,
        kernel_size: int = 7,
        expansion: float = 2.66,
        drop_path: float = 0.0,
        spatial: bool = True,
        channel: bool = True,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.attn = DBPA(
            dim,
            num_heads=num_heads,
            window_size=window_size,
            kernel_size=kernel_size,
            spatial=spatial,
            channel=channel,
        )
        drop_path = check_positive_float("TransformerLayer", "drop_path", drop_path, allow_zero=True)
        if drop_path >= 1.0:
            raise ValueError(f"TransformerLayer: `drop_path` must be in [0, 1), got {drop_path}")
        self.norm1 = LayerNorm2d(dim)
        self.scale1 = LayerScale2d(dim, init_values=0.0)
        self.norm2 = LayerNorm2d(dim)
        self.ffn = GNFF(dim, expansion=expansion)
        self.scale2 = LayerScale2d(dim, init_values=0.0)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer.

        Args:
            x: Feature map of shape ``(B, C, H, W)``.

        Returns:
            Tensor of shape ``(B, C, H, W)``, in the input's memory format
            (``channels_last`` in, ``channels_last`` out; otherwise contiguous).
        """
        check_input("TransformerLayer", x, self.dim)
        t = x.permute(0, 2, 3, 1).contiguous()  # (B, H, W, C); free for channels_last input
        rows = self._band_rows(t, 5 * self.dim, self.attn.window_size)
        if rows >= t.shape[1]:
            t = self._residual(t, self.attn.forward_tokens(self._norm(t, self.norm1)), self.scale1)
        else:
            t = self._banded_attention(t, rows)
        rows = self._band_rows(t, 2 * self.ffn.hidden, 1)
        if rows >= t.shape[1]:
            t = self._residual(t, self.ffn.forward_tokens(self._norm(t, self.norm2)), self.scale2)
        else:
            t = self._banded_ffn(t, rows)
        return restore_format(t.permute(0, 3, 1, 2), x)

    @staticmethod
    def _norm(t: torch.Tensor, norm: LayerNorm2d) -> torch.Tensor:
        """timm's ``LayerNorm2d`` (its parameters) applied to tokens ``(B, H, W, C)`` directly."""
        return F.layer_norm(t, norm.normalized_shape, norm.weight, norm.bias, norm.eps)

    def _residual(self, t: torch.Tensor, y: torch.Tensor, scale: LayerScale2d) -> torch.Tensor:
        """``t + DropPath(γ ⊙ y)`` on tokens; without drop path, one fused ``addcmul`` pass."""
        if isinstance(self.drop_path, nn.Identity):
            return torch.addcmul(t, y, scale.gamma)
        return t + self.drop_path(y * scale.gamma)

    def _band_rows(self, t: torch.Tensor, channels: int, multiple: int) -> int:
        """Rows per band (a multiple of ``multiple``), or ``H`` for one band: the plain path.

        ``channels`` is the width of the band's temporaries, which
        :attr:`band_bytes` bounds. Banding is an eager inference optimisation:
        off while autograd records (the plain path keeps the backward simple),
        under ``torch.compile`` / ``torch.export`` / tracing (the compilers fuse
        on their own and need no size-dependent Python loop), on the ``meta``
        device (so :func:`~clg_layers.count_macs` counts the plain function),
        while drop path is active (one mask per sample, not per band), and
        when the map is small.
        """
        b, h, w, _ = t.shape
        if (
            self.band_bytes <= 0
            or not eager_inference()
            or t.device.type == "meta"
            or not isinstance(h, int)
            or (self.training and not isinstance(self.drop_path, nn.Identity))
        ):
            return h
        row_bytes = b * w * channels * t.element_size()
        rows = max(self.band_bytes // row_bytes // multiple, -(-8 // multiple)) * multiple  # at least 8 rows
        return h if 2 * rows > h else rows

    def _banded_attention(self, t: torch.Tensor, rows: int) -> torch.Tensor:
        """``t + γ₁ ⊙ DBPA(LN(t))`` in two passes over bands of ``rows`` rows (see the class docstring)."""
        a = self.attn
        b, h, w, c = t.shape
        halo = a.kernel_size // 2
        qkv: list[torch.Tensor] = []  # allocated at the first band, in the dtype the layer computes in
        total = t.new_zeros(b, c, dtype=torch.promote_types(t.dtype, torch.float32))
        for r0 in range(0, h, rows):
            r1 = min(r0 + rows, h)
            lo, hi = max(r0 - halo, 0), min(r1 + halo, h)
            n = self._norm(t[:, lo:hi], self.norm1)
            total += n[:, r0 - lo : r1 - lo].sum((1, 2), dtype=total.dtype)
            bands = a.qkv_tokens(n, pad_top=halo - (r0 - lo), pad_bottom=halo - (hi - r1))
            if not qkv:
                qkv = [band.new_empty(b, h, w, c) for band in bands]
            for dst, src in zip(qkv, bands):
                dst[:, r0:r1] = src
        q, k, v = qkv
        attn = a._channel_attention(q, k) if a.channel else None
        g = a.gate_tokens((total / (h * w)).to(t.dtype)) if a.spatial and a.channel else None
        out = torch.empty_like(t)  # each band is written into it: the output exists once
        for r0 in range(0, h, rows):
            r1 = min(r0 + rows, h)
            y = a.attend_tokens(q[:, r0:r1], k[:, r0:r1], v[:, r0:r1], attn, g)
            torch.addcmul(t[:, r0:r1], y, self.scale1.gamma, out=out[:, r0:r1])
        return out

    def _banded_ffn(self, t: torch.Tensor, rows: int) -> torch.Tensor:
        """``t + γ₂ ⊙ GNFF(LN(t))`` computed ``rows`` rows at a time (see the class docstring)."""
        h = t.shape[1]
        halo = self.ffn.halo
        out = torch.empty_like(t)  # each band is written into it: the output exists once
        for r0 in range(0, h, rows):
            r1 = min(r0 + rows, h)
            lo, hi = max(r0 - halo, 0), min(r1 + halo, h)
            y = self.ffn.forward_tokens(
                self._norm(t[:, lo:hi], self.norm2), pad_top=halo - (r0 - lo), pad_bottom=halo - (hi - r1)
            )
            torch.addcmul(t[:, r0:r1], y, self.scale2.gamma, out=out[:, r0:r1])
        return out
