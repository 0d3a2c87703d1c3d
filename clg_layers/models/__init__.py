"""The CLG-INet network, the model zoo, checkpoints and model statistics."""

from . import timm_models as _timm_models  # noqa: F401 - registers the timm entry points
from .checkpoint import LoadReport, load_checkpoint, migrate_state_dict, read_checkpoint_config, save_checkpoint
from .clginet import CLGINet
from .info import ModelInfo, count_macs, model_info
from .registry import build, list_models, register_model

__all__ = [
    "CLGINet",
    "LoadReport",
    "migrate_state_dict",
    "ModelInfo",
    "build",
    "count_macs",
    "list_models",
    "load_checkpoint",
    "model_info",
    "read_checkpoint_config",
    "register_model",
    "save_checkpoint",
]
