"""Configuration fuzzing: random constructor arguments for every public module and for CLGINet.

What this file proves, for ``ChannelAttention``, ``CNNLayer``, ``DBPA``, ``GNFF``,
``TransformerLayer``, ``CouplingBlock``, ``HybridGatedUnit`` and ``CLGINet``:

* **Valid configurations work.** Arguments drawn from their documented ranges
  (including numpy integers, ``Fraction``/``np.float64`` ratios, ``out_chans=None``,
  the int shorthand of ``depths``/``num_heads``, every ``coupling`` mode and DBPA
  branch ablation) build; the woken module (zero-started branches turned on) runs
  forward *and* backward, in train mode, on a small odd-sized input (``1×C×7×9``
  for the layers, ``1×in×11×13`` for CLGINet, maps of random sizes for the HGU);
  the output has the expected shape and dtype and is finite, and every parameter
  and the input get a finite gradient (no parameter is left out of the graph).
  A CLGINet's ``config`` is plain JSON that rebuilds the same architecture (what
  ``save_checkpoint``/``build(checkpoint=...)`` rely on).
* **Invalid configurations are refused at construction.** A valid configuration
  with one to three arguments replaced by bad values (zero, negative, even
  kernels, floats/strings/bools/None/containers/tensors for ints, NaN, ±inf,
  huge ints and non-reals for ratios, drop path outside ``[0, 1)``, unknown
  coupling strings, wrong-length or non-sequence per-level arguments,
  divisibility mismatches, both DBPA branches off, ``global_residual`` with
  ``in_chans != out_chans``) raises ``ValueError`` or ``TypeError`` while being
  built, never a torch ``RuntimeError``, an ``AssertionError`` or an
  ``OverflowError``. The message starts with the name of the class that checks
  the argument (a composite module delegates to its parts: ``CouplingBlock``'s
  ``cnn_kernel_size`` is checked as ``CNNLayer: `kernel_size```) and names one of
  the replaced arguments.

Sizes stay tiny (at most 12 channels for layers, ``dim <= 8`` for CLGINet) so the
``ci`` profile runs the file in well under a minute, with one intra-op thread
(restored afterwards). ``@settings`` is not used: the profile loaded by
``conftest.py`` decides how many examples each property runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import torch
from conftest import wake
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import clg_layers as cl

Kwargs = dict[str, Any]
#: (class that reports the error, text the message must contain), e.g. ("DBPA", "`window_size`").
Blame = tuple[str, str]
#: A bad value and the blames any one of which the resulting error may carry.
Bad = tuple[object, frozenset[Blame]]

LAYER_H, LAYER_W = 7, 9
NET_H, NET_W = 11, 13


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


@dataclass(frozen=True)
class Config:
    """A valid configuration and the input shapes to run it on."""

    kwargs: Kwargs
    shapes: tuple[tuple[int, ...], ...]  # one shape per input tensor
    as_list: bool = False  # the module takes a list of tensors (HybridGatedUnit)


# --------------------------------------------------------------------------------------------------
# Bad values
# --------------------------------------------------------------------------------------------------

_NON_INTS = st.one_of(
    st.floats(),  # 3.0 too: an integral float is still not an int; NaN and ±inf
    st.booleans(),  # bool is an int subclass, refused on purpose
    st.none(),
    st.text(max_size=3),
    st.complex_numbers(max_magnitude=8),
    st.sampled_from(
        [b"3", "3", [3], (3,), {3}, Decimal("3"), Fraction(3, 1), np.float64(3.0), np.bool_(True)]
    ),
    st.builds(torch.tensor, st.integers(1, 4)),
)

_NON_REALS = st.one_of(
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.complex_numbers(max_magnitude=8),
    st.sampled_from(["2.0", b"2", [2.0], (0.5,), Decimal("2"), np.bool_(False)]),
    st.builds(torch.tensor, st.floats(0.1, 2.0)),
)

_NAN_INF = st.sampled_from(
    [math.nan, math.inf, -math.inf, np.float64("nan"), np.float32("inf"), 10**400, -(10**400)]
)


def bad_int(minimum: int = 1, *, odd: bool = False) -> st.SearchStrategy[object]:
    """Values ``check_int(..., minimum=minimum, odd=odd)`` must refuse."""
    too_small = st.integers(max_value=minimum - 1)
    options = [_NON_INTS, too_small, st.integers(-(2**63), minimum - 1).map(np.int64)]
    if odd:
        options.append(st.integers(max(minimum, 1), 25).map(lambda k: 2 * k))
    return st.one_of(*options)


def bad_positive_real() -> st.SearchStrategy[object]:
    """Values that are not a finite real number ``> 0`` (GNFF's ``expansion``)."""
    return st.one_of(
        _NON_REALS,
        _NAN_INF,
        st.floats(max_value=0.0),
        st.integers(max_value=0),
        st.fractions(max_value=0),
        st.sampled_from([np.float32(-1.0), np.float64(0.0)]),
    )


def bad_drop() -> st.SearchStrategy[object]:
    """Values outside the stochastic-depth range ``[0, 1)``."""
    return st.one_of(
        _NON_REALS,
        _NAN_INF,
        st.floats(min_value=1.0),
        st.floats(max_value=0.0, exclude_max=True).filter(lambda v: v < 0),
        st.integers(min_value=1),
        st.integers(max_value=-1),
        st.fractions(min_value=1),
        st.sampled_from([np.float64(1.0), np.float32(-0.5)]),
    )


def bad_bool() -> st.SearchStrategy[object]:
    """Anything that is not a ``bool`` (numpy's ``bool_`` included)."""
    return st.one_of(
        st.integers(),
        st.floats(),
        st.none(),
        st.text(max_size=4),
        st.sampled_from([np.bool_(True), np.bool_(False), "True", [True], torch.tensor(True)]),
    )


def bad_coupling() -> st.SearchStrategy[object]:
    """Anything but ``"concat"`` or ``"none"``."""
    return st.one_of(
        st.text(max_size=8).filter(lambda s: s not in cl.COUPLING_MODES),
        st.none(),
        st.integers(),
        st.booleans(),
        st.sampled_from([b"concat", ["concat"], ("none",), "Concat", "concat ", "NONE", "add", "sum"]),
    )


def non_divisor(n: int) -> st.SearchStrategy[int]:
    """A positive int that does not divide ``n``."""
    return st.integers(2, 2 * n + 3).filter(lambda g: n % g != 0)


def blamed(values: st.SearchStrategy[object], owner: str, name: str) -> st.SearchStrategy[Bad]:
    """Tag bad values with the one blame they must produce: ``owner: ... `name` ...``."""
    return values.map(lambda v: (v, frozenset({(owner, f"`{name}")})))


def replaced_entry(
    valid_entry: st.SearchStrategy[int], length: int, bad_entry: st.SearchStrategy[object]
) -> st.SearchStrategy[object]:
    """A list or tuple of ``length`` entries, one of them bad."""

    @st.composite
    def build(draw: st.DrawFn) -> object:
        values: list[object] = draw(st.lists(valid_entry, min_size=length, max_size=length))
        values[draw(st.integers(0, length - 1))] = draw(bad_entry)
        return values if draw(st.booleans()) else tuple(values)

    return build()


def bad_per_level(valid_entry: st.SearchStrategy[int]) -> st.SearchStrategy[object]:
    """Bad values for CLGINet's per-level ``depths``/``num_heads`` (an int or 4 ints)."""
    return st.one_of(
        st.lists(valid_entry, max_size=7).filter(lambda v: len(v) != 4),  # wrong length
        st.lists(valid_entry, max_size=7).filter(lambda v: len(v) != 4).map(tuple),
        st.text(max_size=4),  # "1111" is a sequence, but of characters
        st.none(),
        st.floats(),
        st.booleans(),
        st.sampled_from([{1, 2}, {0: 1}, np.ones(4, dtype=np.int64), b"\x01\x01\x01\x01", range(0)]),
        st.integers(max_value=0),  # int shorthand below the minimum
        replaced_entry(valid_entry, 4, bad_int()),
    )


# --------------------------------------------------------------------------------------------------
# Valid configurations
# --------------------------------------------------------------------------------------------------

ODD_KERNELS = st.sampled_from([1, 3, 5, 7])
EXPANSIONS = st.one_of(
    st.floats(0.05, 3.0),
    st.fractions(min_value=Fraction(1, 20), max_value=3, max_denominator=20),
    st.sampled_from([1, 2, np.float64(2.66), np.float32(0.5)]),
)
DROPS = st.one_of(st.floats(0.0, 0.9), st.sampled_from([0, Fraction(1, 3), np.float64(0.25)]))
BRANCHES = st.sampled_from([(True, True), (True, False), (False, True)])


def _int(v: int, as_numpy: bool) -> int:
    """``v``, or ``np.int64(v)``: every int argument also accepts numpy integers."""
    return np.int64(v) if as_numpy else v  # type: ignore[return-value]


def _divisors(n: int, limit: int) -> list[int]:
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


@st.composite
def valid_channel_attention(draw: st.DrawFn) -> Config:
    npi = draw(st.booleans())
    dim = draw(st.integers(1, 12))
    kw = dict(dim=_int(dim, npi), reduction=_int(draw(st.integers(1, 32)), npi))
    return Config(kw, ((1, dim, LAYER_H, LAYER_W),))


@st.composite
def valid_cnn_layer(draw: st.DrawFn) -> Config:
    npi = draw(st.booleans())
    dim = draw(st.integers(1, 12))
    kw = dict(
        dim=_int(dim, npi),
        kernel_size=_int(draw(ODD_KERNELS), npi),
        reduction=_int(draw(st.integers(1, 32)), npi),
        groups=_int(draw(st.sampled_from(_divisors(dim, dim))), npi),
    )
    return Config(kw, ((1, dim, LAYER_H, LAYER_W),))


@st.composite
def _attention_kwargs(draw: st.DrawFn, npi: bool) -> tuple[int, Kwargs]:
    heads = draw(st.integers(1, 3))
    dim = heads * draw(st.integers(1, 4))
    spatial, channel = draw(BRANCHES)
    kw = dict(
        dim=_int(dim, npi),
        num_heads=_int(heads, npi),
        window_size=_int(draw(st.integers(1, 10)), npi),
        kernel_size=_int(draw(ODD_KERNELS), npi),
        spatial=spatial,
        channel=channel,
    )
    return dim, kw


@st.composite
def valid_dbpa(draw: st.DrawFn) -> Config:
    dim, kw = draw(_attention_kwargs(draw(st.booleans())))
    kw["bias"] = draw(st.booleans())
    return Config(kw, ((1, dim, LAYER_H, LAYER_W),))


@st.composite
def valid_gnff(draw: st.DrawFn) -> Config:
    dim = draw(st.integers(1, 12))
    kw = dict(dim=_int(dim, draw(st.booleans())), expansion=draw(EXPANSIONS), bias=draw(st.booleans()))
    return Config(kw, ((1, dim, LAYER_H, LAYER_W),))


@st.composite
def valid_transformer_layer(draw: st.DrawFn) -> Config:
    dim, kw = draw(_attention_kwargs(draw(st.booleans())))
    kw.update(expansion=draw(EXPANSIONS), drop_path=draw(DROPS))
    return Config(kw, ((1, dim, LAYER_H, LAYER_W),))


@st.composite
def valid_coupling_block(draw: st.DrawFn) -> Config:
    npi = draw(st.booleans())
    dim, kw = draw(_attention_kwargs(npi))
    kw.update(
        expansion=draw(EXPANSIONS),
        drop_path=draw(DROPS),
        coupling=draw(st.sampled_from(cl.COUPLING_MODES)),
        cnn_kernel_size=_int(draw(ODD_KERNELS), npi),
        cnn_groups=_int(draw(st.sampled_from(_divisors(dim, dim))), npi),
        reduction=_int(draw(st.integers(1, 32)), npi),
    )
    return Config(kw, ((1, dim, LAYER_H, LAYER_W),))


@st.composite
def valid_hgu(draw: st.DrawFn) -> Config:
    npi = draw(st.booleans())
    in_dims = draw(st.lists(st.integers(1, 12), min_size=2, max_size=4))
    sizes = [(LAYER_H, LAYER_W)] + [
        (draw(st.integers(1, 18)), draw(st.integers(1, 18))) for _ in range(len(in_dims) - 1)
    ]
    dims: list[int] = [_int(c, npi) for c in in_dims]
    kw = dict(
        in_dims=dims if draw(st.booleans()) else tuple(dims),
        out_dim=_int(draw(st.integers(1, 12)), npi),
        reduction=_int(draw(st.integers(1, 16)), npi),
    )
    shapes = tuple((1, c, h, w) for c, (h, w) in zip(in_dims, sizes))
    return Config(kw, shapes, as_list=True)


@st.composite
def valid_clginet(draw: st.DrawFn) -> Config:
    npi = draw(st.booleans())  # numpy ints everywhere (the per-level int shorthand takes only int)
    in_chans = draw(st.integers(1, 3))
    global_residual = draw(st.booleans())
    out_chans = in_chans if global_residual else draw(st.integers(1, 3))
    dim = 2 * draw(st.integers(1, 4))
    widths = [dim * 2**level for level in range(4)]
    depths: object = [draw(st.integers(1, 2)) for _ in range(4)]
    heads: object = [draw(st.sampled_from(_divisors(w, 4))) for w in widths]
    if not npi and draw(st.booleans()):
        depths = draw(st.integers(1, 2))
    elif draw(st.booleans()):
        depths = tuple(_int(d, npi) for d in depths)  # type: ignore[union-attr]
    if not npi and draw(st.booleans()):
        heads = draw(st.sampled_from(_divisors(dim, 4)))
    else:
        heads = [_int(h, npi) for h in heads]  # type: ignore[union-attr]
    kw: Kwargs = dict(
        in_chans=_int(in_chans, npi),
        out_chans=None if out_chans == in_chans and draw(st.booleans()) else _int(out_chans, npi),
        dim=_int(dim, npi),
        depths=depths,
        num_heads=heads,
        window_size=_int(draw(st.integers(1, 8)), npi),
        kernel_size=_int(draw(st.sampled_from([1, 3, 5])), npi),
        expansion=draw(st.one_of(st.floats(0.5, 3.0), st.sampled_from([Fraction(3, 2), np.float32(2.0), 2]))),
        refinement_depth=_int(draw(st.integers(0, 2)), npi),
        drop_path_rate=draw(st.one_of(st.floats(0.0, 0.5), st.just(0))),
        global_residual=global_residual,
        cnn_groups=_int(draw(st.sampled_from([0, *_divisors(dim, dim)])), npi),
        coupling=draw(st.sampled_from(cl.COUPLING_MODES)),
    )
    return Config(kw, ((1, in_chans, NET_H, NET_W),))


# --------------------------------------------------------------------------------------------------
# Per-class specs: the valid strategy, and for each argument the bad values (given the valid
# configuration they replace an argument of) with the blame they must produce.
# --------------------------------------------------------------------------------------------------

BadMap = Mapping[str, Callable[[Kwargs], st.SearchStrategy[Bad]]]


def _attention_bad(dbpa: str = "DBPA") -> dict[str, Callable[[Kwargs], st.SearchStrategy[Bad]]]:
    """Bad values of the DBPA arguments, as DBPA (or a module that forwards them to it) reports them."""

    def heads(kw: Kwargs) -> st.SearchStrategy[Bad]:
        return st.one_of(
            blamed(bad_int(), dbpa, "num_heads"), blamed(non_divisor(int(kw["dim"])), dbpa, "num_heads")
        )

    def branch(name: str, other: str) -> Callable[[Kwargs], st.SearchStrategy[Bad]]:
        def bad(kw: Kwargs) -> st.SearchStrategy[Bad]:
            values = bad_bool() if kw[other] else st.one_of(bad_bool(), st.just(False))  # both off
            return blamed(values, dbpa, name)

        return bad

    return {
        "num_heads": heads,
        "window_size": lambda kw: blamed(bad_int(), dbpa, "window_size"),
        "kernel_size": lambda kw: blamed(bad_int(odd=True), dbpa, "kernel_size"),
        "spatial": branch("spatial", "channel"),
        "channel": branch("channel", "spatial"),
    }


def _cnn_bad(owner: str, kernel: str, groups: str) -> dict[str, Callable[[Kwargs], st.SearchStrategy[Bad]]]:
    """Bad values of CNNLayer's arguments (named ``kernel``/``groups`` in the caller)."""
    return {
        kernel: lambda kw: blamed(bad_int(odd=True), owner, "kernel_size"),
        groups: lambda kw: st.one_of(
            blamed(bad_int(), owner, "groups"), blamed(non_divisor(int(kw["dim"])), owner, "groups")
        ),
        "reduction": lambda kw: blamed(bad_int(), "ChannelAttention", "reduction"),
    }


def _block_bad(owner: str) -> dict[str, Callable[[Kwargs], st.SearchStrategy[Bad]]]:
    """Bad block options of a layer that takes a BlockConfig: the layer called is the one named."""
    return {
        "dim": lambda kw: blamed(bad_int(), owner, "dim"),
        "expansion": lambda kw: blamed(bad_positive_real(), owner, "expansion"),
        "drop_path": lambda kw: blamed(bad_drop(), owner, "drop_path"),
        **_attention_bad(owner),
    }


def _clginet_bad() -> dict[str, Callable[[Kwargs], st.SearchStrategy[Bad]]]:
    net = "CLGINet"

    def out_chans(kw: Kwargs) -> st.SearchStrategy[Bad]:
        bad = blamed(bad_int(), net, "out_chans")
        if not kw["global_residual"]:
            return bad
        # A valid channel count that differs from in_chans, with the global residual on.
        other = st.integers(1, 6).filter(lambda c: c != int(kw["in_chans"]))
        return st.one_of(bad, other.map(lambda c: (c, frozenset({(net, "`global_residual")}))))

    def num_heads(kw: Kwargs) -> st.SearchStrategy[Bad]:
        dim = int(kw["dim"])

        @st.composite
        def not_dividing(draw: st.DrawFn) -> list[int]:
            level = draw(st.integers(0, 3))
            heads = [1, 1, 1, 1]
            heads[level] = draw(non_divisor(dim * 2**level))
            return heads

        return st.one_of(
            blamed(bad_per_level(st.integers(1, 2)), net, "num_heads"),
            blamed(not_dividing(), net, "num_heads"),
        )

    return {
        "in_chans": lambda kw: blamed(bad_int(), net, "in_chans"),
        "out_chans": out_chans,
        "dim": lambda kw: st.one_of(
            blamed(bad_int(), net, "dim"), blamed(st.integers(0, 8).map(lambda k: 2 * k + 1), net, "dim")
        ),
        "depths": lambda kw: blamed(bad_per_level(st.integers(1, 2)), net, "depths"),
        "num_heads": num_heads,
        "window_size": lambda kw: blamed(bad_int(), net, "window_size"),
        "kernel_size": lambda kw: blamed(bad_int(odd=True), net, "kernel_size"),
        "expansion": lambda kw: blamed(bad_positive_real(), net, "expansion"),
        "refinement_depth": lambda kw: blamed(bad_int(minimum=0), net, "refinement_depth"),
        "drop_path_rate": lambda kw: blamed(bad_drop(), net, "drop_path_rate"),
        "global_residual": lambda kw: blamed(bad_bool(), net, "global_residual"),
        "cnn_groups": lambda kw: st.one_of(
            blamed(bad_int(minimum=0), net, "cnn_groups"),
            blamed(non_divisor(int(kw["dim"])), net, "cnn_groups"),
        ),
        "coupling": lambda kw: blamed(bad_coupling(), net, "coupling"),
    }


def _hgu_bad() -> dict[str, Callable[[Kwargs], st.SearchStrategy[Bad]]]:
    hgu = "HybridGatedUnit"
    too_few = st.lists(st.integers(1, 8), max_size=1)
    not_a_sequence = st.one_of(
        st.integers(),
        st.none(),
        st.floats(),
        st.sampled_from([{8, 4}, {8: 1, 4: 1}, np.array([8, 4]), torch.tensor([8, 4]), "84", b"84"]),
        st.builds(lambda: (c for c in (8, 4))),  # a generator: not a sequence
    )
    entries = st.integers(2, 4).flatmap(lambda n: replaced_entry(st.integers(1, 8), n, bad_int()))
    return {
        "in_dims": lambda kw: blamed(
            st.one_of(too_few, too_few.map(tuple), not_a_sequence, entries), hgu, "in_dims"
        ),
        "out_dim": lambda kw: blamed(bad_int(), hgu, "out_dim"),
        "reduction": lambda kw: blamed(bad_int(), hgu, "reduction"),
    }


@dataclass(frozen=True)
class Spec:
    """How to fuzz one class."""

    cls: Callable[..., nn.Module]
    valid: st.SearchStrategy[Config]
    bad: BadMap


def _spec_table() -> dict[str, Spec]:
    attention = _attention_bad()
    return {
        "ChannelAttention": Spec(
            cl.ChannelAttention,
            valid_channel_attention(),
            {
                "dim": lambda kw: blamed(bad_int(), "ChannelAttention", "dim"),
                "reduction": lambda kw: blamed(bad_int(), "ChannelAttention", "reduction"),
            },
        ),
        "CNNLayer": Spec(
            cl.CNNLayer,
            valid_cnn_layer(),
            {
                "dim": lambda kw: blamed(bad_int(), "CNNLayer", "dim"),
                **_cnn_bad("CNNLayer", "kernel_size", "groups"),
            },
        ),
        "DBPA": Spec(
            cl.DBPA,
            valid_dbpa(),
            {
                "dim": lambda kw: blamed(bad_int(), "DBPA", "dim"),
                "bias": lambda kw: blamed(bad_bool(), "DBPA", "bias"),
                **attention,
            },
        ),
        "GNFF": Spec(
            cl.GNFF,
            valid_gnff(),
            {
                "dim": lambda kw: blamed(bad_int(), "GNFF", "dim"),
                "expansion": lambda kw: blamed(bad_positive_real(), "GNFF", "expansion"),
                "bias": lambda kw: blamed(bad_bool(), "GNFF", "bias"),
            },
        ),
        "TransformerLayer": Spec(
            cl.TransformerLayer,
            valid_transformer_layer(),
            _block_bad("TransformerLayer"),
        ),
        "CouplingBlock": Spec(
            cl.CouplingBlock,
            valid_coupling_block(),
            {
                **_block_bad("CouplingBlock"),
                "coupling": lambda kw: blamed(bad_coupling(), "CouplingBlock", "coupling"),
                "cnn_kernel_size": lambda kw: blamed(bad_int(odd=True), "CouplingBlock", "cnn_kernel_size"),
                "cnn_groups": lambda kw: st.one_of(
                    blamed(bad_int(minimum=0), "CouplingBlock", "cnn_groups"),
                    blamed(non_divisor(int(kw["dim"])), "CouplingBlock", "cnn_groups"),
                ),
                "reduction": lambda kw: blamed(bad_int(), "CouplingBlock", "reduction"),
            },
        ),
        "HybridGatedUnit": Spec(cl.HybridGatedUnit, valid_hgu(), _hgu_bad()),
        "CLGINet": Spec(cl.CLGINet, valid_clginet(), _clginet_bad()),
    }


SPECS = _spec_table()


@st.composite
def corrupted(draw: st.DrawFn, spec: Spec) -> tuple[Kwargs, frozenset[Blame]]:
    """A valid configuration with 1-3 of its arguments replaced by bad values, and the allowed blames."""
    kwargs = dict(draw(spec.valid).kwargs)
    names = draw(st.lists(st.sampled_from(sorted(spec.bad)), min_size=1, max_size=3, unique=True))
    blames: set[Blame] = set()
    base = dict(kwargs)
    for name in names:
        value, blame = draw(spec.bad[name](base), label=name)
        kwargs[name] = value
        blames |= blame
    return kwargs, frozenset(blames)


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------


def _inputs(config: Config) -> tuple[list[torch.Tensor], Any]:
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(shape, generator=g).requires_grad_() for shape in config.shapes]
    return xs, (xs if config.as_list else xs[0])


def _expected_shape(name: str, config: Config) -> tuple[int, ...]:
    kw, shape = config.kwargs, config.shapes[0]
    if name == "HybridGatedUnit":
        return (shape[0], int(kw["out_dim"]), *shape[2:])
    if name == "CLGINet":
        out = kw["out_chans"] if kw["out_chans"] is not None else kw["in_chans"]
        return (shape[0], int(out), *shape[2:])
    return shape


@pytest.mark.parametrize("name", sorted(SPECS))
@given(data=st.data())
def test_valid_config_builds_and_trains(name: str, data: st.DataObject) -> None:
    spec = SPECS[name]
    config = data.draw(spec.valid, label="config")
    module = wake(spec.cls(**config.kwargs)).train()
    xs, inp = _inputs(config)

    out = module(inp)

    assert out.shape == _expected_shape(name, config)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all(), "non-finite output"
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    out.backward(cotangent)
    for pname, p in module.named_parameters():
        assert p.grad is not None, f"parameter {pname} is not part of the graph"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {pname}"
    for i, x in enumerate(xs):
        assert x.grad is not None and torch.isfinite(x.grad).all(), f"bad gradient for input {i}"

    if name == "CLGINet":
        # The stored config is plain JSON (save_checkpoint writes it) and rebuilds the same network.
        assert isinstance(module, cl.CLGINet)
        restored = cl.CLGINet(cl.CLGINetConfig.from_dict(json.loads(json.dumps(module.config.to_dict()))))
        assert restored.config == module.config
        shapes = {k: v.shape for k, v in module.state_dict().items()}
        assert {k: v.shape for k, v in restored.state_dict().items()} == shapes


@pytest.mark.parametrize("name", sorted(SPECS))
@given(data=st.data())
def test_invalid_config_is_refused(name: str, data: st.DataObject) -> None:
    spec = SPECS[name]
    kwargs, blames = data.draw(corrupted(spec), label="config")
    try:
        module = spec.cls(**kwargs)
    except (ValueError, TypeError) as err:
        msg = str(err)
        assert any(msg.startswith(f"{owner}:") and token in msg for owner, token in blames), (
            f"{type(err).__name__}({msg!r}) does not blame any of {sorted(blames)}"
        )
    else:
        pytest.fail(f"{name}(**{kwargs!r}) built {type(module).__name__} instead of refusing it")


# Arguments that once escaped validation (found by the properties above), pinned so that every
# run checks them whatever the profile draws.
HUGE = 10**400  # an int beyond float range


@pytest.mark.parametrize(
    ("make", "exc", "msg"),
    [
        (lambda: cl.GNFF(8, expansion=HUGE), ValueError, "GNFF: `expansion` must be a finite number > 0"),
        (lambda: cl.GNFF(8, expansion=Fraction(HUGE, 3)), ValueError, "GNFF: `expansion`"),
        (lambda: cl.TransformerLayer(8, drop_path=HUGE), ValueError, "TransformerLayer: `drop_path`"),
        (lambda: cl.CLGINet(drop_path_rate=-HUGE), ValueError, "CLGINet: `drop_path_rate`"),
        (lambda: cl.CLGINet(window_size=0), ValueError, "CLGINet: `window_size` must be >= 1"),
        (lambda: cl.CLGINet(kernel_size=4), ValueError, "CLGINet: `kernel_size` must be odd"),
        (lambda: cl.CLGINet(expansion=math.nan), ValueError, "CLGINet: `expansion`"),
        (lambda: cl.CLGINet(coupling="sum"), ValueError, "CLGINet: `coupling` must be one of"),
    ],
)
def test_former_escapes_are_refused(make: Callable[[], object], exc: type[Exception], msg: str) -> None:
    with pytest.raises(exc) as info:
        make()
    assert str(info.value).startswith(msg)


def test_former_escapes_now_build() -> None:
    # reduction beyond float range: the bottleneck is timm's minimum of 8 channels (was OverflowError).
    assert cl.ChannelAttention(8, reduction=HUGE).fc1.out_channels == 8
    # numpy/Fraction arguments are stored as plain int/float/str, so the config is JSON (was TypeError
    # in save_checkpoint).
    net = cl.CLGINet(
        dim=4,
        depths=1,
        num_heads=1,
        window_size=np.int64(4),
        kernel_size=np.int32(3),
        expansion=Fraction(3, 2),
    )
    assert json.loads(json.dumps(net.config.to_dict()))["window_size"] == 4
    assert net.config["expansion"] == 1.5
