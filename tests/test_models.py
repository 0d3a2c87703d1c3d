"""The network and the zoo: every registered variant, metadata, precision, checkpointing."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import wake

import clg_layers as cl

VARIANTS = ["clginet-tiny", "clginet-small", "clginet-base"]
# Pinned so an accidental architecture change is caught; update deliberately (and the docs' zoo table).
PARAMS = {"clginet-tiny": 1_316_188, "clginet-small": 6_189_294, "clginet-base": 24_319_718}
GMACS_256 = {"clginet-tiny": 5.943, "clginet-small": 23.162, "clginet-base": 86.739}
RESTORMER_GMACS_256 = 140.99  # Restormer's own published figure at 256×256


def test_zoo_lists_the_variants() -> None:
    # other tests register their own variants in this process, so check containment
    assert set(VARIANTS) <= set(cl.list_models()) and set(VARIANTS) <= set(cl.list_models("clginet-*"))
    assert cl.list_models("clginet-[bs]*") == ["clginet-base", "clginet-small"]
    assert cl.list_models("*tiny") == ["clginet-tiny"]
    assert cl.list_models("resnet*") == []


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_forward_odd_size(name: str) -> None:
    model = wake(cl.build(name)).eval()
    size = (37, 53) if name != "clginet-base" else (19, 23)
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert not torch.equal(y, x)  # the woken branches do something


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_params_and_macs_pinned(name: str) -> None:
    info = cl.model_info(name)
    assert info.params == PARAMS[name]
    assert info.gmacs == pytest.approx(GMACS_256[name], abs=1e-3)
    assert info.size_multiple == 1 and info.in_chans == 3 and info.out_chans == 3


def test_base_matches_paper_and_is_lighter_than_restormer() -> None:
    info = cl.model_info("clginet-base")
    assert abs(info.params - 24.7e6) <= 0.02 * 24.7e6  # Table 3: 24.7 M
    assert info.macs < 0.75 * RESTORMER_GMACS_256 * 1e9


def test_fresh_network_blocks_are_identity_and_metadata() -> None:
    """Every block of a fresh network is the identity; the default-init head makes the whole a small
    perturbation."""
    model = cl.build("clginet-tiny")
    x = torch.rand(2, 3, 21, 10)
    seen: list[str] = []

    def check(name: str):
        def hook(module: torch.nn.Module, args: tuple[torch.Tensor], out: torch.Tensor) -> None:
            torch.testing.assert_close(
                out, args[0], rtol=0, atol=0, msg=f"fresh block {name} is not the identity"
            )
            seen.append(name)

        return hook

    for name, m in model.named_modules():
        if isinstance(m, cl.CouplingBlock):
            m.register_forward_hook(check(name))
    with torch.no_grad():
        y = model(x)
    assert len(seen) == sum(isinstance(m, cl.CouplingBlock) for m in model.modules()) > 0
    # Not the identity (the head is at its default init), but close to it.
    assert not torch.equal(y, x) and (y - x).abs().mean() < 0.2
    for attr in ("size_multiple", "in_chans", "out_chans", "supports_half", "supports_bf16", "model_name"):
        assert hasattr(model, attr)
    assert model.model_name == "clginet-tiny"


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (9, 1), (3, 3), (8, 8), (17, 4)])
def test_tiny_sizes_including_smaller_than_pad(size: tuple[int, int]) -> None:
    model = wake(cl.build("clginet-tiny")).eval()
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_grayscale_and_other_channel_counts() -> None:
    gray = wake(cl.build("clginet-tiny", in_chans=1)).eval()
    assert gray(torch.rand(2, 1, 13, 17)).shape == (2, 1, 13, 17)
    to_rgb = wake(cl.build("clginet-tiny", in_chans=1, out_chans=3, global_residual=False)).eval()
    assert to_rgb(torch.rand(1, 1, 13, 17)).shape == (1, 3, 13, 17)
    with pytest.raises(ValueError, match="global_residual=True` needs in_chans == out_chans"):
        cl.build("clginet-tiny", in_chans=1, out_chans=3)
    with pytest.raises(ValueError, match="CLGINet: input must have 1 channels"):
        gray(torch.rand(1, 3, 8, 8))


def _last_projections(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The zero-started last projection of every residual branch."""
    lasts: list[torch.nn.Module] = []
    for m in model.modules():
        if isinstance(m, cl.CNNLayer):
            lasts.append(m.conv_b[-1] if isinstance(m.conv_b, torch.nn.Sequential) else m.conv_b)
        elif isinstance(m, cl.TransformerLayer):
            lasts += [m.attn.proj, m.ffn.fc2]
        elif isinstance(m, cl.CouplingBlock) and m.fuse is not None:
            lasts.append(m.fuse)
    return lasts


def test_every_parameter_gets_gradient() -> None:
    """Step 1 already moves the head, every branch's last projection and every layer scale; from
    step 2 on every parameter gets a gradient."""
    model = cl.build("clginet-tiny")
    lasts = _last_projections(model)
    assert lasts and all(not m.weight.any() for m in lasts)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.rand(2, 3, 20, 28)
    for step in range(2):
        opt.zero_grad()
        (model(x) - x.flip(-1)).square().mean().backward()
        if step == 0:
            first = [model.head.weight, *(m.weight for m in lasts)]
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in first)
            opt.step()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


ABLATIONS = [
    dict(fusion="add"),
    dict(spatial=False),
    dict(channel=False),
    dict(coupling="none"),
    dict(fusion="add", coupling="none", spatial=False),
]


@pytest.mark.parametrize("overrides", ABLATIONS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_ablations_train_and_round_trip(overrides: dict, tmp_path) -> None:
    """Every ablation builds, every parameter it has gets a gradient, and its config survives a checkpoint."""
    model = cl.build("clginet-tiny", **overrides)
    for key, value in overrides.items():
        assert model.config[key] == value
    if overrides.get("fusion") == "add":
        assert model.fusions is None and not any(isinstance(m, cl.HybridGatedUnit) for m in model.modules())
    if "spatial" in overrides or "channel" in overrides:
        attn = [m for m in model.modules() if isinstance(m, cl.DBPA)]
        assert attn and all(
            (a.spatial, a.channel) == (overrides.get("spatial", True), overrides.get("channel", True))
            for a in attn
        )
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.rand(2, 3, 16, 24)
    for step in range(3):
        opt.zero_grad()
        (model(x) - x.flip(-1)).square().mean().backward()
        if step < 2:
            opt.step()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{overrides}: {name} got no gradient"
    path = cl.save_checkpoint(model, tmp_path / "ablation.safetensors")
    loaded = cl.build("clginet-tiny", checkpoint=path)
    assert loaded.config == model.config
    loaded.eval(), model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_fusion_add_adds_the_same_level_skip() -> None:
    """``fusion="add"``: each decoder level gets its upsampled input plus the skip at its own level."""
    model = wake(cl.build("clginet-tiny", fusion="add")).eval()
    got: list[tuple[int, torch.Size]] = []
    for i, decoder in enumerate(model.decoders):
        decoder.register_forward_pre_hook(lambda m, args, i=i: got.append((i, args[0].shape)))
    with torch.no_grad():
        model(torch.rand(1, 3, 32, 32))
    # decoders run deepest first: level 2 (4C, 8×8), level 1 (2C, 16×16), level 0 (C, 32×32)
    assert [tuple(s) for _, s in got] == [(1, 64, 8, 8), (1, 32, 16, 16), (1, 16, 32, 32)]


def test_grad_checkpointing_same_outputs_and_grads() -> None:
    torch.manual_seed(0)
    model = wake(cl.build("clginet-tiny"))
    x = torch.rand(2, 3, 24, 20)

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        y = model(x)
        y.square().mean().backward()
        return y.detach(), [p.grad.clone() for p in model.parameters()]

    y0, g0 = run()
    model.set_grad_checkpointing(True)
    assert model.grad_checkpointing
    y1, g1 = run()
    torch.testing.assert_close(y1, y0)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / F.mse_loss(a.float(), b.float())))


def _smooth_image(size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    coarse = torch.rand(1, 3, size // 8, size // 8, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_precision_flags_backed(dtype: torch.dtype) -> None:
    """``supports_bf16``/``supports_half``: autocast and a cast model stay close to float32."""
    model = wake(cl.build("clginet-tiny")).eval()
    assert model.supports_bf16 and model.supports_half
    x = _smooth_image(48)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=dtype):
            y_auto = model(x)
        y_cast = model.to(dtype)(x.to(dtype))
    for y in (y_auto, y_cast):
        assert y.dtype in (dtype, torch.float32) and torch.isfinite(y).all()
        assert _psnr(y, ref) > 30.0


def test_timm_create_model_builds_the_same_architecture() -> None:
    ours = cl.build("clginet-small")
    theirs = timm.create_model("clginet_small")
    assert type(theirs) is cl.CLGINet
    assert {k: v.shape for k, v in theirs.state_dict().items()} == {
        k: v.shape for k, v in ours.state_dict().items()
    }
    assert set(timm.list_models("clginet*")) == {"clginet_tiny", "clginet_small", "clginet_base"}
    assert timm.create_model("clginet_tiny", in_chans=1).in_chans == 1
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("clginet_tiny", pretrained=True)


def test_registry_user_variant_duplicate_and_suggestions() -> None:
    @cl.register_model("test-clginet-narrow")
    def _narrow(**overrides: object) -> cl.CLGINet:
        return cl.CLGINet(**{"dim": 8, "depths": (1, 1, 1, 1), "refinement_depth": 0, **overrides})

    @cl.register_model
    def test_bare_name(**overrides: object) -> cl.CLGINet:
        return _narrow(**overrides)

    assert "test-clginet-narrow" in cl.list_models("test-*")
    assert "test-bare-name" in cl.list_models("test-*")
    model = cl.build("test-clginet-narrow", in_chans=1)
    assert model.in_chans == 1 and model.model_name == "test-clginet-narrow"
    with pytest.raises(ValueError, match="already registered"):
        cl.register_model("test-clginet-narrow")(_narrow)
    with pytest.raises(ValueError, match="did you mean 'clginet-base'"):
        cl.build("clginet-bse")
    with pytest.raises(TypeError, match="must be a str"):
        cl.build(3)


@pytest.mark.parametrize(
    ("kwargs", "exc", "msg"),
    [
        (dict(dim=15), ValueError, "`dim` must be even"),
        (dict(depths=(1, 1, 1)), ValueError, "`depths` must have 4 entries"),
        (dict(depths=(1, 0, 1, 1)), ValueError, "`depths[1]` must be >= 1"),
        (dict(num_heads=(1, 2, 4, 5)), ValueError, "level 3 has width 384, which `num_heads[3]` (5)"),
        (dict(refinement_depth=-1), ValueError, "`refinement_depth` must be >= 0"),
        (dict(drop_path_rate=1.5), ValueError, "`drop_path_rate` must be in [0, 1)"),
        (dict(in_chans=0), ValueError, "`in_chans` must be >= 1"),
        (dict(depths="1111"), TypeError, "`depths` must be an int or a sequence"),
        (dict(cnn_groups=5), ValueError, "`cnn_groups` (5) must divide every level width"),
        (dict(coupling="sum"), ValueError, "`coupling` must be one of"),
        (dict(fusion="sum"), ValueError, "CLGINet: `fusion` must be one of"),
        (dict(spatial=False, channel=False), ValueError, "CLGINet: at least one of `spatial` and `channel`"),
        (dict(spatial=1), TypeError, "CLGINet: `spatial`"),
    ],
)
def test_bad_network_config(kwargs: dict, exc: type[Exception], msg: str) -> None:
    with pytest.raises(exc) as info:
        cl.CLGINet(**kwargs)
    assert msg in str(info.value)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_autocast_is_finite(name: str, dtype: torch.dtype) -> None:
    model = wake(cl.build(name)).eval()
    x = torch.rand(1, 3, 27, 35)
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_psnr_on_natural_image_after_training(dtype: torch.dtype) -> None:
    """A tiny model trained a few steps on a photo: autocast output within 35 dB PSNR of fp32."""
    from skimage import data

    photo = torch.from_numpy(data.astronaut()[100:228, 150:278].copy()).permute(2, 0, 1)[None].float() / 255
    torch.manual_seed(0)
    model = cl.build("clginet-tiny")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for step in range(12):
        crop = photo[:, :, (step * 7) % 64 :][:, :, :64, :64]
        loss = F.l1_loss(model(crop + 0.1 * torch.randn_like(crop)), crop)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    noisy = photo + 0.1 * torch.randn_like(photo)
    with torch.no_grad():
        ref = model(noisy)
        with torch.autocast("cpu", dtype=dtype):
            y = model(noisy)
    assert torch.isfinite(y).all()
    psnr = _psnr(y.float().clamp(0, 1), ref.clamp(0, 1))
    print(f"{dtype} vs float32 PSNR: {psnr:.1f} dB")
    assert psnr >= 35.0
