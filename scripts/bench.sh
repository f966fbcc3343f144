#!/usr/bin/env bash
# Serving benchmark: the plain SmolLM2 backbone against CuMA (E 8, k 2, r 8 on q,v) on tch, ONNX
# Runtime (CPU) and tract, measured side by side in one criterion run (benches/runtime.rs), then
# one table with the CuMA / plain ratios, plus Python onnxruntime decoding the same plain graph and
# (after `CUMA_BENCH_EXTRAS=1 bash scripts/bootstrap.sh`) optimum's ONNX export of the same model.
#   scripts/bench.sh            (CUMA_BENCH_DIR: runs/bench; CUMA_BENCH_THREADS: 2)
set -euo pipefail
cd "$(dirname "$0")/.."
export CUMA_BENCH_DIR=${CUMA_BENCH_DIR:-runs/bench}
export CUMA_BENCH_THREADS=${CUMA_BENCH_THREADS:-2}
OUT=$CUMA_BENCH_DIR
cargo build --quiet --bin cuma
CUMA=target/debug/cuma
. scripts/bench_bundles.sh
bench_bundles "$OUT" "$CUMA"
# The dev profile compiles dependencies (libtorch bindings, ort, tract) at opt-level 3 and reuses
# the test build; a release build would recompile everything for little gain here.
python=${CUMA_PYTHON:-.venv/bin/python}
optimum=()
if "$python" -c 'import optimum.exporters.onnx' 2>/dev/null; then
    "$python" scripts/optimum_export.py "$OUT/optimum"
    optimum=("$OUT/optimum/onnx/model.onnx")
else
    echo "bench: optimum is not installed (CUMA_BENCH_EXTRAS=1 bash scripts/bootstrap.sh); comparing with Python onnxruntime on cuma's graph only" >&2
fi
cargo bench --profile dev --bench runtime
"$python" scripts/bench_table.py target/criterion "$OUT/plain/model.onnx" "$CUMA_BENCH_THREADS" "${optimum[@]}"
