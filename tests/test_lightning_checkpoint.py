"""Lightning ``.ckpt`` files written by ``clg-layers train`` load everywhere weights load.

The checkpoints come from the library's own training (:func:`clg_layers.training.train`,
a CLG-INet of width 8 on 32-pixel patches for three steps, a few seconds): one run with EMA
(``last.ckpt`` written at every step, so its EMA and training weights differ) and one without.
"""

from __future__ import annotations

import logging
import pathlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import wake
from PIL import Image

import clg_layers as cl
from clg_layers.data import SyntheticPairs
from clg_layers.integrations import detect

pytest.importorskip("lightning")
from clg_layers.training import TrainConfig, check_resume, make_degradation, train

pytestmark = pytest.mark.usefixtures("one_thread")

# window_size=4: a setting the weights do not tell, so loading it proves the stored config was read.
SMALL: dict[str, Any] = dict(dim=8, depths=(1, 1, 1, 1), num_heads=1, refinement_depth=0, window_size=4)
LOGGER = "clg_layers.models.checkpoint"


def _fresh() -> cl.CLGINet:
    """An untrained network of the trained configuration (clginet-tiny with :data:`SMALL`)."""
    return cl.build("clginet-tiny", **SMALL)


def _train(out: Path, ema_decay: float, steps: int) -> Any:
    images = [torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    config = TrainConfig(
        model="clginet-tiny",
        model_args=SMALL,
        max_steps=steps,
        patch=32,
        batch=2,
        lr=2e-3,
        out=str(out),
        val_every=0,
        checkpoint_every=1,  # last.ckpt after every step: written before training ends
        log_every=1,
        progress=False,
        accelerator="cpu",
        ema_decay=ema_decay,
    )
    return train(config, train_data=SyntheticPairs(images, make_degradation("denoise")))


@pytest.fixture(scope="module")
def runs(one_thread: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("lightning")
    return {"ema": _train(root / "ema", 0.9, 3), "plain": _train(root / "plain", 0.0, 2)}


def _file(runs: dict[str, Any], kind: str) -> dict[str, Any]:
    return torch.load(runs[kind].last_checkpoint, map_location="cpu", weights_only=True)


def _assert_weights(
    model: torch.nn.Module, expected: dict[str, torch.Tensor], prefix: str = "model."
) -> None:
    own = model.state_dict()
    assert set(own) == {k[len(prefix) :] for k in expected}
    for key, value in own.items():
        assert torch.equal(value, expected[prefix + key]), key


def test_what_the_checkpoint_holds(runs: dict[str, Any]) -> None:
    """The layout the loaders rely on: ``model.``-prefixed ``state_dict``, EMA swapped in by Lightning."""
    ema, plain = _file(runs, "ema"), _file(runs, "plain")
    for ckpt in (ema, plain):
        assert "pytorch-lightning_version" in ckpt and all(k.startswith("model.") for k in ckpt["state_dict"])
        assert ckpt["hyper_parameters"]["model_name"] == "clginet-tiny"
        assert ckpt["hyper_parameters"]["model_config"]["window_size"] == 4
    assert "current_model_state" in ema and "averaging_state" in ema
    assert "current_model_state" not in plain
    largest = max(
        (ema["state_dict"][k] - v).abs().max().item() for k, v in ema["current_model_state"].items()
    )
    assert largest > 1e-5  # EMA and training weights really differ, so choosing one matters
    # state_dict holds the EMA: the weights train() exported (the averaged ones) are the same.
    _assert_weights(cl.build("clginet-tiny", checkpoint=runs["ema"].weights), ema["state_dict"])


def test_load_checkpoint_takes_the_ema_weights_and_says_so(
    runs: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    model = _fresh()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        report = cl.load_checkpoint(model, runs["ema"].last_checkpoint)
    _assert_weights(model, _file(runs, "ema")["state_dict"])
    assert report.missing == report.unexpected == report.mismatched == report.migrated == []
    assert report.source == (
        "Lightning checkpoint: the EMA weights (`state_dict`, `model.` prefix removed); "
        "the training weights in `current_model_state` were not used"
    )
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        f"load_checkpoint: {runs['ema'].last_checkpoint}: {report.source}"
    ]


def test_checkpoint_without_ema_gives_the_model_weights(runs: dict[str, Any]) -> None:
    model = _fresh()
    report = cl.load_checkpoint(model, runs["plain"].last_checkpoint)
    _assert_weights(model, _file(runs, "plain")["state_dict"])
    assert report.source.startswith("Lightning checkpoint: the model's weights") and "no EMA" in report.source


def test_build_reads_the_config_from_the_hyper_parameters(runs: dict[str, Any]) -> None:
    path = runs["ema"].last_checkpoint
    name, config = cl.read_checkpoint_config(path)
    assert name == "clginet-tiny" and config == _fresh().config.to_dict()
    model = cl.build("clginet-tiny", checkpoint=path)
    assert model.config == _fresh().config and model.model_name == "clginet-tiny"
    _assert_weights(model, _file(runs, "ema")["state_dict"])
    with pytest.raises(ValueError, match="saved from model 'clginet-tiny', not 'clginet-small'"):
        cl.build("clginet-small", checkpoint=path)
    check_resume(path, _fresh())  # resuming still reads the same file


def test_unregistered_model_name_is_not_returned(runs: dict[str, Any], tmp_path: Path) -> None:
    """A task around a model not built by name records its class name: not a zoo name to check."""
    ckpt = _file(runs, "plain")
    ckpt["hyper_parameters"]["model_name"] = "CLGINet"
    path = tmp_path / "unnamed.ckpt"
    torch.save(ckpt, path)
    name, config = cl.read_checkpoint_config(path)
    assert name is None and config["window_size"] == 4
    _assert_weights(cl.build("clginet-tiny", checkpoint=path), ckpt["state_dict"])
    ckpt["hyper_parameters"]["model_config"] = [1, 2]
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=r"`hyper_parameters\.model_config` that is not a mapping"):
        cl.read_checkpoint_config(path)


def test_cli_restore_with_a_ckpt_matches_the_exported_weights(
    runs: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clg_layers.cli import main

    image = tmp_path / "in.png"
    pixels = np.random.default_rng(0).integers(0, 256, (21, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    run = runs["ema"]
    outputs = {}
    for kind, checkpoint in (("ckpt", run.last_checkpoint), ("safetensors", run.weights)):
        outputs[kind] = tmp_path / f"{kind}.png"
        argv = ["restore", "clginet-tiny", str(image), str(outputs[kind]), "--checkpoint", str(checkpoint)]
        assert main([*argv, "--no-progress"]) == 0
        printed = capsys.readouterr().out
        assert ("the EMA weights" in printed) is (kind == "ckpt"), printed
    restored = np.asarray(Image.open(outputs["ckpt"]))
    assert restored.shape == pixels.shape and not np.array_equal(restored, pixels)
    assert np.array_equal(restored, np.asarray(Image.open(outputs["safetensors"])))
    assert not logging.getLogger(LOGGER).handlers  # the CLI's collector is gone again


def test_spandrel_loads_the_ckpt(runs: dict[str, Any]) -> None:
    spandrel = pytest.importorskip("spandrel")
    from clg_layers.integrations.spandrel import ARCH_ID, load_file, register

    register()
    path = runs["ema"].last_checkpoint
    ema = _file(runs, "ema")["state_dict"]
    descriptor = spandrel.ModelLoader().load_from_file(path)
    assert descriptor.architecture.id == ARCH_ID
    _assert_weights(descriptor.model, ema)
    # spandrel hands over tensors only: window_size takes the default (issue #20) ...
    assert descriptor.model.config == _fresh().config.replace(window_size=8)
    # ... load_file reads it from the checkpoint's hyper_parameters, as build() does.
    loaded = load_file(path)
    assert loaded.model.config == _fresh().config and loaded.model.model_name == "clginet-tiny"
    _assert_weights(loaded.model, ema)
    x = torch.rand(1, 3, 20, 12)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), cl.build("clginet-tiny", checkpoint=path).eval()(x))
    # The whole checkpoint as a state dict (spandrel's load_from_state_dict does not unwrap): EMA weights too.
    whole = spandrel.ModelLoader().load_from_state_dict(_file(runs, "ema"))
    _assert_weights(whole.model, ema)


class _Exploit:
    """Unpickling this opens (creates) ``target``: proof that code ran."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.target, "w"))


def test_hyper_parameters_with_objects_are_refused_and_never_run(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    ckpt = _file(runs, "ema")
    ckpt["hyper_parameters"]["data_root"] = pathlib.PurePosixPath("/data")
    ckpt["hyper_parameters"]["callback"] = _Exploit(str(marker))
    path = tmp_path / "objects.ckpt"
    torch.save(ckpt, path)
    assert not marker.exists()
    for load in (
        lambda: cl.load_checkpoint(_fresh(), path),
        lambda: cl.read_checkpoint_config(path),
        lambda: cl.build("clginet-tiny", checkpoint=path),
    ):
        with pytest.raises(
            ValueError, match=r"refused, nothing was run\)\. It refers to .*PurePosixPath"
        ) as err:
            load()
        assert "del ckpt['hyper_parameters']" in str(err.value)
    assert not marker.exists()


def _relabel(state: dict[str, torch.Tensor], old: str, new: str) -> dict[str, torch.Tensor]:
    return {new + k[len(old) :]: v for k, v in state.items()}


def test_other_lightning_modules(runs: dict[str, Any], tmp_path: Path) -> None:
    """One module under another name loads; with a second module the ``model.`` one is taken."""
    ckpt = _file(runs, "plain")
    weights = ckpt["state_dict"]
    path = tmp_path / "other.ckpt"
    ckpt["state_dict"] = _relabel(weights, "model.", "net.")
    torch.save(ckpt, path)
    model = _fresh()
    assert "`net.` prefix removed" in cl.load_checkpoint(model, path).source
    _assert_weights(model, weights)
    ckpt["state_dict"] = {**weights, "loss.vgg.weight": torch.zeros(2)}
    torch.save(ckpt, path)
    model = _fresh()
    assert "the weights of ['loss'] (other modules" in cl.load_checkpoint(model, path).source
    _assert_weights(model, weights)
    ckpt["state_dict"] = {**_relabel(weights, "model.", "net."), "loss.vgg.weight": torch.zeros(2)}
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=r"holds the modules \['loss', 'net'\], none of them `model`"):
        cl.load_checkpoint(_fresh(), path)
    assert not detect.is_clginet_state_dict(ckpt)


def test_detection_looks_through_the_lightning_prefix() -> None:
    model = wake(_fresh(), seed=1).eval()
    lightning_state = {f"model.{k}": v for k, v in model.state_dict().items()}
    assert detect.is_clginet_state_dict(lightning_state)
    loaded, _ = detect.model_from_state_dict(lightning_state, config={"window_size": 4})
    assert loaded.config == model.config
    x = torch.rand(1, 3, 10, 14)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    # Only a prefix every key has is looked through.
    assert not detect.is_clginet_state_dict({**lightning_state, "embed.weight": torch.zeros(1)})
