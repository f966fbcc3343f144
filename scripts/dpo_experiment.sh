#!/usr/bin/env bash
# SFT -> DPO at CPU scale (docs/results.md, "Preference optimisation"): CuMA and LoRA on pairs
# made from WVS answers and from POPQUORN ratings and comparisons, evaluated on held-out
# respondents / annotators before and after DPO; DPO with reference = the SFT run and with
# reference = the bare backbone; CuMA's DPO with and without the balance loss.
#
#   scripts/dpo_experiment.sh [out dir, default runs/dpo-experiment]
#
# Resumable like scripts/experiment.sh: a step whose output exists is skipped, an interrupted
# training run resumes from its checkpoint. Environment: SFT_STEPS (40), DPO_STEPS (20), BATCH (8
# for SFT), PAIR_BATCH (4 pairs = 8 rows for DPO), SFT_LR (5e-4), DPO_LR (1e-4), EVAL_EVERY (every
# k-th WVS test line is evaluated: 7), PQ_EVAL_EVERY (POPQUORN: 36), SETS ("wvs popquorn"),
# WVS_RUNS / PQ_RUNS (which runs, in order; default all of cuma-sft cuma-dpo lora-sft lora-dpo
# cuma-dpo-refbase cuma-dpo-nobalance for WVS, the first four for POPQUORN), CUMA_BIN (default: a
# copy of target/debug/cuma, built first).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-runs/dpo-experiment}
SFT_STEPS=${SFT_STEPS:-40}
DPO_STEPS=${DPO_STEPS:-20}
BATCH=${BATCH:-8}
PAIR_BATCH=${PAIR_BATCH:-4}
SFT_LR=${SFT_LR:-5e-4}
DPO_LR=${DPO_LR:-1e-4}
EVAL_EVERY=${EVAL_EVERY:-7}
PQ_EVAL_EVERY=${PQ_EVAL_EVERY:-36}
SETS=${SETS:-wvs popquorn}
WVS_RUNS=${WVS_RUNS:-cuma-sft cuma-dpo lora-sft lora-dpo cuma-dpo-refbase cuma-dpo-nobalance}
PQ_RUNS=${PQ_RUNS:-cuma-sft cuma-dpo lora-sft lora-dpo}
QUESTIONS=${QUESTIONS:-Q6,Q15,Q22,Q27,Q29,Q33,Q45,Q46,Q57,Q64,Q69,Q71}
mkdir -p "$OUT"
if [[ -z "${CUMA_BIN:-}" ]]; then
    cargo build --quiet --bin cuma
    # A copy, so that rebuilding during a long run does not change the binary under it.
    cp target/debug/cuma "$OUT/cuma"
    CUMA_BIN=$OUT/cuma
fi
LOG="$OUT/timings.tsv"
[[ -f $LOG ]] || printf 'step\tseconds\n' >"$LOG"
. scripts/timed.sh
every() { awk -v k="$3" 'NR % k == 0' "$1" >"$2"; }

# Data: WVS choice items split by respondent; POPQUORN ratings + comparisons split by annotator.
if [[ ! -f $OUT/wvs/test_pairs.jsonl ]]; then
    timed "wvs data" "$CUMA_BIN" data convert --wvs ../shared/data/wvs7 --questions "$QUESTIONS" --out "$OUT/wvs/items.jsonl"
    "$CUMA_BIN" data split --in "$OUT/wvs/items.jsonl" --out-dir "$OUT/wvs" --seed 0
    "$CUMA_BIN" data pairs --in "$OUT/wvs/train.jsonl" --out "$OUT/wvs/train_pairs.jsonl"
    every "$OUT/wvs/test.jsonl" "$OUT/wvs/test_eval.jsonl" "$EVAL_EVERY"
    "$CUMA_BIN" data pairs --in "$OUT/wvs/test_eval.jsonl" --out "$OUT/wvs/test_pairs.jsonl"
fi
if [[ ! -f $OUT/popquorn/test_pairs.jsonl ]]; then
    timed "popquorn data" "$CUMA_BIN" data convert --popquorn ../shared/data/popquorn --out "$OUT/popquorn/items.jsonl"
    "$CUMA_BIN" data split --in "$OUT/popquorn/items.jsonl" --out-dir "$OUT/popquorn" --seed 0 --ratio 4
    "$CUMA_BIN" data pairs --in "$OUT/popquorn/train.jsonl" --out "$OUT/popquorn/train_pairs.jsonl"
    every "$OUT/popquorn/test.jsonl" "$OUT/popquorn/test_eval.jsonl" "$PQ_EVAL_EVERY"
    "$CUMA_BIN" data pairs --in "$OUT/popquorn/test_eval.jsonl" --out "$OUT/popquorn/test_pairs.jsonl"
fi

train() { # run dir, flags...
    local run=$1
    shift
    [[ -f $run/trained ]] && return 0
    local resume=()
    [[ -f $run/checkpoint/cuma.json ]] && resume=(--resume)
    timed "train $run" "$CUMA_BIN" train --out "$run" --seed 0 --checkpoint-every 10 "$@" "${resume[@]}"
    touch "$run/trained"
}
evaluate() { # run dir, data dir
    local run=$1 data=$2
    [[ -f $run/eval.json ]] || timed "eval $run" "$CUMA_BIN" eval --checkpoint "$run" --data "$data/test_eval.jsonl" --out "$run"
    [[ -f $run/pairs.json ]] || timed "pairs $run" "$CUMA_BIN" eval --checkpoint "$run" --pairs --data "$data/test_pairs.jsonl" --batch-size 8 --out "$run"
}

# One run by name: <method>-sft, <method>-dpo, cuma-dpo-refbase (reference = the bare backbone, as
# the reference code), cuma-dpo-nobalance (no balance loss in DPO).
run_named() { # set, name
    local set=$1 name=$2 run=$OUT/$1/$2 dpo=(--data "$OUT/$1/train_pairs.jsonl" --steps "$DPO_STEPS" --batch-size "$PAIR_BATCH" --lr "$DPO_LR" --warmup-steps 2)
    case $name in
        *-sft) train "$run" --data "$OUT/$set/train.jsonl" --method "${name%-sft}" --rank 8 --alpha 16 \
            --steps "$SFT_STEPS" --batch-size "$BATCH" --lr "$SFT_LR" --warmup-steps 4 ;;
        cuma-dpo-refbase) train "$run" --stage dpo --init "$OUT/$set/cuma-sft" --reference base "${dpo[@]}" ;;
        cuma-dpo-nobalance) train "$run" --stage dpo --init "$OUT/$set/cuma-sft" --dpo-balance 0 "${dpo[@]}" ;;
        *-dpo) train "$run" --stage dpo --init "$OUT/$set/${name%-dpo}-sft" "${dpo[@]}" ;;
        *) echo "unknown run $name" >&2; return 1 ;;
    esac
    evaluate "$run" "$OUT/$set"
}
for set in $SETS; do
    runs=$WVS_RUNS
    [[ $set == popquorn ]] && runs=$PQ_RUNS
    for name in $runs; do
        run_named "$set" "$name"
    done
done

python3 scripts/dpo_table.py "$OUT" >"$OUT/results.md"
echo "wrote $OUT/results.md" >&2
