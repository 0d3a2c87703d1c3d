"""The ``clg-layers`` command, run as a subprocess as a user would, plus image I/O edge cases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import wake
from PIL import Image

import clg_layers as cl
from clg_layers.cli import main
from clg_layers.io import ImageData, read_image, write_image


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clg_layers.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ckpt")
    return {
        "rgb": cl.save_checkpoint(wake(cl.build("clginet-tiny"), seed=1), d / "rgb.safetensors"),
        "gray": cl.save_checkpoint(
            wake(cl.build("clginet-tiny", in_chans=1), seed=2), d / "gray.safetensors"
        ),
        "small": cl.save_checkpoint(cl.build("clginet-small"), d / "small.safetensors"),
    }


def _rgb_png(path: Path, h: int = 40, w: int = 56, alpha: bool = False) -> Path:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (h, w, 4 if alpha else 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def test_help_list_info_subprocess() -> None:
    r = run("--help")
    assert r.returncode == 0 and "restore" in r.stdout and "Exit codes" in r.stdout
    r = run("list", "clginet-*")
    assert r.returncode == 0 and r.stdout.split() == ["clginet-base", "clginet-small", "clginet-tiny"]
    r = run("info", "clginet-base")
    assert r.returncode == 0 and "24,319,718" in r.stdout and "86.74 G" in r.stdout
    r = run("info", "clginet-bse")
    assert r.returncode == 2 and "did you mean 'clginet-base'" in r.stderr
    r = run("frobnicate")
    assert r.returncode == 2


@pytest.mark.parametrize("command", ["list", "info", "restore", "demo", "bench"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main([command, "--help"])
    except SystemExit as exit_:  # argparse exits after printing help
        code = exit_.code
    assert code == 0
    assert "usage:" in capsys.readouterr().out


def test_restore_rgb_png_subprocess(tmp_path: Path, ckpts: dict[str, Path]) -> None:
    src = _rgb_png(tmp_path / "in.png")
    out = tmp_path / "out.png"
    r = run("restore", "clginet-tiny", str(src), str(out), "--checkpoint", str(ckpts["rgb"]), "--no-progress")
    assert r.returncode == 0, r.stderr
    restored = np.asarray(Image.open(out))
    assert restored.shape == (40, 56, 3) and restored.dtype == np.uint8
    # the same as running the model directly
    model = cl.build("clginet-tiny", checkpoint=ckpts["rgb"]).eval()
    x = torch.from_numpy(np.asarray(Image.open(src), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = (model(x).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    assert np.abs(restored.astype(int) - expected.astype(int)).max() <= 1


def test_restore_tiled_with_progress_and_alpha(tmp_path: Path, ckpts: dict[str, Path]) -> None:
    src = _rgb_png(tmp_path / "rgba.png", h=70, w=90, alpha=True)
    out = tmp_path / "out.png"
    r = run(
        "restore",
        "clginet-tiny",
        str(src),
        str(out),
        "--checkpoint",
        str(ckpts["rgb"]),
        "--tile",
        "32",
        "--overlap",
        "8",
    )
    assert r.returncode == 0, r.stderr
    result = np.asarray(Image.open(out))
    assert result.shape == (70, 90, 4)
    assert np.array_equal(result[..., 3], np.asarray(Image.open(src))[..., 3])  # alpha passes through


def test_restore_16bit_gray(tmp_path: Path, ckpts: dict[str, Path]) -> None:
    arr = (np.random.default_rng(1).random((33, 47)) * 65535).astype(np.uint16)
    src = tmp_path / "gray16.png"
    Image.fromarray(arr).save(src)
    out = tmp_path / "gray16_out.png"
    assert (
        main(
            [
                "restore",
                "clginet-tiny",
                str(src),
                str(out),
                "--checkpoint",
                str(ckpts["gray"]),
                "--no-progress",
            ]
        )
        == 0
    )
    back = Image.open(out)
    assert back.mode.startswith("I") and back.size == (47, 33)
    assert np.asarray(back).max() > 255  # still 16-bit data


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("missing", 1, "no such image file"),
        ("corrupt", 1, "is corrupt or truncated"),
        ("not-an-image", 1, "not an image file"),
        ("bomb", 1, "decompression bomb"),
        ("float-tiff", 1, "image mode 'F'"),
        ("wrong-checkpoint", 1, "does not fit 'clginet-tiny'"),
        ("channel-mismatch", 1, "takes 3-channel images"),
        ("jpeg-alpha", 1, "JPEG cannot store an alpha channel"),
        ("unknown-model", 2, "unknown model"),
        ("bad-overlap", 2, "0 <= --overlap < --tile"),
    ],
)
def test_restore_errors(
    tmp_path: Path,
    ckpts: dict[str, Path],
    case: str,
    code: int,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = _rgb_png(tmp_path / "ok.png")
    out = tmp_path / "out.png"
    name, ckpt, extra = "clginet-tiny", ckpts["rgb"], []
    if case == "missing":
        src = tmp_path / "nope.png"
    elif case == "corrupt":
        data = src.read_bytes()
        src = tmp_path / "corrupt.png"
        src.write_bytes(data[: len(data) // 2])
    elif case == "not-an-image":
        src = tmp_path / "text.png"
        src.write_text("hello")
    elif case == "bomb":
        extra = ["--max-pixels", "1000"]
    elif case == "float-tiff":
        src = tmp_path / "f.tif"
        Image.fromarray(np.zeros((8, 8), np.float32)).save(src)
    elif case == "wrong-checkpoint":
        ckpt = ckpts["small"]
    elif case == "channel-mismatch":
        src = tmp_path / "gray.png"
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(src)
    elif case == "jpeg-alpha":
        src = _rgb_png(tmp_path / "a.png", alpha=True)
        out = tmp_path / "out.jpg"
    elif case == "unknown-model":
        name = "clginet-huge"
    elif case == "bad-overlap":
        extra = ["--tile", "32", "--overlap", "32"]
    rc = main(["restore", name, str(src), str(out), "--checkpoint", str(ckpt), "--no-progress", *extra])
    assert rc == code
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.stem}.")]  # no temp leftovers


def test_restore_exit_code_via_subprocess(tmp_path: Path, ckpts: dict[str, Path]) -> None:
    r = run(
        "restore",
        "clginet-tiny",
        str(tmp_path / "nope.png"),
        str(tmp_path / "o.png"),
        "--checkpoint",
        str(ckpts["rgb"]),
    )
    assert r.returncode == 1 and "no such image file" in r.stderr


def test_io_round_trips(tmp_path: Path) -> None:
    for mode_arr in (
        np.random.default_rng(0).integers(0, 256, (9, 7), dtype=np.uint8),
        np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8),
        np.random.default_rng(0).integers(0, 65536, (9, 7), dtype=np.uint16),
    ):
        src = tmp_path / "x.png"
        Image.fromarray(mode_arr).save(src)
        img = read_image(src)
        assert img.tensor.shape[-2:] == (9, 7) and img.tensor.dtype == torch.float32
        out = write_image(tmp_path / "y.png", img)
        assert np.array_equal(np.asarray(Image.open(out)), mode_arr)
    pal = Image.fromarray(np.zeros((5, 5), np.uint8)).convert("P")
    pal.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").tensor.shape[1] == 3
    with pytest.raises(ValueError, match="cannot tell the image format"):
        write_image(tmp_path / "z.unknown", ImageData(torch.zeros(1, 3, 2, 2), None, 8))
