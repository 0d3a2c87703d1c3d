"""clg_layers.training end to end on the CPU: each task learns, resume continues, DDP runs, bad input
is refused.

Budget: clginet-tiny, 32-40 px patches, batch 4, a few dozen steps per run, one
intra-op thread. Held-out photos (``HELD_OUT_IMAGES``) are never trained on.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import clg_layers as cl
from clg_layers.data import SyntheticPairs, ValidationPairs
from clg_layers.demo import HELD_OUT_IMAGES, TRAIN_IMAGES, load_photo
from clg_layers.training import TrainConfig, check_resume, evaluate, make_degradation, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def photos() -> dict[str, list[torch.Tensor]]:
    def small(img: torch.Tensor, side: int) -> torch.Tensor:
        return F.interpolate(img[None], scale_factor=side / max(img.shape[-2:]), mode="area")[0]

    return {
        "train": [small(load_photo(n), 256) for n in TRAIN_IMAGES],
        "held_out": [small(load_photo(n), 128) for n in HELD_OUT_IMAGES],
    }


def quick(out: Path, **kw: object) -> TrainConfig:
    base = dict(
        max_steps=40,
        patch=40,
        batch=4,
        lr=2e-3,
        out=str(out),
        val_every=0,
        checkpoint_every=0,
        log_every=1,
        progress=False,
        accelerator="cpu",
        ema_decay=0.9,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def losses(csv_path: Path) -> dict[int, float]:
    with csv_path.open() as f:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}


# (task, degradation options, steps, margin in dB). Measured with these settings (torch 2.14.1 CPU, seeded):
# denoise +0.74 dB, derain +0.91 dB, deblur +0.02 dB. Deblurring learns far more slowly than denoising at this
# size (benchmarks/train_tasks.py runs it longer), so its test only asserts that it moves the right way.
TASKS = [
    ("denoise", {"sigma": 25.0}, 40, 0.25),
    ("derain", {"density": (0.01, 0.02)}, 50, 0.3),
    pytest.param(
        "deblur", {"length": 7.0, "angle": 0.0, "curvature": 0.0}, 80, 0.005, marks=pytest.mark.slow
    ),
]


@pytest.mark.parametrize(("task", "options", "steps", "margin"), TASKS)
def test_task_improves_held_out_psnr(
    task: str, options: dict, steps: int, margin: float, photos: dict, tmp_path: Path
) -> None:
    degradation = make_degradation(task, options)
    held_out = ValidationPairs(SyntheticPairs(photos["held_out"], degradation), seed=99)
    result = train(
        quick(tmp_path, task=task, max_steps=steps, degradation=options),
        train_data=SyntheticPairs(photos["train"], degradation),
    )
    assert result.steps == steps
    report = evaluate(cl.build("clginet-tiny", checkpoint=result.weights), held_out)
    gain = report.mean_psnr - report.mean_psnr_input
    print(f"{task}: held-out PSNR {report.mean_psnr_input:.2f} -> {report.mean_psnr:.2f} dB ({gain:+.2f})")
    assert gain > margin, report.table()


def test_resume_continues_the_loss_curve(photos: dict, tmp_path: Path) -> None:
    from lightning.pytorch.callbacks import Callback

    class Stop(Callback):
        def on_train_batch_end(self, trainer, *args: object) -> None:  # type: ignore[no-untyped-def]
            if trainer.global_step >= 6:
                trainer.should_stop = True

    data = SyntheticPairs(photos["train"], make_degradation("denoise"))
    kw = dict(max_steps=12, patch=32, checkpoint_every=3)
    full = train(quick(tmp_path / "full", **kw), train_data=data)
    cut = train(quick(tmp_path / "cut", **kw), train_data=data, callbacks=[Stop()])
    assert cut.steps == 6 and cut.last_checkpoint is not None
    resumed = train(quick(tmp_path / "resumed", resume=str(cut.last_checkpoint), **kw), train_data=data)
    assert resumed.steps == full.steps == 12
    a, b = losses(tmp_path / "full" / "metrics.csv"), losses(tmp_path / "resumed" / "metrics.csv")
    later = [s for s in a if s >= 6]
    assert later and all(s in b for s in later), (sorted(a), sorted(b))
    np.testing.assert_allclose([b[s] for s in later], [a[s] for s in later], rtol=1e-4)
    # The exported EMA weights of the resumed run equal those of the uninterrupted one.
    m1 = cl.build("clginet-tiny", checkpoint=full.weights)
    m2 = cl.build("clginet-tiny", checkpoint=resumed.weights)
    for (k, p1), p2 in zip(m1.state_dict().items(), m2.state_dict().values()):
        torch.testing.assert_close(p2, p1, rtol=1e-4, atol=1e-6, msg=k)
    # "auto" picks OUT/checkpoints/last.ckpt; a checkpoint of another config is refused before training.
    with pytest.raises(ValueError, match="another clginet-tiny config"):
        check_resume(cut.last_checkpoint, cl.build("clginet-tiny", coupling="none"))
    with pytest.raises(ValueError, match="model 'clginet-tiny', not 'clginet-small'"):
        train(quick(tmp_path / "x", model="clginet-small", resume=str(cut.last_checkpoint)), train_data=data)
    with pytest.raises(ValueError, match="task 'denoise', not 'derain'"):
        check_resume(cut.last_checkpoint, cl.build("clginet-tiny"), task="derain")


def test_resume_refuses_code_and_junk(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("pwned",))

    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "x": Evil()}, bad)
    with pytest.raises(ValueError, match="weights_only"):
        check_resume(bad, cl.build("clginet-tiny"))
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="cannot read"):
        check_resume(junk, cl.build("clginet-tiny"))


@pytest.mark.slow
def test_compiled_training_follows_eager_and_exports_plain_weights(photos: dict, tmp_path: Path) -> None:
    """``compile=True`` trains the same function: same losses as eager, same parameter names in the export.

    Two patch sizes (a progressive schedule): the second one recompiles, which must stay static
    (with automatic dynamic shapes inductor's forced layout optimisation failed on the window padding).
    """
    data = SyntheticPairs(photos["train"], make_degradation("denoise"))
    small = dict(dim=8, depths=(1, 1, 1, 1), num_heads=1, refinement_depth=0)
    kw = dict(max_steps=3, schedule=[[2, 32, 4], [1, 40, 4]], model_args=small, ema_decay=0.0)
    train(quick(tmp_path / "eager", **kw), train_data=data)
    compiled = train(quick(tmp_path / "compiled", compile=True, **kw), train_data=data)
    a, b = losses(tmp_path / "eager" / "metrics.csv"), losses(tmp_path / "compiled" / "metrics.csv")
    assert sorted(a) == sorted(b) == [0, 1, 2]
    np.testing.assert_allclose([b[s] for s in a], [a[s] for s in a], rtol=1e-3)
    plain = cl.build("clginet-tiny", **small)
    report = plain.load_state_dict(
        cl.build("clginet-tiny", checkpoint=compiled.weights, **small).state_dict()
    )
    assert not report.missing_keys and not report.unexpected_keys
    with pytest.raises(TypeError, match="`compile` must be a bool"):
        quick(tmp_path, compile="yes").validate()


def _clean_folder(folder: Path, n: int = 2, size: int = 48) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


def test_bad_data_is_refused_before_training(tmp_path: Path) -> None:
    clean = _clean_folder(tmp_path / "clean")
    paired = tmp_path / "paired"
    _clean_folder(paired / "input")
    _clean_folder(paired / "target")
    with pytest.raises(ValueError, match="use --task paired"):
        train(quick(tmp_path / "o", task="denoise", train=str(paired)))
    with pytest.raises(ValueError, match="use --task denoise, deblur or derain"):
        train(quick(tmp_path / "o", task="paired", train=str(clean)))
    with pytest.raises(ValueError, match="smaller than the 64-pixel"):
        train(quick(tmp_path / "o", task="denoise", train=str(clean), patch=64))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image"):
        train(quick(tmp_path / "o", task="deblur", train=str(tmp_path / "empty")))
    with pytest.raises(ValueError, match="task"):
        train(quick(tmp_path / "o", task="dehaze", train=str(clean)))
    with pytest.raises(ValueError, match="unknown option"):
        TrainConfig.from_mapping({"max_step": 3})


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clg_layers.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )


def _paired_folder(root: Path, n: int = 3, size: int = 48) -> Path:
    rng = np.random.default_rng(1)
    for sub in ("input", "target"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        clean = rng.integers(40, 216, (size, size, 3)).astype(np.float32)
        noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255)
        Image.fromarray(clean.astype(np.uint8)).save(root / "target" / f"p{i}.png")
        Image.fromarray(noisy.astype(np.uint8)).save(root / "input" / f"p{i}.png")
    return root


def test_cli_train_paired_with_config_then_eval_and_restore(tmp_path: Path) -> None:
    data = _paired_folder(tmp_path / "data")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "patch: 32\nbatch: 2\nlr: 0.002\nval_every: 3\nval_max_side: 48\nlog_every: 1\n"
        "checkpoint_every: 3\nloss: charbonnier\n"
    )
    out = tmp_path / "out"
    r = cli(
        "train",
        "--model",
        "clginet-tiny",
        "--task",
        "paired",
        "--train",
        str(data),
        "--val",
        str(data),
        "--max-steps",
        "4",
        "--out",
        str(out),
        "--config",
        str(cfg),
        "--no-progress",
        "--accelerator",
        "cpu",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    weights = out / "clginet-tiny-paired.safetensors"
    assert weights.is_file() and (out / "checkpoints" / "last.ckpt").is_file() and "val PSNR" in r.stdout
    assert list((out / "val_images").glob("*.png"))
    r = cli(
        "eval",
        "--model",
        "clginet-tiny",
        "--checkpoint",
        str(weights),
        "--data",
        str(data),
        "--save",
        str(tmp_path / "restored"),
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert (
        lines[0].split()[:3] == ["image", "PSNR", "in"] and lines[-1].startswith("mean") and len(lines) == 5
    )
    assert sorted(p.name for p in (tmp_path / "restored").iterdir()) == ["p0.png", "p1.png", "p2.png"]
    r = cli(
        "restore",
        "clginet-tiny",
        str(data / "input" / "p0.png"),
        str(tmp_path / "r.png"),
        "--checkpoint",
        str(weights),
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr


def test_cli_train_eval_errors_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Usage errors exit 2, data errors exit 1, each with a message (in-process: no interpreter start-ups)."""
    from clg_layers.cli import main

    data = _paired_folder(tmp_path / "data", n=1)
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_step: 3\n")
    assert main(["train", "--task", "paired", "--train", str(data), "--config", str(bad)]) == 2
    assert "unknown option" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--task",
                "denoise",
                "--train",
                str(data),
                "--max-steps",
                "2",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 1
    )
    assert "use --task paired" in capsys.readouterr().err
    assert main(["train", "--model", "clginet-tny", "--task", "paired", "--train", str(data)]) == 2
    assert "did you mean" in capsys.readouterr().err
    assert main(["train", "--task", "paired"]) == 2
    assert "--train DIR is required" in capsys.readouterr().err
    assert (
        main(["eval", "--model", "clginet-tiny", "--checkpoint", "x.safetensors", "--data", str(tmp_path)])
        == 1
    )
    assert "must hold" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_ddp_two_processes_gloo(tmp_path: Path) -> None:
    clean = _clean_folder(tmp_path / "clean", n=3, size=48)
    out = tmp_path / "ddp"
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text("patch: 32\nbatch: 2\n")
    r = cli(
        "train",
        "--model",
        "clginet-tiny",
        "--task",
        "denoise",
        "--train",
        str(clean),
        "--max-steps",
        "3",
        "--config",
        str(cfg),
        "--devices",
        "2",
        "--accelerator",
        "cpu",
        "--out",
        str(out),
        "--no-progress",
        timeout=400,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.count("trained clginet-tiny") == 1  # rank 0 reports
    assert "distributed_backend=gloo" in r.stderr + r.stdout
    model = cl.build("clginet-tiny", checkpoint=out / "clginet-tiny-denoise.safetensors")
    assert model(torch.rand(1, 3, 24, 24)).shape == (1, 3, 24, 24)


@pytest.mark.slow
def test_torchrun_launches_the_same_command(tmp_path: Path) -> None:
    """`torchrun --nproc_per_node 2 -m clg_layers.cli train ...`: Lightning joins torchrun's process group."""
    clean = _clean_folder(tmp_path / "clean", n=3, size=48)
    out = tmp_path / "torchrun"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("patch: 32\nbatch: 2\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "-m",
            "clg_layers.cli",
            "train",
            "--model",
            "clginet-tiny",
            "--task",
            "denoise",
            "--train",
            str(clean),
            "--max-steps",
            "3",
            "--config",
            str(cfg),
            "--devices",
            "2",
            "--accelerator",
            "cpu",
            "--out",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.count("trained clginet-tiny") == 1  # rank 0 reports
    assert "distributed_backend=gloo" in r.stderr + r.stdout
    model = cl.build("clginet-tiny", checkpoint=out / "clginet-tiny-denoise.safetensors")
    assert model(torch.rand(1, 3, 24, 24)).shape == (1, 3, 24, 24)
