"""CLG-INet as a `deepinv <https://deepinv.github.io>`_ denoiser: plug-and-play priors, RED, unrolling.

deepinv calls denoisers as ``denoiser(x, sigma)``; :class:`CLGINetDenoiser`
gives any :class:`~clg_layers.CLGINet` that signature and *is* a
``deepinv.models.Denoiser``, so it goes wherever deepinv takes one
(``deepinv.optim.PnP``, ``RED``, ``DPIR``, ``deepinv.models.ArtifactRemoval``, ...)::

    import deepinv as dinv
    import clg_layers
    from clg_layers.integrations.deepinv import CLGINetDenoiser

    model = clg_layers.build("clginet-tiny", noise_level_map=True, checkpoint="tiny-sigma.safetensors")
    denoiser = CLGINetDenoiser(model.eval())
    restored = dinv.optim.DPIR(sigma=0.01, denoiser=denoiser)(y, physics)

σ is the standard deviation of the noise in the ``[0, 1]`` image range,
deepinv's convention (``25 / 255`` for σ = 25 on the 0–255 scale).

Importing this module imports deepinv (``pip install 'clg-layers[deepinv]'``);
``import clg_layers`` does not.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch

try:
    from deepinv.models import Denoiser
except ImportError as err:  # pragma: no cover - exercised only without deepinv
    raise ImportError(
        "clg_layers.integrations.deepinv needs the `deepinv` package, which is not installed "
        f"({err}); install it with: pip install 'clg-layers[deepinv]'"
    ) from err

from ..models.clginet import CLGINet
from ..models.noise_level import sigma_map

__all__ = ["CLGINetDenoiser"]

_NAME = "CLGINetDenoiser"


class CLGINetDenoiser(Denoiser):
    """A :class:`~clg_layers.CLGINet` as a ``deepinv.models.Denoiser``: ``denoiser(x, sigma)``.

    Two kinds of network fit:

    * a **blind** one (``noise_level_map=False``, every zoo model as built):
      ``sigma`` is accepted and **ignored**: the network estimates the noise
      itself, and restores the same way whatever σ a deepinv algorithm asks
      for (so a schedule of decreasing σ, as in DPIR, does not change its
      output; it suits algorithms with a fixed σ);
    * a **noise-level-conditioned** one (``noise_level_map=True``): ``sigma``
      becomes the network's σ map (:func:`~clg_layers.sigma_map`), so
      deepinv's σ schedules steer it, DRUNet's way.

    The wrapped network is the submodule ``model``: ``.eval()``, ``.to()``
    and ``state_dict()`` reach it (its keys gain the prefix ``model.``).
    Outputs are not clamped.

    Args:
        model: The network; its output must have as many channels as its image input.

    Raises:
        TypeError: If ``model`` is not a :class:`~clg_layers.CLGINet`.
        ValueError: If its output channels differ from its image channels
            (a denoiser returns an image like its input).
    """

    def __init__(self, model: CLGINet) -> None:
        super().__init__()
        if not isinstance(model, CLGINet):
            raise TypeError(f"{_NAME}: `model` must be a clg_layers.CLGINet, got {type(model).__name__}")
        cfg = model.config
        if cfg.out_chans != cfg.in_chans:
            raise ValueError(
                f"{_NAME}: a denoiser returns an image like its input, but this CLGINet maps "
                f"{cfg.in_chans} image channels to {cfg.out_chans}"
            )
        self.model = model

    @property
    def conditioned(self) -> bool:
        """Whether the network takes a σ map (``noise_level_map=True``), so ``sigma`` is used."""
        return self.model.config.noise_level_map

    @property
    def channels(self) -> int:
        """Channels of the images ``x`` (the network's ``config.in_chans``)."""
        return self.model.config.in_chans

    def forward(
        self, x: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """Denoise ``x`` at noise level ``sigma``.

        Args:
            x: Noisy images ``(B, C, H, W)`` (``C`` the network's image channels),
                floating point, values about in ``[0, 1]``, any ``H, W >= 1``.
            sigma: The noise's standard deviation in the ``[0, 1]`` image range:
                a real number (every sample), a 0-d or ``(1,)`` tensor, a
                per-sample ``(B,)`` tensor, or a map broadcastable to
                ``(B, 1, H, W)``. Required by a conditioned network; ignored
                (any of these, or ``None``) by a blind one.
            **kwargs: Further keywords deepinv passes to denoisers; ignored.

        Returns:
            Denoised images ``(B, C, H, W)``, in ``x``'s dtype and on its device.

        Raises:
            TypeError: If ``x`` is not a floating-point tensor, or ``sigma`` is of
                an unsupported type.
            ValueError: If ``x`` is not ``(B, C, H, W)`` with the network's ``C``,
                a conditioned network gets ``sigma=None``, or ``sigma`` has a
                shape that fits no form above, or a negative or non-finite value.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{_NAME}: `x` must be a (B, C, H, W) tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{_NAME}: `x` must be floating point, got dtype {x.dtype}")
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"{_NAME}: `x` must have shape (B, {self.channels}, H, W), got {tuple(x.shape)}")
        if not self.conditioned:
            if isinstance(sigma, bool) or (
                sigma is not None and not isinstance(sigma, (numbers.Real, torch.Tensor))
            ):
                raise TypeError(
                    f"{_NAME}: `sigma` must be a number, a tensor or None, got {type(sigma).__name__}"
                )
            return self.model(x)
        if sigma is None:
            raise ValueError(
                f"{_NAME}: this network is noise-level conditioned (noise_level_map=True) and needs "
                "`sigma`, the noise's standard deviation in the [0, 1] image range; got None"
            )
        return self.model(torch.cat([x, sigma_map(sigma, x, owner=_NAME)], dim=1))

    def extra_repr(self) -> str:
        return f"conditioned={self.conditioned}"
