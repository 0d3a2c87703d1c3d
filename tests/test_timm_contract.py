"""timm's model contracts for the registered variants: what timm's own generic model tests check.

Forward and backward through ``timm.create_model``, the pretrained config (restoration data
settings, no weight source), ``features_only``, ``forward_intermediates`` and
``prune_intermediate_layers``, parameter groups for layer-wise LR decay, and ``device=``/``dtype=``
passed through to the builder. ``tests/test_models.py`` and ``tests/test_config.py`` cover the
entry names, the architecture they build and ``pretrained=True``'s error message.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import timm
import timm.optim
import torch
from conftest import wake
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, resolve_data_config
from timm.layers import Format
from timm.models import group_parameters
from timm.models._features import FeatureGetterNet
from torch import nn

import clg_layers as cl
from clg_layers.models import VARIANTS
from clg_layers.models.timm_models import CODE_URL, PAPER_URL

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread

NAMES = sorted(VARIANTS)  # clginet-base, clginet-small, clginet-tiny
LEVEL_MODULES = ["encoders.0", "encoders.1", "encoders.2", "bottleneck"]
# The modules of the network in the order forward runs them (first two name parts of a parameter).
RUN_ORDER = [
    "embed", "encoders.0", "downs.0", "encoders.1", "downs.1", "encoders.2", "downs.2", "bottleneck",
    "ups.0", "fusions.0", "decoders.0", "ups.1", "fusions.1", "decoders.1", "ups.2", "fusions.2",
    "decoders.2", "refinement", "head",
]  # fmt: skip


def _timm(name: str) -> str:
    return name.replace("-", "_")


def _stage(param_name: str) -> str:
    """``"encoders.0.1.cnn1.conv_a.weight"`` -> ``"encoders.0"``; ``"embed.weight"`` -> ``"embed"``."""
    parts = param_name.split(".")
    return parts[0] if parts[0] in ("embed", "bottleneck", "refinement", "head") else ".".join(parts[:2])


def _woken_tiny(**overrides: object) -> cl.CLGINet:
    model = wake(timm.create_model("clginet_tiny", **overrides)).eval()
    assert isinstance(model, cl.CLGINet)
    return model


def _stage_outputs(model: cl.CLGINet, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``model(x)`` and the outputs of its encoder levels and bottleneck, caught by forward hooks."""
    caught: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    handles = [
        modules[name].register_forward_hook(lambda _m, _a, out, name=name: caught.__setitem__(name, out))
        for name in LEVEL_MODULES
    ]
    try:
        y = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return y, [caught[name] for name in LEVEL_MODULES]


@pytest.fixture
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make every way timm fetches weights fail loudly."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a download was attempted: {args} {kwargs}")

    import timm.models._builder as builder

    for attr in ("load_pretrained", "load_state_dict_from_url", "load_state_dict_from_hf"):
        monkeypatch.setattr(builder, attr, refuse)
    for attr in ("download_cached_file",):
        monkeypatch.setattr(builder, attr, refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    yield


# --------------------------------------------------------------------------------------------------
# pretrained_cfg: restoration data settings, no weights


@pytest.mark.parametrize("name", NAMES)
def test_pretrained_cfg_describes_restoration_data(name: str) -> None:
    model = timm.create_model(_timm(name))
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg
    assert cfg == timm.models.get_pretrained_cfg(_timm(name)).to_dict()
    assert resolve_data_config(model=model) == {
        "input_size": (3, 256, 256),
        "interpolation": "bicubic",
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),
        "crop_pct": 1.0,
        "crop_mode": "center",
    }
    assert cfg["mean"] != IMAGENET_DEFAULT_MEAN and cfg["std"] != IMAGENET_DEFAULT_STD
    assert cfg["num_classes"] == 0 and cfg["classifier"] is None and cfg["fixed_input_size"] is False
    # timm's generic check: the first convolution named in the config exists.
    assert cfg["first_conv"] + ".weight" in model.state_dict()
    assert cfg["license"] == "mit"
    assert "Coupled Local-Global Interactive Network for Image Restoration" in cfg["paper_name"]
    assert "ACM MM 2023" in cfg["paper_name"]
    assert cfg["paper_ids"] == PAPER_URL == "https://doi.org/10.1145/3581783.3612251"
    assert cfg["origin_url"] == CODE_URL
    assert any("no official code" in note for note in cfg["notes"])
    assert VARIANTS[name].description in cfg["description"]
    # No weight source anywhere: nothing for timm to download.
    sources = {"url", "file", "hf_hub_id", "hf_hub_filename", "state_dict"}
    assert not sources & {k for k, v in cfg.items() if v}
    assert not timm.models.is_model_pretrained(_timm(name))
    assert timm.list_pretrained(_timm(name) + "*") == []


def test_grey_models_get_grey_data_settings() -> None:
    grey = timm.create_model("clginet_tiny", in_chans=1)
    assert grey.in_chans == 1
    data = resolve_data_config(model=grey)
    assert data["input_size"] == (1, 256, 256) and data["mean"] == (0.0,) and data["std"] == (1.0,)
    feats = timm.create_model("clginet_tiny", in_chans=1, features_only=True)
    assert feats.pretrained_cfg["input_size"] == (1, 256, 256) and feats.pretrained_cfg["mean"] == (0.0,)
    # An explicit overlay still wins over the channel adaptation.
    custom = timm.create_model("clginet_tiny", in_chans=1, pretrained_cfg_overlay={"mean": (0.5,)})
    assert resolve_data_config(model=custom)["mean"] == (0.5,)
    assert resolve_data_config(model=custom)["input_size"] == (1, 256, 256)


@pytest.mark.parametrize("name", NAMES)
def test_pretrained_true_and_tags_are_errors_not_downloads(name: str, no_downloads: None) -> None:
    for kwargs in ({}, {"features_only": True}):
        with pytest.raises(ValueError, match=rf"no pretrained weights are published for '{_timm(name)}'"):
            timm.create_model(_timm(name), pretrained=True, **kwargs)
    with pytest.raises(ValueError, match="has no pretrained tags"):
        timm.create_model(_timm(name) + ".in1k")
    timm.create_model("clginet_tiny")  # and an ordinary build touches none of the download paths


def test_num_classes_other_than_zero_is_an_error() -> None:
    # timm's generic backward test builds with num_classes=42: there is no classifier to resize.
    with pytest.raises(ValueError, match="without a classifier, so `num_classes` must be 0, got 42"):
        timm.create_model("clginet_tiny", num_classes=42)
    assert timm.create_model("clginet_tiny", num_classes=0).num_classes == 0


# --------------------------------------------------------------------------------------------------
# forward and backward through timm.create_model (timm's test_model_forward / test_model_backward)


@pytest.mark.parametrize("name", NAMES)
def test_create_model_forward(name: str) -> None:
    model = wake(timm.create_model(_timm(name))).eval()
    x = torch.rand(1, *model.pretrained_cfg["input_size"][:1], 32, 32)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert not torch.equal(y, x)


@pytest.mark.parametrize("name", ["clginet-tiny", "clginet-small"])  # base: its forward above is enough
def test_create_model_backward_reaches_every_parameter(name: str) -> None:
    model = wake(timm.create_model(_timm(name))).train()
    y = model(torch.rand(2, 3, 32, 32))
    y.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
    assert sum(p.grad.numel() for p in model.parameters()) == sum(p.numel() for p in model.parameters())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


# --------------------------------------------------------------------------------------------------
# features_only and feature_info


def test_feature_info_on_the_model() -> None:
    model = cl.build("clginet-small")
    info = model.feature_info
    assert [i["num_chs"] for i in info] == [24, 48, 96, 192]
    assert [i["reduction"] for i in info] == [1, 2, 4, 8]
    assert [i["module"] for i in info] == LEVEL_MODULES
    assert [i["index"] for i in info] == [0, 1, 2, 3]
    modules = dict(model.named_modules())
    assert all(i["module"] in modules for i in info)
    info[0]["num_chs"] = -1  # a fresh list on every access: callers cannot corrupt it
    assert model.feature_info[0]["num_chs"] == 24


@pytest.mark.parametrize("name", NAMES)
def test_features_only(name: str) -> None:
    dim = VARIANTS[name].config.dim
    model = timm.create_model(_timm(name), features_only=True).eval()
    assert isinstance(model, FeatureGetterNet)
    assert model.feature_info.channels() == [dim, 2 * dim, 4 * dim, 8 * dim]
    assert model.feature_info.reduction() == [1, 2, 4, 8]
    assert model.feature_info.module_name() == LEVEL_MODULES
    # The decoder is pruned away: only the embedding, encoder and bottleneck have parameters.
    assert {_stage(n) for n, _ in model.model.named_parameters()} == set(RUN_ORDER[:8])
    assert "num_classes" not in model.pretrained_cfg and model.pretrained_cfg["mean"] == (0.0, 0.0, 0.0)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32))
    assert [tuple(o.shape) for o in out] == [(2, dim * 2**lv, 32 >> lv, 32 >> lv) for lv in range(4)]
    assert all(torch.isfinite(o).all() for o in out)


def test_features_only_out_indices_and_unsupported_wrappers() -> None:
    model = timm.create_model("clginet_tiny", features_only=True, out_indices=(1, -1))
    assert model.feature_info.channels() == [32, 128] and model.feature_info.reduction() == [2, 8]
    with torch.no_grad():
        out = model(torch.rand(1, 3, 32, 32))
    assert [tuple(o.shape) for o in out] == [(1, 32, 16, 16), (1, 128, 4, 4)]
    shallow = timm.create_model("clginet_tiny", features_only=True, out_indices=(0,))
    assert {_stage(n) for n, _ in shallow.model.named_parameters()} == {"embed", "encoders.0"}
    with pytest.raises(ValueError, match=r"feature_cls in \['getter'\].*got 'hook'"):
        timm.create_model("clginet_tiny", features_only=True, feature_cls="hook")


# --------------------------------------------------------------------------------------------------
# forward_intermediates


@pytest.mark.parametrize("size", [(32, 32), (37, 21)])
def test_forward_intermediates_are_the_stage_outputs_and_the_restored_image(size: tuple[int, int]) -> None:
    model = _woken_tiny()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y_ref, stages = _stage_outputs(model, x)
        y, feats = model.forward_intermediates(x)
        only = model.forward_intermediates(x, intermediates_only=True)
    assert torch.equal(y, y_ref)  # the final output is the restored image, exactly forward's
    h, w = size
    for level, (f, g, stage, info) in enumerate(zip(feats, only, stages, model.feature_info)):
        r = 2**level
        expected = (2, info["num_chs"], -(-h // r), -(-w // r))  # ceil: the image's share of the map
        assert tuple(f.shape) == expected and torch.equal(f, g)
        assert torch.equal(f, stage[..., : expected[2], : expected[3]])
        assert f.is_contiguous()  # in the input's memory format, as forward's output
    if size == (37, 21):
        assert stages[0].shape[-2:] == (40, 24)  # the padded maps were cropped


def test_forward_intermediates_indices_formats_and_flags() -> None:
    model = _woken_tiny()
    x = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        every = model.forward_intermediates(x, intermediates_only=True)
        assert [f.shape[1] for f in every] == [16, 32, 64, 128]
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        assert [f.shape[1] for f in last_two] == [64, 128]
        picked = model.forward_intermediates(x, indices=[-1, 0], intermediates_only=True)
        assert len(picked) == 2 and torch.equal(picked[0], every[0]) and torch.equal(picked[1], every[3])
        nhwc = model.forward_intermediates(x, output_fmt=Format.NHWC, intermediates_only=True)
        for a, b in zip(nhwc, every):
            assert torch.equal(a, b.permute(0, 2, 3, 1))
        normed = model.forward_intermediates(x, norm=True, intermediates_only=True)
        assert all(torch.equal(a, b) for a, b in zip(normed, every))
        x_cl = x.contiguous(memory_format=torch.channels_last)
        y_cl, feats_cl = model.forward_intermediates(x_cl)
        assert y_cl.is_contiguous(memory_format=torch.channels_last)
        assert all(f.is_contiguous(memory_format=torch.channels_last) for f in feats_cl)
        assert torch.allclose(feats_cl[3], every[3], atol=1e-6)


def test_stop_early_skips_the_deeper_stages_only_for_intermediates() -> None:
    model = _woken_tiny()
    calls: list[str] = []
    modules = dict(model.named_modules())
    for name in ("encoders.1", "encoders.2", "bottleneck", "head"):
        modules[name].register_forward_pre_hook(lambda _m, _a, name=name: calls.append(name))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_intermediates(x, indices=[0, 1], stop_early=True, intermediates_only=True)
        assert calls == ["encoders.1"] and len(feats) == 2
        calls.clear()
        y, _ = model.forward_intermediates(x, indices=[0], stop_early=True)  # the image needs every stage
        assert calls == ["encoders.1", "encoders.2", "bottleneck", "head"]
        assert torch.equal(y, model(x))


def test_forward_intermediates_trains_with_gradient_checkpointing() -> None:
    model = _woken_tiny().train()
    x = torch.rand(1, 3, 16, 16)
    y, feats = model.forward_intermediates(x)
    model.set_grad_checkpointing(True)
    y_ckpt, feats_ckpt = model.forward_intermediates(x)
    assert torch.allclose(y, y_ckpt, atol=1e-6) and torch.allclose(feats[3], feats_ckpt[3], atol=1e-6)
    (y_ckpt.mean() + sum(f.mean() for f in feats_ckpt)).backward()
    assert model.embed.weight.grad is not None and model.embed.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"indices": 0}, ValueError, r"must be in \[1, 4\], got 0"),
        ({"indices": 5}, ValueError, r"must be in \[1, 4\], got 5"),
        ({"indices": [4]}, ValueError, r"feature index 4 is out of range .*-4 to 3"),
        ({"indices": [-5]}, ValueError, "feature index -5 is out of range"),
        ({"indices": []}, ValueError, "at least one feature level"),
        ({"indices": "0"}, TypeError, "must be None, an int or a sequence of ints, got str"),
        ({"indices": [1.0]}, TypeError, r"must hold ints, got float"),
        ({"indices": True}, TypeError, "got bool"),
        ({"output_fmt": "NLC"}, ValueError, r"`output_fmt` must be one of \['NCHW', 'NHWC'\], got 'NLC'"),
        ({"stop_early": 1}, TypeError, "`stop_early` must be a bool"),
        ({"norm": None}, TypeError, "`norm` must be a bool"),
        ({"intermediates_only": "yes"}, TypeError, "`intermediates_only` must be a bool"),
    ],
)
def test_forward_intermediates_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    model = cl.build("clginet-tiny")
    with pytest.raises(error, match="CLGINet.forward_intermediates: .*" + match):
        model.forward_intermediates(torch.rand(1, 3, 16, 16), **kwargs)


def test_forward_intermediates_bad_input() -> None:
    model = cl.build("clginet-tiny")
    with pytest.raises(ValueError, match=r"CLGINet.forward_intermediates: input must have 3 channels"):
        model.forward_intermediates(torch.rand(1, 1, 16, 16))
    with pytest.raises(TypeError, match=r"CLGINet.forward_intermediates: input must be a torch.Tensor"):
        model.forward_intermediates([[0.0]])


# --------------------------------------------------------------------------------------------------
# prune_intermediate_layers


def test_prune_keeps_the_features_and_drops_the_rest() -> None:
    model = _woken_tiny()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        before = model.forward_intermediates(x, intermediates_only=True)
    assert model.prune_intermediate_layers([0, -3]) == [0, 1]
    assert {_stage(n) for n, _ in model.named_parameters()} == set(RUN_ORDER[:4])
    assert len(model.encoders) == 2 and len(model.downs) == 1 and model.fusions is None
    with torch.no_grad():
        after = model.forward_intermediates(x, intermediates_only=True)
    assert len(after) == 2 and all(torch.equal(a, b) for a, b in zip(after, before[:2]))
    assert [f.shape[1] for f in model.forward_intermediates(x, indices=1, intermediates_only=True)] == [32]
    with pytest.raises(ValueError, match="out of range for 2 feature levels"):
        model.forward_intermediates(x, indices=[2], intermediates_only=True)
    with pytest.raises(RuntimeError, match="pruned to a feature extractor"):
        model(x)
    with pytest.raises(RuntimeError, match="pass intermediates_only=True"):
        model.forward_intermediates(x)
    assert len(model.feature_info) == 4  # describes the network's levels, as timm's models do


def test_prune_head_false_keeps_a_whole_network() -> None:
    model = _woken_tiny()
    keys = set(model.state_dict())
    assert model.prune_intermediate_layers(None, prune_head=False) == [0, 1, 2, 3]
    assert set(model.state_dict()) == keys
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert model(x).shape == x.shape
    assert model.prune_intermediate_layers(4) == [0, 1, 2, 3]  # prune_head=True: the decoder goes
    assert {_stage(n) for n, _ in model.named_parameters()} == set(RUN_ORDER[:8])
    with pytest.raises(TypeError, match=r"CLGINet\.prune_intermediate_layers: `prune_head` must be a bool"):
        model.prune_intermediate_layers(1, prune_head="no")


# --------------------------------------------------------------------------------------------------
# group_matcher and layer-wise LR decay


def _layers_in_run_order(model: nn.Module, coarse: bool) -> list[list[str]]:
    """The stages (first name parts) of each parameter group, in group order."""
    layer_of = group_parameters(model, model.group_matcher(coarse=coarse), reverse=True)
    assert set(layer_of) == {n for n, _ in model.named_parameters()}  # every parameter is matched
    groups: dict[int, list[str]] = {}
    for name, _ in model.named_parameters():
        groups.setdefault(layer_of[name], []).append(_stage(name))
    assert sorted(groups) == list(range(len(groups)))
    return [sorted(set(groups[i])) for i in range(len(groups))]


@pytest.mark.parametrize("name", NAMES)
def test_group_matcher_follows_the_run_order(name: str) -> None:
    model = timm.create_model(_timm(name))
    matcher = model.group_matcher()
    assert set(matcher) == {"stem", "blocks"} and matcher["stem"] == r"^embed\."
    coarse = _layers_in_run_order(model, coarse=True)
    assert coarse == [
        ["embed"], ["downs.0", "encoders.0"], ["downs.1", "encoders.1"], ["downs.2", "encoders.2"],
        ["bottleneck"], ["decoders.0", "fusions.0", "ups.0"], ["decoders.1", "fusions.1", "ups.1"],
        ["decoders.2", "fusions.2", "ups.2"], ["refinement"], ["head"],
    ]  # fmt: skip
    fine = _layers_in_run_order(model, coarse=False)
    cfg = model.config
    # One group per coupling block and per downsample, upsample and fusion unit (3 each), plus the
    # embedding and the head.
    assert len(fine) == 2 + cfg.num_blocks + 3 * 3
    flat = [group[0] for group in fine]
    assert all(len(group) == 1 for group in fine)
    assert list(dict.fromkeys(flat)) == RUN_ORDER  # groups come in the order forward runs them


def test_group_matcher_without_fusions_or_refinement() -> None:
    model = timm.create_model("clginet_tiny", fusion="add", refinement_depth=0, depths=(2, 1, 1, 1))
    fine = _layers_in_run_order(model, coarse=False)
    order = list(dict.fromkeys(group[0] for group in fine))
    assert order == [m for m in RUN_ORDER if not m.startswith(("fusions", "refinement"))]
    assert fine[1] == fine[2] == ["encoders.0"]  # two blocks at level 0, one group each


@pytest.mark.parametrize("name", NAMES)
def test_layer_decay_gives_each_depth_its_own_scale(name: str) -> None:
    model = timm.create_model(_timm(name))
    decay = 0.7
    opt = timm.optim.create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=decay)
    scale_of = {id(p): group["lr_scale"] for group in opt.param_groups for p in group["params"]}
    assert len(scale_of) == sum(1 for _ in model.parameters())
    n = len(_layers_in_run_order(model, coarse=False))
    assert sorted(set(scale_of.values())) == pytest.approx(sorted(decay**i for i in range(n)))
    assert scale_of[id(model.embed.weight)] == pytest.approx(decay ** (n - 1))
    assert scale_of[id(model.head.weight)] == 1.0
    # Later in the run order, a larger scale: every stage's smallest scale differs from the others'.
    by_stage: dict[str, set[float]] = {}
    for pname, p in model.named_parameters():
        by_stage.setdefault(_stage(pname), set()).add(scale_of[id(p)])
    mins = [min(by_stage[m]) for m in RUN_ORDER]
    assert mins == sorted(mins) and len(set(mins)) == len(RUN_ORDER)


# --------------------------------------------------------------------------------------------------
# device= and dtype= reach the constructor


def test_create_model_passes_device_and_dtype() -> None:
    meta = timm.create_model("clginet_tiny", device="meta")
    assert {p.device.type for p in meta.parameters()} == {"meta"}
    double = timm.create_model("clginet_tiny", dtype=torch.float64)
    assert {p.dtype for p in double.parameters()} == {torch.float64}
    with torch.no_grad():
        y = double(torch.rand(1, 3, 16, 16, dtype=torch.float64))
    assert y.dtype == torch.float64
    feats = timm.create_model("clginet_tiny", features_only=True, dtype=torch.float64)
    with torch.no_grad():
        out = feats(torch.rand(1, 3, 16, 16, dtype=torch.float64))
    assert {o.dtype for o in out} == {torch.float64}
    assert "device" not in double._model_args and "dtype" not in double._model_args


@pytest.mark.parametrize("in_chans", [1, 3])
def test_models_built_without_timm_resolve_restoration_data_settings(in_chans: int) -> None:
    for model in (
        cl.build("clginet-tiny", in_chans=in_chans),
        cl.CLGINet(in_chans=in_chans, dim=8, depths=(1, 1, 1, 1), num_heads=1),
    ):
        data = timm.data.resolve_data_config(model=model)
        assert data["mean"] == (0.0,) * in_chans and data["std"] == (1.0,) * in_chans
        assert data["input_size"] == (in_chans, 256, 256)
        assert model.default_cfg == model.pretrained_cfg
        assert "url" not in model.pretrained_cfg and "hf_hub_id" not in model.pretrained_cfg
