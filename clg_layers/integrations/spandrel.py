"""CLG-INet for `spandrel <https://github.com/chaiNNer-org/spandrel>`_: the loader of chaiNNer and ComfyUI.

After :func:`register`, spandrel's ``ModelLoader`` recognises a CLG-INet state
dict of any configuration (a plain ``torch.save(model.state_dict())``, a
BasicSR ``params``/``params_ema`` wrapper, a clg-layers safetensors
checkpoint, or the Lightning ``.ckpt`` of ``clg-layers train``) from its keys
and shapes alone, and returns an ``ImageModelDescriptor``::

    from clg_layers.integrations.spandrel import register
    from spandrel import ModelLoader

    register()
    descriptor = ModelLoader().load_from_file("clginet.safetensors")
    restored = descriptor(image)  # (B, C, H, W) in [0, 1]

spandrel hands architectures the tensors only, so ``window_size`` and
``global_residual`` (which no parameter depends on) take
:class:`~clg_layers.CLGINet`'s defaults there (``global_residual=False`` when
the channel counts differ). :func:`load_file` reads them from the
``clg_layers.config`` metadata of checkpoints written by
:func:`~clg_layers.save_checkpoint` and from the ``hyper_parameters`` of
``clg-layers train``'s Lightning checkpoints. See :mod:`clg_layers.integrations.detect`
for what is inferred.

The model in the descriptor has spandrel's ``hyperparameters`` (its
constructor options, :attr:`CLGINet.hyperparameters <clg_layers.CLGINet.hyperparameters>`).
For a Lightning ``.ckpt``, spandrel's loader takes the checkpoint's
``state_dict``, which holds the EMA weights when the run had EMA (Lightning's
``WeightAveraging`` keeps the training weights in ``current_model_state``),
and the ``model.`` prefix of the training task is looked through;
:func:`load_file` does the same and also logs which weights it took.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:
    import spandrel
    from spandrel import (
        Architecture,
        ArchRegistry,
        ArchSupport,
        ImageModelDescriptor,
        ModelTiling,
        SizeRequirements,
        StateDict,
    )
except ImportError as err:  # pragma: no cover - exercised in a subprocess without spandrel
    raise ImportError(
        "clg_layers.integrations.spandrel needs the `spandrel` package, which is not installed "
        f"({err}); install it with: pip install 'clg-layers[spandrel]'"
    ) from err

from ..models import checkpoint as _checkpoint
from ..models.clginet import CLGINet
from .detect import is_clginet_state_dict, model_from_state_dict

__all__ = ["ARCH_ID", "CLGINetArch", "load_file", "register"]

#: The id CLG-INet has in spandrel's registry.
ARCH_ID = "CLG-INet"


class CLGINetArch(Architecture[CLGINet]):
    """spandrel ``Architecture`` for :class:`~clg_layers.CLGINet`.

    Detection looks at key names only (every key any CLG-INet has, in either
    DBPA key layout); :meth:`load` then infers the whole configuration from the
    shapes and raises ``ValueError`` for a state dict that fits none.
    """

    def __init__(self) -> None:
        super().__init__(id=ARCH_ID, name="CLG-INet", detect=is_clginet_state_dict)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[CLGINet]:
        """Build the model a state dict belongs to and wrap it in a descriptor.

        Args:
            state_dict: A CLG-INet state dict (either DBPA key layout; a Lightning
                ``state_dict`` with its ``model.`` prefix is fine too).

        Returns:
            A "Restoration" descriptor: scale 1, the model's channel counts,
            half/bfloat16 support from :class:`~clg_layers.CLGINet`, no size
            requirement (the model pads itself), tiling supported.

        Raises:
            ValueError: If no CLG-INet configuration fits the state dict.
        """
        return self.load_with_config(state_dict, config=None)

    def load_with_config(
        self, state_dict: StateDict, *, config: Mapping[str, Any] | None
    ) -> ImageModelDescriptor[CLGINet]:
        """:meth:`load`, with the settings the weights cannot tell taken from ``config``.

        Args:
            state_dict: A CLG-INet state dict.
            config: E.g. the ``clg_layers.config`` metadata of a checkpoint;
                ``None`` for the defaults.

        Returns:
            The descriptor, as :meth:`load`.
        """
        model, prepared = model_from_state_dict(state_dict, config=config)
        cfg = model.config
        tags = [f"{cfg.dim}dim", f"depths={'-'.join(map(str, cfg.depths))}"]
        if model.model_name:
            tags.insert(0, model.model_name)
        return ImageModelDescriptor(
            model,
            prepared,
            architecture=self,
            purpose="Restoration",
            tags=tags,
            supports_half=bool(CLGINet.supports_half),
            supports_bfloat16=bool(CLGINet.supports_bf16),
            scale=1,
            input_channels=model.in_chans,
            output_channels=model.out_chans,
            size_requirements=SizeRequirements(),
            tiling=ModelTiling.SUPPORTED,
        )


def register(registry: ArchRegistry | None = None) -> CLGINetArch:
    """Add CLG-INet to spandrel's registry (``MAIN_REGISTRY`` unless given); calling it again changes nothing.

    Args:
        registry: The registry to add to; spandrel's ``MAIN_REGISTRY`` by default.

    Returns:
        The registered architecture (the one already there on later calls).

    Raises:
        ImportError: If spandrel is not installed (raised when this module is imported).
    """
    target = spandrel.MAIN_REGISTRY if registry is None else registry
    if not isinstance(target, ArchRegistry):
        raise TypeError(f"register: `registry` must be a spandrel ArchRegistry, got {type(target).__name__}")
    existing = target.get(ARCH_ID)
    if existing is not None:
        return existing.architecture  # type: ignore[return-value]
    arch = CLGINetArch()
    target.add(ArchSupport.from_architecture(arch))
    return arch


def load_file(path: str | Path, *, config: Mapping[str, Any] | None = None) -> ImageModelDescriptor[CLGINet]:
    """Load a CLG-INet checkpoint file into a spandrel descriptor, with its stored settings.

    Like ``spandrel.ModelLoader().load_from_file``, but reads the file the way
    :func:`~clg_layers.load_checkpoint` does (safetensors, or ``torch.load``
    with ``weights_only=True``; wrappers and prefixes removed; a Lightning
    checkpoint's EMA weights when it has them) and takes
    ``window_size``/``global_residual`` from the configuration stored with the
    weights when there is one (:func:`~clg_layers.read_checkpoint_config`: the
    ``clg_layers.config`` metadata of a safetensors file, the
    ``hyper_parameters`` of a ``clg-layers train`` ``.ckpt``).

    Args:
        path: A ``.safetensors``/``.pt``/``.pth``/``.ckpt`` file.
        config: Settings that override the file's metadata.

    Returns:
        The descriptor (see :meth:`CLGINetArch.load`).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is unreadable or not a CLG-INet that fits a configuration.
    """
    path = Path(path)
    state = _checkpoint._read_state(path)
    name, stored = _checkpoint.read_checkpoint_config(path)
    descriptor = register().load_with_config(state, config={**stored, **(config or {})})
    if name is not None:  # the zoo name the file was saved under, recorded as build() does
        descriptor.model.model_name = name
    return descriptor
