"""torch.nn module conventions: factory kwargs, meta-device init + reset_parameters, higher-order autograd."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn
from torch.autograd import gradgradcheck

import clg_layers as cl
from clg_layers.layers.dbpa import fused_attention_enabled, set_fused_attention

# Every public layer (single-input ones take (B, C, H, W); HGU a list), built small, from keyword options
# including device/dtype.
_LAYERS: dict[str, Callable[..., nn.Module]] = {
    "ChannelAttention": lambda **dd: cl.ChannelAttention(8, reduction=4, **dd),
    "CNNLayer": lambda **dd: cl.CNNLayer(8, reduction=4, **dd),
    "CNNLayer-separable": lambda **dd: cl.CNNLayer(8, groups=8, reduction=4, **dd),
    "DBPA": lambda **dd: cl.DBPA(8, num_heads=2, window_size=2, kernel_size=3, **dd),
    "DBPA-sum": lambda **dd: cl.DBPA(8, num_heads=2, window_size=2, kernel_size=3, fusion="sum", **dd),
    "DBPA-channel": lambda **dd: cl.DBPA(8, num_heads=2, spatial=False, kernel_size=3, **dd),
    "GNFF": lambda **dd: cl.GNFF(8, expansion=1.0, **dd),
    "TransformerLayer": lambda **dd: cl.TransformerLayer(
        8, num_heads=2, window_size=2, kernel_size=3, expansion=1.0, **dd
    ),
    "CouplingBlock": lambda **dd: cl.CouplingBlock(
        8, num_heads=2, window_size=2, kernel_size=3, expansion=1.0, reduction=4, **dd
    ),
    "HybridGatedUnit": lambda **dd: cl.HybridGatedUnit([8, 4], 8, **dd),
}
_TINY_NET = dict(dim=4, depths=(1, 1, 1, 1), num_heads=1, window_size=2, kernel_size=3, refinement_depth=0)


def _inputs(name: str, dtype: torch.dtype = torch.float64, *, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if name == "HybridGatedUnit":
        return [
            torch.randn(1, 8, 3, 3, generator=g, dtype=dtype),
            torch.randn(1, 4, 6, 6, generator=g, dtype=dtype),
        ]
    return [torch.randn(1, 8, 3, 5, generator=g, dtype=dtype)]


def _call(name: str, module: nn.Module, xs: list[torch.Tensor]) -> torch.Tensor:
    return module(xs) if name == "HybridGatedUnit" else module(xs[0])


def _randomise(module: nn.Module, seed: int = 1) -> nn.Module:
    """Non-zero random parameters everywhere, so no branch is trivially the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return module


@pytest.fixture
def math_attention() -> Iterator[None]:
    before = fused_attention_enabled()
    set_fused_attention(False)
    yield
    set_fused_attention(before)


# -- factory kwargs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*_LAYERS, "CLGINet"])
def test_dtype_and_meta_device(name: str) -> None:
    build = (lambda **dd: cl.CLGINet(**_TINY_NET, **dd)) if name == "CLGINet" else _LAYERS[name]
    m64 = build(dtype=torch.float64)
    assert {p.dtype for p in m64.parameters()} == {torch.float64}
    meta = build(device="meta")
    assert all(t.is_meta for t in [*meta.parameters(), *meta.buffers()])
    assert sum(p.numel() for p in meta.parameters()) == sum(p.numel() for p in m64.parameters())


def test_build_forwards_device_and_dtype() -> None:
    model = cl.build("clginet-tiny", device="meta")
    assert all(p.is_meta for p in model.parameters())
    model = cl.build("clginet-tiny", dtype=torch.float64)
    assert model(torch.rand(1, 3, 8, 8, dtype=torch.float64)).dtype == torch.float64
    # device/dtype are not configuration: the config (what checkpoints and the Hub record) is unchanged.
    assert model.config == cl.build("clginet-tiny").config


def test_build_refuses_a_checkpoint_on_meta(tmp_path) -> None:
    path = tmp_path / "w.safetensors"
    cl.save_checkpoint(cl.build("clginet-tiny"), path)
    with pytest.raises(ValueError, match=r"build: cannot load checkpoint .* meta device"):
        cl.build("clginet-tiny", checkpoint=path, device="meta")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"dtype": torch.int64},
            ValueError,
            r"DBPA: `dtype` must be a floating-point dtype, got torch.int64",
        ),
        ({"dtype": "float32"}, TypeError, r"DBPA: `dtype` must be a torch.dtype or None, got str"),
        ({"device": 1.5}, TypeError, r"DBPA: `device` must be a torch.device"),
        ({"device": "nowhere"}, ValueError, r"DBPA: `device` is not a device: 'nowhere'"),
    ],
)
def test_bad_factory_kwargs(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        cl.DBPA(8, **kwargs)


# -- reset_parameters and meta-device materialisation ----------------------------------------------------


@pytest.mark.parametrize("name", list(_LAYERS))
def test_reset_parameters_is_the_constructors_init(name: str) -> None:
    torch.manual_seed(3)
    fresh = _LAYERS[name]()
    module = _randomise(_LAYERS[name]())
    torch.manual_seed(3)
    module.reset_parameters()
    for (key, a), b in zip(fresh.state_dict().items(), module.state_dict().values()):
        assert torch.equal(a, b), key


@pytest.mark.parametrize("variant", ["clginet-tiny", "clginet-small"])
def test_meta_init_then_reset_equals_a_fresh_build(variant: str) -> None:
    torch.manual_seed(0)
    fresh = cl.build(variant)
    model = cl.build(variant, device="meta")
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    model.reset_parameters()
    fresh_state, state = fresh.state_dict(), model.state_dict()
    assert fresh_state.keys() == state.keys()
    differing = [k for k in fresh_state if not torch.equal(fresh_state[k], state[k])]
    assert differing == []
    # What a fresh build documents, checked directly: unit temperatures, zero-started projections.
    temperatures = [t for k, t in state.items() if k.endswith("attn.temperature")]
    assert temperatures and all(torch.equal(t, torch.ones_like(t)) for t in temperatures)
    zero_started = [k for k in state if k.endswith(("attn.proj.weight", "ffn.fc2.weight", "fuse.weight"))]
    # conv_b, or its pointwise half when grouped (tiny's CNN layers are depthwise-separable)
    zero_started += [k for k in state if k.endswith(("conv_b.weight", "conv_b.1.weight", "conv_b.1.bias"))]
    assert zero_started and all(not state[k].any() for k in zero_started)


# -- higher-order autograd ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(_LAYERS))
def test_double_backward(name: str, math_attention: None) -> None:
    module = _randomise(_LAYERS[name](dtype=torch.float64))
    xs = [x.requires_grad_() for x in _inputs(name)]
    assert gradgradcheck(lambda *a: _call(name, module, list(a)), tuple(xs), eps=1e-6, atol=1e-4)


@pytest.mark.parametrize("name", list(_LAYERS))
def test_jvp_and_jacrev_match_finite_differences(name: str) -> None:
    # No switch: torch.func transforms pick an attention kernel with forward-mode and higher-order rules.
    module = _randomise(_LAYERS[name](dtype=torch.float64))
    xs = _inputs(name)
    tangents = _inputs(name, seed=1)

    def f(*a: torch.Tensor) -> torch.Tensor:
        return _call(name, module, list(a))

    _, jvp_out = torch.func.jvp(f, tuple(xs), tuple(tangents))
    h = 1e-6
    plus = f(*(x + h * t for x, t in zip(xs, tangents)))
    minus = f(*(x - h * t for x, t in zip(xs, tangents)))
    torch.testing.assert_close(jvp_out, (plus - minus) / (2 * h), atol=1e-6, rtol=1e-5)
    jac = torch.func.jacrev(f)(*xs)
    out = f(*xs)
    assert jac.shape == (*out.shape, *xs[0].shape)
    # The Jacobian applied to the tangent is the directional derivative too (single-input layers).
    if len(xs) == 1:
        torch.testing.assert_close(
            (jac.flatten(0, out.dim() - 1).flatten(1) @ tangents[0].flatten()).view_as(out), jvp_out
        )


@pytest.mark.parametrize("name", list(_LAYERS))
def test_forward_ad_dual_tensors(name: str) -> None:
    import torch.autograd.forward_ad as fwAD

    module = _randomise(_LAYERS[name](dtype=torch.float64))
    xs, ts = _inputs(name), _inputs(name, seed=1)
    with fwAD.dual_level():
        duals = [fwAD.make_dual(x, t) for x, t in zip(xs, ts)]
        tangent = fwAD.unpack_dual(_call(name, module, duals)).tangent
    _, expected = torch.func.jvp(lambda *a: _call(name, module, list(a)), tuple(xs), tuple(ts))
    torch.testing.assert_close(tangent, expected)


def test_network_jvp() -> None:
    net = _randomise(cl.CLGINet(**_TINY_NET, dtype=torch.float64))
    x, t = torch.rand(1, 3, 5, 6, dtype=torch.float64), torch.randn(1, 3, 5, 6, dtype=torch.float64)
    _, tangent = torch.func.jvp(net, (x,), (t,))
    h = 1e-6
    torch.testing.assert_close(tangent, (net(x + h * t) - net(x - h * t)) / (2 * h), atol=1e-6, rtol=1e-5)


def test_network_gradient_penalty(math_attention: None) -> None:
    # A gradient penalty (WGAN-GP / R1 style): the gradient of a loss of the input gradient.
    net = _randomise(cl.CLGINet(in_chans=1, **_TINY_NET, dtype=torch.float64))
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(net(x).square().sum(), x, create_graph=True)
    gx.square().sum().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    # and its second derivative agrees with finite differences (a 3×3 image: padded inside to 16×16)
    small = torch.rand(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    assert gradgradcheck(lambda z: net(z), (small,), eps=1e-6, atol=1e-4)


def test_fused_attention_switch() -> None:
    assert fused_attention_enabled() is True
    with pytest.raises(TypeError, match="set_fused_attention: `enabled` must be a bool, got int"):
        set_fused_attention(0)  # type: ignore[arg-type]
    # Off, and per module, window attention computes the same values (another kernel).
    module = _randomise(_LAYERS["DBPA"]())
    x = _inputs("DBPA", torch.float32)[0]
    with torch.no_grad():
        fused = module(x)
        module.fused_attn = False
        torch.testing.assert_close(module(x), fused, atol=1e-5, rtol=1e-5)
