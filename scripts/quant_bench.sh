#!/usr/bin/env bash
# 4-bit bundles (issue 19 item 2, docs/quantization.md), in one command: accuracy against the
# float bundles on WVS test prompts (runtime/examples/agreement.rs; plain and CuMA, float32 and
# int8 activations; llama.cpp on the same prompts), then speed and memory alternated against
# llama.cpp on the same GGUF (scripts/quant_bench.py).
#   scripts/quant_bench.sh   (CUMA_BENCH_DIR: runs/bench; ITEMS: every 70th WVS test item; ROUNDS: 5)
# Needs the bench extras (llama-cpp-python): CUMA_BENCH_EXTRAS=1 bash scripts/bootstrap.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${CUMA_BENCH_DIR:-runs/bench}
ROUNDS=${ROUNDS:-5}
THREADS=${CUMA_BENCH_THREADS:-2}
WVS=${WVS:-../shared/data/wvs7}
python=${CUMA_PYTHON:-.venv/bin/python}
cargo build --quiet --bin cuma
cargo build --quiet -p cuma-runtime --features cli --bin cuma-run --example agreement
CUMA=target/debug/cuma
AGREE=target/debug/examples/agreement
. scripts/bench_bundles.sh
bench_bundles "$OUT" "$CUMA"
mkdir -p "$OUT/wvs"
items=${ITEMS:-$OUT/wvs/sample.jsonl}
if [[ ! -f $items ]]; then
    "$CUMA" data convert --wvs "$WVS" --out "$OUT/wvs/all.jsonl"
    "$CUMA" data split --in "$OUT/wvs/all.jsonl" --out-dir "$OUT/wvs"
    awk 'NR % 70 == 1' "$OUT/wvs/test.jsonl" > "$items"
fi
echo "== accuracy against the float bundles ($(wc -l < "$items") WVS test prompts)"
for pair in "plain $OUT/plain $OUT/plain-int4" "cuma $OUT/cuma/bundle $OUT/cuma-int4"; do
    read -r name float int4 <<< "$pair"
    for engine in ort ort-int8; do
        echo "-- $name int4 on $engine"
        "$AGREE" --reference "$float" --candidate "$int4" --candidate-engine "$engine" --items "$items" \
            --threads "$THREADS" --dump "$OUT/wvs/$name-reference.jsonl" | sed -n 1p
    done
done
echo "-- llama.cpp (its own Q4_1 x Q8 kernels) against the plain float bundle"
"$python" scripts/llama_agreement.py "$OUT/wvs/plain-reference.jsonl" --threads "$THREADS" | sed -n 1p
echo "== speed and memory, alternated with llama.cpp"
"$python" scripts/quant_bench.py --int4 "$OUT/plain-int4" --f32 "$OUT/plain" --rounds "$ROUNDS" \
    --threads "$THREADS" --json "$OUT/quant_bench.json"
