#!/usr/bin/env bash
# GRPO at CPU scale (docs/results.md, "GRPO with router replay"): from the WVS CuMA SFT run of
# scripts/dpo_experiment.sh, GRPO with the choice reward - the respondent's answer, with and
# without router replay, and the group (country) distribution as target - then the choice
# metrics on the same held-out respondents.
#
#   scripts/grpo_experiment.sh [dir of scripts/dpo_experiment.sh, default runs/dpo-experiment]
#
# Needs that script's WVS data and its `cuma-sft` run (it runs them first when missing).
# Environment: GRPO_STEPS (10), PROMPTS (2 prompts per step), GROUP (4 completions each),
# GRPO_LR (5e-5), MAX_COMPLETION (3), CUMA_BIN (as in dpo_experiment.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/dpo-experiment}
GRPO_STEPS=${GRPO_STEPS:-10}
PROMPTS=${PROMPTS:-2}
GROUP=${GROUP:-4}
GRPO_LR=${GRPO_LR:-5e-5}
MAX_COMPLETION=${MAX_COMPLETION:-3}
if [[ ! -f $OUT/wvs/cuma-sft/trained ]]; then
    SETS=wvs WVS_RUNS=cuma-sft scripts/dpo_experiment.sh "$OUT"
fi
CUMA_BIN=${CUMA_BIN:-$OUT/cuma}
LOG="$OUT/timings.tsv"
. scripts/timed.sh
grpo() { # run name, flags...
    local run=$OUT/wvs/$1
    shift
    if [[ ! -f $run/trained ]]; then
        local resume=()
        [[ -f $run/checkpoint/cuma.json ]] && resume=(--resume)
        timed "train $run" "$CUMA_BIN" train --stage grpo --init "$OUT/wvs/cuma-sft" --data "$OUT/wvs/train.jsonl" \
            --out "$run" --steps "$GRPO_STEPS" --batch-size "$PROMPTS" --group-size "$GROUP" --lr "$GRPO_LR" \
            --warmup-steps 2 --max-completion "$MAX_COMPLETION" --seed 0 --checkpoint-every 5 "$@" "${resume[@]}"
        touch "$run/trained"
    fi
    [[ -f $run/eval.json ]] || timed "eval $run" "$CUMA_BIN" eval --checkpoint "$run" --data "$OUT/wvs/test_eval.jsonl" --out "$run"
}
grpo cuma-grpo
grpo cuma-grpo-noreplay --router-replay off
grpo cuma-grpo-group --reward-target group
python3 scripts/dpo_table.py "$OUT" >"$OUT/results.md"
echo "wrote $OUT/results.md" >&2
