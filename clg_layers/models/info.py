"""Parameter and multiply-accumulate (MAC) counts that include attention."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["ModelInfo", "count_macs", "model_info"]


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a model that a loader or GUI needs, read without training it."""

    name: str | None
    params: int
    macs: int
    input_size: tuple[int, int, int]
    in_chans: int | None
    out_chans: int | None
    size_multiple: int
    supports_half: bool
    supports_bf16: bool

    @property
    def gmacs(self) -> float:
        """MACs in units of 10⁹."""
        return self.macs / 1e9


def count_macs(model: nn.Module, input_size: Sequence[int], *, batch: int = 1) -> int:
    """Count the multiply-accumulates of one forward pass of ``model``.

    Every convolution, matmul and attention product is counted (FLOPs / 2 from
    :class:`torch.utils.flop_counter.FlopCounterMode`). Attention runs under
    the math backend of ``scaled_dot_product_attention`` while counting: the
    fused CPU kernel is otherwise counted as zero. The pass runs on the
    ``meta`` device (no memory, no compute) when the model allows it.

    Args:
        model: Any module taking one ``(B, C, H, W)`` tensor.
        input_size: ``(C, H, W)``.
        batch: Batch size ``B``.

    Returns:
        The number of MACs.
    """
    if len(input_size) != 3 or not all(isinstance(s, int) and s >= 1 for s in input_size):
        raise ValueError(f"count_macs: `input_size` must be (C, H, W) with positive ints, got {input_size!r}")
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        meta = {
            k: torch.empty_like(v, device="meta")
            for k, v in (*model.named_parameters(), *model.named_buffers())
        }
        x = torch.empty(batch, *input_size, device="meta")
        with counter, sdpa_kernel(SDPBackend.MATH), torch.no_grad():
            functional_call(model, meta, (x,))
    except (NotImplementedError, RuntimeError):  # a model that cannot run on meta: count for real
        device = next(model.parameters()).device
        counter = FlopCounterMode(display=False)
        with counter, sdpa_kernel(SDPBackend.MATH), torch.no_grad():
            model(torch.zeros(batch, *input_size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def model_info(name_or_model: str | nn.Module, *, input_size: Sequence[int] = (3, 256, 256)) -> ModelInfo:
    """Parameters, MACs and metadata of a zoo model or a model instance.

    Args:
        name_or_model: A name from :func:`~clg_layers.list_models` or a module.
        input_size: ``(C, H, W)`` of the input the MACs are counted for.

    Returns:
        A :class:`ModelInfo`.
    """
    from .registry import build

    if isinstance(name_or_model, str):
        with torch.device("meta"):  # no memory for the weights: only shapes are needed
            model = build(name_or_model)
        name: str | None = name_or_model
    elif isinstance(name_or_model, nn.Module):
        model, name = name_or_model, getattr(name_or_model, "model_name", None)
    else:
        raise TypeError(
            f"model_info: expected a model name or an nn.Module, got {type(name_or_model).__name__}"
        )
    return ModelInfo(
        name=name,
        params=sum(p.numel() for p in model.parameters()),
        macs=count_macs(model, tuple(input_size)),
        input_size=tuple(input_size),
        in_chans=getattr(model, "in_chans", None),
        out_chans=getattr(model, "out_chans", None),
        size_multiple=getattr(model, "size_multiple", 1),
        supports_half=getattr(model, "supports_half", False),
        supports_bf16=getattr(model, "supports_bf16", False),
    )
