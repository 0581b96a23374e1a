#!/usr/bin/env bash
# The GPU check of issue 7, in one go: the training loop with PyTorch's caching allocator and
# with strata (each resource kind, each in its own process), CuPy on strata memory, a logged
# run, PyTorch streams and the C interface on the GPU, and a comparison table. Expects
# libstrata_capi.so beside this script (or STRATA_LIBRARY), python3 with torch, torchvision and
# cupy.
#
#   bash run_gpu.sh OUTDIR [STEPS]
set -u
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: run_gpu.sh OUTDIR [STEPS]}"
steps="${2:-30}"
mkdir -p "$out"
export STRATA_LIBRARY="${STRATA_LIBRARY:-$here/libstrata_capi.so}"
export PYTHONUNBUFFERED=1 CUBLAS_WORKSPACE_CONFIG=:4096:8
results="$out/results.jsonl"
: >"$results"

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c 'import torch, torchvision, cupy; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cupy", cupy.__version__, "cuda", torch.version.cuda)'
} | tee "$out/machine.txt"

run() { # name, then env assignments and the command
  local name="$1"; shift
  echo "== $name"
  if env "$@" >>"$results" 2>"$out/$name.err"; then
    tail -n 1 "$results" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("   median %.2f ms, last loss %.6f" % (r["step_ms_median"], r["losses"][-1]))'
  else
    echo "   FAILED ($?)"; tail -n 20 "$out/$name.err"
  fi
}

train="python3 $here/train.py --steps $steps"
run resnet-pytorch $train --allocator pytorch
for kind in stream-pool pool async arena binning cuda; do
  run "resnet-strata-$kind" STRATA_RESOURCE=$kind $train --allocator strata
done
run resnet-pytorch-again $train --allocator pytorch
run transformer-pytorch $train --allocator pytorch --model transformer --batch 32
run transformer-strata-stream-pool STRATA_RESOURCE=stream-pool $train --allocator strata --model transformer --batch 32

echo "== logged run (stream-pool, 3 steps)"
STRATA_RESOURCE=stream-pool STRATA_LOG="$out/strata_log.csv" \
  python3 "$here/train.py" --steps 3 --warmup 0 --allocator strata >"$out/logged.json" 2>"$out/logged.err" \
  || { echo "   FAILED"; tail -n 20 "$out/logged.err"; }
if [ -f "$out/strata_log.dev0.csv" ]; then
  python3 "$here/check_log.py" "$out/strata_log.dev0.csv" | tee "$out/log_summary.txt"
  gzip -f "$out/strata_log.dev0.csv"
fi

echo "== cupy"
python3 "$here/cupy_check.py" | tee "$out/cupy.json" || echo "   CuPy check FAILED"

echo "== streams"
for kind in stream-pool arena async pool; do
  STRATA_RESOURCE=$kind python3 "$here/gpu_streams.py" | tee -a "$out/streams.jsonl" \
    || echo "   streams check FAILED ($kind)"
done

python3 "$here/compare.py" "$results" | tee "$out/summary.txt"
