"""CLGINetConfig: one frozen, validated config; one variants table; straight layering of the package."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import clg_layers as cl
from clg_layers import CLGINetConfig
from clg_layers.models.clginet import VARIANTS

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "clginet-0.2.0-layout.safetensors"

#: A clg-layers 0.3.0 config dict, as save_checkpoint and config.json wrote it.
CONFIG_0_3 = {
    "in_chans": 3,
    "out_chans": 3,
    "dim": 16,
    "depths": [1, 1, 1, 2],
    "num_heads": [1, 1, 2, 4],
    "window_size": 8,
    "kernel_size": 7,
    "expansion": 2.0,
    "refinement_depth": 1,
    "drop_path_rate": 0.0,
    "global_residual": True,
    "cnn_groups": 0,
    "coupling": "concat",
    "fusion": "hgu",
    "spatial": True,
    "channel": True,
    "attn_fusion": "gate",
}


@st.composite
def valid_configs(draw: st.DrawFn) -> CLGINetConfig:
    dim = 2 * draw(st.integers(1, 6))
    heads = [draw(st.sampled_from([h for h in (1, 2, 4) if (dim * 2**level) % h == 0])) for level in range(4)]
    in_chans = draw(st.integers(1, 4))
    residual = draw(st.booleans())
    spatial, channel = draw(st.sampled_from([(True, True), (True, False), (False, True)]))
    return CLGINetConfig(
        in_chans=in_chans,
        out_chans=in_chans if residual else draw(st.integers(1, 4)),
        dim=dim,
        depths=draw(st.lists(st.integers(1, 3), min_size=4, max_size=4)),
        num_heads=heads,
        window_size=draw(st.integers(1, 16)),
        kernel_size=draw(st.sampled_from([1, 3, 5, 7])),
        expansion=draw(st.one_of(st.floats(0.05, 4.0), st.fractions(Fraction(1, 4), 4, max_denominator=8))),
        refinement_depth=draw(st.integers(0, 2)),
        drop_path_rate=draw(st.floats(0.0, 0.9)),
        global_residual=residual,
        cnn_groups=draw(st.sampled_from([0, 1, 2])),
        coupling=draw(st.sampled_from(["concat", "none"])),
        fusion=draw(st.sampled_from(["hgu", "add"])),
        spatial=spatial,
        channel=channel,
        attn_fusion=draw(st.sampled_from(["gate", "sum"])),
    )


@settings(max_examples=60, deadline=None)
@given(cfg=valid_configs())
def test_round_trip_through_json(cfg: CLGINetConfig) -> None:
    text = json.dumps(cfg.to_dict())
    again = CLGINetConfig.from_dict(json.loads(text))
    assert again == cfg and hash(again) == hash(cfg)
    assert again.to_dict() == json.loads(text)
    assert dict(cfg) == cfg.to_dict()  # the read-only mapping view is the dict view
    assert cfg.replace() == cfg


def test_values_are_normalised_to_plain_python() -> None:
    cfg = CLGINetConfig(
        dim=np.int64(16),
        num_heads=2,
        depths=np.array([1, 1, 1, 2]).tolist(),
        expansion=Fraction(3, 2),
        window_size=np.int32(4),
        in_chans=1,
    )
    assert cfg.num_heads == (2, 2, 2, 2) and cfg.depths == (1, 1, 1, 2) and cfg.out_chans == 1
    assert type(cfg.dim) is int and type(cfg.window_size) is int and type(cfg.expansion) is float
    d = cfg.to_dict()
    assert d["num_heads"] == [2, 2, 2, 2] and json.loads(json.dumps(d)) == d
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.dim = 8  # type: ignore[misc]


def test_old_config_dicts_load() -> None:
    """0.3.0's dicts (every key) and 0.2.0's (no fusion/spatial/channel/attn_fusion) give the same config."""
    cfg = CLGINetConfig.from_dict(CONFIG_0_3)
    assert cfg == VARIANTS["clginet-tiny"].config
    old = {k: v for k, v in CONFIG_0_3.items() if k not in ("fusion", "spatial", "channel", "attn_fusion")}
    assert CLGINetConfig.from_dict(old) == cfg
    name, stored = cl.read_checkpoint_config(FIXTURE)
    fixture = CLGINetConfig.from_dict(stored)
    assert name == "clginet-tiny" and fixture.dim == 8 and fixture.num_heads == (1, 1, 2, 2)
    model = cl.build(name, checkpoint=FIXTURE)
    assert model.config == fixture


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['depth', 'heads'\]"):
        CLGINetConfig.from_dict({**CONFIG_0_3, "heads": 2, "depth": 1})
    with pytest.raises(TypeError, match="expected a mapping"):
        CLGINetConfig.from_dict([("dim", 16)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"CLGINetConfig: unknown option\(s\) \['width'\]"):
        CLGINetConfig().replace(width=3)
    with pytest.raises(TypeError, match=r"CLGINet: unknown option\(s\) \['width'\]"):
        cl.CLGINet(width=3)
    with pytest.raises(TypeError, match="CLGINet: `config` must be a CLGINetConfig or None, got dict"):
        cl.CLGINet(CONFIG_0_3)  # type: ignore[arg-type]


BAD = [
    ("in_chans", 0, ValueError),
    ("in_chans", True, TypeError),
    ("out_chans", "3", TypeError),
    ("dim", 7, ValueError),
    ("dim", 2.0, TypeError),
    ("depths", [1, 1, 1], ValueError),
    ("depths", "1111", TypeError),
    ("num_heads", [1, 1, 3, 1], ValueError),
    ("num_heads", [1, 1, 0, 1], ValueError),
    ("window_size", 0, ValueError),
    ("kernel_size", 4, ValueError),
    ("expansion", float("nan"), ValueError),
    ("expansion", "2.66", TypeError),
    ("refinement_depth", -1, ValueError),
    ("drop_path_rate", 1.0, ValueError),
    ("global_residual", 1, TypeError),
    ("cnn_groups", 5, ValueError),
    ("coupling", "sum", ValueError),
    ("fusion", "concat", ValueError),
    ("spatial", "yes", TypeError),
    ("attn_fusion", "mul", ValueError),
]


@pytest.mark.parametrize(("key", "value", "exc"), BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_every_bad_value_is_refused_naming_its_key(key: str, value: object, exc: type[Exception]) -> None:
    token = "num_heads[2]" if key == "num_heads" else key
    with pytest.raises(exc, match=rf"^CLGINetConfig: .*{token.replace('[', '.').replace(']', '.')}"):
        CLGINetConfig.from_dict({**CONFIG_0_3, key: value})
    with pytest.raises(exc, match=rf"^CLGINet: .*{token.replace('[', '.').replace(']', '.')}"):
        cl.CLGINet(**{**CONFIG_0_3, key: value})


def test_cross_field_checks() -> None:
    with pytest.raises(ValueError, match="global_residual=True` needs in_chans == out_chans"):
        CLGINetConfig(in_chans=3, out_chans=1)
    with pytest.raises(ValueError, match="at least one of `spatial` and `channel`"):
        CLGINetConfig(spatial=False, channel=False)
    assert CLGINetConfig(in_chans=3, out_chans=1, global_residual=False).out_chans == 1


def test_replace_keeps_out_chans_following_in_chans() -> None:
    base = VARIANTS["clginet-tiny"].config
    assert base.replace(in_chans=1).out_chans == 1
    assert base.replace(in_chans=1, out_chans=1, global_residual=False).out_chans == 1
    wide = CLGINetConfig(in_chans=3, out_chans=1, global_residual=False)
    assert wide.replace(in_chans=4).out_chans == 1  # a different out_chans stays
    assert cl.CLGINet(base, in_chans=1).config == base.replace(in_chans=1)


def test_block_config_of_each_level() -> None:
    cfg = CLGINetConfig(dim=16, num_heads=(1, 2, 4, 8), window_size=4, attn_fusion="sum", cnn_groups=0)
    block = cfg.block_config(2, 0.25)
    assert isinstance(block, cl.BlockConfig)
    assert (block.num_heads, block.window_size, block.drop_path, block.attn_fusion, block.cnn_groups) == (
        4,
        4,
        0.25,
        "sum",
        0,
    )
    with pytest.raises(ValueError, match="`level` must be < 4"):
        cfg.block_config(4)
    rates = CLGINetConfig(drop_path_rate=0.3).drop_path_rates()
    assert len(rates) == CLGINetConfig().num_blocks and rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_config_and_keywords_build_the_same_network(name: str) -> None:
    cfg = VARIANTS[name].config.replace(in_chans=1, fusion="add")
    a, b, c = cl.CLGINet(cfg), cl.CLGINet(**cfg.to_dict()), cl.CLGINet(**cfg)
    shapes = {k: v.shape for k, v in a.state_dict().items()}
    for other in (b, c):
        assert {k: v.shape for k, v in other.state_dict().items()} == shapes
        assert other.config == a.config == cfg
    assert isinstance(a.config, CLGINetConfig) and a.config["dim"] == cfg.dim
    assert f"dim={cfg.dim}," in a.extra_repr() and f"depths={list(cfg.depths)}" in repr(a)


def test_one_variants_table_for_zoo_timm_and_torch_hub() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        import hubconf
    finally:
        sys.path.remove(str(ROOT))
    names = sorted(VARIANTS)
    underscored = sorted(n.replace("-", "_") for n in names)
    assert cl.list_models("clginet-*") == names
    assert sorted(timm.list_models("clginet*")) == underscored
    assert sorted(hubconf.__all__) == underscored
    for name in names:
        entry = name.replace("-", "_")
        expected = VARIANTS[name].config
        assert cl.build(name).config == expected
        assert timm.create_model(entry).config == expected
        assert getattr(hubconf, entry)(in_chans=1).config == expected.replace(in_chans=1)
        assert VARIANTS[name].description in getattr(hubconf, entry).__doc__
        assert getattr(cl.models.clginet, entry)().config == expected


def test_checkpoint_and_hub_store_the_dict(tmp_path: Path) -> None:
    model = cl.build("clginet-tiny", in_chans=1)
    path = cl.save_checkpoint(model, tmp_path / "m.safetensors")
    name, stored = cl.read_checkpoint_config(path)
    assert name == "clginet-tiny" and stored == model.config.to_dict()
    directory = cl.save_pretrained(model, tmp_path / "hub")
    written = json.loads((directory / "config.json").read_text())["config"]
    assert written == model.config.to_dict()
    # A config.json written by 0.3.0 (every key) and by 0.2-era code (fewer keys) both load.
    raw = json.loads((directory / "config.json").read_text())
    newer = ("fusion", "spatial", "channel", "attn_fusion")
    raw["config"] = {k: v for k, v in written.items() if k not in newer}
    (directory / "config.json").write_text(json.dumps(raw))
    assert cl.from_pretrained(directory).config == model.config


def test_detection_returns_a_config() -> None:
    from clg_layers.integrations import detect

    model = cl.build("clginet-small", cnn_groups=0, fusion="add")
    cfg = detect.infer_config(model.state_dict(), config={"num_heads": [1, 2, 4, 8]})
    assert isinstance(cfg, CLGINetConfig) and cfg == model.config
    loaded, _ = detect.model_from_state_dict(cl.build("clginet-tiny").state_dict())
    assert loaded.model_name == "clginet-tiny" and loaded.config == VARIANTS["clginet-tiny"].config
    assert detect.infer_config(model.state_dict(), config={"window_size": 4}).window_size == 4
    shorthand = cl.build("clginet-tiny", num_heads=2)  # an int in the given config means every level
    assert detect.infer_config(shorthand.state_dict(), config={"num_heads": 2}).num_heads == (2, 2, 2, 2)


def test_import_does_not_load_the_benchmark_harness() -> None:
    code = (
        "import sys, clg_layers; assert 'clg_layers.tools.benchmark' not in sys.modules, 'harness imported'; "
        "assert clg_layers.BenchmarkReport.__module__ == 'clg_layers.tools.benchmark'; "
        "assert 'clg_layers.tools.benchmark' in sys.modules; print(clg_layers.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == cl.__version__


def test_one_version_source() -> None:
    from clg_layers import _version

    assert cl.__version__ == _version.__version__
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'path = "clg_layers/_version.py"' in pyproject
    assert "\nversion = " not in pyproject.split("[project]")[1].split("\n[")[0]
    for module in ("clg_layers/integrations/hub.py", "clg_layers/tools/benchmark.py"):
        assert "from .. import __version__" not in (ROOT / module).read_text()


def test_data_does_not_import_tools() -> None:
    for path in (ROOT / "clg_layers" / "data").glob("*.py"):
        text = path.read_text()
        assert "..tools" not in text and "clg_layers.tools" not in text, path.name


def test_detect_imports_nothing_private_from_the_model() -> None:
    text = (ROOT / "clg_layers" / "integrations" / "detect.py").read_text()
    assert "_LEVELS" not in text and "_VARIANTS" not in text and "_split_layout" not in text


def test_data_options_use_the_layer_checks() -> None:
    from clg_layers.data import GaussianNoise, MotionBlur, PatchSchedule

    with pytest.raises(TypeError, match="GaussianNoise: `sigma` must be a number"):
        GaussianNoise(True)
    with pytest.raises(TypeError, match="GaussianNoise: `sigma_range` must be a number"):
        GaussianNoise(sigma_range="10")
    with pytest.raises(ValueError, match="MotionBlur: `kernel_size` must be odd"):
        MotionBlur(kernel_size=4)
    with pytest.raises(TypeError, match="MotionBlur: `kernel_size` must be an int"):
        MotionBlur(kernel_size=5.0)
    with pytest.raises(TypeError, match="MotionBlur: `curvature` must be a real number"):
        MotionBlur(curvature="1")
    with pytest.raises(TypeError, match=r"PatchSchedule: `stages\[0\].patch` must be an int, got bool"):
        PatchSchedule(((10, True, 2),))
    assert torch.is_tensor(MotionBlur(kernel_size=5).kernels(1, seed=0))


def test_train_config_refuses_bools_and_yaml_strings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("lightning")
    from clg_layers.cli import main
    from clg_layers.training import TrainConfig

    with pytest.raises(TypeError, match="TrainConfig: `max_steps` must be an int, got bool"):
        TrainConfig(max_steps=True)
    with pytest.raises(TypeError, match="TrainConfig: `lr` must be a real number, got str"):
        TrainConfig(lr="1.0e6")
    with pytest.raises(TypeError, match="TrainConfig: `cache` must be a bool"):
        TrainConfig(cache=1)
    with pytest.raises(TypeError, match=r"TrainConfig: `schedule`: .*stages\[0\].steps"):
        TrainConfig(schedule=[[True, 32, 2]])
    with pytest.raises(ValueError, match="TrainConfig: `ema_decay` must be < 1"):
        TrainConfig(ema_decay=1.0)
    config = tmp_path / "run.yaml"
    config.write_text(f"train: {tmp_path}\nlr: 1.0e6\n")  # YAML 1.1 reads 1.0e6 as a string
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "`lr` must be a real number, got str ('1.0e6')" in err and "not supported between" not in err
