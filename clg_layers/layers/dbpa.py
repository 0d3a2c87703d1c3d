"""Dynamic Bi-Projected Attention (DBPA), the global-feature mixer of the Transformer layer."""

from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ._checks import check_bool, check_choice, check_divisible, check_input, check_int
from ._inference import transformed, use_inference_path
from ._init import factory_kwargs, reset_children
from ._shapes import band_rows, crop, known_zero, restore_format, to_nchw, to_tokens
from .block_config import DBPA_FUSIONS

__all__ = [
    "DBPA",
    "DBPA_FUSIONS",
    "channel_attention",
    "fused_attention_enabled",
    "heads_first",
    "set_fused_attention",
    "window_attention",
]

# The process-wide choice of fused attention kernels (compare timm's ``set_fused_attn``); the
# environment variable sets its start value.
_FUSED_ATTENTION = os.environ.get("CLG_LAYERS_FUSED_ATTENTION", "1").strip().lower() not in (
    "0",
    "false",
    "no",
)


def set_fused_attention(enabled: bool) -> None:
    """Allow or forbid the fused scaled-dot-product-attention kernels in every DBPA of the process.

    The fused kernels (flash attention on CPU and CUDA, memory-efficient
    attention on CUDA) have no derivative of their backward pass, so a second
    backward through them (``torch.autograd.grad(..., create_graph=True)``
    followed by another backward: gradient penalties, Jacobian regularisers,
    gradient-step denoisers) fails. Off, window attention runs PyTorch's
    ``MATH`` kernel, which supports any order of autograd, at the cost of the
    ``(w², w²)`` attention matrix of every window and head held for the
    backward pass. ``torch.func`` transforms and forward-mode AD pick the
    ``MATH`` kernel by themselves (see :func:`window_attention`); only
    double backward needs this switch, set before the forward pass. Per
    module: ``dbpa.fused_attn = False``. The start value comes from the
    environment variable ``CLG_LAYERS_FUSED_ATTENTION`` (``0`` turns the
    fused kernels off).

    Args:
        enabled: ``True`` (the default) allows the fused kernels.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"set_fused_attention: `enabled` must be a bool, got {type(enabled).__name__}")
    global _FUSED_ATTENTION
    _FUSED_ATTENTION = enabled


def fused_attention_enabled() -> bool:
    """Whether the process-wide switch allows fused attention kernels (:func:`set_fused_attention`)."""
    return _FUSED_ATTENTION


def _forward_ad_dual(x: torch.Tensor) -> bool:
    """Whether ``x`` carries a forward-mode tangent (``torch.autograd.forward_ad``)."""
    return torch.autograd.forward_ad.unpack_dual(x).tangent is not None


def _attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, fused: bool
) -> torch.Tensor:
    """``softmax(q kᵀ / √d + mask) v`` on a kernel that supports the autograd this call needs."""
    if torch.compiler.is_compiling():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if fused and _FUSED_ATTENTION and not any(transformed(z) or _forward_ad_dual(z) for z in (q, k, v)):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _depthwise(dim: int, kernel_size: int, bias: bool, dd: dict[str, Any]) -> nn.Conv2d:
    """A depthwise ``k×k`` convolution that keeps the map size."""
    return nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, bias=bias, **dd)


def window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_heads: int,
    window_size: int,
    pad_value: float = 0.0,
    *,
    fused: bool = True,
) -> torch.Tensor:
    """Multi-head self-attention among the tokens of each non-overlapping ``w×w`` window.

    A map whose sides are not multiples of ``w`` is padded at the bottom and
    right with ``pad_value``; the padded keys are masked out (they get exactly
    zero attention weight) and the padded queries cropped off, so the value
    written never reaches the output. Attention runs through
    :func:`torch.nn.functional.scaled_dot_product_attention`: on its fused
    kernels by default, on its ``MATH`` kernel (any order of autograd) when
    ``fused=False``, when :func:`set_fused_attention` turned them off, inside
    ``torch.func`` transforms (``jvp``, ``jacrev``, ``jacfwd``, ``hessian``,
    ``vmap``) and for inputs with forward-mode tangents. ``torch.fx``
    traces this function as one leaf call.

    Args:
        q, k, v: Tokens of shape ``(B, H, W, C)``.
        num_heads: Heads; must divide ``C``.
        window_size: Window side ``w``.
        pad_value: Value of the padded entries of ``q, k, v``.
        fused: Allow the fused attention kernels (see :func:`set_fused_attention`).

    Returns:
        Tokens of shape ``(B, H, W, C)``.
    """
    b, h, w, c = q.shape
    heads, ws = num_heads, window_size
    d = c // heads
    # Windows per side, rounded up. Sizes written as `n · ws` (rather than
    # `h + (-h) % ws`) keep symbolic shapes simple enough for torch.export
    # to prove the window reshapes below without guards.
    nh, nw = (h + ws - 1) // ws, (w + ws - 1) // ws
    hp, wp = nh * ws, nw * ws
    pad_h, pad_w = hp - h, wp - w
    # With concrete sizes an unpadded map skips the padding and the mask. With
    # symbolic sizes (torch.export, dynamic torch.compile, ONNX) "no padding"
    # cannot be decided without specialising the graph to a size class, so the
    # general path runs: a zero-width pad is a no-op and an all-True mask changes
    # no attention weight (bit-identical on CPU; on CUDA a mask rules out the
    # flash kernel, so such graphs use the memory-efficient one).
    padded = not (known_zero(pad_h) and known_zero(pad_w))
    if padded:
        q, k, v = (F.pad(z, (0, 0, 0, pad_w, 0, pad_h), value=pad_value) for z in (q, k, v))
    # Plain reshape/permute rather than einops so torch.export and ONNX see only
    # core aten ops: (B, nh·ws, nw·ws, heads·d) -> (B·nh·nw, heads, ws², d).
    # clone() rather than reshape(): it always copies, so tracing asks no "is this
    # already contiguous?" question, which for a level that may hold a single
    # window would specialise an exported graph.
    q, k, v = (
        z.reshape(b, nh, ws, nw, ws, heads, d)
        .permute(0, 1, 3, 5, 2, 4, 6)
        .clone(memory_format=torch.contiguous_format)
        .view(b * nh * nw, heads, ws * ws, d)
        for z in (q, k, v)
    )
    mask = None
    if padded:
        # Built directly in window order from fresh (contiguous) tensors: no reshape
        # of a permuted or expanded view, so no stride guards under torch.export.
        rows = torch.arange(hp, device=q.device).reshape(nh, 1, ws, 1) < h
        cols = torch.arange(wp, device=q.device).reshape(1, nw, 1, ws) < w
        valid = (rows & cols).reshape(nh * nw, ws * ws)  # (nW, ws²), window-major
        mask = valid.repeat(b, 1)[:, None, None, :]  # (B·nW, 1, 1, ws²): True where a key is a real pixel
    o = _attention(q, k, v, mask, fused)
    o = o.view(b, nh, nw, heads, ws, ws, d).permute(0, 1, 4, 2, 5, 3, 6)
    o = o.clone(memory_format=torch.contiguous_format).view(b, hp, wp, c)
    if padded:
        o = crop(o, h, w, dims=(1, 2))
    return o


def _no_autocast(device: torch.device) -> torch.autocast | nullcontext[None]:
    kind = device.type
    return torch.autocast(kind, enabled=False) if torch.amp.is_autocast_available(kind) else nullcontext()


def channel_attention(
    q: torch.Tensor, k: torch.Tensor, temperature: torch.Tensor, num_heads: int
) -> torch.Tensor:
    r"""The transposed-attention map of every head, ``A = softmax(τ · \hat{q} \hat{k}^T)``.

    ``\hat{q}, \hat{k}`` are the query and key channels L2-normalised over
    the whole map, so each logit is the cosine similarity of two channels of
    a head: ``q_iᵀ k_j / (‖q_i‖ ‖k_j‖)``, computed as that quotient (the Gram
    matrix over the norms, :func:`torch.nn.functional.normalize`'s ``1e-12``
    floor included) so no normalised copy of ``q`` and ``k`` is made.
    Computed in float32 whatever the input precision (float64 for float64):
    a sum of squares over a large image overflows float16. ``torch.fx``
    traces this function as one leaf call (it turns autocast off inside).

    Args:
        q: Query tokens of shape ``(B, H, W, C)``.
        k: Key tokens of shape ``(B, H, W, C)``.
        temperature: Per-head temperatures ``τ`` of shape ``(heads, 1, 1)``.
        num_heads: Heads; must divide ``C``.

    Returns:
        Tensor of shape ``(B, heads, d, d)`` with ``d = C / heads`` (output
        channel, input channel); each row sums to one.
    """
    acc = torch.promote_types(q.dtype, torch.float32)
    with _no_autocast(q.device):
        q, k = (heads_first(z, num_heads).to(acc) for z in (q, k))  # (B, heads, H·W, d)
        gram = q.transpose(-1, -2) @ k  # (B, heads, d, d)
        q_norm = torch.linalg.vector_norm(q, dim=-2).clamp_min(1e-12)  # (B, heads, d)
        k_norm = torch.linalg.vector_norm(k, dim=-2).clamp_min(1e-12)
        cosine = gram / (q_norm[..., :, None] * k_norm[..., None, :])
        return torch.softmax(cosine * temperature.to(acc), dim=-1)


def heads_first(t: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Tokens ``(B, H, W, C)`` as ``(B, heads, H·W, d)`` views, ``d = C / heads`` (no copy)."""
    return t.flatten(1, 2).unflatten(-1, (num_heads, -1)).transpose(1, 2)


torch.fx.wrap("window_attention")
torch.fx.wrap("channel_attention")
torch.fx.wrap("restore_format")


class DBPA(nn.Module):
    r"""Dynamic Bi-Projected Attention.

    :meth:`forward` computes these steps, in this order, one line each:

    1. ``q = DWConv_k(Conv1×1(x))``, and likewise ``k`` and ``v`` (modules
       ``q``/``q_dw``, ``k``/``k_dw``, ``v``/``v_dw``): a 1×1 projection (an
       :class:`~torch.nn.Linear` over the channels), then a large depthwise
       kernel over the whole map, so every token carries context from across
       window borders;
    2. **spatial**: ``S = WindowAttention(q, k, v)``, multi-head
       self-attention among the ``w²`` tokens of each non-overlapping ``w×w``
       window (:func:`window_attention`; a map whose size is not a multiple of
       ``w`` is padded, the padded keys masked, the padding cropped);
    3. **channel**: ``A = softmax(τ · \hat{q} \hat{k}^T)`` per head, the
       ``d×d`` map between L2-normalised query and key channels over the
       whole image (``d = C / heads``, ``τ`` a learnable per-head
       temperature; :func:`channel_attention`, in float32), then ``C = A·v``.
       Its cost is linear in ``H·W``;
    4. **gate**: ``g = sigmoid(MLP(GAP(x)))`` of shape ``(B, C, 1, 1)``;
    5. **mix**: ``y = g ⊙ S + (1 − g) ⊙ C`` (``fusion="gate"``, the default)
       or ``y = S + C`` (``fusion="sum"``, its parameter-free ablation);
    6. ``out = Conv1×1(y)`` (``proj``, an :class:`~torch.nn.Linear`).

    Other fusions were measured and bought nothing (design notes, "Do DBPA's
    two projections earn their keep?"). Either branch can be switched off for
    ablations (``y = S`` or ``y = C``); the gate then does not exist, so no
    parameter is left unused (which would break ``DistributedDataParallel``).

    In eager inference a separate path computes the same function with less
    memory (:meth:`_forward_inference`); it runs only when nothing could
    observe the difference (:func:`~clg_layers.layers.use_inference_path`).

    Args:
        dim: Number of channels ``C``.
        num_heads: Attention heads; must divide ``dim``.
        window_size: Side ``w`` of the spatial attention windows.
        kernel_size: Odd size ``k`` of the depthwise convolutions on ``q, k, v``.
        bias: Whether the 1×1 projections and depthwise convolutions carry a bias.
        spatial: Use the window (spatial) projection.
        channel: Use the transposed (channel) projection.
        fusion: How the two projections are mixed, one of :data:`DBPA_FUSIONS`:
            ``"gate"`` or ``"sum"``. Ignored (and the gate not built) when one
            of them is off.
        device: Device of the parameters (``"meta"`` builds them without memory).
        dtype: Floating-point dtype of the parameters.

    Shape:
        - Input: ``(B, C, H, W)``, any ``H, W >= 1``
        - Output: ``(B, C, H, W)``
    """

    #: Whether eager inference may take :meth:`_forward_inference` (see
    #: :func:`clg_layers.layers.set_fast_inference` for the process-wide switch).
    fast_inference: bool = True
    #: Whether window attention may use the fused kernels (see :func:`set_fused_attention`).
    fused_attn: bool = True
    #: Target size in bytes of one band's temporaries (about five ``C``-wide maps)
    #: in the inference path; maps of at least two such bands are processed band
    #: by band. ``0`` turns banding off.
    band_bytes: int = 8 * 2**20

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
        fusion: str = "gate",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = factory_kwargs("DBPA", device, dtype)
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
        self.fusion = check_choice("DBPA", "fusion", fusion, DBPA_FUSIONS)

        # q, k and v are three modules (not one 3C-wide projection): LoRA and other
        # per-module tools can target them separately, and no temporary is wider than C.
        self.q = nn.Linear(dim, dim, bias=bias, **dd)
        self.k = nn.Linear(dim, dim, bias=bias, **dd)
        self.v = nn.Linear(dim, dim, bias=bias, **dd)
        self.q_dw = _depthwise(dim, self.kernel_size, bias, dd)
        self.k_dw = _depthwise(dim, self.kernel_size, bias, dd)
        self.v_dw = _depthwise(dim, self.kernel_size, bias, dd)
        if channel:
            self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1, **dd))
        if spatial and channel and fusion == "gate":
            hidden = max(dim // 4, 4)
            self.gate = nn.Sequential(
                nn.Conv2d(dim, hidden, 1, **dd), nn.ReLU(), nn.Conv2d(hidden, dim, 1, **dd)
            )
        self.proj = nn.Linear(dim, dim, bias=bias, **dd)
        # Value written into the padded border of q/k/v before window attention.
        # It never reaches the output (padded keys are masked, padded queries
        # cropped); tests change it to prove exactly that.
        self.pad_value = 0.0
        # What the inference path assumes of the children: row-local projections
        # and k×k "same" convolutions, so that bands with k // 2 rows of context
        # compute exactly what the whole map does.
        k = self.kernel_size
        self._inference_children = {
            **dict.fromkeys(("q", "k", "v", "proj"), nn.Linear),
            **dict.fromkeys(("q_dw", "k_dw", "v_dw"), (nn.Conv2d, k)),
        }

    def reset_parameters(self) -> None:
        """Re-initialise as the constructor does: PyTorch's defaults for the projections, ``τ = 1``."""
        reset_children(self)
        if self.channel:
            with torch.no_grad():
                self.temperature.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply dynamic bi-projected attention: the equations of the class docstring, in order.

        Args:
            x: Feature map of shape ``(B, C, H, W)``.

        Returns:
            Tensor of shape ``(B, C, H, W)``, in the input's memory format
            (``channels_last`` in, ``channels_last`` out; otherwise contiguous).
        """
        check_input("DBPA", x, self.dim)
        if use_inference_path(self, x, self._inference_children):
            return self._forward_inference(x)
        t = to_tokens(x)  # (B, H, W, C) tokens: the 1×1 projections are Linear layers over C
        q = to_tokens(self.q_dw(to_nchw(self.q(t))))  # q = DWConv_k(Conv1×1(x))
        k = to_tokens(self.k_dw(to_nchw(self.k(t))))
        v = to_tokens(self.v_dw(to_nchw(self.v(t))))
        if self.spatial:  # S
            s = window_attention(
                q, k, v, self.num_heads, self.window_size, self.pad_value, fused=self.fused_attn
            )
        if self.channel:
            a = channel_attention(q, k, self.temperature, self.num_heads)  # A: (B, heads, d, d)
            c = heads_first(v, self.num_heads) @ a.to(v.dtype).transpose(-1, -2)  # C = A·v per head
            c = c.transpose(1, 2).flatten(-2).unflatten(1, v.shape[1:3])  # (B, H, W, C)
        if self.spatial and self.channel and self.fusion == "gate":
            g = to_tokens(torch.sigmoid(self.gate(x.mean((2, 3), keepdim=True))))  # g: (B, 1, 1, C)
            y = torch.lerp(c, s, g)  # g ⊙ S + (1 − g) ⊙ C
        elif self.spatial and self.channel:
            y = s + c
        else:
            y = s if self.spatial else c
        return restore_format(to_nchw(self.proj(y)), x)

    def _forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        """The same function as :meth:`forward`, with less memory; eager inference only.

        Three changes, none of which a caller can observe (see
        :func:`~clg_layers.layers.use_inference_path` for when it runs):

        * on a large map (see :attr:`band_bytes`) two passes over bands of
          rows: the first computes ``q, k, v`` band by band (each band with the
          ``k // 2`` rows of context its depthwise kernel needs, cropped after
          the call), the second the window attention, the mix and the output
          projection band by band, each band's result written over its rows
          of ``q`` (dead once the band is done), so no temporary is larger
          than a band and the output takes no buffer of its own;
        * the per-head channel maps are laid out as one block-diagonal
          ``C×C`` matrix (exact zeros between heads), so ``C = A·v`` is one
          well-shaped GEMM on the tokens;
        * ``(1 − g)`` is folded into that ``C×C`` matrix, so the mix is one
          ``baddbmm`` that writes the result without a channel-branch temporary.
        """
        t = to_tokens(x).contiguous()  # (B, H, W, C); free for a channels_last input
        b, h, _w, c = t.shape
        # A band holds about five C-wide temporaries (windowed q, k, v, S and the mix).
        rows = band_rows(t, 5 * c, self.window_size, self.band_bytes)
        q, k, v = self._qkv_bands(t, rows)
        attn = self._channel_matrix(q, k) if self.channel else None
        g = None
        if self.spatial and self.channel and self.fusion == "gate":
            g = torch.sigmoid(self.gate(x.mean((2, 3), keepdim=True))).view(b, 1, c)
        if rows >= h:
            return restore_format(to_nchw(self._attend(q, k, v, attn, g)), x)
        # Band by band, the output overwrites q's rows: a band's windows need only
        # its own rows of q, k and v, so those rows of q are dead once it is done
        # (and q is this layer's own buffer). No second full-size map.
        for r0 in range(0, h, rows):
            r1 = min(r0 + rows, h)
            q[:, r0:r1] = self._attend(q[:, r0:r1], k[:, r0:r1], v[:, r0:r1], attn, g)
        return restore_format(to_nchw(q), x)

    def _qkv_bands(self, t: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``q, k, v = DWConv_k(Linear(t))``, each ``(B, H, W, C)``, whole or in bands of ``rows`` rows."""
        pairs = ((self.q, self.q_dw), (self.k, self.k_dw), (self.v, self.v_dw))
        b, h, w, c = t.shape
        if rows >= h:
            return tuple(to_tokens(dw(to_nchw(proj(t)))).contiguous() for proj, dw in pairs)  # type: ignore[return-value]
        halo = self.kernel_size // 2
        out: list[torch.Tensor] = []
        for r0 in range(0, h, rows):
            r1 = min(r0 + rows, h)
            lo, hi = max(r0 - halo, 0), min(r1 + halo, h)
            band = t[:, lo:hi]
            for i, (proj, dw) in enumerate(pairs):
                # The convolution zero-pads the band like a whole map; rows whose
                # kernel would reach past the context are cropped off.
                rows_out = to_tokens(dw(to_nchw(proj(band))))[:, r0 - lo : r1 - lo]
                if len(out) <= i:  # in the dtype the modules return (half precision under autocast)
                    out.append(rows_out.new_empty(b, h, w, c))
                out[i][:, r0:r1] = rows_out
        return out[0], out[1], out[2]

    def _attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn: torch.Tensor | None,
        g: torch.Tensor | None,
    ) -> torch.Tensor:
        """Both projections, their mix and the output projection, for whole rows of windows.

        Args:
            q, k, v: Tokens of shape ``(B, R, W, C)``: the whole map, or a band of
                it whose first row is a multiple of ``window_size`` (windows are
                aligned to the top-left corner, so a band holds whole windows; a
                last, partial band is padded and masked like a whole map).
            attn: The channel map of the whole map as one ``(B, C, C)`` matrix
                (from :meth:`_channel_matrix`), or ``None`` without the channel branch.
            g: The gate of the whole map, ``(B, 1, C)``, or ``None`` unless both
                branches are on and ``fusion="gate"``.

        Returns:
            Tensor of shape ``(B, R, W, C)``.
        """
        b, h, w, c = q.shape
        if attn is not None:
            v_flat = v.reshape(b, h * w, c)
            attn = attn.to(v.dtype)  # (B, C_out, C_in)
        if self.spatial:
            s = window_attention(
                q, k, v, self.num_heads, self.window_size, self.pad_value, fused=self.fused_attn
            )
        if not (self.spatial and self.channel):
            y = s if self.spatial else torch.bmm(v_flat, attn.transpose(1, 2))
            return self.proj(y.reshape(b, h, w, c))
        if self.fusion == "gate":
            g = g.to(s.dtype)
            # g·s + (1 − g)·(v @ attnᵀ), with (1 − g) folded into the C×C matrix.
            mix = (attn * (1 - g).transpose(1, 2)).transpose(1, 2)  # (B, C_in, C_out)
            y = torch.baddbmm((s * g.view(b, 1, 1, c)).view(b, h * w, c), v_flat, mix)
        else:  # "sum": s + v @ attnᵀ, one GEMM that adds to s
            y = torch.baddbmm(s.reshape(b, h * w, c), v_flat, attn.transpose(1, 2))
        return self.proj(y.reshape(b, h, w, c))

    def _channel_matrix(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """:func:`channel_attention` of every head as one block-diagonal ``(B, C, C)`` matrix, float32.

        Entries between channels of different heads are exactly 0, so
        ``v @ attnᵀ`` mixes channels only within a head, in one GEMM whose
        output is already in token layout.
        """
        a = channel_attention(q, k, self.temperature, self.num_heads)  # (B, heads, d, d)
        b, heads, d, _ = a.shape
        eye = torch.eye(heads, dtype=a.dtype, device=a.device)
        return torch.einsum("bhij,hg->bhigj", a, eye).reshape(b, heads * d, heads * d)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, window_size={self.window_size}, "
            f"kernel_size={self.kernel_size}, spatial={self.spatial}, channel={self.channel}, "
            f"fusion={self.fusion!r}"
        )
