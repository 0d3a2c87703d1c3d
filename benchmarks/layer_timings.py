"""Parameter count and forward time of every public layer at dim=48 on a 1×48×128×128 input.

Run: ``python benchmarks/layer_timings.py [--threads 2] [--repeats 7]``. Modules are woken
(zero-started residual scales set to 0.5) so every branch computes; timings are medians of
``repeats`` runs after two warm-ups, under ``torch.inference_mode()``, taken round-robin so
load from other processes hits all modules alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import clg_layers as cl


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(1, 48, 128, 128)
    hgu_in = [x, torch.rand(1, 96, 64, 64), torch.rand(1, 192, 32, 32)]
    modules: dict[str, tuple[nn.Module, object]] = {
        "ChannelAttention(48)": (cl.ChannelAttention(48), x),
        "CNNLayer(48)": (cl.CNNLayer(48), x),
        "DBPA(48, heads=1, w=8, k=7)": (cl.DBPA(48), x),
        "GNFF(48, 2.66)": (cl.GNFF(48), x),
        "TransformerLayer(48)": (cl.TransformerLayer(48), x),
        "CouplingBlock(48)": (cl.CouplingBlock(48), x),
        "HybridGatedUnit([48, 96, 192], 48)": (cl.HybridGatedUnit([48, 96, 192], 48), hgu_in),
    }
    with torch.no_grad():
        for m, _ in modules.values():
            for _name, p in m.named_parameters():
                if not p.any():
                    p.fill_(0.5)
    times: dict[str, list[float]] = {k: [] for k in modules}
    with torch.inference_mode():
        for _ in range(2):
            for m, inp in modules.values():
                m.eval()(inp)
        for _ in range(args.repeats):
            for key, (m, inp) in modules.items():
                start = time.perf_counter()
                m(inp)
                times[key].append(time.perf_counter() - start)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, input 1×48×128×128, "
        f"medians of {args.repeats}"
    )
    print(f"{'module':<38} {'params':>9} {'median ms':>10} {'min ms':>8}")
    for key, (m, _) in modules.items():
        n = sum(p.numel() for p in m.parameters())
        print(f"{key:<38} {n:>9,} {statistics.median(times[key]) * 1e3:>10.2f} {min(times[key]) * 1e3:>8.2f}")


if __name__ == "__main__":
    main()
