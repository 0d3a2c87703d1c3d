"""Shape, memory-layout and execution-mode helpers shared by the layers and the network.

Nothing here owns parameters: these helpers are about layout and sizes
(token views, memory format, crops of padded maps, how a band of rows is
cut), never about *what* a layer computes.
"""

from __future__ import annotations

import torch

from ._inference import transformed

try:
    from torch.fx.experimental.symbolic_shapes import statically_known_true as _statically_known_true
except ImportError:  # pragma: no cover - old torch without it: an ordinary (guarding) test

    def _statically_known_true(x: object) -> bool:
        return bool(x)


__all__ = [
    "band_rows",
    "crop",
    "holds_result",
    "known_zero",
    "restore_format",
    "to_channels_last",
    "to_nchw",
    "to_tokens",
]


def known_zero(n: int | torch.SymInt) -> bool:
    """Whether the size ``n`` is zero for certain: a plain ``0``, or a symbolic size provably zero.

    For plain ints this is ``n == 0``. For a symbolic size (``torch.export``,
    ``torch.compile(dynamic=True)``) it is ``True`` only when provable from what
    is already known, and it adds no guard: a "skip the padding" shortcut then
    does not specialise the graph to the example's size class.
    """
    if isinstance(n, torch.Tensor):  # torch.jit.trace: sizes are traced 0-d tensors
        return not bool(n)
    return _statically_known_true(n == 0)


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W) -> (B, H, W, C)`` as a view: contiguous when ``x`` is ``channels_last``."""
    return x.permute(0, 2, 3, 1)


def to_nchw(t: torch.Tensor) -> torch.Tensor:
    """``(B, H, W, C) -> (B, C, H, W)`` as a view: ``channels_last`` when ``t`` is contiguous."""
    return t.permute(0, 3, 1, 2)


def restore_format(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Return ``y`` (same shape as ``x``) in ``x``'s memory format.

    Layers that compute in channels-last token layout hand back a
    ``channels_last`` tensor for a ``channels_last`` input (no copy) and a
    contiguous one for anything else. Under ``torch.func`` transforms
    (``vmap``), where memory layout cannot be queried, ``y`` is returned as it
    is; ``torch.fx`` traces this function as one leaf call.
    """
    if transformed(x):
        return y
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return y.contiguous(memory_format=torch.channels_last)
    return y.contiguous()


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in ``channels_last`` memory (no copy if it already is); as it is under ``torch.func``
    transforms."""
    return x if transformed(x) else x.contiguous(memory_format=torch.channels_last)


def band_rows(t: torch.Tensor, channels: int, multiple: int, band_bytes: int) -> int:
    """Rows per band for a banded inference path, or ``H`` (one band: the map is small).

    Args:
        t: Tokens ``(B, H, W, C)`` the band is cut from.
        channels: Width of the band's largest temporary, which ``band_bytes`` bounds.
        multiple: Bands start at multiples of this (whole attention windows).
        band_bytes: Target size of that temporary; ``<= 0`` turns banding off.

    Returns:
        At least 8 rows (rounded up to ``multiple``), and ``H`` when the map
        holds fewer than two bands.
    """
    b, h, w, _ = t.shape
    if band_bytes <= 0:
        return h
    row_bytes = b * w * channels * t.element_size()
    rows = max(band_bytes // row_bytes // multiple, -(-8 // multiple)) * multiple
    return h if 2 * rows > h else rows


def holds_result(buffer: torch.Tensor, *operands: torch.Tensor) -> bool:
    """Whether ``buffer`` has the dtype of an elementwise result of ``buffer`` and ``operands``.

    Writing a result into a buffer of a narrower dtype would round it: under
    autocast a branch output is half precision while the residual stream is
    float32, and the sum must stay float32.
    """
    dtype = buffer.dtype
    for operand in operands:
        dtype = torch.promote_types(dtype, operand.dtype)
    return dtype == buffer.dtype


def crop(
    x: torch.Tensor, h: int | torch.SymInt, w: int | torch.SymInt, *, dims: tuple[int, int]
) -> torch.Tensor:
    """The first ``h`` rows and ``w`` columns of ``x`` along ``dims`` (a padded map cropped back).

    Concrete sizes slice (a view). Symbolic sizes (``torch.export``, dynamic
    ``torch.compile``) gather the rows and columns instead: a slice's size is
    ``min(h, padded)``, and proving that this equals ``h`` for every size in a
    range is beyond the shape solver when the padded size is written as
    ``n · ceil(h / n)``, which would make it specialise the graph to the
    example's size class. The gather's size is ``h`` by construction.
    """
    dh, dw = dims
    if isinstance(h, int) and isinstance(w, int):
        return x.narrow(dh, 0, h).narrow(dw, 0, w)
    x = x.index_select(dh, torch.arange(h, device=x.device))
    return x.index_select(dw, torch.arange(w, device=x.device))
