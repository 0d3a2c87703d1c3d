"""The noise-level-conditioned CLG-INet (``noise_level_map=True``): config, forward, weights, training.

Such a network takes ``(B, in_chans + 1, H, W)``: the image, then a σ map in the
``[0, 1]`` image range (DRUNet's recipe). Budget: clginet-tiny or dim-8 models on
16-48 px inputs, one thread.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import clg_layers as cl
from clg_layers import CLGINetConfig
from clg_layers.data import GaussianNoise, PatchSchedule, RandomPatchBatches, SyntheticPairs, WithSigmaMap
from clg_layers.integrations import detect

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(dim=8, depths=1, num_heads=1, refinement_depth=1, expansion=2.0)


def conditioned(**kw: object) -> cl.CLGINet:
    return cl.CLGINet(**{**SMALL, "noise_level_map": True, **kw}).eval()


# --------------------------------------------------------------------------------------------------
# Configuration


def test_config_field_round_trips_and_old_dicts_load() -> None:
    cfg = CLGINetConfig(noise_level_map=True)
    assert cfg.to_dict()["noise_level_map"] is True
    assert CLGINetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.input_channels == 4 and cfg.in_chans == cfg.out_chans == 3 and cfg.global_residual
    old = {k: v for k, v in cfg.to_dict().items() if k != "noise_level_map"}  # a 0.3.0 dict
    assert CLGINetConfig.from_dict(old).noise_level_map is False
    assert CLGINetConfig(in_chans=1, noise_level_map=True).input_channels == 2
    with pytest.raises(TypeError, match=r"CLGINetConfig: `noise_level_map` must be a bool"):
        CLGINetConfig(noise_level_map=1)
    with pytest.raises(TypeError, match=r"CLGINet: `noise_level_map` must be a bool"):
        cl.CLGINet(noise_level_map="yes")


def test_zoo_override_builds_it() -> None:
    model = cl.build("clginet-tiny", noise_level_map=True)
    plain = cl.build("clginet-tiny")
    assert model.model_name == "clginet-tiny" and model.config.noise_level_map
    assert (model.in_chans, model.config.in_chans, model.out_chans) == (4, 3, 3)
    assert tuple(model.embed.weight.shape) == (16, 3, 3, 3)  # the image's embedding is unchanged
    assert tuple(model.embed_sigma.weight.shape) == (16, 1, 3, 3) and model.embed_sigma.bias is None
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 16 * 9  # one more input channel of the first convolution
    assert plain.embed_sigma is None and plain.in_chans == 3


# --------------------------------------------------------------------------------------------------
# Forward


def test_forward_is_one_convolution_over_image_and_map_with_the_residual_on_the_image() -> None:
    from conftest import wake

    model = wake(conditioned(), seed=1)
    x = torch.rand(2, 3, 21, 18)
    inp = cl.with_sigma_map(x, torch.tensor([0.05, 0.2]))
    out = model(inp)
    assert out.shape == (2, 3, 21, 18)
    # The same network with global_residual=False differs by exactly the image (not the σ channel).
    plain = conditioned(global_residual=False)
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(out, plain(inp) + x)
    # embed + embed_sigma is the single convolution over the concatenation (DRUNet's head).
    padded = cl.models.clginet.pad_input(inp)
    weight = torch.cat([model.embed.weight, model.embed_sigma.weight], dim=1)
    joint = torch.nn.functional.conv2d(padded, weight, model.embed.bias, padding=1)
    separate = model.embed(padded[:, :3]) + model.embed_sigma(padded[:, 3:])
    torch.testing.assert_close(separate, joint)
    # σ matters, per sample.
    assert not torch.allclose(model(cl.with_sigma_map(x, 0.05)), model(cl.with_sigma_map(x, 0.2)))
    torch.testing.assert_close(model(cl.with_sigma_map(x[:1], 0.05)), out[:1])


def test_wrong_channel_count_is_refused() -> None:
    model = conditioned()
    with pytest.raises(ValueError, match=r"CLGINet.*4"):
        model(torch.rand(1, 3, 16, 16))  # the σ map is missing


def test_fx_trace_and_tiled_forward() -> None:
    from conftest import wake

    model = wake(conditioned(), seed=2)
    inp = cl.with_sigma_map(torch.rand(1, 3, 40, 36), 0.1)
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(inp), model(inp))
    tiled = cl.tiled_forward(model, inp, tile=24, overlap=8)
    assert tiled.shape == (1, 3, 40, 36) and torch.isfinite(tiled).all()


@pytest.mark.parametrize(
    ("sigma", "error", "message"),
    [
        ("0.1", TypeError, "must be a real number"),
        (True, TypeError, "must be a real number"),
        (-0.1, ValueError, "finite and >= 0"),
        (float("nan"), ValueError, "finite and >= 0"),
        (torch.tensor([0.1, -0.2]), ValueError, "finite and >= 0"),
        (torch.tensor([0.1, 0.2, 0.3]), ValueError, r"shape \(3,\)"),
        (torch.ones(2, 3, 1, 1), ValueError, r"shape \(2, 3, 1, 1\)"),
        (torch.ones(2, 2), ValueError, r"shape \(2, 2\)"),
        (torch.tensor([True, False]), TypeError, "real tensor"),
    ],
)
def test_sigma_map_refuses_bad_levels(sigma: object, error: type, message: str) -> None:
    with pytest.raises(error, match=rf"with_sigma_map: .*{message}"):
        cl.with_sigma_map(torch.rand(2, 3, 8, 8), sigma)


def test_sigma_map_forms() -> None:
    x = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    for sigma in (
        0.1,
        torch.tensor(0.1),
        torch.tensor([0.1]),
        torch.full((2,), 0.1),
        torch.full((2, 1, 1, 1), 0.1),
    ):
        m = cl.sigma_map(sigma, x)
        assert m.shape == (2, 1, 5, 7) and m.dtype == torch.float64
        torch.testing.assert_close(m, torch.full_like(m, 0.1))
    per_sample = cl.sigma_map(torch.tensor([0.1, 0.3]), x)
    assert per_sample[0].unique().item() == pytest.approx(0.1) and per_sample[
        1
    ].unique().item() == pytest.approx(0.3)
    spatial = torch.rand(2, 1, 5, 7)
    torch.testing.assert_close(cl.sigma_map(spatial, x), spatial.double())
    assert cl.with_sigma_map(x, 0.1).shape == (2, 4, 5, 7)
    with pytest.raises(TypeError, match=r"sigma_map: expected images"):
        cl.sigma_map(0.1, [1, 2])


# --------------------------------------------------------------------------------------------------
# Weights: checkpoints, detection, the Hub layout


def test_checkpoint_hub_and_detection_recover_it(tmp_path: Path) -> None:
    model = cl.build("clginet-tiny", noise_level_map=True).eval()
    inp = cl.with_sigma_map(torch.rand(1, 3, 16, 16), 0.1)
    path = cl.save_checkpoint(model, tmp_path / "m.safetensors")
    assert cl.read_checkpoint_config(path)[1]["noise_level_map"] is True
    again = cl.build("clginet-tiny", checkpoint=path).eval()
    assert again.config == model.config
    torch.testing.assert_close(again(inp), model(inp))
    hub = cl.from_pretrained(cl.save_pretrained(model, tmp_path / "hub")).eval()
    torch.testing.assert_close(hub(inp), model(inp))
    # Detection from the bare state dict, without any config: embed_sigma says it all.
    cfg = detect.infer_config(model.state_dict())
    assert cfg.noise_level_map and cfg.in_chans == 3 and cfg.out_chans == 3 and cfg.global_residual
    assert cfg == model.config
    loaded, _ = detect.model_from_state_dict(model.state_dict())
    torch.testing.assert_close(loaded(inp), model(inp))
    # A plain model's weights stay plain; a contradicting config is refused.
    assert detect.infer_config(cl.build("clginet-tiny").state_dict()).noise_level_map is False
    with pytest.raises(ValueError, match=r"config says noise_level_map=False but the weights say .*True"):
        detect.infer_config(model.state_dict(), config={"noise_level_map": False})
    bad = dict(model.state_dict(), **{"embed_sigma.weight": torch.zeros(16, 2, 3, 3)})
    with pytest.raises(ValueError, match=r"'embed_sigma.weight' has shape \(16, 2, 3, 3\)"):
        detect.infer_config(bad)


def test_spandrel_descriptor_takes_the_map() -> None:
    pytest.importorskip("spandrel")
    from clg_layers.integrations.spandrel import register

    model = cl.build("clginet-tiny", noise_level_map=True).eval()
    descriptor = register().load(model.state_dict())
    assert descriptor.input_channels == 4 and descriptor.output_channels == 3
    inp = cl.with_sigma_map(torch.rand(1, 3, 16, 16), 0.1)
    torch.testing.assert_close(descriptor.model(inp), model(inp))


# --------------------------------------------------------------------------------------------------
# Training data and training


def test_with_sigma_map_degradation_hands_over_each_samples_sigma() -> None:
    noise = GaussianNoise(sigma_range=(0.0, 50.0))
    clean = torch.full((6, 3, 48, 48), 0.5)
    noisy = noise(clean, seed=3)
    out = WithSigmaMap(noise)(clean, seed=3)
    assert out.shape == (6, 4, 48, 48)
    torch.testing.assert_close(out[:, :3], noisy)  # the same noisy images, the same random stream
    level = out[:, 3]
    assert (level == level[:, :1, :1]).all()  # constant per sample
    measured = (out[:, :3] - clean).std(dim=(1, 2, 3))
    torch.testing.assert_close(measured, level[:, 0, 0], rtol=0.05, atol=2e-3)
    assert level.max() <= 50 / 255 and level.unique().numel() == 6
    with pytest.raises(TypeError, match=r"WithSigmaMap: `noise` must be a GaussianNoise"):
        WithSigmaMap(cl.data.PoissonGaussianNoise())


def test_make_degradation_and_train_config_for_conditioned_models() -> None:
    from clg_layers.training import TrainConfig, make_degradation

    d = make_degradation("denoise", sigma_map=True)
    assert isinstance(d, WithSigmaMap) and d.noise.sigma == (0.0, 50.0)  # a range by default
    assert make_degradation("denoise", {"sigma": 15}, sigma_map=True).noise.sigma == (15.0, 15.0)
    with pytest.raises(ValueError, match=r"noise_level_map=True\) trains with task 'denoise'"):
        make_degradation("deblur", sigma_map=True)
    with pytest.raises(ValueError, match=r"TrainConfig: .*task 'denoise'.*got task 'derain'"):
        TrainConfig(task="derain", model_args={"noise_level_map": True})


def test_training_feeds_each_samples_sigma_map(tmp_path: Path) -> None:
    from clg_layers.data import ValidationPairs
    from clg_layers.training import TrainConfig, make_degradation, train

    images = [torch.rand(3, 48, 48) for _ in range(3)]
    noise = make_degradation("denoise", {"sigma_range": (5.0, 50.0)}, sigma_map=True)
    # The batches training draws: each sample's σ map matches the noise actually added.
    batch, clean = RandomPatchBatches(SyntheticPairs(images, noise), PatchSchedule.constant(32, 4), steps=1)[
        0
    ]
    measured = (batch[:, :3] - clean).std(dim=(1, 2, 3))
    torch.testing.assert_close(measured, batch[:, 3, 0, 0], rtol=0.06, atol=0.0)

    seen: list[tuple[bool, torch.Tensor]] = []
    model = cl.build("clginet-tiny", noise_level_map=True)
    model.embed_sigma.register_forward_pre_hook(lambda m, args: seen.append((m.training, args[0].detach())))
    config = TrainConfig(
        model="clginet-tiny",
        model_args={"noise_level_map": True},
        max_steps=2,
        patch=32,
        batch=2,
        out=str(tmp_path),
        val_every=2,
        checkpoint_every=0,
        log_every=1,
        progress=False,
        accelerator="cpu",
        ema_decay=0.0,
    )
    val = ValidationPairs(SyntheticPairs(images[:1], noise), seed=5)
    result = train(config, model=model, train_data=SyntheticPairs(images, noise), val_data=val)
    assert result.steps == 2 and "val/psnr_input" in result.metrics
    train_maps = [m for training, m in seen if training]
    val_maps = [m for training, m in seen if not training]
    assert len(train_maps) == 2 and len(val_maps) >= 1
    for m in train_maps + val_maps:
        per_sample = m.flatten(1)
        assert (per_sample == per_sample[:, :1]).all() and (per_sample >= 5 / 255 - 1e-6).all()
    # Validation's σ is the one its input was degraded with.
    degraded, target, _ = val[0]
    assert val_maps[0][0, 0, 0, 0] == degraded[3, 0, 0]
    noisy_psnr = 10 * torch.log10(1 / (degraded[:3].clamp(0, 1) - target).pow(2).mean())  # as the metric does
    assert result.metrics["val/psnr_input"] == pytest.approx(float(noisy_psnr), abs=0.05)
    assert cl.build("clginet-tiny", checkpoint=result.weights).config.noise_level_map


def test_training_refuses_mismatched_data(tmp_path: Path) -> None:
    from clg_layers.training import TrainConfig, train

    images = [torch.rand(3, 40, 40)]
    config = TrainConfig(max_steps=1, patch=32, batch=1, out=str(tmp_path), progress=False, accelerator="cpu")
    plain_data = SyntheticPairs(images, GaussianNoise(25.0))
    with pytest.raises(ValueError, match=r"noise-level conditioned .* gives no σ map"):
        train(config, model=cl.build("clginet-tiny", noise_level_map=True), train_data=plain_data)
    with pytest.raises(ValueError, match=r"appends a σ map .* not noise-level conditioned"):
        train(
            config,
            model=cl.build("clginet-tiny"),
            train_data=SyntheticPairs(images, WithSigmaMap(GaussianNoise(25.0))),
        )
    deblur = TrainConfig(task="deblur", max_steps=1, out=str(tmp_path), progress=False)
    with pytest.raises(ValueError, match=r"train: .*task 'denoise'"):
        train(deblur, model=cl.build("clginet-tiny", noise_level_map=True), train_data=plain_data)


# --------------------------------------------------------------------------------------------------
# The command line: restore and eval take --sigma


def test_cli_restore_and_eval_take_sigma(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    from PIL import Image

    from clg_layers.cli import main

    model = cl.build("clginet-tiny", noise_level_map=True)
    ckpt = cl.save_checkpoint(model, tmp_path / "sigma.safetensors")
    blind = cl.save_checkpoint(cl.build("clginet-tiny"), tmp_path / "blind.safetensors")
    rgb = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    for folder in ("data/input", "data/target"):
        (tmp_path / folder).mkdir(parents=True)
        Image.fromarray(rgb).save(tmp_path / folder / "a.png")
    src, out = tmp_path / "data/input/a.png", tmp_path / "out.png"
    restore = [
        "restore",
        "clginet-tiny",
        str(src),
        str(out),
        "--no-progress",
        "--tile",
        "32",
        "--overlap",
        "8",
    ]

    assert main([*restore, "--checkpoint", str(ckpt)]) == 1
    assert (
        "noise-level conditioned (noise_level_map=True): give the noise level with --sigma"
        in capsys.readouterr().err
    )
    assert main([*restore, "--checkpoint", str(blind), "--sigma", "25"]) == 1
    assert "--sigma is for noise-level-conditioned models" in capsys.readouterr().err
    assert main([*restore, "--checkpoint", str(ckpt), "--sigma", "300"]) == 1
    assert main([*restore, "--checkpoint", str(ckpt), "--sigma", "25"]) == 0
    expected = model.eval()(cl.with_sigma_map(torch.from_numpy(rgb).permute(2, 0, 1)[None] / 255.0, 25 / 255))
    assert np.asarray(Image.open(out)).shape == (40, 48, 3)
    whole = tmp_path / "whole.png"
    assert (
        main(
            [
                "restore",
                "clginet-tiny",
                str(src),
                str(whole),
                "--checkpoint",
                str(ckpt),
                "--sigma",
                "25",
                "--tile",
                "0",
            ]
        )
        == 0
    )
    got = torch.from_numpy(np.array(Image.open(whole))).permute(2, 0, 1)[None].float()
    assert (got - (expected.clamp(0, 1) * 255).round()).abs().max() <= 1
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "--model",
                "clginet-tiny",
                "--checkpoint",
                str(ckpt),
                "--data",
                str(tmp_path / "data"),
                "--sigma",
                "25",
            ]
        )
        == 0
    )
    assert "mean" in capsys.readouterr().out


def test_forward_intermediates_and_meta_init_of_a_conditioned_model() -> None:

    torch.manual_seed(0)
    net = cl.build("clginet-tiny", noise_level_map=True).eval()
    x = cl.with_sigma_map(torch.rand(1, 3, 20, 24), 0.1)
    with torch.no_grad():
        out, feats = net.forward_intermediates(x)
        torch.testing.assert_close(out, net(x))
    assert [f.shape[1] for f in feats] == [16, 32, 64, 128]
    meta = cl.build("clginet-tiny", noise_level_map=True, device="meta")
    assert meta.embed_sigma.weight.is_meta
    meta.to_empty(device="cpu")
    torch.manual_seed(0)
    meta.reset_parameters()
    torch.manual_seed(0)
    fresh = cl.build("clginet-tiny", noise_level_map=True)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), meta.state_dict().values()))
