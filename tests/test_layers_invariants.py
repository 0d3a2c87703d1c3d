"""Invariants of the layers that a wrong implementation would break."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _factories import SINGLE_INPUT, hgu_inputs
from conftest import wake
from hypothesis import given
from hypothesis import strategies as st

import clg_layers as cl


@pytest.mark.parametrize("name", sorted(SINGLE_INPUT))
def test_batch_independence(name: str) -> None:
    """Sample 0's output does not change when sample 1 changes."""
    m = wake(SINGLE_INPUT[name](8)).eval()
    x = torch.randn(3, 8, 10, 13)
    x2 = x.clone()
    x2[1] = torch.randn_like(x2[1]) * 5
    with torch.no_grad():
        y, y2 = m(x), m(x2)
    torch.testing.assert_close(y[0], y2[0])
    torch.testing.assert_close(y[2], y2[2])
    assert not torch.allclose(y[1], y2[1])


def test_hgu_batch_independence() -> None:
    m = cl.HybridGatedUnit([8, 4, 16], 6)
    feats = hgu_inputs(2, 6, 7)
    feats2 = [f.clone() for f in feats]
    feats2[1][1] += 3.0
    torch.testing.assert_close(m(feats)[0], m(feats2)[0])


@pytest.mark.parametrize("name", ["CNNLayer", "TransformerLayer", "CouplingBlock", "CouplingBlock-none"])
def test_fresh_block_is_identity(name: str) -> None:
    """Residual branches start at zero, so a fresh block passes its input through unchanged."""
    m = SINGLE_INPUT[name](8)
    # The zero is in each branch's last projection, not in its layer scale (which starts at one,
    # so that the branch's weights get gradients from the first steps).
    gammas = [p for n, p in m.named_parameters() if n.endswith("gamma")]
    assert gammas and all(torch.equal(g, torch.ones_like(g)) for g in gammas)
    x = torch.randn(2, 8, 9, 10)
    torch.testing.assert_close(m(x), x, rtol=0, atol=0)


@given(h=st.integers(1, 19), w=st.integers(1, 19), ws=st.integers(2, 8))
def test_dbpa_padding_value_never_reaches_output(h: int, w: int, ws: int) -> None:
    """Padded keys get no attention weight: the value used for padding cannot change the output."""
    m = cl.DBPA(8, num_heads=2, window_size=ws).eval()
    x = torch.randn(1, 8, h, w)
    with torch.no_grad():
        m.pad_value = 0.0
        y0 = m(x)
        m.pad_value = 1e4
        y1 = m(x)
    torch.testing.assert_close(y0, y1, rtol=1e-5, atol=1e-5)


def _reference_window_attention(qkv: torch.Tensor, heads: int, ws: int) -> torch.Tensor:
    """Naive per-window attention over real pixels only (partial windows are just smaller)."""
    b, c3, h, w = qkv.shape
    c = c3 // 3
    d = c // heads
    out = torch.zeros(b, c, h, w, dtype=qkv.dtype)
    for i in range(0, h, ws):
        for j in range(0, w, ws):
            win = qkv[:, :, i : i + ws, j : j + ws]
            hh, ww = win.shape[-2:]
            q, k, v = win.reshape(b, 3, heads, d, hh * ww).unbind(1)
            attn = torch.softmax(q.transpose(-2, -1) @ k / d**0.5, dim=-1)  # (b, heads, n, n)
            o = (attn @ v.transpose(-2, -1)).transpose(-2, -1)  # (b, heads, d, n)
            out[:, :, i : i + ws, j : j + ws] = o.reshape(b, c, hh, ww)
    return out


def _reference_channel_attention(qkv: torch.Tensor, heads: int, temperature: torch.Tensor) -> torch.Tensor:
    """Naive transposed attention per head, with explicitly normalised q and k."""
    b, c3, h, w = qkv.shape
    c = c3 // 3
    q, k, v = qkv.reshape(b, 3, heads, c // heads, h * w).unbind(1)
    q, k = q / q.norm(dim=-1, keepdim=True), k / k.norm(dim=-1, keepdim=True)
    attn = torch.softmax(q @ k.transpose(-2, -1) * temperature, dim=-1)
    return (attn @ v).reshape(b, c, h, w)


def _reference_dbpa(m: cl.DBPA, x: torch.Tensor) -> torch.Tensor:
    """DBPA written the plain NCHW way, from the module's own parameters."""

    def linear(layer: torch.nn.Linear, z: torch.Tensor) -> torch.Tensor:  # a 1×1 convolution
        return torch.einsum("oc,bchw->bohw", layer.weight, z)

    qkv = torch.cat([m.q_dw(linear(m.q, x)), m.k_dw(linear(m.k, x)), m.v_dw(linear(m.v, x))], dim=1)
    if m.spatial:
        s = _reference_window_attention(qkv, m.num_heads, m.window_size)
    if m.channel:
        c = _reference_channel_attention(qkv, m.num_heads, m.temperature)
    if m.spatial and m.channel:
        g = torch.sigmoid(m.gate(x.mean((2, 3), keepdim=True)))
        y = g * s + (1 - g) * c
    else:
        y = s if m.spatial else c
    return linear(m.proj, y)


def _randomised(m: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    return m


@pytest.mark.parametrize("branches", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("size", [(8, 8), (5, 13), (1, 1), (9, 3)])
def test_dbpa_matches_naive_reference(size: tuple[int, int], branches: tuple[bool, bool]) -> None:
    """The token-layout implementation (strided GEMMs, block-diagonal channel map, gate folded
    into one baddbmm) computes the same function as the textbook per-window / per-head one."""
    spatial, channel = branches
    m = _randomised(cl.DBPA(8, num_heads=2, window_size=4, spatial=spatial, channel=channel).double())
    x = torch.randn(2, 8, *size, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _reference_dbpa(m, x))


def test_dbpa_channel_heads_do_not_mix() -> None:
    """Channel attention never mixes channels of different heads, in both paths: the plain path's
    per-head maps are rows summing to one, and the inference path's block-diagonal C×C matrix has
    exactly zero entries between heads and the same blocks."""
    from clg_layers.layers.dbpa import channel_attention

    m = _randomised(cl.DBPA(8, num_heads=2, spatial=False).double())
    q, k = torch.randn(2, 1, 4, 5, 8, dtype=torch.float64).unbind(0)
    per_head = channel_attention(q, k, m.temperature, 2)[0]  # (heads, d, d)
    torch.testing.assert_close(per_head.sum(-1), torch.ones(2, 4, dtype=torch.float64))
    attn = m._channel_matrix(q, k)[0]
    assert torch.equal(attn[:4, 4:], torch.zeros(4, 4, dtype=torch.float64))
    assert torch.equal(attn[4:, :4], torch.zeros(4, 4, dtype=torch.float64))
    torch.testing.assert_close(attn[:4, :4], per_head[0])
    torch.testing.assert_close(attn[4:, 4:], per_head[1])


def test_dbpa_ablations_run_and_differ() -> None:
    full = cl.DBPA(8, num_heads=2, window_size=4)
    x = torch.randn(1, 8, 9, 11)
    outs = {}
    for spatial, channel in [(True, False), (False, True)]:
        m = cl.DBPA(8, num_heads=2, window_size=4, spatial=spatial, channel=channel)
        m.load_state_dict(full.state_dict(), strict=False)
        outs[(spatial, channel)] = m(x)
        assert outs[(spatial, channel)].shape == x.shape
        assert not torch.allclose(full(x), outs[(spatial, channel)])
    # The gate mixes exactly these two branches: saturating it selects one of them.
    with torch.no_grad():
        full.gate[-1].bias.fill_(1e4)
        torch.testing.assert_close(full(x), outs[(True, False)])
        full.gate[-1].bias.fill_(-1e4)
        torch.testing.assert_close(full(x), outs[(False, True)])


@pytest.mark.parametrize("name", sorted(SINGLE_INPUT))
def test_channels_last_matches_contiguous(name: str) -> None:
    m = wake(SINGLE_INPUT[name](8)).eval()
    x = torch.randn(2, 8, 11, 13)
    with torch.no_grad():
        y = m(x)
        y_cl = m(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(y, y_cl, rtol=1e-4, atol=1e-5)


def test_hgu_channels_last() -> None:
    m = cl.HybridGatedUnit([8, 4, 16], 6)
    feats = hgu_inputs(2, 6, 7)
    torch.testing.assert_close(
        m(feats), m([f.to(memory_format=torch.channels_last) for f in feats]), rtol=1e-4, atol=1e-5
    )


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize("name", sorted(SINGLE_INPUT))
def test_bf16_autocast_close_to_fp32(name: str) -> None:
    m = wake(SINGLE_INPUT[name](16)).eval()
    x = torch.randn(1, 16, 19, 21)
    with torch.no_grad():
        y = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y_bf = m(x)
    assert torch.isfinite(y_bf).all()
    assert _rel_err(y_bf, y) < 0.05


def test_hgu_bf16_autocast() -> None:
    m = cl.HybridGatedUnit([8, 4, 16], 6)
    feats = hgu_inputs(1, 9, 10)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y_bf = m(feats)
    assert torch.isfinite(y_bf).all() and _rel_err(y_bf, m(feats).detach()) < 0.05


def test_dbpa_channel_branch_float16_large_map_is_finite() -> None:
    """A float16 sum of squares over a large map overflows; DBPA computes it in float32."""
    m = cl.DBPA(4, spatial=False).half()
    x = torch.full((1, 4, 256, 256), 30.0, dtype=torch.float16)
    assert torch.isfinite(m(x)).all()


def test_hgu_resampling_commutes_with_projection() -> None:
    """Projecting before upsampling (our cost saving) equals upsampling then projecting."""
    m = cl.HybridGatedUnit([4, 4], 5).double()
    f0 = torch.randn(1, 4, 8, 10, dtype=torch.float64)
    f1 = torch.randn(1, 4, 4, 5, dtype=torch.float64)
    f2 = torch.randn(1, 4, 16, 20, dtype=torch.float64)
    from clg_layers.layers.hybrid_gated_unit import pool_to, upsample_to

    def p(f: torch.Tensor) -> torch.Tensor:  # the forward's p_i
        return upsample_to(m.proj[1](pool_to(f, f0)), f0)

    up_then_proj = m.proj[1](F.interpolate(f1, size=(8, 10), mode="bilinear", align_corners=False))
    torch.testing.assert_close(p(f1), up_then_proj)
    pool_then_proj = m.proj[1](F.adaptive_avg_pool2d(f2, (8, 10)))
    torch.testing.assert_close(p(f2), pool_then_proj)
