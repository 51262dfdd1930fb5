#!/usr/bin/env bash
# What a machine with a CUDA GPU runs to check cir there, in one command: the tests that need
# CUDA, then the whole suite (serially: workers sharing one GPU time out), the demo on the bundled
# model (no network needed), float32 against bfloat16, CIR's profile on the GPU, CIR at the sizes
# of Llama-3.2-1B, Llama-3.1-8B and Qwen2.5-7B (bench/scale.py, random weights), and two
# processes against one where two GPUs exist.
# Usage: bench/gpu_smoke.sh [OUT_DIR]   (CIR_PYTHON picks the interpreter; default: python;
#        CIR_SMOKE_SKIP_TESTS=1 skips the test suite)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${CIR_PYTHON:-python}"
OUT="${1:-runs/gpu-smoke}"
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"

"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible"
print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| devices:", torch.cuda.device_count())
PY

# 0. the tests: those that need CUDA first (device placement, bfloat16, the bitsandbytes backend),
#    then the rest, one process (pytest -n N puts N workers on the one GPU and their fixtures time out)
#    (a failure is reported at the end: the measurements below still run)
failed=0
if [ "${CIR_SMOKE_SKIP_TESTS:-0}" != 1 ]; then
    "$PY" -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$OUT/tests-gpu.txt" || failed=1
    "$PY" -m pytest -q -m "not gpu" -p no:cacheprovider tests 2>&1 | tee "$OUT/tests.txt" || failed=1
fi

# 1. the README demo, on the GPU (cir puts the model on the first GPU when there is one)
"$PY" -m cir.cli demo --out "$OUT/demo" --quiet | tee "$OUT/demo.txt"

# 2. seconds per fact and peak memory, float32 and bfloat16, from the runs' own metrics
"$PY" -m cir.cli unlearn --forget capitals --out "$OUT/bf16" --overwrite --quiet --dtype bfloat16 \
    --set max_epochs=3 | tee "$OUT/bf16.txt"
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = []
for name, run in (("float32 (demo)", out / "demo"), ("bfloat16", out / "bf16")):
    result = json.loads((run / "result.json").read_text())
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows.append(f"| {name} | {result['seconds_per_fact']:.2f} | {max(m['peak_memory_mb'] for m in metrics):.0f} | "
                f"{result['kept']['loss_ratio']:.4f} | {result['stop_reason']} |")
text = "| run | s / fact | peak GPU memory (MiB) | loss ratio | stopped by |\n|---|---|---|---|---|\n" + "\n".join(rows)
(out / "summary.md").write_text(text + "\n")
print(text)
PY

# 3. where an unlearning run's time goes on the GPU (the profile docs/benchmarks.md has for the CPU)
"$PY" bench/run_profile.py --label gpu | tee "$OUT/profile.txt"

# 4. CIR at the paper's size: one bfloat16 epoch per architecture, seconds per fact and peak memory
"$PY" bench/scale.py --label gpu | tee "$OUT/scale.txt"

# 5. with two or more GPUs: two processes (nccl), replicated and FSDP-sharded, must give the
#    one-process weights; the runs' metrics give the peak memory per process
if [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    "$PY" -m cir.cli unlearn --forget capitals --out "$OUT/ddp1" --overwrite --quiet --set max_epochs=2
    "$PY" -m torch.distributed.run --nproc_per_node 2 -m cir.cli unlearn --forget capitals --out "$OUT/ddp2" \
        --overwrite --quiet --set max_epochs=2
    "$PY" -m torch.distributed.run --nproc_per_node 2 -m cir.cli unlearn --forget capitals --out "$OUT/fsdp2" \
        --overwrite --quiet --set max_epochs=2 --fsdp
    "$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
from safetensors.torch import load_file
out = Path(sys.argv[1])
a = load_file(out / "ddp1" / "model.safetensors")
for run in ("ddp2", "fsdp2"):
    b = load_file(out / run / "model.safetensors")
    worst = max(float((a[n] - b[n]).abs().max() / a[n].abs().max().clamp_min(1e-12)) for n in a)
    peaks = json.loads((out / run / "metrics.jsonl").read_text().splitlines()[-1])["peak_memory_mb_per_process"]
    print(f"{run} vs one GPU: largest relative weight difference {worst:.2e}; peak MiB per process {peaks}")
PY
fi
[ "$failed" = 0 ] || { echo "gpu_smoke: some tests failed (see $OUT/tests-gpu.txt and $OUT/tests.txt)" >&2; exit 1; }
