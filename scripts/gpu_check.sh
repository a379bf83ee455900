#!/usr/bin/env bash
# GPU check: the Triton kernels' CUDA tests and the CUDA benchmark, results under $OUT.
#
# Runs from a source checkout on a GPU host without network access (torch >= 2.11, Triton, pytest):
#     OUT=/tmp/gn-gpu scripts/gpu_check.sh
# Writes: env.txt, junit-triton.xml, pytest-triton.log, bench-gpu.{json,csv,log}, bench-gpu-compile.{json,csv,log},
# summary.txt (one line per step: name, exit status, seconds) and summary.json. Each step has its own time limit
# and a failing step is recorded without stopping the others; the whole script stays under about 7 minutes.
# Liger-Kernel joins the benchmark when importable, or when a wheel is given by $LIGER_WHEEL or found under
# shared/wheels/ (installed with --no-deps into a temporary directory, nothing else touched).
set -u

cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-results}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"  # the GPU machines have python3 and may have no python
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET  # compiled kernels on the GPU, never the interpreter

SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
SCRIPT_START=$(date +%s)

# step NAME LIMIT_SECONDS LOGFILE COMMAND...: run with a time limit, log stdout+stderr, record the outcome.
step() {
    local name="$1" limit="$2" log="$3"
    shift 3
    local start rc
    start=$(date +%s)
    echo "== $name (limit ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - start))" >>"$SUMMARY"
    echo "   exit $rc after $(($(date +%s) - start)) s (log: $log)"
    tail -n 3 "$log" | sed 's/^/   | /'
}

step env 60 "$OUT/env.txt" bash -c "
    nvidia-smi || true
    $PY - <<'EOF'
import platform, torch
print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', torch.version.cuda)
try:
    import triton
    print('triton', triton.__version__)
except ImportError as e:
    print('triton missing:', e)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print('device', p.name, 'SMs', p.multi_processor_count, 'L2 bytes', getattr(p, 'L2_cache_size', None),
          'memory GiB', round(p.total_memory / 2**30, 1))
import groupnorm.ops.triton as gt
print('triton kernels registered:', gt.register())
EOF"

# Liger-Kernel: optional competitor in the benchmark.
PROVIDERS="groupnorm,torch"
if ! "$PY" -c "import liger_kernel" >/dev/null 2>&1; then
    WHEEL="${LIGER_WHEEL:-$(ls shared/wheels/liger_kernel-*.whl 2>/dev/null | head -n 1)}"
    if [ -n "$WHEEL" ] && [ -f "$WHEEL" ]; then
        LIGER_DIR="$(mktemp -d)"
        "$PY" -m pip install --quiet --no-deps --no-index --target "$LIGER_DIR" "$WHEEL" >"$OUT/liger-install.log" 2>&1 &&
            export PYTHONPATH="$PYTHONPATH:$LIGER_DIR"
    fi
fi
if "$PY" -c "import liger_kernel.ops.group_norm" >/dev/null 2>&1; then
    PROVIDERS="$PROVIDERS,liger"
else
    echo "liger-kernel not available: benchmark without it" | tee -a "$OUT/env.txt"
fi

step tests 200 "$OUT/pytest-triton.log" \
    "$PY" -m pytest tests/triton -q -rs -p no:cacheprovider --junitxml="$OUT/junit-triton.xml"

# Batch-1 VAE shapes (the 5x eager target), ResNet-50 shapes at N = 2..32 (fwd+bwd vs eager and Liger).
SHAPES="1x512x256x256:32,1x128x512x512:32,sd-vae-512x64,sd-vae-256x128"
SHAPES="$SHAPES,resnet50-s1-n2,resnet50-s2-n8,resnet50-s1-n32,resnet50-s4-n32,video-3d-128x8x64"
step bench 150 "$OUT/bench-gpu.log" \
    "$PY" -m groupnorm bench --device cuda --providers "$PROVIDERS" --shapes "$SHAPES" \
    --layouts nchw,channels_last --dtypes bfloat16 --activations none,silu --residual no \
    --modes fwd,fwd+bwd --rounds 5 --json "$OUT/bench-gpu.json" --csv "$OUT/bench-gpu.csv"

# GN+SiLU forward against torch.compile (each case compiles once: few cases).
step bench-compile 100 "$OUT/bench-gpu-compile.log" \
    "$PY" -m groupnorm bench --device cuda --providers groupnorm,torch-compile \
    --shapes 1x512x256x256:32,1x128x512x512:32 --layouts nchw,channels_last --dtypes bfloat16 \
    --activations silu --residual no --modes fwd --rounds 5 \
    --json "$OUT/bench-gpu-compile.json" --csv "$OUT/bench-gpu-compile.csv"

"$PY" - "$SUMMARY" "$OUT/summary.json" "$SCRIPT_START" <<'EOF' || true
import json, sys, time
summary, target, started = sys.argv[1], sys.argv[2], int(sys.argv[3])
steps = [dict(zip(("step", "exit", "seconds"), line.rstrip("\n").split("\t"))) for line in open(summary) if line.strip()]
for s in steps:
    s["exit"], s["seconds"] = int(s["exit"]), int(s["seconds"])
result = {"steps": steps, "ok": all(s["exit"] == 0 for s in steps), "total_seconds": int(time.time()) - started}
with open(target + ".tmp", "w") as f:
    json.dump(result, f, indent=1)
import os
os.replace(target + ".tmp", target)
print(json.dumps(result))
EOF
echo "total $(($(date +%s) - SCRIPT_START)) s; summary: $SUMMARY"
# Exit status: 0 only when every step passed.
! grep -qv $'\t0\t' "$SUMMARY"
