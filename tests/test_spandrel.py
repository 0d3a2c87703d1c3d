"""spandrel integration: CLG-INet of any configuration is detected from its state dict and loads exactly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from _factories import to_0_2_layout
from conftest import wake
from hypothesis import given
from hypothesis import strategies as st

import clg_layers as cl
from clg_layers.integrations import detect

spandrel = pytest.importorskip("spandrel")
# Below the importorskip on purpose: this module imports spandrel.
from clg_layers.integrations.spandrel import ARCH_ID, CLGINetArch, load_file, register  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
register()


def _same_outputs(
    a: torch.nn.Module, b: torch.nn.Module, in_chans: int, size: tuple[int, int] = (13, 19)
) -> None:
    x = torch.rand(1, in_chans, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ya, yb = a.eval()(x), b.eval()(x)
    assert torch.equal(ya, yb), f"max abs difference {(ya - yb).abs().max().item()}"


def _load(state: dict[str, Any]) -> spandrel.ImageModelDescriptor:
    return spandrel.ModelLoader().load_from_state_dict(state)


def _check_descriptor(d: spandrel.ImageModelDescriptor, model: cl.CLGINet) -> None:
    assert d.architecture.id == ARCH_ID and isinstance(d.model, cl.CLGINet)
    assert d.purpose == "Restoration" and d.scale == 1
    assert (d.input_channels, d.output_channels) == (model.in_chans, model.out_chans)
    assert d.supports_half is cl.CLGINet.supports_half and d.supports_bfloat16 is cl.CLGINet.supports_bf16
    assert d.size_requirements.none and d.tiling == spandrel.ModelTiling.SUPPORTED


@pytest.mark.parametrize("name", cl.list_models("clginet-*"))
def test_zoo_variant_detected_and_identical(name: str) -> None:
    model = wake(cl.build(name), seed=3)
    d = _load(model.state_dict())
    _check_descriptor(d, model)
    assert d.model.config == model.config and name in d.tags and d.model.model_name == name
    _same_outputs(d.model, model, 3, (16, 16))
    x = torch.rand(1, 3, 11, 9)
    with torch.no_grad():
        assert torch.equal(d(x), model(x).clamp(0, 1))  # spandrel's call: no padding needed, output clamped


@st.composite
def _configs(draw: st.DrawFn) -> dict[str, Any]:
    dim = draw(st.sampled_from([8, 16]))
    widths = [dim * 2**level for level in range(4)]
    in_chans = draw(st.sampled_from([1, 3]))
    global_residual = draw(st.booleans())
    out_chans = in_chans if global_residual else draw(st.sampled_from([1, 2, 3]))
    return dict(
        in_chans=in_chans,
        out_chans=out_chans,
        dim=dim,
        depths=[draw(st.integers(1, 2)) for _ in range(4)],
        num_heads=[draw(st.sampled_from([h for h in (1, 2, 4) if w % h == 0])) for w in widths],
        window_size=draw(st.sampled_from([4, 8])),
        kernel_size=draw(st.sampled_from([3, 5, 7])),
        expansion=draw(st.sampled_from([0.3, 1.0, 1.5, 2.0, 2.66, 3.14159])),
        refinement_depth=draw(st.integers(0, 2)),
        global_residual=global_residual,
        cnn_groups=draw(st.sampled_from([0, 1, 2, 4, dim])),
        coupling=draw(st.sampled_from(cl.COUPLING_MODES)),
    )


def _hidden(model: cl.CLGINet) -> list[int]:
    return [b.transformer.ffn.hidden for b in model.modules() if isinstance(b, cl.CouplingBlock)]


@given(cfg=_configs())
def test_random_configurations_round_trip(
    cfg: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    model = wake(cl.CLGINet(**cfg), seed=5)
    if cfg["window_size"] == 8 and cfg["global_residual"] == (cfg["in_chans"] == cfg["out_chans"]):
        d = _load(model.state_dict())  # everything the outputs depend on is in the weights or the defaults
    else:  # window_size / global_residual: from the safetensors metadata
        path = cl.save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "m.safetensors")
        d = load_file(path)
    _check_descriptor(d, model)
    loaded = d.model
    assert {k: v for k, v in loaded.config.items() if k != "expansion"} == {
        k: v for k, v in model.config.items() if k != "expansion"
    }
    assert _hidden(loaded) == _hidden(model)
    _same_outputs(loaded, model, cfg["in_chans"])


def test_expansion_is_the_stored_or_shortest_value() -> None:
    model = cl.CLGINet(dim=8, depths=(1, 1, 1, 1), num_heads=1, expansion=2.6667)
    state = model.state_dict()
    assert detect.infer_config(state)["expansion"] == 2.67  # the same hidden widths, the shortest decimal
    assert detect.infer_config(state, config={"expansion": 2.6667})["expansion"] == 2.6667


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: {"params": s},
        lambda s: {"params_ema": s, "params": {k: torch.zeros_like(v) for k, v in s.items()}},
        lambda s: {f"module.{k}": v for k, v in s.items()},
        lambda s: {"state_dict": {f"_orig_mod.{k}": v for k, v in s.items()}},
    ],
    ids=["params", "params_ema", "module-prefix", "orig_mod-prefix"],
)
def test_wrappers_and_prefixes(wrap: Callable[[dict], dict]) -> None:
    model = wake(cl.build("clginet-tiny"), seed=2)
    d = _load(wrap(model.state_dict()))
    _same_outputs(d.model, model, 3)


def test_files_through_model_loader_and_load_file(tmp_path: Path) -> None:
    model = wake(cl.build("clginet-tiny", in_chans=1, window_size=4), seed=4)
    st_path = cl.save_checkpoint(model, tmp_path / "gray.safetensors")
    pth_path = tmp_path / "gray.pth"
    torch.save({"params_ema": model.state_dict()}, pth_path)
    for path in (st_path, pth_path):
        d = spandrel.ModelLoader().load_from_file(path)
        assert d.architecture.id == ARCH_ID and d.input_channels == 1
        assert d.model.config["window_size"] == 8  # spandrel passes tensors only: the default
    d = load_file(st_path)  # reads the clg_layers.config metadata too
    assert (
        d.model.model_name == "clginet-tiny" and "clginet-tiny" not in d.tags
    )  # in_chans=1: not the variant
    assert d.model.config == model.config
    _same_outputs(d.model, model, 1)
    assert load_file(pth_path, config={"window_size": 4}).model.config == model.config


def test_both_dbpa_key_layouts() -> None:
    """The fused ``attn.qkv`` layout of 0.2.0 and separate ``q``/``k``/``v`` modules both load."""
    model = wake(cl.build("clginet-tiny"), seed=6)
    split = model.state_dict()
    fused = to_0_2_layout(split)
    assert set(cl.migrate_state_dict(fused)[0]) == set(split)
    assert not any(k.endswith("attn.q.weight") for k in fused)
    assert fused["encoders.0.0.transformer.attn.qkv.weight"].shape == (48, 16, 1, 1)
    assert fused["encoders.0.0.transformer.ffn.fc1.weight"].shape == (64, 16, 1, 1)
    assert not any(k.endswith("attn.qkv.weight") for k in split)
    assert split["encoders.0.0.transformer.attn.q.weight"].shape == (16, 16)
    for layout in (fused, split):
        d = _load(dict(layout))
        assert d.architecture.id == ARCH_ID
        _same_outputs(d.model, model, 3)


def _drop(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(prefix)}


def _renumber_decoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.replace("decoders.2.0.", "decoders.2.1."): v for k, v in state.items()}


def _deeper_decoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    extra = {
        k.replace("decoders.1.0.", "decoders.1.1."): v
        for k, v in state.items()
        if k.startswith("decoders.1.0.")
    }
    return {**state, **extra}


def _heads(block: str, heads: int) -> Callable[[dict], dict]:
    return lambda state: {**state, f"{block}.transformer.attn.temperature": torch.ones(heads, 1, 1)}


def _bad_hidden(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = dict(state)
    for key in [k for k in state if k.startswith("bottleneck.0.transformer.ffn.")]:
        out[key] = torch.zeros(7, *state[key].shape[1:]) if "dw" in key else state[key]
    return out


def _bad_width(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {**state, "encoders.1.0.cnn1.scale.gamma": torch.ones(40)}


def _mixed_groups(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = dict(state)
    w = state["encoders.1.0.cnn1.conv_a.0.weight"]
    out["encoders.1.0.cnn1.conv_a.0.weight"] = torch.zeros(w.shape[0], 4, 3, 3)
    return out


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda s: _drop(s, "encoders.1."), r"encoder and decoder levels \[0, 1, 2\]"),
        (lambda s: _drop(s, "bottleneck."), "no 'bottleneck'"),
        (lambda s: _drop(s, "decoders.0.0."), r"encoders \[0, 1, 2\] and decoders \[1, 2\]"),
        (_renumber_decoder, r"block\(s\) \[0\] are missing"),
        (_deeper_decoder, r"'decoders.1' \(level 1\) has 2 blocks but its encoder stage 'encoders.1' has 1"),
        (
            _heads("decoders.2.0", 2),
            r"(?s)fits no configuration.*temperature: state dict \(2, 1, 1\) vs model \(1, 1, 1\)",
        ),
        (_heads("encoders.0.0", 3), r"is not a valid CLGINet: .*`num_heads\[0\]` \(3\) does not divide"),
        (_bad_hidden, "fit no single `expansion`"),
        (_bad_width, "level 1 blocks .* are 40 channels wide"),
        (_mixed_groups, "fit neither one `cnn_groups`"),
        (lambda s: {**s, "head.weight": torch.zeros(3, 12, 3, 3)}, "with the same dim"),
        (lambda s: {**s, "extra.weight": torch.zeros(1)}, r"unexpected keys \(1\): extra.weight"),
        (
            lambda s: _drop(s, "encoders.1.0.transformer.attn.gate."),
            "branches differ between 'encoders.0.0' and 'encoders.1.0'",
        ),
    ],
    ids=[
        "missing-level",
        "missing-bottleneck",
        "missing-decoder-block",
        "gap-in-blocks",
        "decoder-deeper",
        "inconsistent-heads",
        "impossible-heads",
        "no-expansion",
        "wrong-width",
        "mixed-groups",
        "head-dim",
        "extra-key",
        "mixed-branches",
    ],
)
def test_inconsistent_state_dicts_are_refused(corrupt: Callable[[dict], dict], message: str) -> None:
    state = corrupt(cl.build("clginet-tiny").state_dict())
    with pytest.raises(ValueError, match=message):
        _load(state)


def test_one_branch_state_dict_loads_as_that_ablation() -> None:
    """CLGINet builds one-branch DBPA (``channel=False``): such weights are detected, not refused."""
    model = cl.build("clginet-tiny", spatial=False)
    d = _load(model.state_dict())
    assert d.model.config["spatial"] is False and d.model.config["channel"] is True


def test_sum_fusion_needs_its_config_and_a_gate_contradicts_it() -> None:
    """``attn_fusion="sum"`` weights equal channel-only weights: the config decides; gate weights
    refuse "sum"."""
    summed = wake(cl.build("clginet-tiny", attn_fusion="sum")).eval()
    inferred = detect.infer_config(summed.state_dict(), config={"attn_fusion": "sum"})
    assert (
        inferred.get("spatial", True) and inferred.get("channel", True) and inferred["attn_fusion"] == "sum"
    )
    again = cl.CLGINet(**inferred).eval()
    again.load_state_dict(summed.state_dict())
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(again(x), summed(x))
    assert detect.infer_config(summed.state_dict())["spatial"] is False  # without the config: channel-only
    assert detect.infer_config(cl.build("clginet-tiny").state_dict())["attn_fusion"] == "gate"
    with pytest.raises(
        ValueError, match="config says attn_fusion='sum' but the weights say attn_fusion='gate'"
    ):
        detect.infer_config(cl.build("clginet-tiny").state_dict(), config={"attn_fusion": "sum"})


def _nafnet() -> torch.nn.Module:
    from spandrel.architectures.NAFNet import NAFNet

    return NAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1])


def _kbnet() -> torch.nn.Module:
    from spandrel.architectures.KBNet import KBNet_s

    return KBNet_s(width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1])


def _fftformer() -> torch.nn.Module:
    from spandrel.architectures.FFTformer import FFTformer

    return FFTformer(dim=8, num_blocks=[1, 1, 1], num_refinement_blocks=1)


def _restormer() -> torch.nn.Module:
    extra = pytest.importorskip("spandrel_extra_arches", reason="Restormer ships in spandrel-extra-arches")
    extra.install(ignore_duplicates=True)
    from spandrel_extra_arches.architectures.Restormer import Restormer

    return Restormer(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 4, 8])


@pytest.mark.parametrize(
    ("arch_id", "make"),
    [("NAFNet", _nafnet), ("KBNet", _kbnet), ("FFTformer", _fftformer), ("Restormer", _restormer)],
)
def test_other_architectures_are_not_claimed(arch_id: str, make: Callable[[], torch.nn.Module]) -> None:
    state = make().state_dict()
    assert not detect.is_clginet_state_dict(state)
    assert spandrel.ModelLoader().load_from_state_dict(state).architecture.id == arch_id


def test_register_is_idempotent_and_takes_a_registry() -> None:
    assert register() is register() and spandrel.MAIN_REGISTRY.get(ARCH_ID) is not None
    assert sum(a.architecture.id == ARCH_ID for a in spandrel.MAIN_REGISTRY) == 1
    registry = spandrel.ArchRegistry()
    arch = register(registry)
    assert isinstance(arch, CLGINetArch) and len(registry) == 1 and register(registry) is arch
    with pytest.raises(TypeError, match="register: `registry` must be a spandrel ArchRegistry, got dict"):
        register({})  # type: ignore[arg-type]


@pytest.mark.parametrize("coupling", ["concat", "none"])
def test_fusion_ablation_detected_from_the_missing_fusion_units(coupling: str) -> None:
    """``fusion="add"`` builds no hybrid gated units: their absence is what the weights say."""
    model = wake(
        cl.build("clginet-tiny", dim=8, depths=(1, 1, 1, 1), num_heads=1, fusion="add", coupling=coupling)
    )
    d = _load(model.state_dict())
    assert d.model.config["fusion"] == "add" and d.model.config["coupling"] == coupling
    _same_outputs(d.model, model, 3)


def test_some_fusion_units_missing_is_refused() -> None:
    state = {k: v for k, v in cl.build("clginet-tiny").state_dict().items() if not k.startswith("fusions.1.")}
    with pytest.raises(ValueError, match=r"'fusions\.1'"):
        detect.model_from_state_dict(state)
