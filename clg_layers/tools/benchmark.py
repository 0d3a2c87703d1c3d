"""Latency, throughput, memory and training-step benchmarks for zoo models and modules.

:func:`benchmark` times a model's forward pass at one or more input sizes and
returns a :class:`BenchmarkReport`: one :class:`BenchmarkResult` row per size
(latency median/min/max, megapixels/s, G MAC/s, peak memory, optionally a
training step and the utilisation of the device's dense-matmul peak) plus the
environment the numbers were taken in. The same runs from the command line::

    python -m clg_layers.tools.benchmark clginet-tiny clginet-small \\
        --sizes 128 256 --threads 2 --json out.json

What the numbers mean:

- **Latency** is wall time (:func:`time.perf_counter`) of one forward pass under
  :func:`torch.inference_mode`, after ``warmup`` untimed passes; on CUDA the
  device is synchronised before the clock is read.
- **dtype** ``"float32"`` runs the model as it is. ``"bfloat16"`` and
  ``"float16"`` run it under :func:`torch.autocast` for the device: weights and
  the input stay float32 and autocast casts each op (convolutions, matmuls, ...)
  to the lower precision, which is how mixed-precision inference is usually
  deployed. The matmul peak used for ``utilisation`` is measured in the same dtype.
- **MACs** come from :func:`clg_layers.count_macs` (attention included).
- **Peak memory** depends on the device and on ``isolate``:

  - ``"cuda_max_allocated"``: :func:`torch.cuda.max_memory_allocated` over the
    timed forward passes (peak statistics are reset first).
  - ``"rss"`` (CPU, ``isolate=True``): the peak resident set size
    (``ru_maxrss``) of a fresh Python process that imported torch, built the
    model and ran only this measurement. It includes the interpreter, the
    torch libraries and the weights; ``memory_baseline_bytes`` is the resident
    size just before the first forward pass, so ``peak - baseline`` is what the
    forward passes added.
  - ``"process_peak_rss"`` (CPU, ``isolate=False``): ``ru_maxrss`` of the
    calling process after the run. The kernel only ever raises it, so it is the
    peak of everything the process has done so far: an upper bound, not a
    per-size figure.

  Memory is read after the inference runs and before the optional training
  step, so it describes inference only.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import functools
import gc
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._version import __version__
from ..layers._checks import check_bool, check_int

try:  # POSIX only
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

__all__ = [
    "ALLOCATOR_ENV_VARS",
    "BenchmarkReport",
    "BenchmarkResult",
    "benchmark",
    "benchmark_environment",
    "main",
    "matmul_peak_gmacs",
]

#: Environment variables that change allocator behaviour (and so latency and peak memory); recorded verbatim.
ALLOCATOR_ENV_VARS: tuple[str, ...] = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "PYTORCH_CUDA_ALLOC_CONF",
)

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
_DTYPE_ALIASES: dict[str, str] = {
    "fp32": "float32",
    "float": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
}
_MEMORY_KINDS: dict[str, str] = {
    "rss": (
        "peak RSS of a fresh process that ran only this measurement (interpreter, torch and weights included)"
    ),
    "process_peak_rss": "peak RSS of the whole benchmarking process so far (monotonic: an upper bound)",
    "cuda_max_allocated": "torch.cuda.max_memory_allocated over the timed forward passes",
    "unavailable": "no peak-memory source on this platform",
}
_MIB = 1024**2


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass
class BenchmarkResult:
    """One benchmarked (model, input size) pair.

    Attributes:
        model: Zoo name, or the module's ``model_name`` / class name.
        input_size: ``(C, H, W)`` of one image.
        batch: Images per forward pass.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"`` (the last two via autocast).
        device: The device the model ran on, e.g. ``"cpu"`` or ``"cuda:0"``.
        threads: ``torch.get_num_threads()`` during the run.
        compiled: Whether the model ran through :func:`torch.compile`.
        params: Number of parameters.
        macs: Multiply-accumulates of one forward pass of the whole batch.
        latency_median_s: Median wall time of one forward pass, in seconds.
        latency_min_s: Fastest timed pass.
        latency_max_s: Slowest timed pass.
        runs: Number of timed passes.
        megapixels_per_s: ``batch·H·W / 10⁶ / latency_median_s``.
        gmacs_per_s: ``macs / 10⁹ / latency_median_s``.
        peak_memory_bytes: Peak memory, see ``memory_kind``; ``None`` if unavailable.
        memory_kind: What ``peak_memory_bytes`` measures: ``"rss"``,
            ``"process_peak_rss"``, ``"cuda_max_allocated"`` or ``"unavailable"``
            (see the module documentation).
        memory_baseline_bytes: Memory in use just before the first forward pass
            (resident set size on CPU, allocated bytes on CUDA).
        isolated: Whether the measurement ran in a fresh process.
        compile_seconds: Wall time of the compiled model's first call
            (compilation plus one forward pass); ``None`` when not compiled.
        train_step_s: Median wall time of one training step (forward, L1 loss,
            backward, AdamW step); ``None`` when not measured.
        train_input_size: ``(B, C, H, W)`` of the training step's input.
        utilisation: ``gmacs_per_s`` over the device's dense-matmul peak in the
            same dtype; ``None`` when the peak was not measured.
    """

    model: str
    input_size: tuple[int, int, int]
    batch: int
    dtype: str
    device: str
    threads: int
    compiled: bool
    params: int
    macs: int
    latency_median_s: float
    latency_min_s: float
    latency_max_s: float
    runs: int
    megapixels_per_s: float
    gmacs_per_s: float
    peak_memory_bytes: int | None
    memory_kind: str
    memory_baseline_bytes: int | None = None
    isolated: bool = False
    compile_seconds: float | None = None
    train_step_s: float | None = None
    train_input_size: tuple[int, int, int, int] | None = None
    utilisation: float | None = None

    @property
    def megapixels(self) -> float:
        """Pixels per forward pass (``batch·H·W``) in units of 10⁶."""
        _, h, w = self.input_size
        return self.batch * h * w / 1e6

    def as_dict(self) -> dict[str, Any]:
        """The row as a JSON-ready dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key in ("input_size", "train_input_size"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkResult:
        """Rebuild a row from :meth:`as_dict` output (unknown keys are ignored).

        Args:
            data: A dict as written by :meth:`as_dict`.

        Returns:
            The row.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        for key in ("input_size", "train_input_size"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)


@dataclass
class BenchmarkReport:
    """The rows of a benchmark run and the environment they were measured in.

    Attributes:
        results: One row per (model, input size).
        environment: See :func:`benchmark_environment`; ``matmul_peak_gmacs`` and
            ``matmul_peak_dtype`` are filled when the peak was measured.
    """

    results: list[BenchmarkResult] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)

    def set_matmul_peak(self, gmacs: float, dtype: str = "float32") -> None:
        """Record a dense-matmul peak and fill every row's ``utilisation`` from it.

        Args:
            gmacs: Peak throughput in G MAC/s (see :func:`matmul_peak_gmacs`).
            dtype: The dtype the peak was measured in.
        """
        if not isinstance(gmacs, (int, float)) or isinstance(gmacs, bool) or not gmacs > 0:
            raise ValueError(f"set_matmul_peak: `gmacs` must be a positive number, got {gmacs!r}")
        self.environment["matmul_peak_gmacs"] = float(gmacs)
        self.environment["matmul_peak_dtype"] = dtype
        for r in self.results:
            r.utilisation = r.gmacs_per_s / gmacs

    def as_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict: ``{"environment": ..., "results": [...]}``."""
        return {"environment": dict(self.environment), "results": [r.as_dict() for r in self.results]}

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON text (see :meth:`as_dict`)."""
        return json.dumps(self.as_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> BenchmarkReport:
        """Read a report written by :meth:`to_json`.

        Args:
            text: The JSON text.

        Returns:
            The report.
        """
        data = json.loads(text)
        return cls(
            results=[BenchmarkResult.from_dict(r) for r in data.get("results", [])],
            environment=dict(data.get("environment", {})),
        )

    def table(self) -> str:
        """A fixed-width text table of the rows, with an environment line above and notes below."""
        headers = (
            "model", "size", "batch", "dtype", "compiled", "params M", "G MACs", "median ms",
            "min ms", "max ms", "MP/s", "G MAC/s", "util", "peak MiB", "train ms",
        )  # fmt: skip
        left = {"model", "size", "dtype", "compiled"}
        rows = []
        for r in self.results:
            _, h, w = r.input_size
            rows.append(
                (
                    r.model,
                    f"{h}x{w}",
                    str(r.batch),
                    r.dtype,
                    "yes" if r.compiled else "no",
                    f"{r.params / 1e6:.2f}",
                    _num(r.macs / 1e9),
                    _num(r.latency_median_s * 1e3),
                    _num(r.latency_min_s * 1e3),
                    _num(r.latency_max_s * 1e3),
                    _num(r.megapixels_per_s),
                    _num(r.gmacs_per_s),
                    "-" if r.utilisation is None else f"{100 * r.utilisation:.1f}%",
                    "-" if r.peak_memory_bytes is None else f"{r.peak_memory_bytes / _MIB:.0f}",
                    "-" if r.train_step_s is None else _num(r.train_step_s * 1e3),
                )
            )
        widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(
                c.ljust(wd) if h in left else c.rjust(wd) for c, wd, h in zip(cells, widths, headers)
            ).rstrip()

        env = self.environment
        out = []
        if env:
            out.append(
                f"torch {env.get('torch_version', '?')} | {env.get('device_name', '?')} | "
                f"{env.get('num_threads', '?')} threads | {env.get('date', '?')}"
            )
        out.append(line(headers))
        out.append("  ".join("-" * wd for wd in widths))
        out.extend(line(row) for row in rows)
        notes: list[str] = []
        for kind in sorted({r.memory_kind for r in self.results}):
            notes.append(f"peak MiB [{kind}]: {_MEMORY_KINDS.get(kind, kind)}")
        if env.get("matmul_peak_gmacs"):
            notes.append(
                f"util: G MAC/s over the dense {env.get('matmul_peak_dtype', 'float32')} matmul peak "
                f"of {env['matmul_peak_gmacs']:.1f} G MAC/s"
            )
        for r in self.results:
            if r.compile_seconds is not None:
                _, h, w = r.input_size
                notes.append(f"compile {r.model} {h}x{w}: first call {r.compile_seconds:.1f} s")
            if r.train_input_size is not None and r.train_step_s is not None:
                b, c, h, w = r.train_input_size
                notes.append(f"train ms {r.model}: forward + L1 + backward + AdamW at {b}x{c}x{h}x{w}")
        return "\n".join([*out, *dict.fromkeys(notes)])  # repeated notes dropped


def _num(value: float) -> str:
    """About three significant figures without exponent notation."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    if value >= 0.01 or value == 0:
        return f"{value:.3f}"
    return f"{value:.2g}"


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    """Validated, JSON-serialisable options of one benchmark call (shared with isolated workers)."""

    batch: int
    dtype: str
    device: str
    threads: int
    compile: bool
    warmup: int
    repeats: int
    train_step: bool
    train_size: int
    train_batch: int


def _resolve_dtype(owner: str, dtype: Any) -> str:
    if isinstance(dtype, torch.dtype):
        for name, dt in _DTYPES.items():
            if dt == dtype:
                return name
        raise ValueError(f"{owner}: unsupported dtype {dtype}; choose one of {list(_DTYPES)}")
    if not isinstance(dtype, str):
        raise TypeError(f"{owner}: `dtype` must be a str or torch.dtype, got {type(dtype).__name__}")
    name = _DTYPE_ALIASES.get(dtype.lower(), dtype.lower())
    if name not in _DTYPES:
        raise ValueError(f"{owner}: unknown dtype {dtype!r}; choose one of {list(_DTYPES)}")
    return name


def _resolve_device(owner: str, device: Any) -> torch.device:
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{owner}: `device` must be a str or torch.device, got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"{owner}: unknown device {device!r} ({exc})") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{owner}: `device` must be a CPU or CUDA device, got {str(dev)!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{owner}: device {str(dev)!r} requested but torch.cuda.is_available() is False")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"{owner}: device {str(dev)!r} does not exist ({torch.cuda.device_count()} GPUs)"
            )
    return dev


def _resolve_sizes(sizes: Any) -> list[tuple[int, int]]:
    owner = "benchmark"
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise TypeError(
            f"{owner}: `sizes` must be a sequence of ints or (H, W) pairs, e.g. (256,) or [(240, 320)], "
            f"got {type(sizes).__name__}"
        )
    if not sizes:
        raise ValueError(f"{owner}: `sizes` must not be empty")
    out = []
    for s in sizes:
        if isinstance(s, int) and not isinstance(s, bool):
            pair: tuple[Any, ...] = (s, s)
        elif isinstance(s, (tuple, list)) and len(s) == 2:
            pair = tuple(s)
        else:
            raise TypeError(f"{owner}: each size must be an int or an (H, W) pair of ints, got {s!r}")
        for v in pair:
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{owner}: each size must be an int or an (H, W) pair of ints, got {s!r}")
            if v < 1:
                raise ValueError(f"{owner}: sizes must be positive, got {s!r}")
        out.append((pair[0], pair[1]))
    return out


def _resolve_model(model: Any) -> tuple[str, nn.Module | None]:
    """The display name and, for a module, the module itself (a zoo name is built later)."""
    from ..models import list_models

    if isinstance(model, str):
        known = list_models()
        if model not in known:
            close = difflib.get_close_matches(model, known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"benchmark: unknown model {model!r}{hint} Known models: {known}")
        return model, None
    if isinstance(model, nn.Module):
        return getattr(model, "model_name", None) or type(model).__name__, model
    raise TypeError(f"benchmark: `model` must be a zoo name or an nn.Module, got {type(model).__name__}")


# --------------------------------------------------------------------------------------------------
# Measurement primitives
# --------------------------------------------------------------------------------------------------


def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _autocast(device: torch.device, dtype: str) -> AbstractContextManager[Any]:
    if dtype == "float32":
        return nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[dtype])


def _max_rss_bytes() -> int | None:
    """Peak resident set size of this process (``ru_maxrss``), in bytes."""
    if resource is None:  # pragma: no cover - Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) if sys.platform == "darwin" else int(rss) * 1024  # macOS reports bytes, Linux KiB


def _current_rss_bytes() -> int | None:
    """Current resident set size of this process, in bytes (falls back to the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return _max_rss_bytes()


def _timed(fn: Callable[[], Any], sync: Callable[[], None], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def _module_device(module: nn.Module) -> torch.device | None:
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return None


def _in_chans(module: nn.Module) -> int:
    c = getattr(module, "in_chans", 3)
    return c if isinstance(c, int) and not isinstance(c, bool) and c >= 1 else 3


def _check_multiple(module: nn.Module, h: int, w: int, what: str) -> None:
    m = getattr(module, "size_multiple", 1)
    if isinstance(m, int) and m > 1 and (h % m or w % m):
        raise ValueError(f"benchmark: {what} {h}x{w} is not a multiple of the model's size_multiple ({m})")


def _train_step_times(module: nn.Module, opts: _Options) -> list[float]:
    """Times of forward + L1 + backward + AdamW on a deep copy of ``module`` (freed on return)."""
    device = torch.device(opts.device)
    c, s = _in_chans(module), opts.train_size
    model = copy.deepcopy(module).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4) if params else None
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(opts.train_batch, c, s, s, generator=gen).to(device)
    target: list[torch.Tensor] = []  # made on the first step, once the output shape is known

    def step() -> None:
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        with _autocast(device, opts.dtype):
            out = model(x)
        if not target:
            target.append(torch.randn(out.shape, generator=gen).to(device))
        F.l1_loss(out.float(), target[0]).backward()
        if optimizer is not None:
            optimizer.step()

    with torch.inference_mode(False), torch.enable_grad():
        # At least one untimed step: AdamW allocates its state on the first.
        return _timed(step, _synchronizer(device), max(opts.warmup, 1), opts.repeats)


def _time_train_step(module: nn.Module, opts: _Options) -> tuple[float, tuple[int, int, int, int]]:
    """Median training-step time and the ``(B, C, H, W)`` it ran at; the model is untouched."""
    c, s = _in_chans(module), opts.train_size
    _check_multiple(module, s, s, "train_size")
    try:
        times = _train_step_times(module, opts)
    finally:
        gc.collect()
        if opts.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return statistics.median(times), (opts.train_batch, c, s, s)


def _measure(
    module: nn.Module, runner: nn.Module, name: str, size: tuple[int, int], opts: _Options, *, isolated: bool
) -> BenchmarkResult:
    """Benchmark one input size in this process. ``module`` is eager and on the device, in eval mode."""
    from ..models import count_macs

    device = torch.device(opts.device)
    sync = _synchronizer(device)
    c, (h, w) = _in_chans(module), size
    _check_multiple(module, h, w, "size")
    params = sum(p.numel() for p in module.parameters())
    macs = count_macs(module, (c, h, w), batch=opts.batch)
    x = torch.randn(opts.batch, c, h, w, generator=torch.Generator().manual_seed(0)).to(device)

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    else:
        baseline = _current_rss_bytes()

    compile_seconds = None
    with torch.inference_mode(), _autocast(device, opts.dtype):
        if opts.compile:
            t0 = time.perf_counter()
            runner(x)
            sync()
            compile_seconds = time.perf_counter() - t0
        times = _timed(functools.partial(runner, x), sync, opts.warmup, opts.repeats)
    del x  # not needed by the training step

    peak: int | None
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device), "cuda_max_allocated"
    else:
        # ru_maxrss and /proc/self/statm come from differently batched kernel counters: take the larger.
        observed = [v for v in (_max_rss_bytes(), _current_rss_bytes(), baseline) if v is not None]
        peak = max(observed) if observed and resource is not None else None
        kind = "unavailable" if peak is None else ("rss" if isolated else "process_peak_rss")

    train_s, train_input = _time_train_step(module, opts) if opts.train_step else (None, None)
    median = statistics.median(times)
    return BenchmarkResult(
        model=name,
        input_size=(c, h, w),
        batch=opts.batch,
        dtype=opts.dtype,
        device=str(device),
        threads=torch.get_num_threads(),
        compiled=opts.compile,
        params=params,
        macs=macs,
        latency_median_s=median,
        latency_min_s=min(times),
        latency_max_s=max(times),
        runs=len(times),
        megapixels_per_s=opts.batch * h * w / 1e6 / median,
        gmacs_per_s=macs / 1e9 / median,
        peak_memory_bytes=peak,
        memory_kind=kind,
        memory_baseline_bytes=baseline,
        isolated=isolated,
        compile_seconds=compile_seconds,
        train_step_s=train_s,
        train_input_size=train_input,
    )


def _run_in_process(
    module: nn.Module, name: str, sizes: Sequence[tuple[int, int]], opts: _Options, *, isolated: bool
) -> list[BenchmarkResult]:
    """Benchmark ``sizes`` in this process; the module's device and training flag are restored afterwards."""
    device = torch.device(opts.device)
    was_training, original_device = module.training, _module_device(module)
    module.to(device).eval()
    try:
        runner: nn.Module = module
        if opts.compile:
            import torch._dynamo as dynamo

            limit = getattr(dynamo.config, "recompile_limit", None)
            if isinstance(limit, int) and len(sizes) > limit:
                warnings.warn(
                    f"benchmark: {len(sizes)} sizes exceed torch._dynamo's recompile limit ({limit}); "
                    "later sizes may fall back to eager. Use isolate=True or fewer sizes.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            runner = torch.compile(module, dynamic=False)  # one static graph per size
        return [_measure(module, runner, name, size, opts, isolated=isolated) for size in sizes]
    finally:
        module.train(was_training)
        if original_device is not None and original_device != device:
            module.to(original_device)


# --------------------------------------------------------------------------------------------------
# Isolated runs: one fresh interpreter per measurement
# --------------------------------------------------------------------------------------------------

_WORKER_CODE = (
    "import sys; from clg_layers.tools.benchmark import _worker_main; "
    "raise SystemExit(_worker_main(sys.argv[1], sys.argv[2]))"
)
_ERRORS: dict[str, type[Exception]] = {"ValueError": ValueError, "TypeError": TypeError}


def _run_isolated(
    model: str | nn.Module, name: str, size: tuple[int, int], opts: _Options
) -> BenchmarkResult:
    """Run one measurement in a fresh ``python`` process and read its result back."""
    with tempfile.TemporaryDirectory(prefix="clg-bench-") as tmp:
        spec_path, out_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
        spec: dict[str, Any] = {"name": name, "size": list(size), "options": dataclasses.asdict(opts)}
        if isinstance(model, str):
            spec["model"] = model
        else:  # the class must be importable by the child (not defined in __main__ or a test body)
            spec["module_file"] = str(Path(tmp, "module.pt"))
            try:
                torch.save(model, spec["module_file"])
            except (pickle.PicklingError, AttributeError, TypeError) as exc:
                raise TypeError(
                    "benchmark: isolate=True pickles the module for the child process "
                    f"and could not ({exc}); pass a zoo name or a module whose class "
                    "is defined at the top level of an importable module"
                ) from None
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parent.parent)  # works from a source checkout too
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        proc = subprocess.run(
            [sys.executable, "-c", _WORKER_CODE, str(spec_path), str(out_path)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        data = json.loads(out_path.read_text()) if out_path.exists() else {}
    if "error" in data:
        raise _ERRORS.get(data["error"]["type"], RuntimeError)(data["error"]["message"])
    if proc.returncode != 0 or "result" not in data:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-20:])
        raise RuntimeError(
            f"benchmark: the isolated run of {name} at {size[0]}x{size[1]} failed "
            f"(exit code {proc.returncode}):\n{tail}"
        )
    return BenchmarkResult.from_dict(data["result"])


def _worker_main(spec_path: str, out_path: str) -> int:
    """Entry point of an isolated child: run the measurement described in ``spec_path``."""
    from ..models import build

    spec = json.loads(Path(spec_path).read_text())
    opts = _Options(**spec["options"])
    torch.set_num_threads(opts.threads)
    try:
        if "model" in spec:
            module = build(spec["model"])
        else:
            module = torch.load(spec["module_file"], map_location="cpu", weights_only=False)
        (result,) = _run_in_process(module, spec["name"], [tuple(spec["size"])], opts, isolated=True)
    except (ValueError, TypeError) as exc:
        Path(out_path).write_text(json.dumps({"error": {"type": type(exc).__name__, "message": str(exc)}}))
        return 3
    Path(out_path).write_text(json.dumps({"result": result.as_dict()}))
    return 0


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def _device_name(device: torch.device) -> str:
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for row in f:
                if row.lower().startswith("model name"):
                    return row.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def benchmark_environment(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Facts about the machine and software that benchmark numbers depend on.

    Args:
        device: The device the benchmark runs on (its name is recorded).

    Returns:
        A dict with ``date`` (UTC, ISO 8601), ``python``, ``platform``,
        ``torch_version``, ``clg_layers_version``, ``cuda_version``, ``device``,
        ``device_name`` (CPU model from ``/proc/cpuinfo`` or the GPU name),
        ``cpu_count``, ``num_threads`` (``torch.get_num_threads()``),
        ``allocator_env`` (each of :data:`ALLOCATOR_ENV_VARS` → its value or
        ``None``), ``omp_num_threads`` (the ``OMP_NUM_THREADS`` variable or
        ``None``) and ``matmul_peak_gmacs`` / ``matmul_peak_dtype`` (``None``
        until a peak is recorded).
    """
    dev = _resolve_device("benchmark_environment", device)
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch_version": torch.__version__,
        "clg_layers_version": __version__,
        "cuda_version": torch.version.cuda,
        "device": str(dev),
        "device_name": _device_name(dev),
        "cpu_count": os.cpu_count(),
        "num_threads": torch.get_num_threads(),
        "allocator_env": {var: os.environ.get(var) for var in ALLOCATOR_ENV_VARS},
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "matmul_peak_gmacs": None,
        "matmul_peak_dtype": None,
    }


def matmul_peak_gmacs(
    device: str | torch.device = "cpu",
    threads: int | None = None,
    *,
    dtype: str | torch.dtype = "float32",
    n: int | None = None,
    repeats: int = 5,
) -> float:
    """Measured dense-matmul throughput of a device, the reference for ``utilisation``.

    Times ``repeats`` products of two ``n × n`` matrices (after one untimed
    product) and returns ``n³ / 10⁹ / median_seconds``.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        threads: CPU threads for the measurement (restored afterwards); ``None``
            keeps the current ``torch.get_num_threads()``.
        dtype: Matrix dtype (``"float32"``, ``"bfloat16"`` or ``"float16"``).
        n: Matrix side; ``None`` means 2048 on CPU and 8192 on CUDA.
        repeats: Timed products.

    Returns:
        Throughput in G MAC/s.

    Raises:
        ValueError, TypeError: For invalid arguments.
    """
    owner = "matmul_peak_gmacs"
    dev = _resolve_device(owner, device)
    dt = _DTYPES[_resolve_dtype(owner, dtype)]
    if threads is not None:
        check_int(owner, "threads", threads, minimum=1)
    n = (2048 if dev.type == "cpu" else 8192) if n is None else check_int(owner, "n", n, minimum=1)
    check_int(owner, "repeats", repeats, minimum=1)
    old_threads = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=gen).to(dev, dt)
        b = torch.randn(n, n, generator=gen).to(dev, dt)
        with torch.inference_mode():
            times = _timed(lambda: torch.mm(a, b), _synchronizer(dev), 1, repeats)
    finally:
        torch.set_num_threads(old_threads)
    return n**3 / 1e9 / statistics.median(times)


def benchmark(
    model: str | nn.Module,
    *,
    sizes: Sequence[int | tuple[int, int]] = (256,),
    batch: int = 1,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    threads: int | None = None,
    compile: bool = False,
    warmup: int = 2,
    repeats: int = 5,
    train_step: bool = False,
    train_size: int = 128,
    train_batch: int = 2,
    isolate: bool = False,
    measure_peak: bool = False,
) -> BenchmarkReport:
    """Time a model's forward pass (and optionally a training step) at one or more input sizes.

    For each size the model, in eval mode under :func:`torch.inference_mode`,
    runs ``warmup`` untimed and ``repeats`` timed forward passes on a
    ``(batch, C, H, W)`` random input (``C`` is the model's ``in_chans``, else 3).
    See the module documentation for what latency, dtype and peak memory mean.

    A module instance is moved to ``device`` for the run and moved back, and its
    training flag is restored; its weights are never changed (the training step
    runs on a deep copy).

    Args:
        model: A zoo name (built with :func:`clg_layers.build`) or an ``nn.Module``
            taking one ``(B, C, H, W)`` tensor.
        sizes: Input sizes: an int ``s`` means ``s × s``, a pair means ``(H, W)``.
            One rectangle is ``[(240, 320)]``, not ``(240, 320)`` (two squares).
        batch: Images per forward pass.
        dtype: ``"float32"`` (plain), or ``"bfloat16"`` / ``"float16"``, which run
            the forward pass (and the training step's forward) under
            ``torch.autocast(device_type, dtype=...)`` with float32 weights and input.
        device: ``"cpu"`` or a CUDA device.
        threads: ``torch.set_num_threads(threads)`` for the run (restored
            afterwards); ``None`` keeps the current setting.
        compile: Run the model through ``torch.compile(model, dynamic=False)``.
            Its first call per size (compilation plus one pass) is reported as
            ``compile_seconds`` and excluded from the timings. The training step
            stays eager.
        warmup: Untimed passes before the timed ones.
        repeats: Timed passes (median, min and max are reported).
        train_step: Also time one training step (forward, L1 loss, backward,
            AdamW step; median over ``repeats`` after ``max(warmup, 1)`` untimed
            steps) in train mode on a deep copy of the model. No gradient scaling
            is applied under float16: the step is timed, not trained.
        train_size: Side of the training step's square input.
        train_batch: Batch of the training step.
        isolate: Run each size in a fresh Python process (``python -c`` importing
            this module), so that CPU peak RSS is that measurement's own peak. A
            module instance is pickled with :func:`torch.save`, so its class must
            be importable from the child process.
        measure_peak: Also measure the device's dense-matmul peak in ``dtype``
            (:func:`matmul_peak_gmacs`, with the same threads) and fill each
            row's ``utilisation``.

    Returns:
        A :class:`BenchmarkReport` with one row per size.

    Raises:
        ValueError, TypeError: For invalid arguments; messages start with ``benchmark:``.
        RuntimeError: If an isolated child process fails.
    """
    owner = "benchmark"
    dtype_name = _resolve_dtype(owner, dtype)
    dev = _resolve_device(owner, device)
    size_list = _resolve_sizes(sizes)
    if threads is not None:
        check_int(owner, "threads", threads, minimum=1)
    for name_, value in (("compile", compile), ("train_step", train_step), ("isolate", isolate),
                         ("measure_peak", measure_peak)):  # fmt: skip
        check_bool(owner, name_, value)
    opts = _Options(
        batch=check_int(owner, "batch", batch, minimum=1),
        dtype=dtype_name,
        device=str(dev),
        threads=threads if threads is not None else torch.get_num_threads(),
        compile=compile,
        warmup=check_int(owner, "warmup", warmup, minimum=0),
        repeats=check_int(owner, "repeats", repeats, minimum=1),
        train_step=train_step,
        train_size=check_int(owner, "train_size", train_size, minimum=1),
        train_batch=check_int(owner, "train_batch", train_batch, minimum=1),
    )
    name, module = _resolve_model(model)

    old_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(opts.threads)
        if isolate:
            results = [_run_isolated(model, name, size, opts) for size in size_list]
        else:
            if module is None:
                from ..models import build

                module = build(name)
            results = _run_in_process(module, name, size_list, opts, isolated=False)
        report = BenchmarkReport(results=results, environment=benchmark_environment(dev))
        if measure_peak:  # after the model runs, so the matmul buffers do not enter a process peak RSS
            report.set_matmul_peak(matmul_peak_gmacs(dev, opts.threads, dtype=dtype_name), dtype_name)
    finally:
        torch.set_num_threads(old_threads)
    return report


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _parse_size(text: str) -> int | tuple[int, int]:
    try:
        if "x" in text.lower():
            h, w = text.lower().split("x")
            return int(h), int(w)
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: use S (square) or HxW, e.g. 256 or 240x320"
        ) from None


def _parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "python -m clg_layers.tools.benchmark",
        description="Benchmark clg_layers zoo models: latency, throughput, G MAC/s, peak memory, "
        "training step.",
    )
    p.add_argument("models", nargs="+", metavar="NAME", help="zoo model names (see clg_layers.list_models())")
    p.add_argument("--sizes", nargs="+", type=_parse_size, default=[256], metavar="S",
                   help="input sizes: S for SxS or HxW (default: 256)")  # fmt: skip
    p.add_argument("--batch", type=int, default=1, help="images per forward pass (default: 1)")
    p.add_argument("--dtype", choices=list(_DTYPES), default="float32",
                   help="float32 runs plain; bfloat16/float16 run under torch.autocast")  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the run")
    p.add_argument("--compile", action="store_true", help="run through torch.compile")
    p.add_argument("--warmup", type=int, default=2, help="untimed passes (default: 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed passes (default: 5)")
    p.add_argument("--train-step", action="store_true", help="also time forward+L1+backward+AdamW")
    p.add_argument("--train-size", type=int, default=128, help="training-step input side (default: 128)")
    p.add_argument("--train-batch", type=int, default=2, help="training-step batch (default: 2)")
    p.add_argument("--isolate", action="store_true", help="one fresh process per size (honest CPU peak RSS)")
    p.add_argument("--peak", action="store_true", help="measure the dense-matmul peak and report utilisation")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the report as JSON")
    return p


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Command-line entry point: benchmark zoo models, print a table, optionally write JSON.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv[1:]``.
        prog: Program name shown in usage and error messages (e.g. ``"clg-layers bench"``
            when forwarded from another command); ``None`` means ``python -m clg_layers.tools.benchmark``.

    Returns:
        The exit code: 0 on success, 2 for usage errors (bad options, unknown
        model), 1 if a measurement failed.
    """
    parser = _parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): return instead of exiting
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    report = BenchmarkReport()
    try:
        for model in dict.fromkeys(args.models):
            part = benchmark(
                model,
                sizes=args.sizes,
                batch=args.batch,
                dtype=args.dtype,
                device=args.device,
                threads=args.threads,
                compile=args.compile,
                warmup=args.warmup,
                repeats=args.repeats,
                train_step=args.train_step,
                train_size=args.train_size,
                train_batch=args.train_batch,
                isolate=args.isolate,
            )
            report.results.extend(part.results)
            report.environment = report.environment or part.environment
        if args.peak:
            report.set_matmul_peak(matmul_peak_gmacs(args.device, args.threads, dtype=args.dtype), args.dtype)
    except (ValueError, TypeError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1
    print(report.table())
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(report.to_json() + "\n")
        except OSError as exc:
            print(f"{parser.prog}: error: cannot write {str(args.json)!r}: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
