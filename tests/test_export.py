"""Export paths: torch.compile (fullgraph, dynamic), torch.export with dynamic H/W, ONNX in onnxruntime.

The sizes are odd and not multiples of the window (8). 37×53 and 45×29 fall in
different *size classes*: the U-Net levels that need window padding, and those
that hold a single window, differ between them. A graph specialised to the
first size would therefore not serve the second; these tests check that one
graph serves both.

Symbolic sizes need ``torch.fx.experimental._config.backed_size_oblivious``
(what torch's own ONNX exporter turns on): without it, the tracer turns every
"is this size 1?" question it meets in stride and contiguity checks (a deep
level with a single window, say) into a guard, and the graph is specialised
to the traced size class.

Cost on 2 busy CPU cores, cold caches: the one inductor compile 55-75 s,
torch.export 10 s, the ONNX conversion 25 s, the rest (tracing with a counting
backend that runs the FX graph as it is, no inductor) about 30 s.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch._inductor.config as inductor_config
import torch.fx.experimental._config as fx_config
from _factories import SINGLE_INPUT, hgu_inputs
from conftest import wake
from torch import nn
from torch.export import Dim

import clg_layers as cl

EXPORT_SIZE = (37, 53)
# At 37×53 only the bottleneck holds a single window; at 45×29 two levels do (width 8 and 4)
# and widths 16 and 8 need no window padding; at 64×29 the input needs no padding to 8;
# at 130×67 every level has several windows.
RUN_SIZES = [(37, 53), (45, 29), (64, 29), (130, 67)]
MAX_ABS_DIFF = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def size_oblivious() -> AbstractContextManager[None]:
    """Trace symbolic sizes without specialising the ones that happen to be 1."""
    return fx_config.patch(backed_size_oblivious=True)


class CountingBackend:
    """A ``torch.compile`` backend that records every graph and runs it unchanged (no inductor)."""

    def __init__(self) -> None:
        self.graphs: list[torch.fx.GraphModule] = []

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
        self.graphs.append(gm)
        return gm.forward


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return wake(cl.build("clginet-tiny")).eval()


def image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(seed + 1000 * h + w))


# --------------------------------------------------------------------------------------------------
# torch.compile
# --------------------------------------------------------------------------------------------------

LAYERS: dict[str, Callable[[], tuple[nn.Module, Callable[[int, int], tuple]]]] = {
    **{
        name: (lambda make=make: (make(16), lambda h, w: (torch.randn(2, 16, h, w),)))
        for name, make in SINGLE_INPUT.items()
    },
    "HybridGatedUnit": lambda: (cl.HybridGatedUnit([8, 4, 16], 8), lambda h, w: (hgu_inputs(2, h, w),)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_compiles_to_one_graph_static_and_dynamic(name: str) -> None:
    """fullgraph=True (no graph break): one graph at a fixed size, one for two sizes with dynamic=True."""
    module, inputs = LAYERS[name]()
    module = wake(module).eval()
    with torch.no_grad():
        torch._dynamo.reset()
        static = CountingBackend()
        args = inputs(13, 11)  # not a multiple of the window (4): padding and masking run
        compiled = torch.compile(module, backend=static, fullgraph=True)
        torch.testing.assert_close(compiled(*args), module(*args))
        assert len(static.graphs) == 1

        torch._dynamo.reset()
        dynamic = CountingBackend()
        compiled = torch.compile(module, backend=dynamic, fullgraph=True, dynamic=True)
        with size_oblivious():
            for h, w in [(13, 11), (10, 15)]:
                args = inputs(h, w)
                torch.testing.assert_close(compiled(*args), module(*args))
        assert len(dynamic.graphs) == 1, f"{name} recompiled for a new size"


def test_clginet_dynamic_compile_serves_two_size_classes_with_one_graph(model: nn.Module) -> None:
    torch._dynamo.reset()
    backend = CountingBackend()
    compiled = torch.compile(model, backend=backend, fullgraph=True, dynamic=True)
    with torch.no_grad(), size_oblivious():
        for h, w in [(37, 53), (45, 29)]:
            x = image(h, w)
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    assert len(backend.graphs) == 1


@pytest.mark.slow
def test_clginet_inductor_fullgraph_matches_eager(model: nn.Module) -> None:
    """The one inductor compile of this file, with static shapes (a dynamic one takes minutes).

    Scalar C++ code (``cpp.simdlen=1``) compiles in about 70 s instead of 110 s on 2 cores;
    the lowering of every op is the same, and test_compile.py covers the vectorised code.
    """
    torch._dynamo.reset()
    x = image(*EXPORT_SIZE)
    with torch.no_grad(), inductor_config.patch({"cpp.simdlen": 1}):
        compiled = torch.compile(model, fullgraph=True)
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# torch.export and ONNX
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(model: nn.Module) -> torch.export.ExportedProgram:
    """``clginet-tiny`` exported once with dynamic H and W (torch infers their range)."""
    with size_oblivious():
        return torch.export.export(
            model, (image(*EXPORT_SIZE),), dynamic_shapes={"x": {2: Dim.DYNAMIC, 3: Dim.DYNAMIC}}
        )


def test_export_keeps_height_and_width_dynamic(exported: torch.export.ExportedProgram) -> None:
    x_node = next(n for n in exported.graph.nodes if n.op == "placeholder" and n.name == "x")
    b, c, h, w = x_node.meta["val"].shape
    assert (b, c) == (1, 3)
    assert isinstance(h, torch.SymInt) and isinstance(w, torch.SymInt)
    for size in (h, w):
        bounds = exported.range_constraints[size.node.expr]
        # torch infers H, W >= 9 (the bottleneck, at 1/8 scale, must be wider than one pixel).
        assert bounds.lower <= 9 and bounds.upper >= 4096


@pytest.fixture(scope="module")
def exported_module(exported: torch.export.ExportedProgram) -> nn.Module:
    return exported.module()


@pytest.mark.parametrize("size", RUN_SIZES, ids=[f"{h}x{w}" for h, w in RUN_SIZES])
def test_exported_program_matches_eager(
    model: nn.Module, exported_module: nn.Module, size: tuple[int, int]
) -> None:
    x = image(*size, seed=1)
    with torch.no_grad():
        out, ref = exported_module(x), model(x)
    assert out.shape == ref.shape == x.shape
    assert (out - ref).abs().max().item() <= MAX_ABS_DIFF


@pytest.fixture(scope="module")
def onnx_session(exported: torch.export.ExportedProgram) -> ort.InferenceSession:
    """The exported program through the dynamo-based ONNX exporter, loaded in onnxruntime."""
    program = torch.onnx.export(exported, dynamo=True, verbose=False)
    proto = program.model_proto
    onnx.checker.check_model(proto)
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def test_onnx_input_has_dynamic_height_and_width(onnx_session: ort.InferenceSession) -> None:
    (inp,) = onnx_session.get_inputs()
    assert inp.shape[:2] == [1, 3]
    assert all(isinstance(d, str) for d in inp.shape[2:]), inp.shape


@pytest.mark.parametrize("size", RUN_SIZES, ids=[f"{h}x{w}" for h, w in RUN_SIZES])
def test_onnxruntime_matches_eager(
    model: nn.Module, onnx_session: ort.InferenceSession, size: tuple[int, int]
) -> None:
    x = image(*size, seed=2)
    (out,) = onnx_session.run(None, {onnx_session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= MAX_ABS_DIFF


# --------------------------------------------------------------------------------------------------
# Named dimensions with ranges: the matrix of example sizes × dimension styles × run sizes
# --------------------------------------------------------------------------------------------------

# 40×56 is a multiple of 8 (no input padding), 37×45 is not; both have several windows at level 0.
NAMED_EXAMPLES = [(40, 56), (37, 45)]
# Sizes that are and are not multiples of 8 and of the window (8), below the window size and
# below 8 (padded up to the 16×16 minimum), and sizes where a level holds exactly one window.
NAMED_RUN_SIZES = [(33, 71), (40, 56), (37, 45), (8, 8), (2, 3), (16, 17), (64, 64), (9, 130)]


def _named(lo: int) -> tuple[dict[int, Dim], ...]:
    return ({2: Dim("H", min=lo, max=512), 3: Dim("W", min=lo, max=512)},)


@pytest.fixture(scope="module", params=NAMED_EXAMPLES, ids=[f"example{h}x{w}" for h, w in NAMED_EXAMPLES])
def named_export(request: pytest.FixtureRequest, model: nn.Module) -> tuple[nn.Module, ort.InferenceSession]:
    """``clginet-tiny`` exported with ``Dim("H", min=2, max=512)`` / ``Dim("W", ...)``, and its ONNX model."""
    with size_oblivious():
        program = torch.export.export(model, (image(*request.param),), dynamic_shapes=_named(2))
    for size in (program.range_constraints[s.node.expr] for s in _input_sizes(program)):
        assert (size.lower, size.upper) == (2, 512)  # the requested range, not narrowed by a guard
    proto = torch.onnx.export(program, dynamo=True, verbose=False).model_proto
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return program.module(), session


def _input_sizes(program: torch.export.ExportedProgram) -> list[torch.SymInt]:
    x_node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == "x")
    return list(x_node.meta["val"].shape[2:])


@pytest.mark.parametrize("size", NAMED_RUN_SIZES, ids=[f"{h}x{w}" for h, w in NAMED_RUN_SIZES])
def test_named_dimension_export_and_onnx_match_eager(
    model: nn.Module, named_export: tuple[nn.Module, ort.InferenceSession], size: tuple[int, int]
) -> None:
    module, session = named_export
    x = image(*size, seed=3)
    with torch.no_grad():
        ref = model(x)
        out = module(x)
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert out.shape == ref.shape == x.shape
    assert (out - ref).abs().max().item() <= MAX_ABS_DIFF
    assert np.abs(onnx_out - ref.numpy()).max() <= MAX_ABS_DIFF


def test_named_range_from_two_pixels_serves_the_smallest_images() -> None:
    """H, W from 2 (below 8 and the window): tiny images are mirrored up to 16×16 like any small one.

    A range from 1 is refused by torch itself: a 1×1 input is a special case of
    its memory-format checks (guard ``H·W != 1``), before any of the model runs.
    """
    model = wake(cl.build("clginet-tiny", dim=8, depths=(1, 1, 1, 1), num_heads=1)).eval()
    with size_oblivious():
        program = torch.export.export(model, (image(5, 7),), dynamic_shapes=_named(2))
    for size in [(2, 2), (2, 9), (23, 2), (17, 16)]:
        x = image(*size)
        with torch.no_grad():
            assert (program.module()(x) - model(x)).abs().max().item() <= MAX_ABS_DIFF
