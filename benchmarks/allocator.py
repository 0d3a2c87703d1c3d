"""Training-step time and page faults with glibc's default allocator and with ``tune_allocator()``.

The allocator setting is per process and cannot be undone, so each setting
runs in its own child process; the two alternate ``--rounds`` times so that
the machine's drift hits both alike. Reported per setting: the median step
time, minor page faults per step and kernel (system) seconds per step::

    python benchmarks/allocator.py --model clginet-base --batch 2 --patch 128
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _child(
    model_name: str, batch: int, patch: int, steps: int, tuned: bool, threads: int
) -> dict[str, float]:
    import torch

    import clg_layers
    from clg_layers.tools.allocator import tune_allocator

    applied = tune_allocator() if tuned else False
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = clg_layers.build(model_name).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    x = torch.rand(batch, 3, patch, patch)
    target = x.flip(-1)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(model(x), target).backward()
        opt.step()

    step()
    step()
    times, faults, system = [], [], []
    for _ in range(steps):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        faults.append(r1.ru_minflt - r0.ru_minflt)
        system.append(r1.ru_stime - r0.ru_stime)
    return {
        "applied": float(applied),
        "seconds": statistics.median(times),
        "faults": statistics.median(faults),
        "system": statistics.median(system),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="clginet-base")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per child process")
    parser.add_argument("--rounds", type=int, default=3, help="child processes per setting, alternating")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=("default", "tuned"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = _child(args.model, args.batch, args.patch, args.steps, args.child == "tuned", args.threads)
        print(json.dumps(result))
        return 0
    runs: dict[str, list[dict[str, float]]] = {"default": [], "tuned": []}
    common = [f"--model={args.model}", f"--batch={args.batch}", f"--patch={args.patch}"]
    common += [f"--steps={args.steps}", f"--threads={args.threads}"]
    for r in range(args.rounds):
        order = ("default", "tuned") if r % 2 == 0 else ("tuned", "default")
        for setting in order:
            out = subprocess.run(
                [sys.executable, __file__, *common, f"--child={setting}"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            runs[setting].append(json.loads(out.strip().splitlines()[-1]))
    print(f"{args.model}, batch {args.batch}, {args.patch}², {args.threads} threads")
    print(f"{'allocator':<10} {'step s':>8} {'faults/step':>12} {'sys s/step':>11}")
    medians = {}
    for setting, rs in runs.items():
        medians[setting] = statistics.median(r["seconds"] for r in rs)
        faults = statistics.median(r["faults"] for r in rs)
        system = statistics.median(r["system"] for r in rs)
        print(f"{setting:<10} {medians[setting]:8.3f} {faults:12.0f} {system:11.3f}")
    if not all(r["applied"] for r in runs["tuned"]):
        print("note: tune_allocator() did not apply here (not glibc, or MALLOC_*/GLIBC_TUNABLES set)")
    print(f"tuned / default: {medians['tuned'] / medians['default']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
