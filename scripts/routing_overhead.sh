#!/usr/bin/env bash
# Routing overhead at serving time (issue 19 item 1): the plain SmolLM2 bundle against CuMA
# (E 8, k 2, r 8 on q,v) exported both ways - the default, whose routers' profile terms are a
# graph of their own run once per profile, and `--no-profile-terms`, whose decoder recomputes
# them at every step - on ONNX Runtime and on tract, in alternating rounds
# (runtime/examples/routing_overhead.rs): first token of a 128-token prompt, one decode step at
# batch 1 and 8; each CuMA bundle's time over plain's, median and range of the rounds.
#   scripts/routing_overhead.sh    (CUMA_BENCH_DIR: runs/bench; ROUNDS: 9 on ort, 5 on tract;
#                                   CUMA_BENCH_THREADS: 2)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${CUMA_BENCH_DIR:-runs/bench}
THREADS=${CUMA_BENCH_THREADS:-2}
cargo build --quiet --bin cuma
cargo build --quiet -p cuma-runtime --features cli --example routing_overhead
. scripts/bench_bundles.sh
bench_bundles "$OUT" target/debug/cuma
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(date -u '+%F %H:%M UTC')"
for spec in "ort ${ROUNDS:-9} 20" "tract ${ROUNDS:-5} 10"; do
    read -r backend rounds steps <<<"$spec"
    target/debug/examples/routing_overhead --plain "$OUT/plain" --cuma "$OUT/cuma/bundle" --cuma "$OUT/cuma-vector" \
        --backend "$backend" --rounds "$rounds" --steps "$steps" --threads "$THREADS"
done
