"""Tiled inference: shapes, exactness for local models, seam-free blending, the memory bound, errors."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from conftest import wake
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import clg_layers as cl
from clg_layers.tools.tiled import tiled_forward

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def local_model(depth: int = 3, in_chans: int = 3, out_chans: int = 3, width: int = 8) -> nn.Module:
    """``depth`` zero-padded 3×3 convolutions with ReLUs between: receptive-field radius ``depth``."""
    layers: list[nn.Module] = []
    chans = in_chans
    for i in range(depth):
        last = i == depth - 1
        layers.append(nn.Conv2d(chans, out_chans if last else width, 3, padding=1))
        if not last:
            layers.append(nn.ReLU())
        chans = width
    return nn.Sequential(*layers).eval()


def n_tiles(h: int, w: int, tile: int, overlap: int) -> int:
    """Tiles per image: one per stride plus the flush last one along each side longer than ``tile``."""

    def per_axis(size: int) -> int:
        return 1 if size <= tile else math.ceil((size - tile) / (tile - overlap)) + 1

    return per_axis(h) * per_axis(w)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


class Recorder(nn.Module):
    """Wraps a model and records the shape of every batch it receives."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.inner(x)


def astronaut(h: int = 160, w: int = 200) -> torch.Tensor:
    skimage_data = pytest.importorskip("skimage.data")
    img = skimage_data.astronaut()[100 : 100 + h, 150 : 150 + w].astype(np.float32) / 255.0
    return torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()


# ---------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "size",
    [(1, 1), (1, 50), (50, 1), (5, 7), (31, 31), (32, 32), (33, 47), (64, 40), (100, 29), (97, 131)],
)
def test_shape_matches_input(size: tuple[int, int]) -> None:
    x = torch.rand(2, 3, *size)
    y = tiled_forward(local_model(1), x, tile=32, overlap=8, batch_tiles=3)
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    assert torch.isfinite(y).all()


def test_channel_changing_model() -> None:
    model = nn.Conv2d(1, 3, 3, padding=1).eval()
    x = torch.rand(2, 1, 45, 70)
    y = tiled_forward(model, x, tile=16, overlap=4)
    assert y.shape == (2, 3, 45, 70)
    with torch.no_grad():
        torch.testing.assert_close(y, model(x), rtol=1e-5, atol=1e-5)  # r = 1 <= 4 // 4


def test_result_is_a_plain_tensor_without_history() -> None:
    model = local_model(2)
    x = torch.rand(1, 3, 40, 40, requires_grad=True)
    y = tiled_forward(model, x, tile=16, overlap=8)
    assert not y.requires_grad and y.grad_fn is None and not y.is_inference()
    y.add_(1)  # an inference tensor would refuse in-place updates outside inference mode


# ---------------------------------------------------------------------------------------- exactness


def test_identity_reproduces_the_input() -> None:
    x = torch.rand(3, 2, 53, 77)
    for tile, overlap in [(16, 0), (16, 5), (16, 12), (20, 19), (100, 50)]:
        y = tiled_forward(nn.Identity(), x, tile=tile, overlap=overlap, batch_tiles=5)
        torch.testing.assert_close(y, x, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_local_model_is_exact_when_radius_fits_a_quarter_of_the_overlap(depth: int) -> None:
    model = local_model(depth)
    x = torch.rand(2, 3, 70, 90)
    with torch.no_grad():
        ref = model(x)
    y = tiled_forward(model, x, tile=32, overlap=4 * depth, batch_tiles=3)  # r = depth = overlap // 4
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    assert psnr(y, ref) >= 100


def test_local_model_bound_is_tight() -> None:
    """One pixel less of overlap margin than the radius and the tile borders leak in."""
    model = local_model(3)
    x = torch.rand(1, 3, 70, 90)
    with torch.no_grad():
        ref = model(x)
    y = tiled_forward(model, x, tile=32, overlap=11)  # overlap // 4 = 2 < r = 3
    assert (y - ref).abs().max() > 1e-4


def test_local_model_psnr_on_natural_image() -> None:
    model = local_model(3)
    x = astronaut()
    with torch.no_grad():
        ref = model(x)
    y = tiled_forward(model, x, tile=64, overlap=32)
    assert psnr(y, ref) >= 50
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


def test_clginet_tiled_is_close_to_whole_image() -> None:
    """CLG-INet has global statistics (channel attention, transposed attention), so tiling is approximate.

    Measured 54.9 dB for tile=64, overlap=32 on this 160×200 crop (woken clginet-tiny, seeds 0), against
    38.5 dB with no blending (overlap=0); asserted with margin.
    """
    model = wake(cl.build("clginet-tiny")).eval()
    x = astronaut()
    with torch.no_grad():
        ref = model(x)
    assert psnr(ref, x) < 40  # the woken network really changes the image
    y = tiled_forward(model, x, tile=64, overlap=32, batch_tiles=8)
    value = psnr(y, ref)
    print(f"clginet-tiny tiled (tile=64, overlap=32) vs whole-image PSNR: {value:.2f} dB")
    assert value >= 50


# ---------------------------------------------------------------------------------------- memory bound


@pytest.mark.parametrize(
    ("batch", "h", "w", "tile", "overlap", "batch_tiles"),
    [(1, 100, 130, 32, 8, 4), (1, 100, 130, 32, 8, 1), (2, 65, 40, 16, 0, 3), (1, 10, 300, 64, 16, 2)],
)
def test_calls_are_bounded_by_batch_tiles_and_tile(
    batch: int, h: int, w: int, tile: int, overlap: int, batch_tiles: int
) -> None:
    model = Recorder(nn.Identity())
    x = torch.rand(batch, 3, h, w)
    tiled_forward(model, x, tile=tile, overlap=overlap, batch_tiles=batch_tiles)
    total = batch * n_tiles(h, w, tile, overlap)
    assert len(model.shapes) == math.ceil(total / batch_tiles)
    assert sum(s[0] for s in model.shapes) == total
    for n, c, th, tw in model.shapes:
        assert n <= batch_tiles and c == 3
        assert (th, tw) == (min(tile, h), min(tile, w))


def test_half_output_is_accumulated_in_float32() -> None:
    class HalfOut(nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return t.to(torch.bfloat16)

    x = torch.rand(1, 3, 50, 61)
    y = tiled_forward(HalfOut(), x, tile=16, overlap=8)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y, x.to(torch.bfloat16))


def test_double_input_stays_double() -> None:
    x = torch.rand(1, 2, 30, 41, dtype=torch.float64)
    y = tiled_forward(nn.Identity(), x, tile=16, overlap=6)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, x, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------- progress


def test_progress_bar_gives_the_same_result(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    model = local_model(2)
    x = torch.rand(1, 3, 40, 50)
    plain = tiled_forward(model, x, tile=16, overlap=8)
    with_bar = tiled_forward(model, x, tile=16, overlap=8, progress=True)
    torch.testing.assert_close(with_bar, plain, rtol=0, atol=0)
    assert "tile" in capsys.readouterr().err


def test_progress_without_tqdm_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(ImportError, match="pip install tqdm"):
        tiled_forward(nn.Identity(), torch.rand(1, 1, 8, 8), tile=4, overlap=1, progress=True)
    tiled_forward(nn.Identity(), torch.rand(1, 1, 8, 8), tile=4, overlap=1)  # no bar, no tqdm needed


# ---------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("x", "kwargs", "exc"),
    [
        ([[1.0]], {}, TypeError),
        (torch.ones(1, 3, 8, 8, dtype=torch.int64), {}, TypeError),
        (torch.rand(3, 8, 8), {}, ValueError),
        (torch.rand(1, 3, 0, 8), {}, ValueError),
        (torch.rand(0, 3, 8, 8), {}, ValueError),
        (torch.rand(1, 3, 8, 8), {"tile": 0}, ValueError),
        (torch.rand(1, 3, 8, 8), {"tile": 4.0}, TypeError),
        (torch.rand(1, 3, 8, 8), {"tile": True}, TypeError),
        (torch.rand(1, 3, 8, 8), {"tile": 4, "overlap": -1}, ValueError),
        (torch.rand(1, 3, 8, 8), {"tile": 4, "overlap": 4}, ValueError),
        (torch.rand(1, 3, 8, 8), {"tile": 4, "overlap": 1.5}, TypeError),
        (torch.rand(1, 3, 8, 8), {"batch_tiles": 0}, ValueError),
        (torch.rand(1, 3, 8, 8), {"batch_tiles": "4"}, TypeError),
        (torch.rand(1, 3, 8, 8), {"progress": 1}, TypeError),
    ],
)
def test_bad_arguments(x: object, kwargs: dict[str, object], exc: type[Exception]) -> None:
    with pytest.raises(exc, match=r"^tiled_forward:"):
        tiled_forward(nn.Identity(), x, **kwargs)  # type: ignore[arg-type]


def test_model_not_callable() -> None:
    with pytest.raises(TypeError, match=r"^tiled_forward:"):
        tiled_forward("model", torch.rand(1, 1, 4, 4))  # type: ignore[arg-type]


def test_model_changing_spatial_size() -> None:
    model = nn.Conv2d(3, 3, 3)  # no padding: shrinks by 2
    expected = r"^tiled_forward:.*spatial size.*\(2, 3, 16, 16\).*\(2, 3, 14, 14\)"
    with pytest.raises(ValueError, match=expected):
        tiled_forward(model, torch.rand(1, 3, 30, 30), tile=16, overlap=4, batch_tiles=2)


def test_model_returning_non_tensor() -> None:
    class Bad(nn.Module):
        def forward(self, t: torch.Tensor) -> tuple[torch.Tensor]:
            return (t,)

    with pytest.raises(TypeError, match=r"^tiled_forward:"):
        tiled_forward(Bad(), torch.rand(1, 1, 8, 8), tile=4, overlap=0)


def test_size_multiple_is_respected() -> None:
    class Multiple(nn.Identity):
        size_multiple = 8

    with pytest.raises(ValueError, match=r"^tiled_forward:.*size_multiple \(8\)"):
        tiled_forward(Multiple(), torch.rand(1, 1, 40, 40), tile=30, overlap=6)
    with pytest.raises(ValueError, match=r"^tiled_forward:.*size_multiple \(8\)"):
        tiled_forward(Multiple(), torch.rand(1, 1, 20, 40), tile=32, overlap=8)  # clipped tile is 20
    x = torch.rand(1, 1, 40, 50)
    torch.testing.assert_close(tiled_forward(Multiple(), x, tile=32, overlap=7), x, rtol=1e-6, atol=1e-6)
    assert cl.build("clginet-tiny").size_multiple == 1


# ---------------------------------------------------------------------------------------- properties


@st.composite
def tiling(draw: st.DrawFn) -> tuple[int, int, int, int, int]:
    h = draw(st.integers(1, 70))
    w = draw(st.integers(1, 70))
    tile = draw(st.integers(8, 40))
    overlap = draw(st.integers(0, tile - 1))
    batch_tiles = draw(st.integers(1, 5))
    return h, w, tile, overlap, batch_tiles


@given(tiling())
def test_property_identity_reconstructs_exactly(args: tuple[int, int, int, int, int]) -> None:
    h, w, tile, overlap, batch_tiles = args
    x = torch.rand(1, 2, h, w)
    y = tiled_forward(nn.Identity(), x, tile=tile, overlap=overlap, batch_tiles=batch_tiles)
    torch.testing.assert_close(y, x, rtol=1e-6, atol=1e-6)


_CONV = local_model(1, in_chans=2, out_chans=3)


@given(tiling())
def test_property_local_model_shape(args: tuple[int, int, int, int, int]) -> None:
    h, w, tile, overlap, batch_tiles = args
    x = torch.rand(1, 2, h, w)
    y = tiled_forward(_CONV, x, tile=tile, overlap=overlap, batch_tiles=batch_tiles)
    assert y.shape == (1, 3, h, w)
    assert torch.isfinite(y).all()
