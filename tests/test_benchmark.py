"""The benchmark harness: fields populated and consistent, JSON, table, CLI, isolation, validation.

Nothing here passes or fails on a timing value. Runs use one thread: the CI machines share their
cores, and a single thread cannot stall in an OpenMP barrier behind another process.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import clg_layers as cl
from clg_layers.tools.benchmark import (
    ALLOCATOR_ENV_VARS,
    BenchmarkReport,
    BenchmarkResult,
    benchmark,
    main,
    matmul_peak_gmacs,
)

TINY = "clginet-tiny"
FAST: dict[str, Any] = {"warmup": 1, "repeats": 2, "threads": 1}


@pytest.fixture(scope="module")
def report() -> BenchmarkReport:
    return benchmark(TINY, sizes=(32, (24, 40)), **FAST)


def _check_consistent(r: BenchmarkResult, model: nn.Module) -> None:
    c, h, w = r.input_size
    assert r.runs == FAST["repeats"]
    assert 0 < r.latency_min_s <= r.latency_median_s <= r.latency_max_s
    assert r.params == sum(p.numel() for p in model.parameters())
    assert r.macs == cl.count_macs(model, (c, h, w), batch=r.batch) > 0
    assert math.isclose(r.megapixels_per_s, r.batch * h * w / 1e6 / r.latency_median_s, rel_tol=1e-9)
    assert math.isclose(r.gmacs_per_s, r.macs / 1e9 / r.latency_median_s, rel_tol=1e-9)
    assert r.peak_memory_bytes is not None and r.peak_memory_bytes > 0
    assert r.memory_baseline_bytes is not None and 0 < r.memory_baseline_bytes <= r.peak_memory_bytes


def test_fields_populated_and_consistent(report: BenchmarkReport) -> None:
    info = cl.model_info(TINY)
    model = cl.build(TINY)
    assert [r.input_size for r in report.results] == [(3, 32, 32), (3, 24, 40)]
    for r in report.results:
        _check_consistent(r, model)
        assert r.params == info.params
        assert (r.model, r.batch, r.dtype, r.device, r.threads) == (TINY, 1, "float32", "cpu", 1)
        assert r.memory_kind == "process_peak_rss" and not r.isolated and not r.compiled
        assert r.compile_seconds is r.train_step_s is r.train_input_size is r.utilisation is None


def test_environment_recorded(report: BenchmarkReport) -> None:
    env = report.environment
    assert env["torch_version"] == torch.__version__
    assert env["num_threads"] == 1
    assert env["device"] == "cpu" and isinstance(env["device_name"], str) and env["device_name"]
    assert set(env["allocator_env"]) == set(ALLOCATOR_ENV_VARS)
    assert env["date"][:4].isdigit()
    assert env["matmul_peak_gmacs"] is None


def test_json_round_trips(report: BenchmarkReport) -> None:
    data = json.loads(report.to_json())
    assert len(data["results"]) == 2 and data["results"][1]["input_size"] == [3, 24, 40]
    assert data["environment"]["allocator_env"] == report.environment["allocator_env"]
    assert BenchmarkReport.from_json(report.to_json()) == report
    assert BenchmarkResult.from_dict(report.results[0].as_dict()) == report.results[0]


def test_table_is_fixed_width(report: BenchmarkReport) -> None:
    table = report.table()
    assert TINY in table and "24x40" in table and "process_peak_rss" in table
    lines = table.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model"))
    ruler, rows = lines[header + 1], lines[header + 2 : header + 4]
    assert set(ruler) <= {"-", " "}
    for line in rows:  # every row ends where the ruler does (numbers are right-aligned)
        assert line.startswith(TINY) and len(line) == len(ruler)
    assert BenchmarkReport().table().splitlines()[0].startswith("model")  # an empty report still renders


def test_module_instance_and_train_step_leave_weights_untouched() -> None:
    model = cl.build(TINY)  # training mode, as build returns it
    before = {k: v.clone() for k, v in model.state_dict().items()}
    (r,) = benchmark(model, sizes=(16,), train_step=True, train_size=16, train_batch=1, **FAST).results
    _check_consistent(r, model)
    assert r.model == TINY  # build() records the zoo name on the module
    assert r.train_step_s is not None and r.train_step_s > 0
    assert r.train_input_size == (1, 3, 16, 16)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_plain_module() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 3, 1))
    (r,) = benchmark(model, sizes=[(8, 12)], **FAST).results
    assert r.model == "Sequential" and r.input_size == (3, 8, 12)
    _check_consistent(r, model)


@pytest.mark.parametrize("dtype", ["bfloat16", torch.bfloat16])
def test_bfloat16_autocast(dtype: str | torch.dtype) -> None:
    (r,) = benchmark(TINY, sizes=(16,), dtype=dtype, **FAST).results
    assert r.dtype == "bfloat16" and r.latency_median_s > 0


def test_threads_set_and_restored() -> None:
    before = torch.get_num_threads()
    (r,) = benchmark(TINY, sizes=(16,), warmup=0, repeats=1, threads=1).results
    assert r.threads == 1 and torch.get_num_threads() == before


def test_matmul_peak_and_utilisation() -> None:
    assert matmul_peak_gmacs("cpu", 1, n=128, repeats=2) > 0
    rep = benchmark(TINY, sizes=(16,), **FAST)
    rep.set_matmul_peak(10.0)
    (r,) = rep.results
    assert r.utilisation == pytest.approx(r.gmacs_per_s / 10.0)
    assert rep.environment["matmul_peak_gmacs"] == 10.0 and "util" in rep.table()


def test_isolate_runs_in_a_fresh_process() -> None:
    (r,) = benchmark(TINY, sizes=(32,), isolate=True, **FAST).results
    _check_consistent(r, cl.build(TINY))
    assert r.isolated and r.memory_kind == "rss" and r.threads == 1


def test_isolate_passes_child_errors_back() -> None:
    model = nn.Conv2d(3, 3, 1)
    model.size_multiple = 8  # type: ignore[assignment]  # pickled with the instance, checked in the child
    with pytest.raises(ValueError, match=r"^benchmark: size 12x16 is not a multiple"):
        benchmark(model, sizes=[(12, 16)], isolate=True, **FAST)


def test_isolate_needs_a_picklable_module() -> None:
    class Local(nn.Conv2d):
        pass

    with pytest.raises(TypeError, match=r"^benchmark: isolate=True pickles the module"):
        benchmark(Local(3, 3, 1), sizes=(8,), isolate=True, **FAST)


def test_size_multiple_is_checked() -> None:
    model = nn.Conv2d(3, 3, 1)
    model.size_multiple = 8  # type: ignore[assignment]
    with pytest.raises(ValueError, match=r"^benchmark: size 12x16 is not a multiple"):
        benchmark(model, sizes=[(12, 16)], **FAST)


def test_main_prints_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "bench.json"
    argv = [TINY, "--sizes", "16", "8x24", "--warmup", "1", "--repeats", "2", "--threads", "1"]
    argv += ["--json", str(out)]
    assert main(argv) == 0
    assert TINY in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert [r["input_size"] for r in data["results"]] == [[3, 16, 16], [3, 8, 24]]
    assert data["environment"]["num_threads"] == 1


@pytest.mark.parametrize(
    "argv",
    [
        [TINY, "--repeats", "0"],
        ["clginet-tinyy"],
        [TINY, "--sizes", "abc"],
        [TINY, "--dtype", "float64"],
        [],
    ],
)
def test_main_usage_errors_return_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"dtype": "float64"}, ValueError, "unknown dtype"),
        ({"dtype": torch.int8}, ValueError, "unsupported dtype"),
        ({"dtype": 3}, TypeError, "dtype"),
        ({"repeats": 0}, ValueError, "repeats"),
        ({"warmup": -1}, ValueError, "warmup"),
        ({"batch": 0}, ValueError, "batch"),
        ({"threads": 0}, ValueError, "threads"),
        ({"train_size": 0}, ValueError, "train_size"),
        ({"repeats": 2.0}, TypeError, "repeats"),
        ({"sizes": ()}, ValueError, "sizes"),
        ({"sizes": (-4,)}, ValueError, "positive"),
        ({"sizes": [(0, 8)]}, ValueError, "positive"),
        ({"sizes": (1.5,)}, TypeError, "size"),
        ({"sizes": 256}, TypeError, "sizes"),
        ({"sizes": "256"}, TypeError, "sizes"),
        ({"device": "gpu"}, ValueError, "unknown device"),
        ({"device": "meta"}, ValueError, "CPU or CUDA"),
        ({"device": 0}, TypeError, "device"),
        ({"compile": "yes"}, TypeError, "compile"),
        ({"isolate": 1}, TypeError, "isolate"),
        ({"model": "clginet-tinyy"}, ValueError, "did you mean 'clginet-tiny'"),
        ({"model": 3}, TypeError, "model"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    kwargs = {"model": TINY, **kwargs}
    with pytest.raises(exc, match=r"^benchmark: ") as info:
        benchmark(kwargs.pop("model"), **kwargs)
    assert match in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_unavailable_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^benchmark: device 'cuda' requested"):
        benchmark(TINY, device="cuda")
