"""The σ map of a noise-level-conditioned :class:`~clg_layers.CLGINet` (``noise_level_map=True``).

Such a network takes the image followed by one constant channel holding the
noise level, DRUNet's recipe. σ is the standard deviation of the noise in
the ``[0, 1]`` image range (deepinv's convention: ``25 / 255`` for σ = 25 on
the 0–255 scale).
"""

from __future__ import annotations

import numbers

import torch

from ..layers._checks import check_images

__all__ = ["sigma_map", "with_sigma_map"]

#: What a noise level may be, for the error messages.
_FORMS = (
    "a real number, a 0-d or (1,) tensor, a per-sample (B,) tensor, or a map broadcastable to (B, 1, H, W)"
)


def sigma_map(sigma: float | torch.Tensor, like: torch.Tensor, *, owner: str = "sigma_map") -> torch.Tensor:
    """The σ map ``(B, 1, H, W)`` for images ``like``, in their dtype and on their device.

    Args:
        sigma: The noise level in the ``[0, 1]`` image range: a real number
            (every sample), a 0-d or ``(1,)`` tensor (every sample), a ``(B,)``
            tensor (one per sample), or a tensor broadcastable to
            ``(B, 1, H, W)`` (e.g. ``(B, 1, 1, 1)``, or a spatially varying map;
            the networks are trained on constant maps).
        like: Images ``(B, C, H, W)`` whose batch, size, dtype and device the map takes.
        owner: The name the error messages start with.

    Returns:
        Tensor of shape ``(B, 1, H, W)``.

    Raises:
        TypeError: If ``sigma`` is not a real number or a real tensor, or ``like``
            is not a floating ``(B, C, H, W)`` tensor.
        ValueError: If ``sigma`` has a shape that fits none of the forms above, or
            a negative or non-finite value.
    """
    x = check_images(owner, like)
    b, _, h, w = x.shape
    if isinstance(sigma, numbers.Real) and not isinstance(sigma, bool):
        value = float(sigma)
        if not (value >= 0.0 and value != float("inf")):
            raise ValueError(f"{owner}: the noise level `sigma` must be finite and >= 0, got {value}")
        return x.new_full((b, 1, h, w), value)
    if not isinstance(sigma, torch.Tensor):
        raise TypeError(f"{owner}: `sigma` must be {_FORMS}; got {type(sigma).__name__}")
    if sigma.is_complex() or sigma.dtype == torch.bool:
        raise TypeError(f"{owner}: `sigma` must be a real tensor, got dtype {sigma.dtype}")
    if sigma.ndim == 0 or (sigma.ndim == 1 and sigma.shape[0] in (1, b)):
        level = sigma.reshape(-1, 1, 1, 1)
    elif sigma.ndim == 4 and all(n in (1, m) for n, m in zip(sigma.shape, (b, 1, h, w))):
        level = sigma
    else:
        raise ValueError(
            f"{owner}: `sigma` must be {_FORMS} for images of shape {tuple(x.shape)}; "
            f"got a tensor of shape {tuple(sigma.shape)}"
        )
    level = level.to(device=x.device, dtype=x.dtype)
    if not bool(((level >= 0) & torch.isfinite(level)).all()):
        raise ValueError(f"{owner}: the noise level `sigma` must be finite and >= 0 everywhere")
    return level.expand(b, 1, h, w)


def with_sigma_map(x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Append the σ map to images: the input of a ``noise_level_map=True`` :class:`~clg_layers.CLGINet`.

    Example::

        model = clg_layers.build("clginet-tiny", noise_level_map=True)
        restored = model(clg_layers.with_sigma_map(noisy, 25 / 255))

    Args:
        x: Images ``(B, C, H, W)``.
        sigma: The noise level in the ``[0, 1]`` image range, in any form
            :func:`sigma_map` takes (a number, a ``(B,)`` tensor, ...).

    Returns:
        Tensor of shape ``(B, C + 1, H, W)``: ``x`` then the map.

    Raises:
        TypeError, ValueError: As :func:`sigma_map`, naming ``with_sigma_map``.
    """
    return torch.cat([x, sigma_map(sigma, x, owner="with_sigma_map")], dim=1)
