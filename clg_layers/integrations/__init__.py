"""CLG-INet in other tools' formats and loaders.

* :mod:`clg_layers.integrations.detect`: read a CLG-INet configuration back
  from a bare state dict (no extra dependency);
* :mod:`clg_layers.integrations.spandrel`: a spandrel ``Architecture`` and
  :func:`~clg_layers.integrations.spandrel.register` (needs the ``spandrel``
  extra, imported only when that module is).

The Hugging Face Hub layout lives in :mod:`clg_layers.integrations.hub`; ``torch.hub``
reads ``hubconf.py`` at the repository root.
"""

from __future__ import annotations

from .detect import infer_config, is_clginet_state_dict, model_from_state_dict

__all__ = ["infer_config", "is_clginet_state_dict", "model_from_state_dict"]
