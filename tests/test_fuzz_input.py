"""Input fuzzing: every public module and ``clginet-tiny`` fed odd, thin, strided and wrong inputs.

What this file proves, for ``ChannelAttention``, ``CNNLayer`` (dense and depthwise-separable),
``DBPA`` (both branches, spatial only, channel only), ``GNFF``, ``TransformerLayer``,
``CouplingBlock`` (with and without coupling), ``HybridGatedUnit`` and ``clginet-tiny``:

* **Valid inputs work.** A ``(B, C, H, W)`` tensor with the module's ``C``, any
  ``B in 1..2`` and ``H, W in 1..40`` (1×1, 1×N, N×1 and other thin shapes
  included), any floating dtype (float32, float64, bfloat16, float16; the module
  is cast to it), in any layout (contiguous, ``channels_last``, ``x[..., ::2]``
  and ``x[:, :, ::2]`` views, transposed H/W, a batch expanded with stride 0, an
  offset crop, a channel slice, a random storage order) gives a finite output of
  the input's shape and dtype, leaves the input unchanged, and for float32 and
  float64 gives the same values (to rounding) as the ``.contiguous()`` input.
  Thin images also train: forward and backward give finite gradients.
* **Invalid inputs are refused with the documented error.** Non-tensors, 0-D to
  5-D tensors other than 4-D, wrong channel counts (0 included), integer, bool
  and complex dtypes, and zero-sized ``B``/``H``/``W`` raise ``ValueError`` or
  ``TypeError`` whose message starts with the module's class name and is one of
  the documented messages for a violated rule; never a torch ``RuntimeError``.
  The hybrid gated unit additionally refuses a tensor or non-sequence instead of
  a list, the wrong number of maps, and maps with different batch sizes.

Mixing dtypes (a float64 input into a float32 module) is outside the contract
(modules keep the input's dtype once cast to it) and is not tested here.

Sizes and dtypes are drawn by hypothesis; the profile loaded by ``conftest.py``
sets the number of examples. The tests run with one intra-op thread (restored
afterwards): the inputs are tiny, and a shared machine otherwise makes OpenMP
threads spin.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
import torch
from conftest import wake
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import clg_layers as cl

FLOATS = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
NON_FLOATS = (
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.bool,
    torch.complex64,
    torch.complex128,
)
LAYOUTS = (
    "contiguous",
    "channels_last",
    "step_w",  # x[..., ::2]
    "step_h",  # x[:, :, ::2]
    "transpose_hw",  # a (B, C, W, H) tensor transposed
    "expand_batch",  # one image expanded over the batch, stride 0
    "offset",  # a crop with a storage offset
    "channel_slice",  # x[:, 1:C+1] of a wider tensor
    "permuted",  # a random storage order of the four dims
)

#: name -> (builder, class name in error messages, channels)
MODULES: dict[str, tuple[Callable[[], nn.Module], str, int]] = {
    "ChannelAttention": (lambda: cl.ChannelAttention(8, reduction=4), "ChannelAttention", 8),
    "CNNLayer": (lambda: cl.CNNLayer(8), "CNNLayer", 8),
    "CNNLayer-separable": (lambda: cl.CNNLayer(8, groups=8), "CNNLayer", 8),
    "DBPA": (lambda: cl.DBPA(8, num_heads=2, window_size=4, kernel_size=3), "DBPA", 8),
    "DBPA-spatial": (lambda: cl.DBPA(8, num_heads=2, window_size=5, channel=False), "DBPA", 8),
    "DBPA-channel": (lambda: cl.DBPA(8, num_heads=2, spatial=False), "DBPA", 8),
    "GNFF": (lambda: cl.GNFF(8), "GNFF", 8),
    "TransformerLayer": (lambda: cl.TransformerLayer(8, num_heads=2, window_size=4), "TransformerLayer", 8),
    "CouplingBlock": (lambda: cl.CouplingBlock(8, num_heads=2, window_size=4), "CouplingBlock", 8),
    "CouplingBlock-none": (
        lambda: cl.CouplingBlock(8, num_heads=2, window_size=3, coupling="none"),
        "CouplingBlock",
        8,
    ),
    "clginet-tiny": (lambda: cl.build("clginet-tiny"), "CLGINet", 3),
}
HGU_DIMS, HGU_OUT = (8, 4, 16), 6


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


@functools.cache
def _module(name: str, dtype: torch.dtype) -> nn.Module:
    """The woken module, in eval mode, cast to ``dtype`` (built once per name and dtype)."""
    if name == "HybridGatedUnit":
        m: nn.Module = cl.HybridGatedUnit(HGU_DIMS, HGU_OUT)
    else:
        m = MODULES[name][0]()
    return wake(m).to(dtype).eval()


# --------------------------------------------------------------------------------------------------
# Tensors described as plans, so hypothesis prints (and shrinks) what was fed
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A tensor to build: its logical shape, dtype, memory layout and the seed of its values."""

    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32
    layout: str = "contiguous"
    perm: tuple[int, ...] = (0, 1, 2, 3)
    seed: int = 0

    def build(self) -> torch.Tensor:
        shape, g = self.shape, torch.Generator().manual_seed(self.seed)

        def make(s: Sequence[int]) -> torch.Tensor:
            s = tuple(s)
            if self.dtype.is_complex:
                return torch.randn(s, generator=g, dtype=self.dtype)
            if self.dtype.is_floating_point:
                return torch.randn(s, generator=g, dtype=torch.float64).to(self.dtype)
            if self.dtype == torch.bool:
                return torch.randint(0, 2, s, generator=g).bool()
            return torch.randint(0, 4, s, generator=g).to(self.dtype)

        if len(shape) != 4 or self.layout == "contiguous":
            return make(shape)
        b, c, h, w = shape
        if self.layout == "channels_last":
            return make(shape).contiguous(memory_format=torch.channels_last)
        if self.layout == "step_w":
            return make((b, c, h, 2 * w))[..., ::2]
        if self.layout == "step_h":
            return make((b, c, 2 * h, w))[:, :, ::2]
        if self.layout == "transpose_hw":
            return make((b, c, w, h)).transpose(2, 3)
        if self.layout == "expand_batch":
            return make((1, c, h, w)).expand(b, c, h, w)
        if self.layout == "offset":
            return make((b, c, h + 2, w + 3))[:, :, 1 : h + 1, 2 : w + 2]
        if self.layout == "channel_slice":
            return make((b, c + 2, h, w))[:, 1 : c + 1]
        if self.layout == "permuted":
            stored = make(tuple(shape[d] for d in self.perm))
            return stored.permute(*np.argsort(self.perm).tolist())
        raise AssertionError(f"unknown layout {self.layout}")


SIZES = st.one_of(st.integers(1, 40), st.sampled_from([1, 1, 2, 3, 5, 7, 8, 9, 17, 33, 40]))


@st.composite
def valid_plan(draw: st.DrawFn, channels: int, *, dtypes: Sequence[torch.dtype] = FLOATS) -> Plan:
    """A 4-D floating tensor with ``channels`` channels, possibly very thin, in any layout."""
    h, w = draw(SIZES), draw(SIZES)
    if draw(st.booleans()):  # very thin: 1×N or N×1
        h, w = (1, w) if draw(st.booleans()) else (h, 1)
    return Plan(
        shape=(draw(st.integers(1, 2)), channels, h, w),
        dtype=draw(st.one_of(st.just(torch.float32), st.sampled_from(dtypes))),
        layout=draw(st.sampled_from(LAYOUTS)),
        perm=tuple(draw(st.permutations(range(4)))),
        seed=draw(st.integers(0, 2**16)),
    )


NON_TENSORS = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.text(max_size=3),
    st.sampled_from(["BCHW", [[1.0]], (1.0, 2.0), {"x": 1}]),
)


@st.composite
def invalid_input(draw: st.DrawFn, channels: int) -> object:
    """A valid plan with one or more rules broken, or a non-tensor (built, ready to feed)."""
    plan = draw(valid_plan(channels))
    rules = st.sampled_from(["rank", "channels", "dtype", "zero", "foreign"])
    broken = draw(st.lists(rules, min_size=1, max_size=3, unique=True))
    if "foreign" in broken:
        choice = draw(st.sampled_from(["python", "numpy", "tensor_in_list"]))
        if choice == "numpy":
            return plan.build().float().numpy()
        if choice == "tensor_in_list":
            return [plan.build()]
        return draw(NON_TENSORS)
    if "dtype" in broken:
        plan = replace(plan, dtype=draw(st.sampled_from(NON_FLOATS)))
    if "channels" in broken:
        c = draw(st.integers(0, 2 * channels + 1).filter(lambda c: c != channels))
        plan = replace(plan, shape=(plan.shape[0], c, *plan.shape[2:]))
    if "zero" in broken:
        dims = draw(st.lists(st.sampled_from([0, 2, 3]), min_size=1, max_size=3, unique=True))
        plan = replace(plan, shape=tuple(0 if i in dims else s for i, s in enumerate(plan.shape)))
    if "rank" in broken:
        ndim = draw(st.sampled_from([0, 1, 2, 3, 5]))
        shape = tuple(draw(st.integers(0, 4)) for _ in range(ndim))
        plan = replace(plan, shape=shape, layout="contiguous")
    return plan.build()


def input_violations(x: object, channels: int, name: str = "input") -> list[tuple[type[Exception], str]]:
    """Every documented (exception, message fragment) that ``x`` may raise; empty when ``x`` is valid.

    The rules are independent of the order the module checks them in: any one
    violated rule may be the one reported.
    """
    if not isinstance(x, torch.Tensor):
        return [(TypeError, f"{name} must be a torch.Tensor")]
    found: list[tuple[type[Exception], str]] = []
    if x.ndim != 4:
        found.append((ValueError, f"{name} must be 4-D (B, C, H, W), got {x.ndim}-D"))
    if not x.is_floating_point():
        found.append((TypeError, f"{name} must have a floating dtype, got {x.dtype}"))
    if x.ndim == 4:
        if x.shape[1] != channels:
            found.append((ValueError, f"{name} must have {channels} channels"))
        if 0 in (x.shape[0], x.shape[2], x.shape[3]):
            found.append((ValueError, f"{name} must have B, H, W >= 1"))
    return found


def assert_refused(
    call: Callable[[], object], owner: str, allowed: list[tuple[type[Exception], str]]
) -> None:
    """``call`` raises ValueError/TypeError starting with ``owner:`` and matching one allowed rule."""
    assert allowed, "the input is valid; nothing to refuse"
    try:
        out = call()
    except (ValueError, TypeError) as err:
        msg = str(err)
        assert msg.startswith(f"{owner}:"), f"message does not start with {owner!r}: {msg!r}"
        assert any(isinstance(err, exc) and frag in msg for exc, frag in allowed), (
            f"{type(err).__name__}({msg!r}) matches none of {allowed}"
        )
    else:
        pytest.fail(f"{owner} accepted an invalid input and returned {type(out).__name__}")


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    if actual.dtype in (torch.float32, torch.float64):  # half types: rounding differs between layouts
        tol = 1e-5 if actual.dtype == torch.float32 else 1e-10
        torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


# --------------------------------------------------------------------------------------------------
# Single-input modules and clginet-tiny
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODULES))
@given(data=st.data())
def test_valid_input_works(name: str, data: st.DataObject) -> None:
    _, _owner, channels = MODULES[name]
    plan = data.draw(valid_plan(channels), label="plan")
    x = plan.build()
    before = x.clone()
    module = _module(name, plan.dtype)
    with torch.no_grad():
        y = module(x)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert torch.isfinite(y).all(), "non-finite output"
        assert torch.equal(x, before), "the module modified its input"
        if plan.layout != "contiguous":
            _close(y, module(x.contiguous()))


@pytest.mark.parametrize("name", sorted(MODULES))
@given(data=st.data())
def test_invalid_input_is_refused(name: str, data: st.DataObject) -> None:
    _, owner, channels = MODULES[name]
    x = data.draw(invalid_input(channels), label="input")
    module = _module(name, torch.float32)
    with torch.no_grad():
        assert_refused(lambda: module(x), owner, input_violations(x, channels))


@pytest.mark.parametrize("name", sorted(MODULES))
@given(n=st.integers(1, 40), orientation=st.sampled_from(["1xN", "Nx1", "1x1"]), seed=st.integers(0, 2**16))
def test_thin_image_trains(name: str, n: int, orientation: str, seed: int) -> None:
    _, _, channels = MODULES[name]
    h, w = {"1xN": (1, n), "Nx1": (n, 1), "1x1": (1, 1)}[orientation]
    module = _module(name, torch.float32)
    x = torch.randn(1, channels, h, w, generator=torch.Generator().manual_seed(seed), requires_grad=True)
    y = module(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    module.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------------------------------
# HybridGatedUnit: a list of maps
# --------------------------------------------------------------------------------------------------


@st.composite
def valid_features(draw: st.DrawFn) -> tuple[list[Plan], bool]:
    """Three maps for ``HybridGatedUnit((8, 4, 16), 6)``, sharing batch and dtype; list or tuple."""
    batch, dtype = draw(st.integers(1, 2)), draw(st.sampled_from(FLOATS))
    plans = []
    for c in HGU_DIMS:
        p = draw(valid_plan(c))
        plans.append(replace(p, dtype=dtype, shape=(batch, c, *p.shape[2:])))
    return plans, draw(st.booleans())


@given(data=st.data())
def test_hgu_valid_features_work(data: st.DataObject) -> None:
    plans, as_tuple = data.draw(valid_features(), label="features")
    xs = [p.build() for p in plans]
    features: Sequence[torch.Tensor] = tuple(xs) if as_tuple else xs
    module = _module("HybridGatedUnit", plans[0].dtype)
    with torch.no_grad():
        y = module(features)
        b, _, h, w = xs[0].shape
        assert y.shape == (b, HGU_OUT, h, w) and y.dtype == xs[0].dtype
        assert torch.isfinite(y).all()
        _close(y, module([x.contiguous() for x in xs]))


@st.composite
def invalid_features(draw: st.DrawFn) -> tuple[object, list[tuple[type[Exception], str]]]:
    """Features with something wrong, and the documented errors any of which may be raised."""
    plans, _ = draw(valid_features())
    xs: list[Any] = [p.build() for p in plans]
    kind = draw(st.sampled_from(["container", "string", "count", "map", "batch"]))
    container = (TypeError, "`features` must be a list or tuple of tensors")
    if kind == "string":  # a str is a sequence: of three one-character strings here
        return "abc", [(TypeError, "features[0] must be a torch.Tensor")]
    if kind == "container":
        return draw(
            st.sampled_from(
                [
                    xs[0],
                    torch.stack([xs[0], xs[0]]),
                    None,
                    7,
                    {0: xs[0], 1: xs[1], 2: xs[2]},
                    {id(x): x for x in xs}.values(),
                ]
            )
        ), [container]
    if kind == "count":
        n = draw(st.sampled_from([0, 1, 2, 4, 5]))
        return (xs * 2)[:n], [(ValueError, f"expected {len(HGU_DIMS)} feature maps")]
    if kind == "batch":
        i = draw(st.integers(1, 2))
        x = xs[i]
        xs[i] = torch.cat([x, x[:1]]) if draw(st.booleans()) else x[:0] if x.shape[0] == 1 else x[:1]
        errors = [(ValueError, "all features must share the batch size")]
        errors += input_violations(xs[i], HGU_DIMS[i], f"features[{i}]")
        return xs, errors
    errors = []
    for i in draw(st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True)):
        xs[i] = draw(invalid_input(HGU_DIMS[i]))
        errors += input_violations(xs[i], HGU_DIMS[i], f"features[{i}]")
    return (tuple(xs) if draw(st.booleans()) else xs), errors


@given(data=st.data())
def test_hgu_invalid_features_are_refused(data: st.DataObject) -> None:
    features, errors = data.draw(invalid_features(), label="features")
    module = _module("HybridGatedUnit", torch.float32)
    with torch.no_grad():
        assert_refused(lambda: module(features), "HybridGatedUnit", errors)


@given(n=st.integers(1, 40), orientation=st.sampled_from(["1xN", "Nx1", "1x1"]))
def test_hgu_thin_maps_train(n: int, orientation: str) -> None:
    h, w = {"1xN": (1, n), "Nx1": (n, 1), "1x1": (1, 1)}[orientation]
    module = _module("HybridGatedUnit", torch.float32)
    g = torch.Generator().manual_seed(n)
    # The first map sets the output size; the others are thinner still, or larger.
    sizes = [(h, w), (max(h // 2, 1), max(w // 2, 1)), (2 * h, 2 * w)]
    xs = [torch.randn(1, c, *s, generator=g, requires_grad=True) for c, s in zip(HGU_DIMS, sizes)]
    y = module(xs)
    assert y.shape == (1, HGU_OUT, h, w) and torch.isfinite(y).all()
    y.square().mean().backward()
    for x in xs:
        assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    module.zero_grad(set_to_none=True)
