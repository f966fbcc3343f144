#!/usr/bin/env bash
# Every speed figure of the README's "Measured" section in one command (issue 19 item 5), on this
# machine, one section after another, each section's comparisons alternated inside it:
#   1. serving: plain vs CuMA on tch, ONNX Runtime and tract (criterion, benches/runtime.rs), and
#      Python onnxruntime / optimum on the same graph           (scripts/bench.sh)
#   1b. routing: plain vs CuMA with and without the profile-terms graph, alternated rounds with
#      medians and ranges, ONNX Runtime and tract             (scripts/routing_overhead.sh)
#   2. runner overhead: cuma-runtime vs Python onnxruntime, per decode step
#                                                               (scripts/runner_overhead.py)
#   3. 4-bit bundles: accuracy against f32, speed and RSS against llama.cpp
#                                                               (scripts/quant_bench.sh)
#   4. training: cuma train vs transformers + PEFT and a dense PyTorch mixture, and the floor
#                                                               (scripts/train_bench.sh)
# Full logs go to OUT (default runs/speed-table); the tables go to stdout.
#   scripts/speed_table.sh [OUT]       SECTIONS="serving routing overhead quant training" (default: all)
# Needs CUMA_BENCH_EXTRAS=1 bash scripts/bootstrap.sh (optimum, llama-cpp-python, PEFT).
# About 45 minutes on 2 cores (2026-12-03, the cuma binaries already built); pause other work
# on the machine while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/speed-table}
SECTIONS=${SECTIONS:-serving routing overhead quant training}
python=${CUMA_PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
flags=$(grep -m1 '^flags' /proc/cpuinfo | grep -o -w -E 'avx2|avx512f|avx512_bf16|avx512_vnni' | sort -u | tr '\n' ' ')
echo "# cuma speed table: $(date -u '+%F %H:%M UTC'), $cpu ($flags), $(nproc) cores"

# Runs one section, its full output in $OUT/$1.log and its last TAIL (40) lines on stdout.
section() {
    local name=$1 title=$2
    shift 2
    echo
    echo "## $title"
    local started=$SECONDS
    if ! "$@" >"$OUT/$name.log" 2>&1; then
        echo "(failed; see $OUT/$name.log)"
        tail -5 "$OUT/$name.log"
        return 0
    fi
    # Each script ends with its summary tables.
    tail -n "${TAIL:-40}" "$OUT/$name.log"
    echo "($(( SECONDS - started )) s)"
}

for s in $SECTIONS; do
    case $s in
        serving) section serving "Serving: plain vs CuMA, tch / ONNX Runtime / tract" bash scripts/bench.sh ;;
        routing) section routing "Routing overhead: plain vs CuMA, profile terms cached or not" bash scripts/routing_overhead.sh ;;
        overhead)
            cargo build --quiet -p cuma-runtime --features cli --bin cuma-run
            section overhead "Runner overhead: cuma-runtime vs Python onnxruntime" \
                "$python" scripts/runner_overhead.py "${CUMA_BENCH_DIR:-runs/bench}/plain" ;;
        quant) section quant "4-bit bundles vs llama.cpp" bash scripts/quant_bench.sh ;;
        training) section training "Training: cuma train vs PyTorch + PEFT" bash scripts/train_bench.sh "$OUT/train-bench" ;;
        *) echo "unknown section $s (serving, routing, overhead, quant, training)" >&2; exit 2 ;;
    esac
done
