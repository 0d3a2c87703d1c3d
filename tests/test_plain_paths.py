"""The plain forward of every layer: hooks and pre-hooks fire everywhere, children swap, fx and vmap work.

Each public layer's ``forward`` is its equations, each child called as
``child(x)``; eager inference may take a separate ``_forward_inference``,
but only when nothing could observe the difference. These tests check both
halves of that promise for every public module and for ``CLGINet``:

* every forward hook and pre-hook, on every sub-module with or without
  parameters, fires in train, eval and inference mode (a hook turns the
  inference path off);
* any child can be replaced by another module of the same call signature in
  every mode: a same-function wrapper leaves the output unchanged, a
  different activation changes it;
* ``torch.fx`` symbolic tracing and ``torch.func.vmap`` over the batch give
  the eager outputs, and ``create_feature_extractor`` returns the network's
  multi-scale features;
* the inference path is taken exactly when :func:`use_inference_path` says,
  and :func:`set_fast_inference` turns it off.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.fx
from conftest import wake
from torch import nn
from torch.func import functional_call, grad, vmap

import clg_layers as cl
from clg_layers.layers import fast_inference_enabled, set_fast_inference, use_inference_path

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning"),  # SDPA under vmap
]


class HGUOfThree(nn.Module):
    """A hybrid gated unit with three tensor arguments: fx traces tensors, not a list argument."""

    def __init__(self) -> None:
        super().__init__()
        self.hgu = cl.HybridGatedUnit([8, 4, 16], 8)

    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.hgu([a, b, c])


def _single(make: Callable[[], nn.Module], c: int = 8) -> tuple[nn.Module, Callable[[int, int, int], tuple]]:
    return make(), lambda b, h, w: (torch.randn(b, c, h, w),)


MODULES: dict[str, Callable[[], tuple[nn.Module, Callable[[int, int, int], tuple]]]] = {
    "DBPA": lambda: _single(lambda: cl.DBPA(8, num_heads=2, window_size=4)),
    "DBPA-sum": lambda: _single(lambda: cl.DBPA(8, num_heads=2, window_size=4, fusion="sum")),
    "DBPA-spatial": lambda: _single(lambda: cl.DBPA(8, num_heads=2, window_size=4, channel=False)),
    "DBPA-channel": lambda: _single(lambda: cl.DBPA(8, num_heads=2, window_size=4, spatial=False)),
    "GNFF": lambda: _single(lambda: cl.GNFF(8)),
    "ChannelAttention": lambda: _single(lambda: cl.ChannelAttention(8)),
    "CNNLayer": lambda: _single(lambda: cl.CNNLayer(8)),
    "TransformerLayer": lambda: _single(lambda: cl.TransformerLayer(8, num_heads=2, window_size=4)),
    "CouplingBlock": lambda: _single(lambda: cl.CouplingBlock(8, num_heads=2, window_size=4)),
    "HybridGatedUnit": lambda: (
        HGUOfThree(),
        lambda b, h, w: (torch.randn(b, 8, h, w), torch.randn(b, 4, 2 * h, 2 * w), torch.randn(b, 16, h, w)),
    ),
    "CLGINet": lambda: (
        cl.build("clginet-tiny", dim=8, depths=(1, 1, 1, 1), num_heads=1, window_size=4),
        lambda b, h, w: (torch.rand(b, 3, h, w),),
    ),
}
# Tall enough for bands of 8 rows once the thresholds are lowered (see `inference_mode`).
H, W = 36, 13


@contextmanager
def inference_mode(root: nn.Module) -> Iterator[None]:
    """Autograd off and every band / lean threshold at its smallest, so the inference paths would run."""
    saved = []
    for m in root.modules():
        for attr, value in (("band_bytes", 1), ("lean_bytes", 0)):
            if hasattr(m, attr):
                saved.append((m, attr, getattr(m, attr)))
                setattr(m, attr, value)
    try:
        with torch.inference_mode():
            yield
    finally:
        for m, attr, value in saved:
            setattr(m, attr, value)


MODES = ("train", "eval", "inference")


def run(model: nn.Module, args: tuple, mode: str) -> torch.Tensor:
    model.train(mode == "train")
    if mode == "inference":
        with inference_mode(model):
            return model(*args).clone()
    return model(*args).detach()


def built(name: str, seed: int = 0) -> tuple[nn.Module, tuple]:
    torch.manual_seed(seed)
    model, make_input = MODULES[name]()
    wake(model, seed)
    torch.manual_seed(seed + 1)
    return model, make_input(2, H, W)


def callable_submodules(root: nn.Module) -> dict[str, nn.Module]:
    """Every sub-module that is called (containers without a ``forward`` are not)."""
    return {n: m for n, m in root.named_modules() if n and not isinstance(m, (nn.ModuleList, nn.ModuleDict))}


# ---------------------------------------------------------------------------------------------
# Hooks and pre-hooks on every sub-module, in every mode
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(MODULES))
def test_every_hook_and_pre_hook_fires(name: str, mode: str) -> None:
    model, args = built(name)
    reference = run(model, args, mode)
    subs = callable_submodules(model)
    fired: dict[str, set[str]] = {"pre": set(), "post": set()}
    handles = []
    for n, m in subs.items():
        handles.append(m.register_forward_pre_hook(lambda mod, a, n=n: fired["pre"].add(n)))
        handles.append(m.register_forward_hook(lambda mod, a, out, n=n: fired["post"].add(n)))
    out = run(model, args, mode)
    for h in handles:
        h.remove()
    # DropPath modules are Identity here (rate 0); everything is called.
    assert fired["pre"] == set(subs), sorted(set(subs) - fired["pre"])
    assert fired["post"] == set(subs), sorted(set(subs) - fired["post"])
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)


def test_pre_hook_on_cnn_act_fires_in_inference_mode() -> None:
    """The case reported with the issue: a pre-hook on ``act`` was skipped under inference_mode."""
    m = cl.CNNLayer(8).eval()
    seen = []
    m.act.register_forward_pre_hook(lambda mod, a: seen.append(a[0].shape))
    with torch.inference_mode():
        m(torch.randn(1, 8, 9, 9))
    assert seen == [torch.Size([1, 8, 9, 9])]


# ---------------------------------------------------------------------------------------------
# Children can be swapped for any module of the same call signature
# ---------------------------------------------------------------------------------------------


class Same(nn.Module):
    """Calls the wrapped module: the same function under another type (as LoRA or quantisation wrap)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def leaves(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if n and not any(True for _ in m.children())]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(MODULES))
def test_any_child_can_be_wrapped_without_changing_the_function(name: str, mode: str) -> None:
    model, args = built(name)
    reference = run(model, args, mode)
    names = leaves(model)
    assert names
    for n in names:
        parent_name, _, attr = n.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, Same(getattr(parent, attr)))
    out = run(model, args, mode)
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "name", [n for n in MODULES if n not in ("DBPA-sum", "DBPA-spatial", "DBPA-channel")]
)
def test_any_activation_can_be_replaced_by_a_stock_one(name: str, mode: str) -> None:
    model, args = built(name)
    reference = run(model, args, mode)
    swapped = 0
    for n, m in list(model.named_modules()):
        if isinstance(m, (nn.GELU, nn.ReLU)):
            parent_name, _, attr = n.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, nn.SiLU())
            swapped += 1
    assert swapped
    out = run(model, args, mode)
    assert out.shape == reference.shape
    assert not torch.allclose(out, reference, rtol=1e-4, atol=1e-5)
    # ... and the swapped model computes the same in every mode (eval with autograd on as the reference)
    if mode != "train":
        torch.testing.assert_close(out, run(model, args, "eval"), rtol=1e-4, atol=1e-5)


SINGLE_SWAPS = [
    ("CNNLayer", "conv_a", nn.Identity),
    ("CNNLayer", "conv_b", nn.Identity),
    ("TransformerLayer", "norm1", nn.Identity),
    ("TransformerLayer", "norm2", nn.Identity),
    ("TransformerLayer", "drop_path", lambda: nn.Dropout(0.0)),
    ("TransformerLayer", "attn.q_dw", nn.Identity),
    ("DBPA", "v_dw", lambda: nn.Conv2d(8, 8, 3, padding=1, groups=8)),
    ("CouplingBlock", "cnn2.conv_a", nn.Identity),
    ("HybridGatedUnit", "hgu.spatial_gate", nn.Identity),
    ("HybridGatedUnit", "hgu.proj.1", lambda: nn.Conv2d(4, 8, 3, padding=1)),
]


@pytest.mark.parametrize(
    ("name", "child", "make"), SINGLE_SWAPS, ids=[f"{n}.{c}" for n, c, _ in SINGLE_SWAPS]
)
def test_one_child_swapped_keeps_inputs_intact_and_paths_equal(
    name: str, child: str, make: Callable[[], nn.Module]
) -> None:
    """A child replaced by another module (an identity, another kernel size) in inference mode: the
    layer takes its plain path, leaves its inputs untouched and computes what eval with autograd does."""
    model, args = built(name)
    parent_name, _, attr = child.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, make())
    reference = run(model, args, "eval")
    saved = [a.clone() for a in args]
    out = run(model, args, "inference")
    for a, s in zip(args, saved):
        assert torch.equal(a, s)
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)


def test_banded_dbpa_keeps_the_autocast_dtype() -> None:
    m = wake(cl.DBPA(8, num_heads=2, window_size=4)).eval()
    x = torch.randn(1, 8, 40, 12)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        whole = m(x)
        m.band_bytes = 1
        banded = m(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = m(x)
    assert banded.dtype == whole.dtype == plain.dtype == torch.bfloat16
    torch.testing.assert_close(banded, plain.detach(), rtol=0.05, atol=0.05)


# ---------------------------------------------------------------------------------------------
# torch.fx and torch.func.vmap
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", list(MODULES))
def test_fx_symbolic_trace_matches_eager(name: str, mode: str) -> None:
    model, args = built(name)
    model.train(mode == "train")
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(*args), model(*args), rtol=0, atol=0)


@pytest.mark.parametrize("name", list(MODULES))
def test_vmap_over_the_batch_matches_eager(name: str) -> None:
    model, args = built(name)
    model.eval()

    def one(*xs: torch.Tensor) -> torch.Tensor:
        return model(*(x.unsqueeze(0) for x in xs)).squeeze(0)

    for grad_mode in (True, False):
        with torch.set_grad_enabled(grad_mode):
            torch.testing.assert_close(vmap(one)(*args), model(*args), rtol=1e-5, atol=1e-6)


def test_per_sample_gradients_with_vmap_match_a_loop() -> None:
    model, (x,) = built("CouplingBlock")
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return functional_call(model, p, (xi.unsqueeze(0),)).square().mean()

    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, x)
    for i in range(x.shape[0]):
        model.zero_grad()
        model(x[i : i + 1]).square().mean().backward()
        for k, p in model.named_parameters():
            torch.testing.assert_close(per_sample[k][i], p.grad, rtol=1e-4, atol=1e-6)


def test_feature_extractor_returns_the_multi_scale_features() -> None:
    feature_extraction = pytest.importorskip("torchvision.models.feature_extraction")
    model = cl.build("clginet-tiny").eval()
    nodes = {
        "encoders.0": "level0",
        "encoders.1": "level1",
        "encoders.2": "level2",
        "bottleneck": "bottleneck",
    }
    extractor = feature_extraction.create_feature_extractor(model, nodes)
    x = torch.rand(2, 3, 64, 48)
    feats = extractor(x)
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "level0": (2, 16, 64, 48),
        "level1": (2, 32, 32, 24),
        "level2": (2, 64, 16, 12),
        "bottleneck": (2, 128, 8, 6),
    }
    seen = {}
    handles = [
        model.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: seen.update({n: o})) for n in nodes
    ]
    model(x)
    for h in handles:
        h.remove()
    for node, key in nodes.items():
        torch.testing.assert_close(feats[key], seen[node], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# When the inference path runs, and the switch
# ---------------------------------------------------------------------------------------------


def _spy_inference(monkeypatch: pytest.MonkeyPatch, module: nn.Module) -> list[int]:
    calls: list[int] = []
    original = module._forward_inference
    monkeypatch.setattr(module, "_forward_inference", lambda *a: calls.append(1) or original(*a))
    return calls


def test_inference_path_conditions(monkeypatch: pytest.MonkeyPatch) -> None:
    m = wake(cl.DBPA(8, num_heads=2, window_size=4)).eval()
    x = torch.randn(1, 8, 12, 12)
    children = m._inference_children
    assert not use_inference_path(m, x, children)  # autograd records
    with torch.no_grad():
        assert use_inference_path(m, x, children)
        assert not use_inference_path(m, x.to("meta"), children)  # count_macs sees the plain function
        h = m.q.register_forward_hook(lambda *a: None)
        assert not use_inference_path(m, x, children)
        h.remove()
        h = m.v_dw.register_forward_pre_hook(lambda *a: None)
        assert not use_inference_path(m, x, children)
        h.remove()
        h = nn.modules.module.register_module_forward_pre_hook(lambda *a: None)
        assert not use_inference_path(m, x, children)
        h.remove()
        h = m.register_forward_hook(lambda *a: None)  # the layer's own hooks see what both paths share
        assert use_inference_path(m, x, children)
        h.remove()
        m.fast_inference = False
        assert not use_inference_path(m, x, children)
        m.fast_inference = True
        k_dw = m.k_dw
        m.k_dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)  # another kernel: the bands' context would be wrong
        assert not use_inference_path(m, x, children)
        m.k_dw = k_dw
        assert use_inference_path(m, x, children)


@pytest.mark.parametrize("name", ["DBPA", "CNNLayer", "TransformerLayer", "HybridGatedUnit"])
def test_switch_turns_the_inference_path_off(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    model, args = built(name)
    layer = model.hgu if name == "HybridGatedUnit" else model
    calls = _spy_inference(monkeypatch, layer)
    fast = run(model, args, "inference")
    assert calls == [1]
    assert fast_inference_enabled()
    set_fast_inference(False)
    try:
        plain = run(model, args, "inference")
    finally:
        set_fast_inference(True)
    assert calls == [1]
    layer.fast_inference = False
    run(model, args, "inference")
    assert calls == [1]
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)


def test_switch_refuses_a_non_bool() -> None:
    with pytest.raises(TypeError, match="set_fast_inference: `enabled` must be a bool"):
        set_fast_inference(1)  # type: ignore[arg-type]


def test_environment_variable_sets_the_switch() -> None:
    code = "import clg_layers.layers as l; print(l.fast_inference_enabled())"
    env = {**os.environ, "CLG_LAYERS_FAST_INFERENCE": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
