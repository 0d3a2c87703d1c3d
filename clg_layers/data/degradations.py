"""Synthetic degradations: batched, seeded, device-agnostic callables on ``(B, C, H, W)`` tensors
in ``[0, 1]``.

Every degradation draws its random parameters per sample and takes either a
``generator`` or a ``seed``. Random numbers are drawn on the generator's own
device (a seed makes a CPU generator) and then moved to the image's device,
so the same seed gives the same result on the CPU and on a GPU. Without
either, the global RNG of the image's device is used.

Only :class:`MotionBlur` and :class:`RainStreaks` need kornia (its
``filter2d`` applies one kernel per sample with reflect borders); it is
imported when they first run, so this module imports with torch alone.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch

from ..layers._checks import check_images, check_int, check_positive_float

__all__ = [
    "Compose",
    "Degradation",
    "GaussianNoise",
    "MotionBlur",
    "PoissonGaussianNoise",
    "RainStreaks",
    "WithSigmaMap",
]


def _range(
    who: str, name: str, value: float | tuple[float, float], low: float, high: float = math.inf
) -> tuple[float, float]:
    """Turn a number or a ``(min, max)`` pair into a checked ``(min, max)`` pair (no bools or strings)."""

    def real(v: object) -> bool:
        return isinstance(v, numbers.Real) and not isinstance(v, bool)

    if real(value):
        pair = (float(value), float(value))  # type: ignore[arg-type]
    elif (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(map(real, value))
    ):
        pair = (float(value[0]), float(value[1]))
    else:
        raise TypeError(f"{who}: `{name}` must be a number or a (min, max) pair, got {value!r}")
    if not (low <= pair[0] <= pair[1] <= high):
        raise ValueError(f"{who}: `{name}` must satisfy {low} <= min <= max <= {high}, got {value!r}")
    return pair


class _Draw:
    """Random numbers for one call, drawn on the generator's device and moved to the images' device."""

    def __init__(self, generator: torch.Generator | None, seed: int | None, device: torch.device) -> None:
        if generator is not None and seed is not None:
            raise ValueError("degradation: pass either `generator` or `seed`, not both")
        if seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        self.generator = generator
        self.device = device
        self.source = generator.device if generator is not None else device

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, device=self.source).to(self.device)

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.source).to(self.device)

    def uniform(self, n: int, bounds: tuple[float, float]) -> torch.Tensor:
        return bounds[0] + (bounds[1] - bounds[0]) * self.rand(n)


class Degradation:
    """Base class: ``degradation(clean, *, generator=None, seed=None) -> degraded``, both ``(B, C, H, W)``."""

    def __call__(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None, seed: int | None = None
    ) -> torch.Tensor:
        """Degrade a batch.

        Args:
            x: Clean images, ``(B, C, H, W)`` floating point in ``[0, 1]``, on any device.
            generator: Source of randomness (on any device).
            seed: Alternative to ``generator``: a seed for a fresh CPU generator.

        Returns:
            Degraded images, ``(B, C, H, W)``, same dtype and device as ``x``.
        """
        x = check_images(type(self).__name__, x)
        draw = _Draw(generator, seed, x.device)
        return self.apply(x, draw)

    def apply(self, x: torch.Tensor, draw: _Draw) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class GaussianNoise(Degradation):
    """Additive white Gaussian noise with a per-sample standard deviation on the 0–255 scale.

    Own code rather than kornia's ``RandomGaussianNoise``: that one takes a
    single standard deviation per call and draws from the global RNG only.

    Args:
        sigma: Fixed standard deviation on the 0–255 scale (e.g. 25).
        sigma_range: ``(min, max)``: each sample draws its sigma uniformly from it.
        grey: Same noise on every channel (grey noise) instead of per channel.
        clip: Clamp the result to ``[0, 1]``.
    """

    def __init__(
        self,
        sigma: float | None = None,
        *,
        sigma_range: tuple[float, float] | None = None,
        grey: bool = False,
        clip: bool = False,
    ) -> None:
        if (sigma is None) == (sigma_range is None):
            raise ValueError("GaussianNoise: give exactly one of `sigma` or `sigma_range`")
        self.sigma = _range(
            "GaussianNoise",
            "sigma" if sigma is not None else "sigma_range",
            sigma if sigma is not None else sigma_range,
            0.0,
            255.0,
        )  # type: ignore[arg-type]
        self.grey = bool(grey)
        self.clip = bool(clip)

    def apply(self, x: torch.Tensor, draw: _Draw) -> torch.Tensor:
        return self.apply_with_sigma(x, draw)[0]

    def apply_with_sigma(self, x: torch.Tensor, draw: _Draw) -> tuple[torch.Tensor, torch.Tensor]:
        """The noisy images ``(B, C, H, W)`` and each sample's σ ``(B,)`` in the ``[0, 1]`` range."""
        b, c, h, w = x.shape
        sigma = draw.uniform(b, self.sigma) / 255.0
        noise = draw.randn(b, 1 if self.grey else c, h, w)
        y = x + (sigma.view(b, 1, 1, 1) * noise).to(x.dtype)
        return (y.clamp(0, 1) if self.clip else y), sigma

    def __repr__(self) -> str:
        return f"GaussianNoise(sigma_range={self.sigma}, grey={self.grey}, clip={self.clip})"


class WithSigmaMap(Degradation):
    """Gaussian noise that hands over its noise level: the input of a noise-level-conditioned model.

    The noisy images are exactly those of ``noise`` with the same random
    stream, followed by one channel holding each sample's σ in the ``[0, 1]``
    image range (σ / 255): what a ``noise_level_map=True``
    :class:`~clg_layers.CLGINet` takes (see :func:`~clg_layers.with_sigma_map`).

    Args:
        noise: The :class:`GaussianNoise` to apply, typically over a range,
            e.g. ``GaussianNoise(sigma_range=(0, 50))``.

    Shape:
        ``(B, C, H, W)`` clean images in, ``(B, C + 1, H, W)`` out.
    """

    def __init__(self, noise: GaussianNoise) -> None:
        if not isinstance(noise, GaussianNoise):
            raise TypeError(
                f"WithSigmaMap: `noise` must be a GaussianNoise (whose σ is known per sample), "
                f"got {type(noise).__name__}"
            )
        self.noise = noise

    def apply(self, x: torch.Tensor, draw: _Draw) -> torch.Tensor:
        b, _, h, w = x.shape
        y, sigma = self.noise.apply_with_sigma(x, draw)
        level = sigma.to(device=y.device, dtype=y.dtype).view(b, 1, 1, 1).expand(b, 1, h, w)
        return torch.cat([y, level], dim=1)

    def __repr__(self) -> str:
        return f"WithSigmaMap({self.noise!r})"


class PoissonGaussianNoise(Degradation):
    """Signal-dependent camera noise: ``y = x + sqrt(a * x + b) * n``, ``n ~ N(0, 1)``.

    The Gaussian approximation of shot (Poisson) plus read (Gaussian) noise:
    the variance grows linearly with the intensity. ``a`` and ``b`` are drawn
    per sample, log-uniformly, from their ranges.

    Args:
        shot: ``(min, max)`` of ``a`` (variance per unit intensity), e.g. ``(1e-4, 1e-2)``.
        read: ``(min, max)`` of the read-noise standard deviation on the 0–255 scale.
        clip: Clamp the result to ``[0, 1]`` (a real sensor saturates).
    """

    def __init__(
        self,
        *,
        shot: tuple[float, float] = (1e-4, 1e-2),
        read: tuple[float, float] = (0.5, 10.0),
        clip: bool = True,
    ) -> None:
        self.shot = _range("PoissonGaussianNoise", "shot", shot, 1e-12, 1.0)
        self.read = _range("PoissonGaussianNoise", "read", read, 1e-6, 255.0)
        self.clip = bool(clip)

    def apply(self, x: torch.Tensor, draw: _Draw) -> torch.Tensor:
        b = x.shape[0]

        def log_uniform(bounds: tuple[float, float]) -> torch.Tensor:
            lo, hi = math.log(bounds[0]), math.log(bounds[1])
            return torch.exp(lo + (hi - lo) * draw.rand(b)).view(b, 1, 1, 1)

        a = log_uniform(self.shot)
        read = log_uniform(self.read) / 255.0
        var = a * x.float().clamp(min=0) + read**2
        y = x + (var.sqrt() * draw.randn(*x.shape)).to(x.dtype)
        return y.clamp(0, 1) if self.clip else y

    def __repr__(self) -> str:
        return f"PoissonGaussianNoise(shot={self.shot}, read={self.read}, clip={self.clip})"


def _splat(points: torch.Tensor, size: int) -> torch.Tensor:
    """Rasterise ``(B, N, 2)`` sub-pixel points (x, y), centred on 0, into ``(B, size, size)`` kernels
    summing to 1.

    Bilinear splatting: each point spreads its unit weight over the four pixels around it.
    """
    b, _n, _ = points.shape
    half = (size - 1) / 2
    p = (points + half).clamp(0, size - 1 - 1e-4)
    p0 = p.floor()
    frac = p - p0
    p0 = p0.long()
    kernel = torch.zeros(b, size * size, dtype=points.dtype, device=points.device)
    for dx in (0, 1):
        for dy in (0, 1):
            wx = frac[..., 0] if dx else 1 - frac[..., 0]
            wy = frac[..., 1] if dy else 1 - frac[..., 1]
            idx = (p0[..., 1] + dy).clamp(max=size - 1) * size + (p0[..., 0] + dx).clamp(max=size - 1)
            kernel.scatter_add_(1, idx, wx * wy)
    kernel = kernel.view(b, size, size)
    return kernel / kernel.sum(dim=(1, 2), keepdim=True)


def motion_kernels(
    n: int,
    *,
    size: int,
    length: tuple[float, float],
    angle: tuple[float, float],
    curvature: float,
    draw: _Draw,
    points: int = 64,
) -> torch.Tensor:
    """Random motion-blur kernels ``(n, size, size)``, each summing to 1.

    A trajectory of total length ``length`` starts in direction ``angle``
    (degrees) and turns by a smooth random angular velocity (``curvature``
    radians of total turn at most), then is centred on its centre of mass and
    splatted onto the grid.
    """
    t = torch.linspace(0, 1, points, device=draw.device)
    ell = draw.uniform(n, length).view(n, 1)
    theta0 = torch.deg2rad(draw.uniform(n, angle)).view(n, 1)
    # A smooth random heading: two random-phase sine components plus a constant turn rate.
    k1, k2, k3 = (draw.rand(n, 1) * 2 - 1 for _ in range(3))
    phase = draw.rand(n, 1) * 2 * math.pi
    heading = theta0 + curvature * (
        0.5 * k1 * t + 0.3 * k2 * torch.sin(2 * math.pi * t + phase) + 0.2 * k3 * t**2
    )
    step = ell / (points - 1)
    dx = torch.cos(heading) * step
    dy = torch.sin(heading) * step
    xy = torch.stack([dx.cumsum(1) - dx, dy.cumsum(1) - dy], dim=-1)  # (n, points, 2)
    xy = xy - xy.mean(dim=1, keepdim=True)
    return _splat(xy, size)


class MotionBlur(Degradation):
    """Camera-shake motion blur: a random (optionally curved) trajectory kernel per sample.

    The kernel sums to 1; borders are reflected. Kernels are applied with
    kornia's ``filter2d`` (one kernel per sample).

    Args:
        length: Trajectory length in pixels, a number or ``(min, max)``.
        angle: Initial direction in degrees, a number or ``(min, max)``.
        curvature: Largest total turn of the trajectory in radians; 0 gives
            straight-line kernels (GoPro-like blur is mostly near-linear).
        kernel_size: Side of the (odd) kernel; defaults to the largest length
            rounded up to odd plus 2.
        noise: Optional Gaussian noise sigma (0–255) added after blurring.
    """

    def __init__(
        self,
        length: float | tuple[float, float] = (5.0, 15.0),
        *,
        angle: float | tuple[float, float] = (0.0, 180.0),
        curvature: float = 1.0,
        kernel_size: int | None = None,
        noise: float = 0.0,
    ) -> None:
        self.length = _range("MotionBlur", "length", length, 1.0, 255.0)
        self.angle = _range("MotionBlur", "angle", angle, -360.0, 360.0)
        self.curvature = check_positive_float("MotionBlur", "curvature", curvature, allow_zero=True)
        if kernel_size is None:
            kernel_size = math.ceil(self.length[1]) // 2 * 2 + 3
        self.kernel_size = check_int("MotionBlur", "kernel_size", kernel_size, minimum=3, odd=True)
        self.noise = _range("MotionBlur", "noise", noise, 0.0, 255.0)

    def kernels(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """Draw ``n`` kernels, ``(n, kernel_size, kernel_size)``, each summing to 1."""
        draw = _Draw(generator, seed, torch.device(device))
        return self._kernels(n, draw)

    def _kernels(self, n: int, draw: _Draw) -> torch.Tensor:
        return motion_kernels(
            n,
            size=self.kernel_size,
            length=self.length,
            angle=self.angle,
            curvature=self.curvature,
            draw=draw,
        )

    def apply(self, x: torch.Tensor, draw: _Draw) -> torch.Tensor:
        from kornia.filters import filter2d

        b, _, h, w = x.shape
        pad = self.kernel_size // 2
        if min(h, w) <= pad:
            raise ValueError(
                f"MotionBlur: images must be larger than {pad} pixels for a {self.kernel_size}-pixel "
                f"kernel with reflected borders, got {h}×{w}"
            )
        kernel = self._kernels(b, draw).to(x.dtype)
        y = filter2d(x, kernel, border_type="reflect")
        if self.noise[1] > 0:
            sigma = draw.uniform(b, self.noise).view(b, 1, 1, 1) / 255.0
            y = y + (sigma * draw.randn(*x.shape)).to(x.dtype)
        return y

    def __repr__(self) -> str:
        return (
            f"MotionBlur(length={self.length}, angle={self.angle}, curvature={self.curvature}, "
            f"kernel_size={self.kernel_size})"
        )


class RainStreaks(Degradation):
    """Synthetic rain: sparse seeds smeared into oriented streaks and screen-blended onto the image.

    Per sample: a density of streak seeds, one fall angle, a streak length
    and a brightness. Seeds are smeared along the angle by a straight motion
    kernel (kornia's ``filter2d``), softened by a 3×3 blur, normalised so the
    brightest streak reaches the drawn brightness, and blended with the
    screen formula ``1 - (1 - x)(1 - rain)`` (rain only brightens, as in the
    Rain100L/H synthesis). Light rain: ``density=(0.002, 0.006)``; heavy:
    ``density=(0.01, 0.03)``.

    Args:
        density: Fraction of pixels that seed a streak, ``(min, max)``.
        angle: Fall direction in degrees from vertical, ``(min, max)``.
        length: Streak length in pixels, ``(min, max)``.
        brightness: Peak streak intensity in ``[0, 1]``, ``(min, max)``.
    """

    def __init__(
        self,
        *,
        density: float | tuple[float, float] = (0.002, 0.02),
        angle: float | tuple[float, float] = (-30.0, 30.0),
        length: float | tuple[float, float] = (8.0, 24.0),
        brightness: float | tuple[float, float] = (0.5, 0.95),
    ) -> None:
        self.density = _range("RainStreaks", "density", density, 0.0, 1.0)
        self.angle = _range("RainStreaks", "angle", angle, -90.0, 90.0)
        self.length = _range("RainStreaks", "length", length, 1.0, 255.0)
        self.brightness = _range("RainStreaks", "brightness", brightness, 0.0, 1.0)
        self.kernel_size = math.ceil(self.length[1]) // 2 * 2 + 3

    def rain_layer(self, b: int, h: int, w: int, draw: _Draw) -> torch.Tensor:
        """The rain alone, ``(b, 1, h, w)`` in ``[0, 1]``."""
        from kornia.filters import filter2d

        pad = self.kernel_size // 2
        if min(h, w) <= pad:
            raise ValueError(
                f"RainStreaks: images must be larger than {pad} pixels for {self.length[1]:g}-pixel "
                f"streaks, got {h}×{w}"
            )
        density = draw.uniform(b, self.density).view(b, 1, 1, 1)
        seeds = (draw.rand(b, 1, h, w) < density).float() * (0.5 + 0.5 * draw.rand(b, 1, h, w))
        # Angle from vertical -> direction of the trajectory in image coordinates (y down).
        angle = draw.uniform(b, self.angle) + 90.0
        # One straight streak kernel per sample, along its fall direction.
        ell = draw.uniform(b, self.length).view(b, 1)
        t = torch.linspace(-0.5, 0.5, 64, device=draw.device).view(1, -1)
        rad = torch.deg2rad(angle).view(b, 1)
        pts = torch.stack([torch.cos(rad) * ell * t, torch.sin(rad) * ell * t], dim=-1)
        kernel = _splat(pts, self.kernel_size)
        streaks = filter2d(seeds, kernel, border_type="reflect")
        soft = (
            torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], device=draw.device)[None] / 16
        )
        streaks = filter2d(streaks, soft, border_type="reflect")
        peak = streaks.amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-8)
        bright = draw.uniform(b, self.brightness).view(b, 1, 1, 1)
        return (streaks / peak * bright).clamp(0, 1)

    def apply(self, x: torch.Tensor, draw: _Draw) -> torch.Tensor:
        b, _, h, w = x.shape
        rain = self.rain_layer(b, h, w, draw).to(x.dtype)
        return 1 - (1 - x) * (1 - rain)

    def __repr__(self) -> str:
        return (
            f"RainStreaks(density={self.density}, angle={self.angle}, length={self.length}, "
            f"brightness={self.brightness})"
        )


class Compose(Degradation):
    """Apply degradations in order, sharing one random stream.

    Args:
        degradations: Callables taking ``(x, *, generator=...)``, e.g. ``MotionBlur`` then ``GaussianNoise``.
    """

    def __init__(self, degradations: Sequence[Callable[..., torch.Tensor]]) -> None:
        items = list(degradations)
        if not items:
            raise ValueError("Compose: needs at least one degradation")
        for d in items:
            if not callable(d):
                raise TypeError(f"Compose: every item must be callable, got {type(d).__name__}")
        self.degradations = items

    def apply(self, x: torch.Tensor, draw: _Draw) -> torch.Tensor:
        for d in self.degradations:
            if isinstance(d, Degradation):
                x = d.apply(x, draw)
            else:
                x = d(x, generator=draw.generator)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.degradations!r})"
