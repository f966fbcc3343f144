#!/usr/bin/env bash
# Fuzzes every cuma loader with cargo-fuzz (libFuzzer, nightly Rust).
#
#   scripts/fuzz.sh                 each target to 10^6 executions or 30 minutes, whichever first
#   FUZZ_RUNS=-1 FUZZ_SECONDS=20 scripts/fuzz.sh   a smoke run: 20 s per target
#   scripts/fuzz.sh gguf profile    only these targets
#
# Seeds are written by fuzz/make_seeds.py; the growing corpus stays in fuzz/corpus/ (ignored).
# Targets run FUZZ_JOBS at a time (default: the number of cores). A target that crashes, panics,
# times out (FUZZ_TIMEOUT s per input) or exceeds FUZZ_RSS_MB has its input copied to
# fuzz/regressions/<target>/, which the normal test suite replays; the script then fails.
# The summary (executions per target) is printed and written to target/fuzz/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${FUZZ_RUNS:-1000000}
seconds=${FUZZ_SECONDS:-1800}
timeout=${FUZZ_TIMEOUT:-10}
rss=${FUZZ_RSS_MB:-4096}
jobs=${FUZZ_JOBS:-$(nproc)}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/fuzz}
mkdir -p "$CARGO_TARGET_DIR"

command -v rustup >/dev/null || { echo "fuzz: rustup is needed (for the nightly toolchain)" >&2; exit 1; }
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

python=.venv/bin/python
[ -x "$python" ] || python=python3
"$python" fuzz/make_seeds.py fuzz/corpus

all=(gguf safetensors config_json bundle_manifest onnx_external_data jsonl_items profile chat_template)
targets=("${@:-${all[@]}}")

echo "fuzz: building ${#targets[@]} targets (release, debug assertions on)"
if [ ${#targets[@]} -eq ${#all[@]} ]; then
    (cd fuzz && cargo +nightly fuzz build -O --debug-assertions --features libfuzzer)
else
    for t in "${targets[@]}"; do
        (cd fuzz && cargo +nightly fuzz build -O --debug-assertions --features libfuzzer "$t")
    done
fi

logs=$CARGO_TARGET_DIR/logs
mkdir -p "$logs"
run_one() {
    local t=$1
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    (cd fuzz && cargo +nightly fuzz run -O --debug-assertions --features libfuzzer "$t" "corpus/$t" -- \
        -runs="$runs" -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb="$rss" \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="artifacts/$t/") >"$logs/$t.log" 2>&1
}

failed=()
pids=()
names=()
for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
    echo "fuzz: $t"
    run_one "$t" &
    pids+=($!)
    names+=("$t")
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed+=("${names[$i]}")
done

summary=$CARGO_TARGET_DIR/summary.txt
{
    echo "cuma fuzz run $(date -u +%FT%TZ) on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    printf '%-20s %12s %8s %s\n' target executions seconds result
    for t in "${targets[@]}"; do
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$' | tail -1 || true)
        secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$logs/$t.log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' | tail -1 || true)
        result=ok
        [[ " ${failed[*]-} " == *" $t "* ]] && result=FAILED
        printf '%-20s %12s %8s %s\n' "$t" "${execs:-?}" "${secs:-?}" "$result"
    done
} | tee "$summary"

for t in "${failed[@]-}"; do
    [ -n "$t" ] || continue
    mkdir -p "fuzz/regressions/$t"
    for a in fuzz/artifacts/"$t"/*; do
        [ -f "$a" ] && cp "$a" "fuzz/regressions/$t/" && echo "fuzz: $t failed on $a (copied to fuzz/regressions/$t/)"
    done
    tail -n 30 "$logs/$t.log"
done
[ ${#failed[@]} -eq 0 ]
