"""Fine-tune a CLG-INet with LoRA adapters (peft), then merge them into a plain checkpoint.

The recipe for adapting a trained restorer to a new noise level, camera or task
with a few thousand trainable parameters instead of the whole network:

1. build the trained model (``clg_layers.build(name, checkpoint=...)``);
2. wrap it with ``peft.get_peft_model`` and a ``LoraConfig`` whose
   ``target_modules`` name CLG-INet's projections (:data:`TARGETS`);
3. train: only the adapters have ``requires_grad``;
4. ``merge_and_unload()`` folds the adapters into the weights, giving back a
   plain ``CLGINet`` that ``save_checkpoint`` / ``build(..., checkpoint=...)``
   handle like any other.

Here the "trained model" is ``clginet-tiny`` after a short denoising run at
sigma=15 (or your own checkpoint), and the new task is sigma=50, on photos
bundled with scikit-image. Needs ``pip install 'clg-layers[demo]' peft``.

    python examples/lora_finetune.py --steps 200
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import clg_layers
from clg_layers.data import GaussianNoise
from clg_layers.demo import TRAIN_IMAGES, load_photo

#: Module-name suffixes LoRA adapts: DBPA's query, value and output projections and
#: GNFF's three projections (all nn.Linear). Add "attn.k" or "fuse" for more capacity.
TARGETS: tuple[str, ...] = ("attn.q", "attn.v", "attn.proj", "ffn.fc1_a", "ffn.fc1_b", "ffn.fc2")


@dataclass
class Result:
    """What the recipe measured."""

    trainable: int
    total: int
    loss_before: float
    loss_after: float
    output_change: float
    merge_error: float
    checkpoint: Path


def crops(photos: list[torch.Tensor], n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """``n`` random ``size × size`` crops ``(n, 3, size, size)`` from the photos."""
    out = []
    for _ in range(n):
        img = photos[int(torch.randint(len(photos), (1,), generator=g))]
        y = int(torch.randint(img.shape[1] - size + 1, (1,), generator=g))
        x = int(torch.randint(img.shape[2] - size + 1, (1,), generator=g))
        out.append(img[:, y : y + size, x : x + size])
    return torch.stack(out)


def fit(
    model: torch.nn.Module,
    photos: list[torch.Tensor],
    sigma: float,
    steps: int,
    size: int,
    seed: int,
    lr: float,
) -> list[float]:
    """Train the parameters that require grad to remove Gaussian noise of ``sigma``; return the losses."""
    g = torch.Generator().manual_seed(seed)
    noise = GaussianNoise(sigma)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    losses = []
    model.train()
    for step in range(steps):
        clean = crops(photos, 4, size, g)
        loss = F.l1_loss(model(noise(clean, seed=seed * 100_003 + step)), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="clginet-tiny")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a trained model to adapt")
    parser.add_argument("--pretrain-steps", type=int, default=60, help="without --checkpoint: sigma=15 steps")
    parser.add_argument("--steps", type=int, default=200, help="LoRA fine-tuning steps at sigma=50")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--size", type=int, default=48, help="crop size")
    parser.add_argument("--out", type=Path, default=Path("runs/lora"))
    args = parser.parse_args(argv)
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    photos = [load_photo(n) for n in TRAIN_IMAGES]
    base = clg_layers.build(args.model, checkpoint=args.checkpoint)
    if args.checkpoint is None:
        fit(base, photos, 15.0, args.pretrain_steps, args.size, seed=1, lr=2e-3)

    probe = crops(photos, 2, args.size, torch.Generator().manual_seed(7))
    probe = GaussianNoise(50.0)(probe, seed=7)
    base.eval()
    with torch.no_grad():
        before = base(probe)

    config = LoraConfig(r=args.rank, lora_alpha=args.rank, target_modules=list(TARGETS), lora_dropout=0.0)
    model = get_peft_model(base, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    losses = fit(model, photos, 50.0, args.steps, args.size, seed=2, lr=2e-3)
    model.eval()
    with torch.no_grad():
        adapted = model(probe)
    merged = model.merge_and_unload()  # a plain CLGINet again, adapters folded into the weights
    with torch.no_grad():
        merge_error = (merged(probe) - adapted).abs().max().item()
    checkpoint = clg_layers.save_checkpoint(merged, args.out / f"{args.model}-lora-merged.safetensors")
    k = max(len(losses) // 5, 1)
    result = Result(
        trainable=trainable,
        total=total,
        loss_before=sum(losses[:k]) / k,
        loss_after=sum(losses[-k:]) / k,
        output_change=(adapted - before).abs().max().item(),
        merge_error=merge_error,
        checkpoint=checkpoint,
    )
    print(
        f"LoRA r={args.rank} on {len(TARGETS)} projection kinds: "
        f"{trainable:,} trainable of {total:,} parameters\n"
        f"loss (mean of first/last fifth): {result.loss_before:.4f} -> {result.loss_after:.4f}\n"
        f"merged vs adapted output: max |diff| {merge_error:.2e}; saved {checkpoint}"
    )
    return result


if __name__ == "__main__":
    main()
