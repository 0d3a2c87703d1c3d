#!/usr/bin/env bash
# One short GPU check for the benchmarks page: tiny/small/base at 256² and 512², float32 and bf16
# autocast, eager and torch.compile, on the first CUDA device. Writes one JSON report per setting
# under ${OUT:-gpu_results}/ and prints the tables. Run from the repository root after
#   pip install -e .
# Budget: about 5 minutes on an H100 (compiles dominate).
set -euo pipefail
out=${OUT:-gpu_results}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
for dtype in float32 bfloat16; do
  for compile in "" "--compile"; do
    tag="${dtype}${compile:+-compile}"
    clg-layers bench clginet-tiny clginet-small clginet-base --device cuda --sizes 256 512 \
      --dtype "$dtype" $compile --warmup 3 --repeats 10 --peak --json "$out/$tag.json" | tee "$out/$tag.txt"
  done
done
