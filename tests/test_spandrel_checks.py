"""spandrel's own loading checks, re-implemented, over CLG-INet configurations.

spandrel tests every architecture it ships with ``assert_loads_correctly``
(spandrel's ``tests/util.py``): build a model, save its state dict, load it
through the architecture, directly and through safetensors bytes, and require
the same model class and the same ``hyperparameters``; the architecture must
detect the state dict. Its ``assert_size_requirements`` runs the descriptor
over the sizes its ``size_requirements`` allow (square and not) and checks the
output shape. This module runs the same checks (written here, not copied),
plus the descriptor's other fields and equal outputs.

Some settings leave no trace in the weights (issue #20):
:data:`NOT_RECOVERABLE` pins what comes back instead, so a fix shows up here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch
from conftest import wake

import clg_layers as cl
from clg_layers.models.config import CLGINetConfig

spandrel = pytest.importorskip("spandrel")
safetensors_torch = pytest.importorskip("safetensors.torch")
# Below the importorskip on purpose: this module imports spandrel.
from clg_layers.integrations.spandrel import ARCH_ID, CLGINetArch, register  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

_TINY: dict[str, Any] = dict(dim=8, depths=(1, 1, 1, 1), num_heads=1)

#: Configurations every constructor option of which the weights determine (or that use the
#: defaults where they do not), so spandrel's checks must pass on them.
RECOVERABLE: dict[str, dict[str, Any]] = {
    "tiny-rgb": dict(_TINY),
    "grey": dict(_TINY, in_chans=1),
    "rgb-to-grey": dict(_TINY, out_chans=1, global_residual=False),
    "grey-to-two": dict(_TINY, in_chans=1, out_chans=2, global_residual=False),
    # channel=False: the heads leave no trace, so only the default heads are recoverable.
    "spatial-only": dict(_TINY, channel=False, num_heads=(1, 2, 4, 8)),
    "channel-only": dict(_TINY, spatial=False, num_heads=(1, 2, 2, 4)),
    "fusion-add": dict(_TINY, fusion="add"),
    "add-no-coupling": dict(_TINY, fusion="add", coupling="none"),
    "shape-options": dict(
        dim=8,
        depths=(1, 2, 1, 1),
        num_heads=(1, 2, 4, 4),
        kernel_size=3,
        expansion=1.5,
        refinement_depth=2,
        cnn_groups=2,
    ),
    "depthwise-cnn": dict(_TINY, cnn_groups=0, refinement_depth=0),
}


def _diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ, lists and tuples compared as lists (as spandrel's check does)."""

    def norm(value: Any) -> Any:
        return list(value) if isinstance(value, (list, tuple)) else value

    missing = "<missing>"
    return {
        k: (a.get(k, missing), b.get(k, missing))
        for k in sorted(set(a) | set(b))
        if norm(a.get(k, missing)) != norm(b.get(k, missing))
    }


def _assert_same(name: str, built: torch.nn.Module, loaded: torch.nn.Module) -> None:
    assert type(loaded) is type(built), f"{name}: loaded a {type(loaded).__name__}"
    hp_built, hp_loaded = built.hyperparameters, loaded.hyperparameters
    assert isinstance(hp_built, dict) and isinstance(hp_loaded, dict)
    assert not _diff(hp_built, hp_loaded), f"{name}: hyperparameters differ: {_diff(hp_built, hp_loaded)}"


def _assert_loads_correctly(arch: CLGINetArch, name: str, model: torch.nn.Module) -> Any:
    """spandrel's ``assert_loads_correctly`` for one model; returns the directly loaded descriptor."""
    state = model.state_dict()
    descriptor = arch.load(state)
    _assert_same(name, model, descriptor.model)
    blob = safetensors_torch.save(model.state_dict())
    _assert_same(name, model, arch.load(safetensors_torch.load(blob)).model)
    assert arch.detect(state), f"{name}: not detected"
    return descriptor


def _assert_size_requirements(descriptor: Any, max_size: int = 8) -> None:
    """spandrel's ``assert_size_requirements``: every allowed size runs, square or not, at scale."""
    req = descriptor.size_requirements
    start = max(req.minimum, 1)
    sizes = [s for s in range(start, max_size + 1) if req.check(s, s)][:8]
    assert sizes, f"no size up to {max_size} satisfies {req}"
    pairs = [(h, w) for h, w in zip(sizes[::2], sizes[1::2])] + [(s, s) for s in sizes]
    if not req.square:
        pairs.append((max_size + 9, 3))  # far from square, neither side a multiple of 8
    for h, w in pairs:
        x = torch.rand(1, descriptor.input_channels, h, w)
        with torch.no_grad():
            y = descriptor(x)
        expected = (1, descriptor.output_channels, h * descriptor.scale, w * descriptor.scale)
        assert tuple(y.shape) == expected, f"{h}x{w}: {tuple(y.shape)} != {expected}"


@pytest.fixture(scope="module")
def arch() -> CLGINetArch:
    return register()


@pytest.mark.parametrize("options", list(RECOVERABLE.values()), ids=list(RECOVERABLE))
def test_spandrel_loading_checks(arch: CLGINetArch, options: dict[str, Any]) -> None:
    model = wake(cl.CLGINet(**options), seed=11).eval()
    descriptor = _assert_loads_correctly(arch, str(options), model)
    # Through spandrel's registry too: detected as CLG-INet and no other architecture.
    via_registry = spandrel.ModelLoader().load_from_state_dict(model.state_dict())
    assert via_registry.architecture.id == ARCH_ID == descriptor.architecture.id
    assert descriptor.model.config == model.config
    cfg = model.config
    assert descriptor.purpose == "Restoration" and descriptor.scale == 1
    assert (descriptor.input_channels, descriptor.output_channels) == (cfg.in_chans, cfg.out_chans)
    assert descriptor.tags == [f"{cfg.dim}dim", f"depths={'-'.join(map(str, cfg.depths))}"]
    assert descriptor.supports_half is True and descriptor.supports_bfloat16 is True
    assert descriptor.size_requirements.none and descriptor.tiling == spandrel.ModelTiling.SUPPORTED
    _assert_size_requirements(descriptor)
    x = torch.rand(1, cfg.in_chans, 13, 19, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(descriptor.model(x), expected)
        assert torch.equal(descriptor(x), expected.clamp(0, 1))  # spandrel clamps to [0, 1]


def test_zoo_variant_passes_and_is_tagged(arch: CLGINetArch) -> None:
    model = wake(cl.build("clginet-tiny"), seed=12).eval()
    descriptor = _assert_loads_correctly(arch, "clginet-tiny", model)
    assert descriptor.tags[0] == "clginet-tiny" and descriptor.model.model_name == "clginet-tiny"
    _assert_size_requirements(descriptor)


def test_hyperparameters_are_the_constructor_options() -> None:
    model = cl.CLGINet(**RECOVERABLE["shape-options"])
    hp = model.hyperparameters
    assert hp == model.config.to_dict() and list(hp) == list(CLGINetConfig.field_names())
    assert hp["depths"] == [1, 2, 1, 1] and hp["out_chans"] == 3  # out_chans=None resolved
    assert cl.CLGINet(**hp).config == model.config
    hp["dim"] = 64  # a new dict each time: the model is not changed through it
    assert model.hyperparameters["dim"] == 8
    with pytest.raises(AttributeError):
        model.hyperparameters = {}  # type: ignore[misc]


#: (options, {hyperparameter: (built, loaded from weights alone)}, whether the outputs differ).
NOT_RECOVERABLE: dict[str, tuple[dict[str, Any], dict[str, tuple[Any, Any]], bool]] = {
    "window_size": (dict(_TINY, window_size=4), {"window_size": (4, 8)}, True),
    "global_residual-off": (dict(_TINY, global_residual=False), {"global_residual": (False, True)}, True),
    "heads-spatial-only": (
        dict(_TINY, channel=False),
        {"num_heads": ([1, 1, 1, 1], [1, 2, 4, 8])},
        True,
    ),
    "attn_fusion-sum": (
        dict(_TINY, attn_fusion="sum"),
        {"spatial": (True, False), "attn_fusion": ("sum", "gate")},
        True,
    ),
    # Same hidden widths, so the same network: the shortest ratio that gives them comes back.
    "expansion": (dict(_TINY, expansion=2.6667), {"expansion": (2.6667, 2.67)}, False),
    # Training-only: no effect in eval mode.
    "drop_path_rate": (dict(_TINY, drop_path_rate=0.1), {"drop_path_rate": (0.1, 0.0)}, False),
}


@pytest.mark.parametrize(
    ("options", "changed", "outputs_differ"), list(NOT_RECOVERABLE.values()), ids=list(NOT_RECOVERABLE)
)
def test_settings_the_weights_do_not_tell(
    arch: CLGINetArch, options: dict[str, Any], changed: dict[str, tuple[Any, Any]], outputs_differ: bool
) -> None:
    """These fail spandrel's hyperparameter check from weights alone (issue #20); pinned here."""
    model = wake(cl.CLGINet(**options), seed=13).eval()
    loaded = arch.load(model.state_dict()).model
    assert _diff(model.hyperparameters, loaded.hyperparameters) == changed
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (not torch.allclose(model(x), loaded(x))) is outputs_differ
