"""Training restoration models with PyTorch Lightning (needs ``pip install 'clg-layers[train]'``).

:class:`RestorationTask` wraps any image-to-image ``nn.Module``;
:func:`train` runs a whole recipe from a :class:`TrainConfig` (what
``clg-layers train``, ``clg-layers demo`` and ``benchmarks/train_tasks.py``
call); :func:`evaluate` scores whole images with torchmetrics' PSNR/SSIM.
"""

try:
    import lightning  # noqa: F401
    import torchmetrics  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"clg_layers.training needs the training extra ({err.name} is missing): "
        "pip install 'clg-layers[train]'"
    ) from err

from .metrics import EvalReport, evaluate, image_scores, prepare_for_metrics, rgb_to_y
from .run import (
    PAIR_LAYOUTS,
    TASKS,
    TRAIN_COMPILE_OPTIONS,
    TrainConfig,
    TrainResult,
    check_resume,
    export_weights,
    find_pairs,
    make_degradation,
    train,
)
from .task import EMA, LOSSES, AtomicCheckpointIO, RestorationDataModule, RestorationTask, restoration_loss

__all__ = [
    "EMA",
    "LOSSES",
    "PAIR_LAYOUTS",
    "TASKS",
    "TRAIN_COMPILE_OPTIONS",
    "AtomicCheckpointIO",
    "EvalReport",
    "RestorationDataModule",
    "RestorationTask",
    "TrainConfig",
    "TrainResult",
    "check_resume",
    "evaluate",
    "export_weights",
    "find_pairs",
    "image_scores",
    "make_degradation",
    "prepare_for_metrics",
    "restoration_loss",
    "rgb_to_y",
    "train",
]
