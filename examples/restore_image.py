"""Restore a PNG with a trained checkpoint, tiled so large images fit in memory.

Run (the checkpoint comes from ``clg-layers demo``; same as ``clg-layers restore``)::

    python examples/restore_image.py INPUT.png OUTPUT.png \\
        --checkpoint runs/denoise-demo/clginet-tiny-denoise.safetensors
"""

from __future__ import annotations

import argparse

import torch

import clg_layers
from clg_layers.io import read_image, write_image


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--model", default="clginet-tiny")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    args = parser.parse_args(argv)

    model = clg_layers.build(args.model, checkpoint=args.checkpoint).eval()
    image = read_image(args.input)  # (1, C, H, W) in [0, 1]; alpha and bit depth kept aside
    with torch.inference_mode():
        image.tensor = clg_layers.tiled_forward(model, image.tensor, tile=args.tile, overlap=args.overlap)
    write_image(args.output, image)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
