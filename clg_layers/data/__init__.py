"""Training data: synthetic degradations and restoration datasets (torch, numpy and Pillow only).

:class:`MotionBlur` and :class:`RainStreaks` import kornia when they first
run (``pip install 'clg-layers[train]'``); everything else needs nothing
beyond the core dependencies.
"""

from .datasets import (
    IMAGE_SUFFIXES,
    PairedImageFolder,
    PatchSchedule,
    RandomPatchBatches,
    StepSampler,
    SyntheticPairs,
    ValidationPairs,
    dihedral,
    list_images,
    load_image,
)
from .degradations import (
    Compose,
    Degradation,
    GaussianNoise,
    MotionBlur,
    PoissonGaussianNoise,
    RainStreaks,
    WithSigmaMap,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "Compose",
    "Degradation",
    "GaussianNoise",
    "MotionBlur",
    "PairedImageFolder",
    "PatchSchedule",
    "PoissonGaussianNoise",
    "RainStreaks",
    "RandomPatchBatches",
    "StepSampler",
    "SyntheticPairs",
    "ValidationPairs",
    "WithSigmaMap",
    "dihedral",
    "list_images",
    "load_image",
]
