#!/usr/bin/env bash
# GPU check: one run of at most 8 minutes that brings back the whole comparison table, then the CUDA tests.
#
# From a source checkout on a GPU host without network access (torch >= 2.11, Triton, pytest; no install):
#     OUT=/tmp/gn-gpu scripts/gpu_check.sh
# Steps, each with its own time limit inside an overall budget of $BUDGET_S seconds (default 480):
#   1. preflight   versions, SM count, L2 size, measured copy bandwidth            -> preflight.{json,log}
#   2. warm        our Triton kernels and torch.compile's graphs compiled in parallel processes, filling the
#                  on-disk caches the timed run reads                             -> warm-*.log
#   3. bench       key shapes x {nchw, channels_last} x bf16 (fp32 too for two ResNet-50 shapes) x {fwd, fwd+bwd}
#                  (SiLU epilogue; ReLU on ResNet-50): our op, torch eager, torch.compile (one compiled function
#                  per row), Liger-Kernel when available; eager and CUDA-graph replay times, % of copy bandwidth,
#                  our plan and launch count, max error against torch in float32. Each row is appended to
#                  results.jsonl when done, so a cut-off run keeps every finished row  -> results.jsonl, bench.log
#   4. table       the compact table (printed again at the very end)             -> table.txt
#   5. tests       the CUDA tests in parallel workers, a per-test time limit and a small fuzz budget (among them
#                  test_triton_compile_traced.py: torch.compile traces into our kernels, forward and backward)
#                                                                                  -> pytest-*.log, junit-*.xml
# summary.txt has one line per step (name, exit status, seconds); summary.json the same as JSON.
#
# Liger-Kernel (optional; the GPU host has no network): download its wheel beforehand on a machine with network,
#     pip download liger-kernel --no-deps --only-binary=:all: -d shared/wheels
# and bring shared/wheels/ along; it is installed with --no-deps --no-index into a temporary directory (nothing
# else is touched). $LIGER_WHEEL names another wheel file.
#
# Dry run without a GPU (every step, on CPU tensors through Triton's interpreter, tiny shapes; a few minutes on 2 loaded
# cores, mostly process start-up and the interpreter):
#     DRY_RUN=1 OUT=/tmp/gn-dry scripts/gpu_check.sh        (make gpu-check-dry)
# Knobs: GPU_CHECK_SHAPES (comma-separated names or NxCxHxW[:G]), GPU_CHECK_TESTS (pytest paths),
# WARM_WORKERS, TEST_WORKERS, TEST_TIMEOUT_S (per test), BUDGET_S.
set -u

cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-results}"
mkdir -p "$OUT"
# The GPU machines have python3 and may have no python.
if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
elif command -v python3 >/dev/null 2>&1; then
    PY=python3
else
    PY=python
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
BUDGET_S="${BUDGET_S:-480}"
DRY_RUN="${DRY_RUN:-0}"
CPUS="$(nproc 2>/dev/null || echo 4)"

if [ "$DRY_RUN" = 1 ]; then
    export TRITON_INTERPRET=1
    export GROUPNORM_BENCH_COMPILE_BACKEND="${GROUPNORM_BENCH_COMPILE_BACKEND:-aot_eager}"  # no C++ codegen
    DEVICE=cpu
    SHAPES="${GPU_CHECK_SHAPES:-2x8x6x6:4,1x8x3x4x4:2}"
    TESTS="${GPU_CHECK_TESTS:-tests/triton/test_triton_planner.py tests/triton/test_triton_cuda.py tests/triton/test_triton_compile_traced.py}"
    WARM_WORKERS="${WARM_WORKERS:-2}"
    TEST_WORKERS="${TEST_WORKERS:-2}"
    ROUNDS=1
else
    unset TRITON_INTERPRET  # compiled kernels on the GPU, never the interpreter
    DEVICE=cuda
    SHAPES="${GPU_CHECK_SHAPES:-}"
    TESTS="${GPU_CHECK_TESTS:-tests/triton}"
    WARM_WORKERS="${WARM_WORKERS:-$(((CPUS + 1) / 2 < 8 ? (CPUS + 1) / 2 : 8))}"
    TEST_WORKERS="${TEST_WORKERS:-4}"
    ROUNDS=5
fi
SHAPE_ARGS=()
[ -n "$SHAPES" ] && SHAPE_ARGS=(--shapes "$SHAPES")
# Shared by the warming processes and the timed run; outside $OUT, which comes back to the caller.
export TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-${TMPDIR:-/tmp}/groupnorm-gpu-cache/triton}"
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-${TMPDIR:-/tmp}/groupnorm-gpu-cache/inductor}"
mkdir -p "$TRITON_CACHE_DIR" "$TORCHINDUCTOR_CACHE_DIR"

SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
START=$SECONDS

# limit WANTED: WANTED seconds, or what is left of the budget when that is less (at least 1).
limit() {
    local left=$((BUDGET_S - (SECONDS - START)))
    [ "$left" -lt 1 ] && left=1
    echo $(($1 < left ? $1 : left))
}

# step NAME LIMIT_SECONDS LOGFILE COMMAND...: run with a time limit, log stdout+stderr, record the outcome.
step() {
    local name="$1" lim log="$3" start rc
    lim="$(limit "$2")"
    shift 3
    start=$SECONDS
    echo "== $name (limit ${lim}s)"
    timeout --kill-after=5 "$lim" "$@" >"$log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" >>"$SUMMARY"
    echo "   exit $rc after $((SECONDS - start)) s (log: $log)"
    tail -n 2 "$log" | cut -c1-300 | sed 's/^/   | /'
}

# parallel NAME LIMIT_SECONDS: run the commands in PARALLEL_CMDS (one per worker) at once, each with the limit;
# logs in $OUT/NAME-<worker>.log; the step fails when any worker does.
parallel() {
    local name="$1" lim start rc=0 i pids=()
    lim="$(limit "$2")"
    start=$SECONDS
    echo "== $name: ${#PARALLEL_CMDS[@]} workers (limit ${lim}s)"
    for i in "${!PARALLEL_CMDS[@]}"; do
        timeout --kill-after=5 "$lim" bash -c "${PARALLEL_CMDS[$i]}" >"$OUT/$name-$i.log" 2>&1 &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || rc=$?
    done
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" >>"$SUMMARY"
    echo "   exit $rc after $((SECONDS - start)) s (logs: $OUT/$name-*.log)"
}

# Liger-Kernel: an optional competitor, from a wheel brought along.
if ! "$PY" -c "import liger_kernel" >/dev/null 2>&1; then
    WHEEL="${LIGER_WHEEL:-$(ls shared/wheels/liger_kernel-*.whl 2>/dev/null | head -n 1)}"
    if [ -n "$WHEEL" ] && [ -f "$WHEEL" ]; then
        LIGER_DIR="$(mktemp -d)"
        "$PY" -m pip install --quiet --no-deps --no-index --target "$LIGER_DIR" "$WHEEL" >"$OUT/liger-install.log" 2>&1 &&
            export PYTHONPATH="$PYTHONPATH:$LIGER_DIR"
    fi
fi

BENCH=("$PY" scripts/gpu_bench.py)
step preflight 45 "$OUT/preflight.log" "${BENCH[@]}" preflight --device "$DEVICE" --json "$OUT/preflight.json"
cat "$OUT/preflight.log" | cut -c1-400

PARALLEL_CMDS=()
for ((i = 0; i < WARM_WORKERS; i++)); do
    PARALLEL_CMDS+=("$(printf '%q ' "${BENCH[@]}" warm --device "$DEVICE" --worker "$i" --workers "$WARM_WORKERS" ${SHAPE_ARGS[@]+"${SHAPE_ARGS[@]}"})")
done
parallel warm 150

step bench 230 "$OUT/bench.log" "${BENCH[@]}" bench --device "$DEVICE" --jsonl "$RESULTS" \
    --preflight "$OUT/preflight.json" --rounds "$ROUNDS" ${SHAPE_ARGS[@]+"${SHAPE_ARGS[@]}"}
"$PY" scripts/gpu_bench.py table "$RESULTS" >"$OUT/table.txt" 2>&1
cat "$OUT/table.txt"

# The CUDA tests, test files shared round-robin between workers.
export GROUPNORM_TRITON_FUZZ_EXAMPLES="${GROUPNORM_TRITON_FUZZ_EXAMPLES:-4}"
export GROUPNORM_TEST_TIMEOUT_S="${TEST_TIMEOUT_S:-60}"
FILES=()
for path in $TESTS; do
    if [ -d "$path" ]; then FILES+=("$path"/test_*.py); else FILES+=("$path"); fi
done
PARALLEL_CMDS=()
for ((i = 0; i < TEST_WORKERS && i < ${#FILES[@]}; i++)); do
    mine=()
    for ((j = i; j < ${#FILES[@]}; j += TEST_WORKERS)); do mine+=("${FILES[$j]}"); done
    PARALLEL_CMDS+=("$(printf '%q ' "$PY" -m pytest -q -rs -p no:cacheprovider --junitxml="$OUT/junit-$i.xml" "${mine[@]}")")
done
parallel pytest 120
for f in "$OUT"/pytest-*.log; do tail -n 1 "$f" | sed "s|^|   $(basename "$f"): |"; done

"$PY" - "$SUMMARY" "$OUT/summary.json" "$((SECONDS - START))" <<'EOF' || true
import json, os, sys
summary, target, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
steps = [dict(zip(("step", "exit", "seconds"), line.rstrip("\n").split("\t"))) for line in open(summary) if line.strip()]
for s in steps:
    s["exit"], s["seconds"] = int(s["exit"]), int(s["seconds"])
result = {"steps": steps, "ok": all(s["exit"] == 0 for s in steps), "total_seconds": total}
with open(target + ".tmp", "w") as f:
    json.dump(result, f, indent=1)
os.replace(target + ".tmp", target)
EOF
echo
cat "$OUT/table.txt"
echo "total $((SECONDS - START)) s (budget $BUDGET_S s); steps:"
sed 's/^/   /' "$SUMMARY"
# Exit status: 0 only when every step passed.
! grep -qv $'\t0\t' "$SUMMARY"
