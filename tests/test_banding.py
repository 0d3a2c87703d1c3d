"""The inference paths (bands, lean HGU, in-place sums) compute the same function as the plain forward."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import clg_layers as cl
from clg_layers.layers._shapes import band_rows


def set_band_bytes(module: torch.nn.Module, value: int) -> None:
    """Set the band size of every banded layer inside ``module`` (Transformer FFN and DBPA)."""
    for m in module.modules():
        if isinstance(m, (cl.TransformerLayer, cl.DBPA)):
            m.band_bytes = value


def _randomised(m: torch.nn.Module, std: float = 0.3) -> torch.nn.Module:
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, std)
    return m.eval()


BRANCHES = [(True, True), (True, False), (False, True)]


@given(
    b=st.integers(1, 2),
    h=st.integers(1, 40),
    w=st.integers(1, 13),
    heads=st.sampled_from([1, 2]),
    ws=st.integers(2, 8),
    k=st.sampled_from([1, 3, 5, 7]),
    branches=st.sampled_from(BRANCHES),
)
def test_banded_transformer_layer_matches_plain(
    b: int, h: int, w: int, heads: int, ws: int, k: int, branches: tuple[bool, bool]
) -> None:
    spatial, channel = branches
    m = _randomised(
        cl.TransformerLayer(
            8, num_heads=heads, window_size=ws, kernel_size=k, spatial=spatial, channel=channel
        )
    )
    x = torch.randn(b, 8, h, w)
    with torch.no_grad():
        set_band_bytes(m, 0)
        ref = m(x)
        set_band_bytes(m, 1)  # the smallest bands: 8 rows (rounded up to whole windows)
        out = m(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> dict[str, int]:
    """Count the calls of ``owner.name`` (an instance attribute: no hook, so the inference path stays on)."""
    calls = {"n": 0}
    original = getattr(owner, name)

    def wrapped(*args: object, **kwargs: object) -> torch.Tensor:
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)
    return calls


@pytest.mark.parametrize("branches", BRANCHES)
def test_banding_is_taken_and_exact_on_a_tall_map(
    monkeypatch: pytest.MonkeyPatch, branches: tuple[bool, bool]
) -> None:
    spatial, channel = branches
    m = _randomised(cl.TransformerLayer(8, num_heads=2, window_size=4, spatial=spatial, channel=channel))
    x = torch.randn(1, 8, 53, 11)
    ref = m(x).detach()  # autograd on: the plain path
    attend = count_calls(monkeypatch, m.attn, "_attend")
    ffn = count_calls(monkeypatch, m.ffn, "forward")
    with torch.no_grad():
        set_band_bytes(m, 1)
        out = m(x)
    assert ffn["n"] == 7  # 53 rows in bands of 8
    assert attend["n"] == 7  # 53 rows in bands of 8 (two windows of 4)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_band_rows() -> None:
    t = torch.randn(1, 64, 16, 8)
    assert band_rows(t, 40, 8, 1) == 8  # bands of 8 rows
    assert band_rows(t, 40, 3, 1) == 9  # whole windows of 3 rows, at least 8 rows
    assert band_rows(t, 40, 8, 0) == 64  # banding off
    assert band_rows(t, 40, 8, 2**40) == 64  # fewer than two bands: one


def test_banded_network_matches_plain() -> None:
    model = _randomised(cl.build("clginet-tiny"), std=0.05)  # non-zero branches, finite activations
    x = torch.rand(1, 3, 72, 40)
    with torch.no_grad():
        ref = model(x)
        set_band_bytes(model, 1)
        out = model(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("grad", [False, True])
def test_coupling_channels_last_path_matches_concat(grad: bool) -> None:
    """A channels_last input gives the same block output and gradients as a contiguous one."""
    m = _randomised(cl.CouplingBlock(8, num_heads=2)).train(grad)
    x = torch.randn(2, 8, 9, 13)
    xs = [
        x.clone().requires_grad_(grad),
        x.contiguous(memory_format=torch.channels_last).requires_grad_(grad),
    ]
    with torch.set_grad_enabled(grad):
        outs = [m(z) for z in xs]
    assert outs[1].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    if grad:
        grads = [torch.autograd.grad(o.square().sum(), [z, m.fuse.weight]) for o, z in zip(outs, xs)]
        for g1, g0 in zip(grads[1], grads[0]):
            torch.testing.assert_close(g1, g0, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n", [2, 4])
def test_hgu_lean_inference_path_is_bit_identical(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """The memory-lean inference path of the HGU (recompute instead of hold) changes nothing."""
    dims = [8, 16, 32, 8][:n]
    m = _randomised(cl.HybridGatedUnit(dims, 8), std=0.2)
    feats = [
        torch.randn(2, 8, 20, 18),
        torch.randn(2, 16, 10, 9),
        torch.randn(2, 32, 40, 36),
        torch.randn(2, 8, 7, 5),
    ][:n]
    plain = m(feats).detach()
    calls = count_calls(monkeypatch, m.proj[1], "forward")
    with torch.no_grad():
        m.lean_bytes = 2**62
        ref = m(feats)
        assert calls["n"] == 1
        m.lean_bytes = 0
        out = m(feats)
        assert calls["n"] == 3  # the lean path computes each projection twice
    assert torch.equal(out, ref)
    torch.testing.assert_close(out, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["CNNLayer", "TransformerLayer", "CouplingBlock"])
def test_inference_paths_keep_the_residual_stream_in_float32_under_autocast(name: str) -> None:
    """The in-place inference paths must not write a float32 residual sum into a bf16 buffer."""
    m = _randomised(getattr(cl, name)(8), std=0.1)
    set_band_bytes(m, 1)
    x = torch.randn(1, 8, 40, 12)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y_inference = m(x)
    with torch.enable_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y_autograd = m(x)
    assert y_inference.dtype == y_autograd.dtype == torch.float32
    torch.testing.assert_close(y_inference, y_autograd.detach(), rtol=0.05, atol=0.05)
