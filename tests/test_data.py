"""clg_layers.data: degradation statistics, seeding, datasets, crops, schedules and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clg_layers.data import (
    Compose,
    GaussianNoise,
    MotionBlur,
    PairedImageFolder,
    PatchSchedule,
    PoissonGaussianNoise,
    RainStreaks,
    RandomPatchBatches,
    SyntheticPairs,
    ValidationPairs,
    dihedral,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def smooth_images(b: int = 4, c: int = 3, size: int = 64) -> torch.Tensor:
    """Smooth, mid-grey test images (no clipping at 0/1 for moderate noise)."""
    g = torch.Generator().manual_seed(0)
    low = torch.rand(b, c, 8, 8, generator=g)
    return 0.3 + 0.4 * torch.nn.functional.interpolate(
        low, size=(size, size), mode="bicubic", align_corners=False
    )


def highpass_energy(x: torch.Tensor) -> float:
    """Energy of horizontal and vertical finite differences."""
    return float((x.diff(dim=-1) ** 2).mean() + (x.diff(dim=-2) ** 2).mean())


def test_import_clg_layers_does_not_import_the_engines() -> None:
    code = (
        "import sys, clg_layers, clg_layers.data; "
        "bad = [m for m in ('lightning', 'torchmetrics', 'kornia', 'clg_layers.training') "
        "if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("sigma", [5.0, 25.0, 50.0])
def test_gaussian_noise_sigma_is_measured(sigma: float) -> None:
    x = smooth_images()
    y = GaussianNoise(sigma)(x, seed=1)
    measured = float((y - x).std()) * 255
    assert measured == pytest.approx(sigma, rel=0.03)
    assert y.dtype == x.dtype and y.shape == x.shape


def test_gaussian_noise_range_is_per_sample_and_grey_option() -> None:
    x = smooth_images(b=16)
    y = GaussianNoise(sigma_range=(0, 50))(x, seed=2)
    per = (y - x).flatten(1).std(dim=1) * 255
    assert float(per.min()) >= 0 and float(per.max()) <= 52
    assert float(per.max() - per.min()) > 10  # differs between samples
    grey = GaussianNoise(25, grey=True)(x, seed=3) - x
    assert torch.allclose(grey[:, 0], grey[:, 1], atol=1e-6) and torch.allclose(
        grey[:, 1], grey[:, 2], atol=1e-6
    )


def test_same_seed_same_output_and_generator_equivalent() -> None:
    x = smooth_images()
    for deg in (GaussianNoise(25), PoissonGaussianNoise(), MotionBlur(), RainStreaks()):
        a, b = deg(x, seed=7), deg(x, seed=7)
        c = deg(x, generator=torch.Generator().manual_seed(7))
        assert torch.equal(a, b) and torch.equal(a, c), type(deg).__name__
        assert not torch.equal(a, deg(x, seed=8)), type(deg).__name__


def test_poisson_gaussian_noise_grows_with_intensity() -> None:
    dark = torch.full((8, 3, 48, 48), 0.1)
    bright = torch.full((8, 3, 48, 48), 0.9)
    deg = PoissonGaussianNoise(shot=(4e-3, 4e-3), read=(2.0, 2.0), clip=False)
    sd_dark = float((deg(dark, seed=0) - dark).std())
    sd_bright = float((deg(bright, seed=0) - bright).std())
    assert sd_dark == pytest.approx((4e-3 * 0.1 + (2 / 255) ** 2) ** 0.5, rel=0.05)
    assert sd_bright == pytest.approx((4e-3 * 0.9 + (2 / 255) ** 2) ** 0.5, rel=0.05)


def test_motion_blur_kernels_sum_to_one_and_remove_high_frequencies() -> None:
    mb = MotionBlur((7, 15), curvature=1.5)
    k = mb.kernels(16, seed=0)
    assert k.shape == (16, mb.kernel_size, mb.kernel_size)
    assert torch.allclose(k.sum(dim=(1, 2)), torch.ones(16), atol=1e-5) and float(k.min()) >= 0
    assert len({tuple(v.flatten().tolist()) for v in k}) == 16  # per-sample kernels
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    y = mb(x, seed=0)
    assert highpass_energy(y) < 0.3 * highpass_energy(x)
    assert torch.allclose(y.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.02)  # reflect borders keep the mean


def test_straight_motion_blur_is_oriented() -> None:
    """A horizontal kernel blurs along x and leaves vertical differences almost alone."""
    k = MotionBlur(11.0, angle=0.0, curvature=0.0).kernels(1, seed=0)[0]
    assert float(k.sum(dim=1).max()) > 0.9  # all weight in the middle row(s)
    mass_rows = k.sum(dim=1)
    assert int((mass_rows > 0.01).sum()) <= 2


def test_rain_adds_bright_oriented_structure() -> None:
    x = smooth_images(b=4)
    rain = RainStreaks(angle=(0.0, 0.0), density=(0.01, 0.01), length=(15, 15))
    y = rain(x, seed=0)
    d = y - x
    assert float(d.min()) >= -1e-6 and float(d.mean()) > 0.005  # rain only brightens
    # Vertical streaks: the rain layer varies much more across x than along y.
    assert float(d.diff(dim=-1).abs().mean()) > 2 * float(d.diff(dim=-2).abs().mean())
    heavy = RainStreaks(density=(0.03, 0.03))(x, seed=0) - x
    light = RainStreaks(density=(0.002, 0.002))(x, seed=0) - x
    assert float(heavy.mean()) > 2 * float(light.mean())


def test_compose_and_device_agnostic_on_available_devices() -> None:
    x = smooth_images()
    deg = Compose([MotionBlur((3, 7)), GaussianNoise(10)])
    y = deg(x, seed=3)
    assert y.shape == x.shape and torch.equal(y, deg(x, seed=3))
    if torch.cuda.is_available():  # same seed, same result on the GPU (draws come from the CPU generator)
        yc = deg(x.cuda(), seed=3)
        assert yc.is_cuda and torch.allclose(yc.cpu(), y, atol=1e-5)


def test_degradation_bad_arguments() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        GaussianNoise()
    with pytest.raises(ValueError, match="sigma_range"):
        GaussianNoise(sigma_range=(30, 10))
    with pytest.raises(ValueError, match="odd"):
        MotionBlur(kernel_size=4)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        GaussianNoise(5)(torch.rand(3, 8, 8))
    with pytest.raises(TypeError, match="floating"):
        GaussianNoise(5)(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="larger than"):
        MotionBlur(15)(torch.rand(1, 3, 6, 6))
    with pytest.raises(ValueError, match="not both"):
        GaussianNoise(5)(torch.rand(1, 3, 8, 8), seed=1, generator=torch.Generator())


def test_dihedral_gives_eight_distinct_views() -> None:
    x = torch.arange(9.0).view(1, 3, 3)
    views = {tuple(dihedral(x, k).flatten().tolist()) for k in range(8)}
    assert len(views) == 8


def test_patch_schedule() -> None:
    s = PatchSchedule.progressive(90, patches=(32, 48, 64), batches=(8, 4, 2))
    assert s.at(0) == (32, 8) and s.at(30) == (48, 4) and s.at(89) == (64, 2) and s.at(10**6) == (64, 2)
    assert s.max_patch == 64
    with pytest.raises(ValueError, match="stage"):
        PatchSchedule(((10, 0, 4),))


def _write(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr).save(path)
    return path


def _pairs(root: Path, stems: list[str], size: int = 40, fmt: str = "png") -> Path:
    rng = np.random.default_rng(0)
    for sub in ("input", "target"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for s in stems:
        arr = rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)
        _write(root / "input" / f"{s}.{fmt}", arr)
        _write(root / "target" / f"{s}.{fmt}", arr[..., ::-1].copy())
    return root


def test_paired_folder_formats_and_crops(tmp_path: Path) -> None:
    root = _pairs(tmp_path, ["a", "b"])
    # 16-bit grey TIFF and an 8-bit grey JPEG pair, read as RGB
    g16 = (np.random.default_rng(1).integers(0, 65535, (40, 48))).astype(np.uint16)
    Image.fromarray(g16).save(root / "input" / "c.tif")
    Image.fromarray(g16).save(root / "target" / "c.tif")
    g8 = np.random.default_rng(2).integers(0, 256, (40, 48), dtype=np.uint8)
    _write(root / "input" / "d.jpg", g8)
    _write(root / "target" / "d.png", g8)
    ds = PairedImageFolder(root / "input", root / "target", min_size=32, cache=True)
    assert len(ds) == 4 and ds.stems == ["a", "b", "c", "d"]
    inp, _tgt = ds[2]
    assert inp.shape == (3, 40, 48) and torch.allclose(
        inp[0], torch.from_numpy(g16 / 65535.0).float(), atol=1e-6
    )
    batches = RandomPatchBatches(ds, PatchSchedule.constant(32, 3), steps=5, seed=0)
    x, y = batches[4]
    assert x.shape == y.shape == (3, 3, 32, 32)
    assert torch.equal(batches[4][0], x)  # a step's batch is reproducible


def test_paired_folder_bad_input(tmp_path: Path) -> None:
    (tmp_path / "empty" / "input").mkdir(parents=True)
    (tmp_path / "empty" / "target").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds no image"):
        PairedImageFolder(tmp_path / "empty" / "input", tmp_path / "empty" / "target")
    root = _pairs(tmp_path / "mis", ["a", "b", "c"])
    (root / "target" / "b.png").rename(root / "target" / "bb.png")
    with pytest.raises(
        ValueError, match=r"inputs without a target: \['b.png'\].*targets without an input: \['bb.png'\]"
    ):
        PairedImageFolder(root / "input", root / "target")
    root = _pairs(tmp_path / "trunc", ["a"])
    data = (root / "input" / "a.png").read_bytes()
    (root / "input" / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        PairedImageFolder(root / "input", root / "target")
    root = _pairs(tmp_path / "junk", ["a"])
    (root / "input" / "a.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="not an image"):
        PairedImageFolder(root / "input", root / "target")
    root = _pairs(tmp_path / "small", ["a"], size=20)
    with pytest.raises(ValueError, match="smaller than the 32-pixel"):
        PairedImageFolder(root / "input", root / "target", min_size=32)


def test_synthetic_pairs_and_validation_pairs() -> None:
    clean = [torch.rand(3, 50, 60), torch.rand(3, 64, 40)]
    src = SyntheticPairs(clean, GaussianNoise(25))
    batches = RandomPatchBatches(src, PatchSchedule.constant(32, 4), steps=3, seed=1, rank=0)
    noisy, target = batches[0]
    assert noisy.shape == target.shape == (4, 3, 32, 32)
    assert float((noisy - target).std()) * 255 == pytest.approx(25, rel=0.1)
    other_rank = RandomPatchBatches(src, PatchSchedule.constant(32, 4), steps=3, seed=1, rank=1)[0][1]
    assert not torch.equal(other_rank, target)
    val = ValidationPairs(src, max_side=32)
    a, b, name = val[0]
    assert max(a.shape[-2:]) == 32 and a.shape == b.shape and name == "image000"
    assert torch.equal(ValidationPairs(src, max_side=32)[0][0], a)  # fixed validation noise
    with pytest.raises(ValueError, match="smaller than the 64-pixel"):
        SyntheticPairs(clean, GaussianNoise(25), min_size=64)
    with pytest.raises(TypeError, match="callable"):
        SyntheticPairs(clean, "noise")  # type: ignore[arg-type]
