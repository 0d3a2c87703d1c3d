"""Property-based shape fuzzing of every public module."""

from __future__ import annotations

import torch
from conftest import wake
from hypothesis import given
from hypothesis import strategies as st

import clg_layers as cl

sizes = st.one_of(st.integers(1, 24), st.sampled_from([1, 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31]))
batches = st.integers(1, 3)


@st.composite
def dims_and_heads(draw: st.DrawFn) -> tuple[int, int]:
    heads = draw(st.integers(1, 4))
    return heads * draw(st.integers(1, 6)), heads


@given(c=st.integers(1, 40), r=st.integers(1, 32), b=batches, h=sizes, w=sizes)
def test_channel_attention_shape(c: int, r: int, b: int, h: int, w: int) -> None:
    x = torch.randn(b, c, h, w)
    y = cl.ChannelAttention(c, reduction=r)(x)
    assert y.shape == x.shape and y.dtype == x.dtype


@given(
    dh=dims_and_heads(),
    k=st.sampled_from([1, 3, 5]),
    grouped=st.booleans(),
    b=batches,
    h=sizes,
    w=sizes,
)
def test_cnn_layer_shape(dh: tuple[int, int], k: int, grouped: bool, b: int, h: int, w: int) -> None:
    c, _ = dh
    m = wake(cl.CNNLayer(c, kernel_size=k, groups=c if grouped else 1))
    x = torch.randn(b, c, h, w)
    y = m(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()


@given(
    dh=dims_and_heads(),
    ws=st.integers(1, 9),
    k=st.sampled_from([1, 3, 5, 7, 9]),
    branches=st.sampled_from([(True, True), (True, False), (False, True)]),
    b=batches,
    h=sizes,
    w=sizes,
)
def test_dbpa_shape(
    dh: tuple[int, int], ws: int, k: int, branches: tuple[bool, bool], b: int, h: int, w: int
) -> None:
    c, heads = dh
    spatial, channel = branches
    m = cl.DBPA(c, num_heads=heads, window_size=ws, kernel_size=k, spatial=spatial, channel=channel)
    x = torch.randn(b, c, h, w)
    y = m(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()


@given(c=st.integers(1, 32), e=st.floats(0.1, 4.0), b=batches, h=sizes, w=sizes)
def test_gnff_shape(c: int, e: float, b: int, h: int, w: int) -> None:
    x = torch.randn(b, c, h, w)
    y = cl.GNFF(c, expansion=e)(x)
    assert y.shape == x.shape and y.dtype == x.dtype


@given(dh=dims_and_heads(), ws=st.integers(1, 9), b=batches, h=sizes, w=sizes)
def test_transformer_layer_shape(dh: tuple[int, int], ws: int, b: int, h: int, w: int) -> None:
    c, heads = dh
    m = wake(cl.TransformerLayer(c, num_heads=heads, window_size=ws, kernel_size=3))
    x = torch.randn(b, c, h, w)
    y = m(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


@given(
    dh=dims_and_heads(),
    ws=st.integers(1, 9),
    coupling=st.sampled_from(cl.COUPLING_MODES),
    b=batches,
    h=sizes,
    w=sizes,
)
def test_coupling_block_shape(dh: tuple[int, int], ws: int, coupling: str, b: int, h: int, w: int) -> None:
    c, heads = dh
    m = wake(cl.CouplingBlock(c, num_heads=heads, window_size=ws, kernel_size=3, coupling=coupling))
    x = torch.randn(b, c, h, w)
    y = m(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()


@given(
    in_dims=st.lists(st.integers(1, 12), min_size=2, max_size=4),
    out_dim=st.integers(1, 16),
    shapes=st.lists(st.tuples(sizes, sizes), min_size=4, max_size=4),
    b=batches,
)
def test_hgu_shape(in_dims: list[int], out_dim: int, shapes: list[tuple[int, int]], b: int) -> None:
    m = cl.HybridGatedUnit(in_dims, out_dim)
    feats = [torch.randn(b, c, h, w) for c, (h, w) in zip(in_dims, shapes)]
    y = m(feats)
    assert y.shape == (b, out_dim, *shapes[0]) and y.dtype == feats[0].dtype
    assert torch.isfinite(y).all()


def test_float64_and_half_keep_dtype() -> None:
    x = torch.randn(1, 8, 9, 10, dtype=torch.float64)
    m = cl.CouplingBlock(8, num_heads=2, window_size=4).double()
    assert m(x).dtype == torch.float64
    mb = cl.DBPA(8, num_heads=2, window_size=4).to(torch.bfloat16)
    assert mb(x.to(torch.bfloat16)).dtype == torch.bfloat16
