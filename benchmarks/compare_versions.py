"""Same-run A/B timing of this checkout's ``clg_layers`` against an older version of it.

Both versions are imported into one process (the older one under another
module name), given the same weights (the older checkpoint layout is migrated
with :func:`clg_layers.migrate_state_dict`, and the outputs are checked to
agree), and timed round-robin, so that the machine's drift hits both alike.
Reported: the median seconds of eager inference at each size and of one
training step (forward, backward, AdamW), and the ratio new / old.

Get the older version as plain source, e.g. for 0.2.0::

    git worktree add /tmp/clg-0.2.0 <commit-of-0.2.0>
    python benchmarks/compare_versions.py --baseline /tmp/clg-0.2.0 --model clginet-base

(``--baseline`` is the directory that holds the older ``clg_layers`` package.)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

import clg_layers


def import_baseline(root: Path, alias: str = "clg_layers_baseline") -> ModuleType:
    """Import ``root/clg_layers`` as the package ``alias`` (its relative imports follow it)."""
    init = root / "clg_layers" / "__init__.py"
    if not init.is_file():
        raise SystemExit(f"compare_versions: no clg_layers package under {root}")
    spec = importlib.util.spec_from_file_location(alias, init, submodule_search_locations=[str(init.parent)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    spec.loader.exec_module(module)
    return module


def paired_models(old: ModuleType, name: str, seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same network in both versions, with the same random weights."""
    m_old = old.build(name)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m_old.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    m_new = clg_layers.build(name)
    state, _ = clg_layers.migrate_state_dict(m_old.state_dict())
    m_new.load_state_dict(state, strict=True)
    return m_old, m_new


def round_robin(fns: dict[str, Callable[[], None]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Time every function ``repeats`` times, alternating, and which goes first each round."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns.items())
    for _ in range(repeats):
        order.reverse()  # no version always runs right after the other
        for key, fn in order:
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="directory holding the older clg_layers")
    parser.add_argument("--model", default="clginet-base")
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 512])
    parser.add_argument("--train-size", type=int, default=128)
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument(
        "--tune-allocator",
        action="store_true",
        help="apply clg_layers.tools.allocator.tune_allocator() first, as `clg-layers train` does",
    )
    args = parser.parse_args(argv)
    if args.tune_allocator:
        from clg_layers.tools.allocator import tune_allocator

        if not tune_allocator():
            raise SystemExit("compare_versions: tune_allocator() did not apply here")
    torch.set_num_threads(args.threads)
    old = import_baseline(args.baseline)
    m_old, m_new = paired_models(old, args.model, seed=0)
    results: dict[str, dict[str, float]] = {}

    for size in args.sizes:
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
        m_old.eval(), m_new.eval()
        with torch.inference_mode():
            diff = (m_old(x) - m_new(x)).abs().max().item()
            times = round_robin({"old": lambda x=x: m_old(x), "new": lambda x=x: m_new(x)}, args.repeats, 1)
        results[f"forward {size}²"] = _summary(times, diff)

    x = torch.rand(args.train_batch, 3, args.train_size, args.train_size)
    target = x.flip(-1)
    steps = {}
    for key, model in (("old", m_old), ("new", m_new)):
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-6)

        def step(model: torch.nn.Module = model, opt: torch.optim.Optimizer = opt) -> None:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.l1_loss(model(x), target).backward()
            opt.step()

        steps[key] = step
    times = round_robin(steps, args.repeats, 1)
    results[f"train step b{args.train_batch} {args.train_size}²"] = _summary(times, float("nan"))

    print(f"{args.model}, {args.threads} threads, median of {args.repeats} (round-robin)")
    print(f"{'case':<22} {'old s':>8} {'new s':>8} {'new/old':>8}  max|Δout|")
    for case, r in results.items():
        print(f"{case:<22} {r['old']:8.3f} {r['new']:8.3f} {r['ratio']:8.3f}  {r['max_abs_diff']:.2e}")
    if args.json:
        args.json.write_text(
            json.dumps({"model": args.model, "threads": args.threads, "results": results}, indent=2)
        )
    return 0


def _summary(times: dict[str, list[float]], diff: float) -> dict[str, float]:
    old, new = statistics.median(times["old"]), statistics.median(times["new"])
    return {"old": old, "new": new, "ratio": new / old, "max_abs_diff": diff}


if __name__ == "__main__":
    raise SystemExit(main())
