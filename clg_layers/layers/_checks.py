"""Argument and input validation shared by every clg-layers module.

Every check raises ``ValueError`` or ``TypeError`` with a message that names the
module, what it expected and what it got. ``assert`` is never used because
``python -O`` strips it.
"""

from __future__ import annotations

import numbers

import torch

__all__ = [
    "check_bool",
    "check_choice",
    "check_divisible",
    "check_images",
    "check_input",
    "check_int",
    "check_positive_float",
]


def check_int(owner: str, name: str, value: object, *, minimum: int = 1, odd: bool = False) -> int:
    """Return ``value`` if it is an ``int`` ``>= minimum`` (and odd if asked), else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: `{name}` must be an int, got {type(value).__name__} ({value!r})")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{owner}: `{name}` must be >= {minimum}, got {value}")
    if odd and value % 2 == 0:
        raise ValueError(f"{owner}: `{name}` must be odd (so the output keeps the input size), got {value}")
    return value


def check_positive_float(owner: str, name: str, value: object, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float if it is a finite real number ``> 0`` (``>= 0`` with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: `{name}` must be a real number, got {type(value).__name__} ({value!r})")
    try:
        value = float(value)
    except OverflowError:  # an int or Fraction beyond float range: as good as infinite
        value = float("inf") if value > 0 else float("-inf")
    ok = value >= 0.0 if allow_zero else value > 0.0
    if not ok or value != value or value == float("inf"):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{owner}: `{name}` must be a finite number {bound}, got {value}")
    return value


def check_bool(owner: str, name: str, value: object) -> bool:
    """Return ``value`` if it is a ``bool``, else raise ``TypeError``."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: `{name}` must be a bool, got {type(value).__name__} ({value!r})")
    return value


def check_choice(owner: str, name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{owner}: `{name}` must be one of {list(choices)}, got {value!r}")
    return value


def check_divisible(owner: str, name: str, value: int, divisor_name: str, divisor: int) -> None:
    """Raise ``ValueError`` unless ``divisor`` divides ``value``."""
    if value % divisor != 0:
        raise ValueError(f"{owner}: `{name}` ({value}) must be divisible by `{divisor_name}` ({divisor})")


def check_input(owner: str, x: object, channels: int | None, *, name: str = "input") -> None:
    """Check that ``x`` is a floating ``(B, C, H, W)`` tensor with ``channels`` channels and no empty dim.

    Shape checks read only static metadata, so they cost nothing at run time and
    ``torch.compile`` turns them into guards rather than graph breaks. Under
    ``torch.fx`` symbolic tracing ``x`` is a proxy without values: nothing is
    checked (the traced graph holds no checks).
    """
    if isinstance(x, torch.fx.Proxy):
        return
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"{owner}: {name} must be 4-D (B, C, H, W), got {x.ndim}-D with shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{owner}: {name} must have a floating dtype, got {x.dtype}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{owner}: {name} must have {channels} channels (dim 1 of (B, C, H, W)), "
            f"got {x.shape[1]} (shape {tuple(x.shape)})"
        )
    if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{owner}: {name} must have B, H, W >= 1, got shape {tuple(x.shape)}")


def check_images(owner: str, x: object) -> torch.Tensor:
    """``x`` if it is a floating-point ``(B, C, H, W)`` image batch; else an error naming ``owner``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner}: expected images as a (B, C, H, W) tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{owner}: expected images of shape (B, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{owner}: expected floating-point images (values in [0, 1]), got dtype {x.dtype}")
    return x
