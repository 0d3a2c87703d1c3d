"""Training-step time of a zoo model with the fused attention kernels and with SDPA's MATH kernel.

``clg_layers.set_fused_attention(False)`` (needed for double backward) makes window attention use
PyTorch's MATH kernel; this measures what that costs in a plain training step, round-robin in one
process::

    python benchmarks/attention_kernels.py --model clginet-base --batch 2 --patch 128 --repeats 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import clg_layers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="clginet-base")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = clg_layers.build(args.model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    x = torch.rand(args.batch, 3, args.patch, args.patch)
    target = x.flip(-1)

    def step(fused: bool) -> float:
        clg_layers.set_fused_attention(fused)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(model(x), target).backward()
        opt.step()
        return time.perf_counter() - t0

    step(True), step(False)
    times: dict[bool, list[float]] = {True: [], False: []}
    for r in range(args.repeats):
        for fused in (True, False) if r % 2 == 0 else (False, True):
            times[fused].append(step(fused))
    clg_layers.set_fused_attention(True)
    fused, math = statistics.median(times[True]), statistics.median(times[False])
    print(f"{args.model}, batch {args.batch}, {args.patch}², {args.threads} threads, {args.repeats} rounds")
    print(f"fused kernels {fused:.3f} s/step, MATH kernel {math:.3f} s/step, MATH / fused {math / fused:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
