"""The inter-block hybrid gated unit (HGU): multi-scale feature fusion."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ._checks import check_input, check_int
from ._inference import transformed, use_inference_path
from ._init import factory_kwargs, reset_children

__all__ = ["HybridGatedUnit", "pool_to", "upsample_to"]


def pool_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Area-pool ``x`` down to at most ``ref``'s height and width (unchanged where it is not larger)."""
    h, w = x.shape[-2:]
    mid = (min(h, ref.shape[-2]), min(w, ref.shape[-1]))
    return x if mid == (h, w) else F.adaptive_avg_pool2d(x, mid)


def upsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinearly resize ``x`` to ``ref``'s height and width (unchanged if they match)."""
    size = (ref.shape[-2], ref.shape[-1])
    return (
        x
        if tuple(x.shape[-2:]) == size
        else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    )


# Size-dependent Python: torch.fx records each as one call.
torch.fx.wrap("pool_to")
torch.fx.wrap("upsample_to")


class HybridGatedUnit(nn.Module):
    """Inter-block hybrid gated unit: fuses feature maps of several widths and resolutions.

    In order, as :meth:`forward` computes them:

    1. ``p_i = Up(Conv1×1_i(Pool(f_i)))``: each input is projected to
       ``out_dim`` channels at the coarser of its own resolution and that of
       ``features[0]``, area-pooled down before the projection, bilinearly
       upsampled after it (:func:`pool_to`, :func:`upsample_to`). Both
       resamplers are linear with weights summing to one, so for a 1×1
       projection this equals resampling first, for far fewer
       multiply-accumulates;
    2. ``s = Σ p_i``;
    3. channel selection (selective-kernel style):
       ``a = softmax_i(MLP(GAP(s)))``, a per-channel weight for every input,
       summing to one over the inputs;
    4. spatial gate: ``m = sigmoid(DWConv7×7(s))``;
    5. ``out = m ⊙ Σ a_i ⊙ p_i + (1 − m) ⊙ p_0``: where the spatial gate
       closes, the first input (in CLG-INet, the decoder's own feature) passes
       through.

    In eager inference a separate path (:meth:`_forward_inference`) computes
    the same function in place on its fresh buffers and, on large maps
    (:attr:`lean_bytes`), accumulates ``s`` while computing each ``p_i``,
    then computes the ``p_i`` again for the blend, so it holds about four
    output-size maps instead of ``n + 2``.

    Args:
        in_dims: Channel count of each input, at least two.
        out_dim: Channels of the output.
        reduction: Reduction ratio of the channel-selection MLP; its hidden
            width is ``max(out_dim // reduction, 4)``.
        device: Device of the parameters (``"meta"`` builds them without memory).
        dtype: Floating-point dtype of the parameters.

    Shape:
        - Input: a sequence of ``len(in_dims)`` tensors, ``(B, in_dims[i], H_i, W_i)``
        - Output: ``(B, out_dim, H_0, W_0)``
    """

    #: Whether eager inference may take :meth:`_forward_inference`
    #: (see :func:`clg_layers.layers.set_fast_inference`).
    fast_inference: bool = True
    #: Size in bytes of one output map from which inference takes the
    #: memory-lean path (see the class docstring). The recomputation costs
    #: about 5 % of the unit's time at 512² (48 MiB maps in ``clginet-base``),
    #: so by default it is kept for maps of 128 MiB and more (about 1024² and up).
    lean_bytes: int = 128 * 2**20

    def __init__(
        self,
        in_dims: Sequence[int],
        out_dim: int,
        *,
        reduction: int = 4,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = factory_kwargs("HybridGatedUnit", device, dtype)
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
        self.proj = nn.ModuleList(nn.Conv2d(c, out_dim, 1, **dd) for c in self.in_dims)
        hidden = max(out_dim // reduction, 4)
        self.select = nn.Sequential(
            nn.Conv2d(out_dim, hidden, 1, **dd), nn.ReLU(), nn.Conv2d(hidden, n * out_dim, 1, **dd)
        )
        self.spatial_gate = nn.Conv2d(out_dim, out_dim, 7, padding=3, groups=out_dim, **dd)
        # What the inference path assumes: 1×1 projections (it may compute each twice)
        # and a convolution gate whose fresh output it overwrites.
        self._inference_children = {
            **{f"proj.{i}": (nn.Conv2d, 1) for i in range(n)},
            "spatial_gate": (nn.Conv2d, 7),
        }

    def reset_parameters(self) -> None:
        """Re-initialise as the constructor does (PyTorch's defaults of every convolution)."""
        reset_children(self)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fuse ``features`` at the resolution of ``features[0]``.

        Args:
            features: ``len(in_dims)`` tensors of shape ``(B, in_dims[i], H_i, W_i)``.

        Returns:
            Tensor of shape ``(B, out_dim, H_0, W_0)``.
        """
        self._check(features)
        plain_tensors = not any(transformed(f) for f in features[1:])
        if plain_tensors and use_inference_path(self, features[0], self._inference_children):
            return self._forward_inference(features)
        f0, n = features[0], len(features)
        p = [upsample_to(proj(pool_to(f, f0)), f0) for f, proj in zip(features, self.proj)]  # p_i
        # Both sums accumulate in place into a fresh tensor that nothing else holds and
        # autograd saves for no backward: n − 2 fewer full-size temporaries each (the
        # out-of-place sums made a clginet-base training step 1.1× slower, from page faults).
        s = p[0] + p[1]
        for i in range(2, n):
            s = s.add_(p[i])
        logits = self.select(s.mean((2, 3), keepdim=True)).unflatten(1, (n, self.out_dim))
        a = torch.softmax(logits, dim=1).to(s.dtype)  # CUDA autocast runs softmax in float32
        m = torch.sigmoid(self.spatial_gate(s))
        fused = p[0] * a[:, 0]
        for i in range(1, n):
            fused = fused.addcmul_(p[i], a[:, i])
        return torch.lerp(p[0], fused, m)  # m ⊙ fused + (1 − m) ⊙ p_0

    def _check(self, features: object) -> None:
        """Raise a ``TypeError``/``ValueError`` naming the unit unless ``features`` fit ``in_dims``."""
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
        if any(isinstance(f, torch.fx.Proxy) for f in features):
            return  # symbolic tracing: no values to check
        batch = features[0].shape[0]
        for i, f in enumerate(features):
            if f.shape[0] != batch:
                raise ValueError(
                    f"HybridGatedUnit: all features must share the batch size; features[0] has {batch}, "
                    f"features[{i}] has {f.shape[0]}"
                )

    def _forward_inference(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """:meth:`forward` in eager inference, in place on fresh buffers; memory-lean on large maps."""
        f0, n = features[0], len(features)
        if f0.shape[0] * self.out_dim * f0.shape[-2] * f0.shape[-1] * f0.element_size() >= self.lean_bytes:
            # Memory-lean: compute each projection when it is needed (twice in all).
            def p(i: int) -> torch.Tensor:
                return upsample_to(self.proj[i](pool_to(features[i], f0)), f0)
        else:
            p = [upsample_to(proj(pool_to(f, f0)), f0) for f, proj in zip(features, self.proj)].__getitem__
        # Sums over the list rather than over a stacked (B, n, out, H, W) tensor: no
        # n-times-larger temporaries, and in place on fresh buffers nothing else holds.
        s = p(0) + p(1)
        for i in range(2, n):
            s.add_(p(i))
        logits = self.select(s.mean((2, 3), keepdim=True)).unflatten(1, (n, self.out_dim))
        a = torch.softmax(logits, dim=1).to(s.dtype)  # CUDA autocast runs softmax in float32
        m = self.spatial_gate(s).sigmoid_()
        del s
        # Σ a_i ⊙ p_i accumulates into p_1's buffer, and the blend writes into it too.
        fused = p(1).mul_(a[:, 1])
        for i in range(2, n):
            fused.addcmul_(p(i), a[:, i])
        p0 = p(0)
        fused.addcmul_(p0, a[:, 0])
        return torch.lerp(p0, fused, m, out=fused)

    def extra_repr(self) -> str:
        return f"in_dims={list(self.in_dims)}, out_dim={self.out_dim}"
