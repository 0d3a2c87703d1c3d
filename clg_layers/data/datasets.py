"""Datasets for restoration training: paired folders, synthetic pairs, random crops and progressive
patch sizes.

All images are ``(C, H, W)`` float32 tensors in ``[0, 1]`` (``C`` = 1 or 3);
batches are ``(B, C, H, W)``. Only torch, numpy and Pillow are needed here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from ..layers._checks import check_int

__all__ = [
    "IMAGE_SUFFIXES",
    "PairedImageFolder",
    "PatchSchedule",
    "RandomPatchBatches",
    "StepSampler",
    "SyntheticPairs",
    "ValidationPairs",
    "dihedral",
    "list_images",
    "load_image",
]

#: File suffixes treated as images (case-insensitive).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

Degrade = Callable[..., torch.Tensor]


def list_images(folder: str | Path, *, who: str = "list_images") -> dict[str, Path]:
    """The images directly inside ``folder``, keyed by file stem, sorted.

    Raises:
        FileNotFoundError: If ``folder`` does not exist.
        ValueError: If it is not a folder, holds no image, or two files share a stem.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{who}: no such folder: {str(folder)!r}")
    if not folder.is_dir():
        raise ValueError(f"{who}: {str(folder)!r} is not a folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in found:
                raise ValueError(
                    f"{who}: {found[path.stem].name!r} and {path.name!r} in {str(folder)!r} share the "
                    "stem used to match pairs; rename one"
                )
            found[path.stem] = path
    if not found:
        raise ValueError(f"{who}: {str(folder)!r} holds no image (looked for {', '.join(IMAGE_SUFFIXES)})")
    return found


def _check_channels(who: str, channels: object) -> None:
    if check_int(who, "channels", channels) not in (1, 3):
        raise ValueError(f"{who}: `channels` must be 1 or 3, got {channels!r}")


def _to_channels(img: torch.Tensor, channels: int, where: str) -> torch.Tensor:
    c = img.shape[0]
    if c == channels:
        return img
    if channels == 3 and c == 1:
        return img.expand(3, -1, -1).contiguous()
    if channels == 1 and c == 3:  # ITU-R BT.601 luma
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype).view(3, 1, 1)
        return (img * weights).sum(0, keepdim=True)
    raise ValueError(f"load_image: {where} has {c} channels, cannot convert to {channels}")


def load_image(path: str | Path, *, channels: int = 3) -> torch.Tensor:
    """Read an 8/16-bit PNG, JPEG, TIFF, BMP or WebP as a ``(channels, H, W)`` float32 tensor in ``[0, 1]``.

    Grey images are repeated to 3 channels (or RGB turned to luma for
    ``channels=1``); an alpha channel is dropped.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is unreadable, truncated or of an unsupported mode.
    """
    from ..io import read_image

    _check_channels("load_image", channels)
    image = read_image(path)
    return _to_channels(image.tensor[0], channels, repr(str(path)))


def _check_header(path: Path, who: str) -> tuple[int, int]:
    """Open ``path`` with Pillow and verify its structure (PNG CRCs, ...) without decoding;
    return ``(H, W)``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            w, h = img.size
            img.verify()
    except UnidentifiedImageError:
        raise ValueError(f"{who}: {str(path)!r} is not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{who}: {str(path)!r} is corrupt or truncated: {err}") from None
    return h, w


def _check_size(who: str, name: str, h: int, w: int, min_size: int) -> None:
    if min(h, w) < min_size:
        raise ValueError(
            f"{who}: {name} is {w}×{h}, smaller than the {min_size}-pixel training patch; "
            "remove it or use a smaller patch size"
        )


class PairedImageFolder(Dataset):
    """Degraded/clean image pairs in two folders, matched by file stem.

    Works with the usual layouts: SIDD (``input/`` + ``target/`` or
    ``noisy/`` + ``clean/``), GoPro (``blur/`` + ``sharp/``), Rain13K
    (``input/`` + ``target/``). Every file is opened and structurally
    verified at construction, so unreadable or truncated files, mismatched
    sizes and too-small images are reported before training starts.

    Args:
        input_dir: Folder of degraded images.
        target_dir: Folder of clean images with the same stems.
        channels: 1 or 3 (grey images are repeated to RGB; RGB turned to luma for 1).
        min_size: Smallest allowed image side (the largest training patch).
        cache: Decode every image once at construction and keep it in memory
            (fast epochs for small sets; also checks full decodability).

    ``dataset[i]`` is ``(input, target)``, each ``(C, H, W)``.

    Raises:
        ValueError: For an empty folder, unmatched stems (the first few are
            named), an unreadable file, a size mismatch or a too-small image.
    """

    def __init__(
        self,
        input_dir: str | Path,
        target_dir: str | Path,
        *,
        channels: int = 3,
        min_size: int = 1,
        cache: bool = False,
    ) -> None:
        who = "PairedImageFolder"
        _check_channels(who, channels)
        check_int(who, "min_size", min_size)
        inputs = list_images(input_dir, who=who)
        targets = list_images(target_dir, who=who)
        only_in = sorted(set(inputs) - set(targets))
        only_tg = sorted(set(targets) - set(inputs))
        if only_in or only_tg:
            msg = f"{who}: input and target stems do not match ({len(inputs)} inputs, {len(targets)} targets)"
            if only_in:
                msg += f"; inputs without a target: {[inputs[s].name for s in only_in[:5]]}"
            if only_tg:
                msg += f"; targets without an input: {[targets[s].name for s in only_tg[:5]]}"
            raise ValueError(msg + " (pairs are matched by file name without the suffix)")
        self.stems = sorted(inputs)
        self.pairs = [(inputs[s], targets[s]) for s in self.stems]
        self.channels = channels
        for src, tgt in self.pairs:
            hs, ws = _check_header(src, who)
            ht, wt = _check_header(tgt, who)
            if (hs, ws) != (ht, wt):
                raise ValueError(f"{who}: {str(src)!r} is {ws}×{hs} but its target {str(tgt)!r} is {wt}×{ht}")
            _check_size(who, repr(str(src)), hs, ws, min_size)
        self._cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        if cache:
            self._cache = [self._load(i) for i in range(len(self.pairs))]

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        src, tgt = self.pairs[index]
        return load_image(src, channels=self.channels), load_image(tgt, channels=self.channels)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is not None:
            return self._cache[index]
        return self._load(index)

    def name(self, index: int) -> str:
        """The stem of pair ``index``."""
        return self.stems[index]


class SyntheticPairs(Dataset):
    """Clean images degraded on the fly: ``dataset[i]`` is the clean image; batches are degraded together.

    Args:
        clean: A folder of clean images, or a sequence of ``(C, H, W)`` tensors in ``[0, 1]``.
        degradation: A callable ``degradation(batch, *, generator=...)`` on
            ``(B, C, H, W)`` tensors, e.g. :class:`~clg_layers.data.GaussianNoise`.
        channels: 1 or 3 (for a folder; tensors are used as given).
        min_size: Smallest allowed image side (the largest training patch).
        cache: Keep decoded images in memory (tensors always are).

    Raises:
        ValueError: For an empty folder or sequence, an unreadable file or a too-small image.
        TypeError: If ``degradation`` is not callable or an item is not a ``(C, H, W)`` tensor.
    """

    def __init__(
        self,
        clean: str | Path | Sequence[torch.Tensor],
        degradation: Degrade,
        *,
        channels: int = 3,
        min_size: int = 1,
        cache: bool = True,
    ) -> None:
        who = "SyntheticPairs"
        if not callable(degradation):
            raise TypeError(f"{who}: `degradation` must be callable, got {type(degradation).__name__}")
        _check_channels(who, channels)
        check_int(who, "min_size", min_size)
        self.degradation = degradation
        self.channels = channels
        self._images: list[torch.Tensor] | None = None
        self.paths: list[Path] = []
        if isinstance(clean, (str, Path)):
            found = list_images(clean, who=who)
            self.stems = list(found)
            self.paths = list(found.values())
            for path in self.paths:
                h, w = _check_header(path, who)
                _check_size(who, repr(str(path)), h, w, min_size)
            if cache:
                self._images = [load_image(p, channels=channels) for p in self.paths]
        else:
            images = list(clean)
            if not images:
                raise ValueError(f"{who}: got no clean images")
            for i, img in enumerate(images):
                if not isinstance(img, torch.Tensor) or img.ndim != 3 or not img.is_floating_point():
                    got = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
                    raise TypeError(f"{who}: image {i} must be a floating-point (C, H, W) tensor, got {got}")
                _check_size(who, f"image {i}", img.shape[1], img.shape[2], min_size)
            self._images = images
            self.stems = [f"image{i:03d}" for i in range(len(images))]

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, index: int) -> torch.Tensor:
        if self._images is not None:
            return self._images[index]
        return load_image(self.paths[index], channels=self.channels)

    def name(self, index: int) -> str:
        """The stem of image ``index``."""
        return self.stems[index]


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the eight flips/rotations of the square: rotate by ``k % 4`` quarter turns, then mirror
    if ``k >= 4``.

    Args:
        x: Tensor whose last two dimensions are ``(H, W)``.
        k: 0 to 7.
    """
    if not 0 <= k < 8:
        raise ValueError(f"dihedral: `k` must be in 0..7, got {k}")
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return y.flip(-1) if k >= 4 else y


@dataclass(frozen=True)
class PatchSchedule:
    """Patch size and batch size over the run (Restormer's progressive training).

    Args:
        stages: ``(steps, patch, batch)`` triples run in order; the last one
            continues past its step count.

    Example:
        ``PatchSchedule.progressive(1000, patches=(32, 48, 64), batches=(8, 4, 2))``
        trains 1/3 of the steps on 32² crops in batches of 8, then 48², then 64².
    """

    stages: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("PatchSchedule: needs at least one (steps, patch, batch) stage")
        for i, stage in enumerate(self.stages):
            if isinstance(stage, (str, bytes)) or not isinstance(stage, Sequence) or len(stage) != 3:
                raise ValueError(
                    f"PatchSchedule: each stage is three ints >= 1 (steps, patch, batch), got {stage!r}"
                )
            for name, value in zip(("steps", "patch", "batch"), stage):
                check_int("PatchSchedule", f"stages[{i}].{name}", value)

    @classmethod
    def constant(cls, patch: int, batch: int) -> PatchSchedule:
        """One patch size and batch size for the whole run."""
        return cls(((1, patch, batch),))

    @classmethod
    def progressive(
        cls,
        total_steps: int,
        *,
        patches: Sequence[int],
        batches: Sequence[int],
        fractions: Sequence[float] | None = None,
    ) -> PatchSchedule:
        """Split ``total_steps`` over growing patches (equal shares unless ``fractions`` is given).

        Restormer's recipe at 300k steps is patches ``(128, 160, 192, 256, 320, 384)``, batches
        ``(64, 40, 32, 16, 8, 8)`` (their total over 8 GPUs) and fractions ``(.31, .21, .16, .12, .12, .08)``.
        """
        if len(patches) != len(batches) or not patches:
            raise ValueError(
                f"PatchSchedule.progressive: `patches` and `batches` need the same non-zero length, "
                f"got {len(patches)} and {len(batches)}"
            )
        fractions = list(fractions) if fractions is not None else [1.0 / len(patches)] * len(patches)
        if len(fractions) != len(patches) or any(f <= 0 for f in fractions):
            raise ValueError(
                f"PatchSchedule.progressive: need one positive fraction per stage, got {fractions}"
            )
        total = sum(fractions)
        steps = [max(1, round(total_steps * f / total)) for f in fractions]
        return cls(tuple((s, int(p), int(b)) for s, p, b in zip(steps, patches, batches)))

    def at(self, step: int) -> tuple[int, int]:
        """``(patch, batch)`` for training step ``step`` (0-based)."""
        for steps, patch, batch in self.stages:
            if step < steps:
                return patch, batch
            step -= steps
        return self.stages[-1][1], self.stages[-1][2]

    @property
    def max_patch(self) -> int:
        """The largest patch size (every training image must be at least this big)."""
        return max(p for _, p, _ in self.stages)


class RandomPatchBatches(Dataset):
    """Whole training batches, indexed by step: ``dataset[step]`` is ``(input, target)``, each
    ``(B, C, P, P)``.

    ``P`` and ``B`` come from the :class:`PatchSchedule` at that step. Each
    sample is a random crop of a random image under one of the eight
    flips/rotations; synthetic sources degrade the batch of clean crops in one
    call. Everything is seeded from ``(seed, rank, step)``, so a batch is the
    same whenever it is drawn, which makes resumed runs continue exactly and
    gives every DDP rank different data. Use with ``DataLoader(dataset,
    batch_size=None, sampler=StepSampler(...))``.

    Args:
        source: A :class:`PairedImageFolder` or :class:`SyntheticPairs`.
        schedule: Patch and batch sizes over the run.
        steps: Number of steps (the dataset's length).
        seed: Base seed.
        rank: Process rank (different data per rank).
    """

    def __init__(
        self,
        source: PairedImageFolder | SyntheticPairs,
        schedule: PatchSchedule,
        *,
        steps: int,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        if not isinstance(source, (PairedImageFolder, SyntheticPairs)):
            raise TypeError(
                f"RandomPatchBatches: `source` must be a PairedImageFolder or SyntheticPairs, "
                f"got {type(source).__name__}"
            )
        self.source, self.schedule, self.steps, self.seed, self.rank = (
            source,
            schedule,
            int(steps),
            seed,
            rank,
        )

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        patch, batch = self.schedule.at(step)
        g = torch.Generator().manual_seed(hash((self.seed, self.rank, int(step))) & 0x7FFF_FFFF_FFFF_FFFF)
        inputs, targets = [], []
        for _ in range(batch):
            i = int(torch.randint(len(self.source), (1,), generator=g))
            item = self.source[i]
            pair = item if isinstance(item, tuple) else (item,)
            _, h, w = pair[0].shape
            if min(h, w) < patch:
                raise ValueError(
                    f"RandomPatchBatches: image {self.source.name(i)!r} is {w}×{h}, smaller than "
                    f"the {patch}-pixel patch"
                )
            y = int(torch.randint(h - patch + 1, (1,), generator=g))
            x = int(torch.randint(w - patch + 1, (1,), generator=g))
            k = int(torch.randint(8, (1,), generator=g))
            crops = [dihedral(t[:, y : y + patch, x : x + patch], k) for t in pair]
            targets.append(crops[-1])
            inputs.append(crops[0])
        target = torch.stack(targets)
        if isinstance(self.source, SyntheticPairs):
            return self.source.degradation(target, generator=g), target
        return torch.stack(inputs), target


class StepSampler(Sampler[int]):
    """Yields the step indices ``start, start + 1, ..., stop - 1`` (resuming starts at the restored step)."""

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = int(start), int(stop)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


class ValidationPairs(Dataset):
    """Fixed validation pairs ``(input, target, name)``, each image ``(C, H, W)`` at full (or reduced) size.

    Synthetic sources are degraded once, with a seed per image, so every
    validation sees the same inputs.

    Args:
        source: A :class:`PairedImageFolder` or :class:`SyntheticPairs`.
        max_side: Downscale (area) images whose longer side exceeds this; ``None`` keeps them.
        seed: Seed of the synthetic degradations.
    """

    def __init__(
        self, source: PairedImageFolder | SyntheticPairs, *, max_side: int | None = None, seed: int = 12345
    ) -> None:
        if max_side is not None:
            check_int("ValidationPairs", "max_side", max_side)
        self.items: list[tuple[torch.Tensor, torch.Tensor, str]] = []
        for i in range(len(source)):
            item = source[i]
            pair = list(item) if isinstance(item, tuple) else [item]
            if max_side is not None and max(pair[0].shape[-2:]) > max_side:
                scale = max_side / max(pair[0].shape[-2:])
                size = [max(1, math.floor(s * scale)) for s in pair[0].shape[-2:]]
                pair = [F.interpolate(t[None], size=size, mode="area")[0] for t in pair]
            target = pair[-1]
            if isinstance(source, SyntheticPairs):
                degraded = source.degradation(target[None], seed=seed + i)[0]
            else:
                degraded = pair[0]
            self.items.append((degraded, target, source.name(i)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        return self.items[index]
