"""Register your own CLG-INet variant in the zoo and build it by name.

Run: ``python examples/register_variant.py``
"""

from __future__ import annotations

from typing import Any

import torch

import clg_layers


@clg_layers.register_model("clginet-gray-wide")
def clginet_gray_wide(**overrides: Any) -> clg_layers.CLGINet:
    """A grayscale variant: wider first level, no coupling connection (an ablation)."""
    config = dict(in_chans=1, dim=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), coupling="none")
    return clg_layers.CLGINet(**{**config, **overrides})


def main() -> clg_layers.ModelInfo:
    print("registered:", clg_layers.list_models("clginet-gray*"))
    model = clg_layers.build("clginet-gray-wide")
    y = model(torch.rand(1, 1, 45, 61))
    info = clg_layers.model_info("clginet-gray-wide", input_size=(1, 256, 256))
    print(
        f"output {tuple(y.shape)}; {info.params / 1e6:.2f} M params, {info.gmacs:.1f} G MACs at 1×1×256×256"
    )
    return info


if __name__ == "__main__":
    main()
