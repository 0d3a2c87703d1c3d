"""The inter-block hybrid gated unit (HGU): multi-scale feature fusion."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_input, check_int
from ._shapes import eager_inference, hooked, reusable_output

__all__ = ["HybridGatedUnit"]


def _resize(x: torch.Tensor, size: tuple[int, int], proj: nn.Module) -> torch.Tensor:
    """Project ``x`` with the 1×1 ``proj`` and bring it to ``size``.

    Shrinking uses area (average) pooling, growing bilinear interpolation; a
    map larger in one direction and smaller in the other is pooled, then
    interpolated. Both resamplers are linear with weights summing to one, so
    they commute with a 1×1 convolution: we project at whichever resolution is
    smaller, which gives the same result for far fewer multiply-accumulates.
    """
    h, w = x.shape[-2:]
    mid = (min(h, size[0]), min(w, size[1]))
    if mid != (h, w):
        x = F.adaptive_avg_pool2d(x, mid)
    x = proj(x)
    if mid != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x


class HybridGatedUnit(nn.Module):
    """Inter-block hybrid gated unit: fuses feature maps of several widths and resolutions.

    Every input ``f_i`` is brought to the resolution of ``features[0]`` (area
    pooling down, bilinear up) and projected by a 1×1 convolution to
    ``out_dim`` channels: ``p_i``. With ``s = Σ p_i``, two gates act:

    * channel selection (selective-kernel style): ``a = softmax_i(MLP(GAP(s)))``
      gives every input a per-channel weight, summing to one over the inputs;
    * spatial gate: ``m = sigmoid(DWConv7×7(s))``.

    ``out = m ⊙ Σ a_i ⊙ p_i + (1 − m) ⊙ p_0``: where the spatial gate closes,
    the first input (in CLG-INet, the decoder's own feature) passes through.

    In inference (autograd off) on large maps, the unit trades a little compute
    for memory: it accumulates ``s`` while computing each ``p_i``, then
    computes the ``p_i`` again for the blend, so it holds about four output-size
    maps instead of ``n + 2`` (bit-identical results). :attr:`lean_bytes` is
    the size of one output map from which this applies (``0``: always).

    Args:
        in_dims: Channel count of each input, at least two.
        out_dim: Channels of the output.
        reduction: Reduction ratio of the channel-selection MLP; its hidden
            width is ``max(out_dim // reduction, 4)``.

    Shape:
        - Input: a sequence of ``len(in_dims)`` tensors, ``(B, in_dims[i], H_i, W_i)``
        - Output: ``(B, out_dim, H_0, W_0)``
    """

    #: Size in bytes of one output map from which inference takes the
    #: memory-lean path (see the class docstring). The recomputation costs
    #: about 5 % of the unit's time at 512² (48 MiB maps in ``clginet-base``),
    #: so by default it is kept for maps of 128 MiB and more (about 1024² and up).
    lean_bytes: int = 128 * 2**20

    def __init__(self, in_dims: Sequence[int], out_dim: int, *, reduction: int = 4) -> None:
        super().__init__()
        if isinstance(in_dims, (str, bytes)) or not isinstance(in_dims, Sequence):
            raise TypeError(
                f"HybridGatedUnit: `in_dims` must be a sequence of ints, got {type(in_dims).__name__}"
            )
        if len(in_dims) < 2:
            raise ValueError(
                f"HybridGatedUnit: `in_dims` must list at least two inputs to fuse, got {list(in_dims)}"
            )
        self.in_dims = tuple(check_int("HybridGatedUnit", f"in_dims[{i}]", c) for i, c in enumerate(in_dims))
        self.out_dim = check_int("HybridGatedUnit", "out_dim", out_dim)
        reduction = check_int("HybridGatedUnit", "reduction", reduction)
        n = len(self.in_dims)
        self.proj = nn.ModuleList(nn.Conv2d(c, out_dim, 1) for c in self.in_dims)
        hidden = max(out_dim // reduction, 4)
        self.select = nn.Sequential(
            nn.Conv2d(out_dim, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, n * out_dim, 1)
        )
        self.spatial_gate = nn.Conv2d(out_dim, out_dim, 7, padding=3, groups=out_dim)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fuse ``features`` at the resolution of ``features[0]``.

        Args:
            features: ``len(in_dims)`` tensors of shape ``(B, in_dims[i], H_i, W_i)``.

        Returns:
            Tensor of shape ``(B, out_dim, H_0, W_0)``.
        """
        if isinstance(features, torch.Tensor) or not isinstance(features, Sequence):
            raise TypeError(
                "HybridGatedUnit: `features` must be a list or tuple of tensors, "
                f"got {type(features).__name__}"
            )
        if len(features) != len(self.in_dims):
            raise ValueError(
                f"HybridGatedUnit: expected {len(self.in_dims)} feature maps (in_dims={list(self.in_dims)}), "
                f"got {len(features)}"
            )
        for i, (f, c) in enumerate(zip(features, self.in_dims)):
            check_input("HybridGatedUnit", f, c, name=f"features[{i}]")
        batch = features[0].shape[0]
        for i, f in enumerate(features):
            if f.shape[0] != batch:
                raise ValueError(
                    f"HybridGatedUnit: all features must share the batch size; features[0] has {batch}, "
                    f"features[{i}] has {f.shape[0]}"
                )
        size = (features[0].shape[-2], features[0].shape[-1])
        if self._lean(features[0], batch, size):
            # Memory-lean: compute each projection when it is needed (twice in all).
            def p(i: int) -> torch.Tensor:
                return _resize(features[i], size, self.proj[i])
        else:
            p = [_resize(f, size, proj) for f, proj in zip(features, self.proj)].__getitem__
        n = len(features)
        # Sums over the list rather than over a stacked (B, n, out, H, W) tensor:
        # no n-times-larger temporaries (at full resolution those are the
        # largest tensors of the network, and a strided reduction over them is
        # slow for channels_last maps). The in-place updates act on fresh
        # tensors that autograd has not saved, so they are safe in training.
        s = p(0) + p(1)
        for i in range(2, n):
            s.add_(p(i))  # (B, out, H, W)
        logits = self.select(s.mean((2, 3), keepdim=True))  # (B, n·out, 1, 1)
        a = torch.softmax(logits.reshape(batch, n, self.out_dim, 1, 1), dim=1).unbind(1)
        # sigmoid_ in place on the convolution's output (unless a hook holds it): the
        # convolution's backward needs its input and weight, not its output.
        m = self.spatial_gate(s)
        m = m.sigmoid() if hooked(self.spatial_gate) else m.sigmoid_()
        del s
        # Σ a_i ⊙ p_i, always in this order (the lean path is bit-identical).
        # Without autograd the sum accumulates into p_1's buffer and the blend
        # writes into it too, so the unit never holds more than n + 2 maps.
        inference = reusable_output(self.proj)
        fused = p(1).mul_(a[1]) if inference else p(1) * a[1]
        for i in range(2, n):
            fused.addcmul_(p(i), a[i])
        p0 = p(0)
        fused.addcmul_(p0, a[0])
        if inference:
            return torch.lerp(p0, fused, m, out=fused)
        return torch.lerp(p0, fused, m)

    def _lean(self, f0: torch.Tensor, batch: int, size: tuple[int, int]) -> bool:
        """Whether to take the memory-lean inference path (eager, autograd off, large maps)."""
        if (
            not eager_inference()
            or f0.device.type == "meta"
            or not all(isinstance(n, int) for n in (batch, *size))
        ):
            return False
        return batch * self.out_dim * size[0] * size[1] * f0.element_size() >= self.lean_bytes

    def extra_repr(self) -> str:
        return f"in_dims={list(self.in_dims)}, out_dim={self.out_dim}"
