"""Dynamic Bi-Projected Attention (DBPA), the global-feature mixer of the Transformer layer."""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_bool, check_divisible, check_input, check_int, depthwise_rows, restore_format

try:
    from torch.fx.experimental.symbolic_shapes import statically_known_true as _statically_known_true
except ImportError:  # pragma: no cover - old torch without it: an ordinary (guarding) test

    def _statically_known_true(x: object) -> bool:
        return bool(x)


__all__ = ["DBPA"]


def _known_zero(n: int | torch.SymInt) -> bool:
    """Whether the size ``n`` is zero for certain: a plain ``0``, or a symbolic size provably zero.

    For plain ints this is ``n == 0``. For a symbolic size (``torch.export``,
    ``torch.compile(dynamic=True)``) it is ``True`` only when provable from what
    is already known, and it adds no guard: a "skip the padding" shortcut then
    does not split the graph into one specialisation per size class.
    """
    if isinstance(n, torch.Tensor):  # torch.jit.trace: sizes are traced 0-d tensors
        return not bool(n)
    return _statically_known_true(n == 0)


class DBPA(nn.Module):
    r"""Dynamic Bi-Projected Attention.

    One shared query/key/value, ``qkv = DWConv_k(Conv1×1(x))`` (``C → 3C``, a
    large depthwise kernel applied to the whole map so every token carries
    context from across window borders), feeds two projections:

    * **spatial**: multi-head self-attention among the ``w²`` tokens of each
      non-overlapping ``w×w`` window, through
      :func:`torch.nn.functional.scaled_dot_product_attention`. A map whose
      size is not a multiple of ``w`` is padded, the padded keys are masked out
      (they get exactly zero attention weight), and the padding is cropped;
    * **channel**: transposed attention over the whole image; per head the
      ``d×d`` map ``softmax(τ · \hat{q} \hat{k}^T)`` between L2-normalised
      query and key channels (``d = C / heads``, ``τ`` a learnable per-head
      temperature). Its cost is linear in ``H·W``. The normalisation and the
      ``d×d`` map are computed in float32 whatever the input precision, since a
      sum of squares over a large image overflows float16.

    A gate ``g = sigmoid(MLP(GAP(x)))`` of shape ``(B, C, 1, 1)`` mixes them,
    ``y = g · spatial + (1 − g) · channel``, and a 1×1 convolution projects the
    result. Either branch can be switched off for ablations; the gate then
    does not exist, so no parameter is left unused (which would break
    ``DistributedDataParallel``).

    Args:
        dim: Number of channels ``C``.
        num_heads: Attention heads; must divide ``dim``.
        window_size: Side ``w`` of the spatial attention windows.
        kernel_size: Odd size ``k`` of the depthwise convolution on ``qkv``.
        bias: Whether the 1×1 and depthwise convolutions carry a bias.
        spatial: Use the window (spatial) projection.
        channel: Use the transposed (channel) projection.

    Shape:
        - Input: ``(B, C, H, W)``, any ``H, W >= 1``
        - Output: ``(B, C, H, W)``
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 1,
        window_size: int = 8,
        kernel_size: int = 7,
        bias: bool = False,
        spatial: bool = True,
        channel: bool = True,
    ) -> None:
        super().__init__()
        self.dim = check_int("DBPA", "dim", dim)
        self.num_heads = check_int("DBPA", "num_heads", num_heads)
        check_divisible("DBPA", "dim", dim, "num_heads", num_heads)
        self.window_size = check_int("DBPA", "window_size", window_size)
        self.kernel_size = check_int("DBPA", "kernel_size", kernel_size, odd=True)
        check_bool("DBPA", "bias", bias)
        self.spatial = check_bool("DBPA", "spatial", spatial)
        self.channel = check_bool("DBPA", "channel", channel)
        if not (spatial or channel):
            raise ValueError("DBPA: at least one of `spatial` and `channel` must be True, got both False")

        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=bias)
        self.qkv_dw = nn.Conv2d(
            3 * dim, 3 * dim, kernel_size, padding=kernel_size // 2, groups=3 * dim, bias=bias
        )
        if channel:
            self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        if spatial and channel:
            hidden = max(dim // 4, 4)
            self.gate = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, dim, 1))
        self.proj = nn.Conv2d(dim, dim, 1, bias=bias)
        # Value written into the padded border of q/k/v before window attention.
        # It never reaches the output (padded keys are masked, padded queries
        # cropped); tests change it to prove exactly that.
        self.pad_value = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply dynamic bi-projected attention.

        Args:
            x: Feature map of shape ``(B, C, H, W)``.

        Returns:
            Tensor of shape ``(B, C, H, W)``, in the input's memory format
            (``channels_last`` in, ``channels_last`` out; otherwise contiguous).
        """
        check_input("DBPA", x, self.dim)
        y = self.forward_tokens(x.permute(0, 2, 3, 1))
        return restore_format(y.permute(0, 3, 1, 2), x)

    def forward_tokens(self, t: torch.Tensor) -> torch.Tensor:
        """The attention on a channels-last token map.

        Everything runs in ``(B, H, W, C)`` layout: the 1×1 convolutions are
        matrix products over the channel axis, the depthwise convolutions run on
        ``channels_last`` memory, the window partition is one copy per tensor,
        and the channel branch and the gate are folded into one batched matrix
        product (see :meth:`_channel_attention`). Every temporary is at most
        the size of the input.

        Args:
            t: Tokens of shape ``(B, H, W, C)``.

        Returns:
            Tensor of shape ``(B, H, W, C)`` (contiguous).
        """
        q, k, v = self.qkv_tokens(t)
        attn = self._channel_attention(q, k) if self.channel else None
        g = self.gate_tokens(t.mean((1, 2))) if self.spatial and self.channel else None
        return self.attend_tokens(q, k, v, attn, g)

    def qkv_tokens(
        self, t: torch.Tensor, *, pad_top: int | None = None, pad_bottom: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``q, k, v = DWConv_k(Conv1×1(t))`` as three C-channel token maps.

        Three C-channel maps rather than one 3C map (same weights, same MACs): no
        temporary is larger than the input, which keeps large maps under glibc's
        mmap threshold (fresh mappings page-fault).

        Args:
            t: Tokens of shape ``(B, R, W, C)``: a whole map, or a band of rows of
                one with up to ``k // 2`` rows of context above and below.
            pad_top: Zero rows the depthwise convolution adds above ``t``;
                ``None`` (a whole map) means ``k // 2``. A band that starts with
                ``j`` context rows passes ``k // 2 − j``.
            pad_bottom: The same below ``t``.

        Returns:
            ``q, k, v``, each of shape ``(B, R + pad_top + pad_bottom − 2·(k // 2), W, C)``.
        """
        c = self.dim
        p = self.kernel_size // 2
        w_qkv = self.qkv.weight.flatten(1).split(c)
        b_qkv = (None,) * 3 if self.qkv.bias is None else self.qkv.bias.split(c)
        w_dw = self.qkv_dw.weight.split(c)
        b_dw = (None,) * 3 if self.qkv_dw.bias is None else self.qkv_dw.bias.split(c)
        top, bottom = p if pad_top is None else pad_top, p if pad_bottom is None else pad_bottom
        out = []
        for i in range(3):
            u = F.linear(t, w_qkv[i], b_qkv[i]).permute(0, 3, 1, 2)  # (B, C, R, W) on channels_last memory
            u = depthwise_rows(u, w_dw[i], b_dw[i], top, bottom)
            out.append(u.permute(0, 2, 3, 1).contiguous())  # (B, R', W, C); already laid out so on CPU
        return out[0], out[1], out[2]

    def gate_tokens(self, mean: torch.Tensor) -> torch.Tensor:
        """The dynamic gate ``g = sigmoid(MLP(mean))`` from the per-channel mean of the input, ``(B, C) -> (B, 1, C)``."""
        b, c = mean.shape
        return torch.sigmoid(self.gate(mean[:, :, None, None])).view(b, 1, c)

    def attend_tokens(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn: torch.Tensor | None,
        g: torch.Tensor | None,
    ) -> torch.Tensor:
        """Both projections, their gated mix and the output projection, for whole rows of windows.

        Args:
            q, k, v: Tokens of shape ``(B, R, W, C)``: the whole map, or a band of
                it whose first row is a multiple of ``window_size`` (windows are
                aligned to the top-left corner, so a band holds whole windows; a
                last, partial band is padded and masked like a whole map).
            attn: The channel-attention map of the whole map, ``(B, C, C)``
                (from :meth:`_channel_attention`), or ``None`` without the
                channel branch.
            g: The gate of the whole map, ``(B, 1, C)``, or ``None`` unless both
                branches are on.

        Returns:
            Tensor of shape ``(B, R, W, C)``.
        """
        b, h, w, c = q.shape
        if attn is not None:
            v_flat = v.reshape(b, h * w, c)
            attn = attn.to(v.dtype)  # (B, C_out, C_in)
        if self.spatial:
            s = self._spatial(q, k, v)
        if g is not None:
            g = g.to(s.dtype)
            # g·s + (1 − g)·(v @ attnᵀ), with (1 − g) folded into the C×C matrix:
            # one GEMM that writes the mixed result, no channel-branch temporary.
            mix = (attn * (1 - g).transpose(1, 2)).transpose(1, 2)  # (B, C_in, C_out)
            y = torch.baddbmm((s * g.view(b, 1, 1, c)).view(b, h * w, c), v_flat, mix)
        elif self.spatial:
            y = s
        else:
            y = torch.bmm(v_flat, attn.transpose(1, 2))
        return F.linear(y.reshape(b, h, w, c), self.proj.weight.flatten(1), self.proj.bias)

    def _spatial(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Window self-attention; tokens ``3 × (B, H, W, C) -> (B, H, W, C)``."""
        b, h, w, c = q.shape
        heads, ws = self.num_heads, self.window_size
        d = c // heads
        # Windows per side, rounded up. Sizes written as `n · ws` (rather than
        # `h + (-h) % ws`) keep symbolic shapes simple enough for torch.export
        # to prove the window reshapes below without guards.
        nh, nw = (h + ws - 1) // ws, (w + ws - 1) // ws
        hp, wp = nh * ws, nw * ws
        pad_h, pad_w = hp - h, wp - w
        # With concrete sizes (eager, static torch.compile) an unpadded map skips
        # the padding and the mask. With symbolic sizes (torch.export, dynamic
        # torch.compile, ONNX) "no padding" cannot be decided without
        # specialising the graph to a size class, so the general path runs: a
        # zero-width pad is a no-op and an all-True mask changes no attention
        # weight (bit-identical on CPU; on CUDA a mask rules out the flash
        # kernel, so such graphs use the memory-efficient one).
        padded = not (_known_zero(pad_h) and _known_zero(pad_w))
        if padded:
            q, k, v = (F.pad(z, (0, 0, 0, pad_w, 0, pad_h), value=self.pad_value) for z in (q, k, v))
        # Plain reshape/permute rather than einops so torch.export and ONNX see
        # only core aten ops: (B, nh·ws, nw·ws, heads·d) -> (B·nh·nw, heads, ws², d)
        q, k, v = (
            z.reshape(b, nh, ws, nw, ws, heads, d)
            .permute(0, 1, 3, 5, 2, 4, 6)
            .reshape(b * nh * nw, heads, ws * ws, d)
            for z in (q, k, v)
        )
        mask = None
        if padded:
            # Built directly in window order from fresh (contiguous) tensors, so
            # no reshape of a permuted or expanded view: that keeps symbolic
            # shapes free of stride guards under torch.export.
            rows = torch.arange(hp, device=q.device).reshape(nh, 1, ws, 1) < h
            cols = torch.arange(wp, device=q.device).reshape(1, nw, 1, ws) < w
            valid = (rows & cols).reshape(nh * nw, ws * ws)  # (nW, ws²), window-major
            # (B·nW, 1, 1, ws²): True where a key is a real pixel.
            mask = valid.repeat(b, 1)[:, None, None, :]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        o = o.reshape(b, nh, nw, heads, ws, ws, d).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, hp, wp, c)
        if padded:
            o = o[:, :h, :w]
        return o

    def _channel_attention(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        r"""The transposed-attention map of every head, as one block-diagonal ``C×C`` matrix.

        Computes ``softmax(τ · \hat{q} \hat{k}^T)`` per head without
        materialising the normalised ``q`` and ``k``: the raw Gram matrix
        ``q kᵀ`` (summed over ``H·W``) is divided by the outer product of the
        L2 norms afterwards, which is the same value (``F.normalize``'s
        ``1e-12`` floor included). Entries between channels of different heads
        are masked to ``-inf`` before the softmax, so they come out exactly 0
        and ``v @ attnᵀ`` mixes channels only within a head. For ``h`` heads
        this spends ``h×`` the (small) ``C·d·H·W`` MACs of per-head products,
        in exchange for one well-shaped GEMM whose output is already in token
        layout. Computed in float32 whatever the input precision: a sum of
        squares over a large image overflows float16.

        Args:
            q: Query tokens of shape ``(B, H, W, C)``.
            k: Key tokens of shape ``(B, H, W, C)``.

        Returns:
            Tensor of shape ``(B, C, C)`` (output channel, input channel), float32
            (float64 for a float64 input).
        """
        b, h, w, c = q.shape
        d = c // self.num_heads
        acc = torch.promote_types(q.dtype, torch.float32)  # float32, or float64 if given
        device = q.device.type
        no_autocast = (
            torch.autocast(device, enabled=False)
            if torch.amp.is_autocast_available(device)
            else nullcontext()
        )
        with no_autocast:
            q = q.reshape(b, h * w, c).to(acc)
            k = k.reshape(b, h * w, c).to(acc)
            gram = torch.bmm(q.transpose(1, 2), k)  # (B, C, C)
            q_norm = torch.linalg.vector_norm(q, dim=1).clamp_min(1e-12)  # (B, C)
            k_norm = torch.linalg.vector_norm(k, dim=1).clamp_min(1e-12)
            heads = self.num_heads
            tau = self.temperature.to(acc).reshape(heads, 1).expand(heads, d).reshape(1, c, 1)
            logits = gram / (q_norm[:, :, None] * k_norm[:, None, :]) * tau
            if self.num_heads > 1:
                head = torch.arange(c, device=q.device) // d
                logits = logits.masked_fill(head[:, None] != head[None, :], float("-inf"))
            return torch.softmax(logits, dim=-1)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, window_size={self.window_size}, "
            f"kernel_size={self.kernel_size}, spatial={self.spatial}, channel={self.channel}"
        )
