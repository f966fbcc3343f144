#!/usr/bin/env bash
# Reproduces the table in docs/results.md: the paper's WVS experiment at CPU scale.
#
#   scripts/experiment.sh [out dir, default runs/wvs-experiment]
#
# Every step is skipped when its output is already there (a killed run picks up where it
# stopped; finished training runs are resumed at their last step, which is a no-op), so the
# script can be re-run after a crash or after changing only the evaluation.
#
# Environment: WVS (default ../shared/data/wvs7), STEPS (100), BATCH (8), LR (5e-4),
# SEED (0), CUMA_BIN (default: target/debug/cuma, built first), TRAIN_ONLY (stop after training),
# FEWSHOT=1 (also evaluate 3-shot prompting; its prompts are about four times longer, so it is the
# slowest evaluation and not part of the default table).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-runs/wvs-experiment}
WVS=${WVS:-../shared/data/wvs7}
STEPS=${STEPS:-100}
BATCH=${BATCH:-8}
LR=${LR:-5e-4}
SEED=${SEED:-0}
# Twelve value questions that divide countries (religion, gender roles, authority, trust,
# confidence in institutions), with 2-, 3-, 4- and 5-point scales.
QUESTIONS=${QUESTIONS:-Q6,Q15,Q22,Q27,Q29,Q33,Q45,Q46,Q57,Q64,Q69,Q71}

if [[ -z "${CUMA_BIN:-}" ]]; then
    cargo build --quiet --bin cuma
    CUMA_BIN=target/debug/cuma
fi
mkdir -p "$OUT"
LOG="$OUT/timings.tsv"
[[ -f $LOG ]] || printf 'step\tseconds\n' >"$LOG"

. scripts/timed.sh

if [[ ! -f $OUT/data/heldout.jsonl ]]; then
    timed convert "$CUMA_BIN" data convert --wvs "$WVS" --questions "$QUESTIONS" --out "$OUT/data/items.jsonl"
    timed split "$CUMA_BIN" data split --in "$OUT/data/items.jsonl" --out-dir "$OUT/data" --seed "$SEED" --heldout-fraction 0.05
fi

# name and method flags of every trained model; all share one budget.
TRAINED=(
    "lora|--method lora"
    "hydralora|--method hydralora"
    "cuma|--method cuma"
    "cuma-soft|--method cuma --gate soft"
    "cuma-no-balance|--method cuma --no-balance"
    # The mean-collapse setting: the profile is kept out of the prompt, so only CuMA's routers
    # can see who is answering.
    "lora-blind|--method lora --no-profile-prompt"
    "cuma-blind|--method cuma --no-profile-prompt"
)
for entry in "${TRAINED[@]}"; do
    name=${entry%%|*}
    read -r -a flags <<<"${entry#*|}"
    run=$OUT/$name
    [[ -f $run/trained ]] && continue
    resume=()
    [[ -f $run/checkpoint/cuma.json ]] && resume=(--resume)
    timed "train $name" "$CUMA_BIN" train --data "$OUT/data/train.jsonl" --out "$run" "${flags[@]}" \
        --rank 8 --alpha 16 --steps "$STEPS" --batch-size "$BATCH" --lr "$LR" --warmup-steps 10 \
        --seed "$SEED" --checkpoint-every 25 "${resume[@]}"
    touch "$run/trained"
done
[[ -n "${TRAIN_ONLY:-}" ]] && exit 0

# Evaluation, main comparison first: the trained methods on the test split (the main three also
# on the held-out profiles), the untrained baselines, the two ablations and the blind runs (and
# few-shot when asked). RESULTS_ONLY=1 skips to the summary, with whatever evaluations exist.
EVALUATED=(hydralora cuma lora vanilla persona cuma-soft cuma-no-balance lora-blind cuma-blind)
[[ -n "${FEWSHOT:-}" ]] && EVALUATED+=(fewshot)
[[ -n "${RESULTS_ONLY:-}" ]] || for name in "${EVALUATED[@]}"; do
    run=$OUT/$name
    case $name in
        lora | hydralora | cuma) [[ -f $run/heldout.json ]] && continue ;;
        *) [[ -f $run/eval.json ]] && continue ;;
    esac
    case $name in
        vanilla | persona | fewshot)
            timed "eval $name" "$CUMA_BIN" eval --method "$name" --data "$OUT/data/test.jsonl" \
                --examples "$OUT/data/train.jsonl" --out "$run" ;;
        lora | hydralora | cuma)
            timed "eval $name" "$CUMA_BIN" eval --checkpoint "$run" --data "$OUT/data/test.jsonl" \
                --heldout "$OUT/data/heldout.jsonl" --routing --out "$run" ;;
        *)
            timed "eval $name" "$CUMA_BIN" eval --checkpoint "$run" --data "$OUT/data/test.jsonl" \
                --routing --out "$run" ;;
    esac
done

if [[ -z "${RESULTS_ONLY:-}" && ! -f $OUT/topology-pca.png ]]; then
    timed "topology" "$CUMA_BIN" topology "$OUT/cuma" --out "$OUT/topology.png"
    timed "topology pca" "$CUMA_BIN" topology "$OUT/cuma" --pca --out "$OUT/topology-pca.png"
fi
# The control: HydraLoRA's routers see the tokens only.
if [[ -z "${RESULTS_ONLY:-}" && ! -f $OUT/topology-hydralora.png ]]; then
    "$CUMA_BIN" topology "$OUT/hydralora" --out "$OUT/topology-hydralora.png"
    "$CUMA_BIN" topology "$OUT/hydralora" --pca --out "$OUT/topology-pca-hydralora.png"
fi

{
    echo "## Test split ($(wc -l <"$OUT/data/test.jsonl") items)"
    echo
    head -n 2 "$OUT/lora/eval.md"
    for name in vanilla persona fewshot lora hydralora cuma cuma-soft cuma-no-balance lora-blind cuma-blind; do
        # eval.md names the method (`cuma` for every CuMA variant); the table names the run.
        [[ -f $OUT/$name/eval.md ]] && sed -n 3p "$OUT/$name/eval.md" | sed "s/^| [^|]* |/| $name |/"
    done
    echo
    for name in lora hydralora cuma cuma-soft cuma-no-balance lora-blind cuma-blind; do
        [[ -f $OUT/$name/heldout.md ]] && { echo "### $name: seen vs held-out profiles"; echo; cat "$OUT/$name/heldout.md"; echo; }
        [[ -f $OUT/$name/routing.md ]] && { echo "### $name: routing"; echo; cat "$OUT/$name/routing.md"; echo; }
    done
    routed=()
    for name in hydralora cuma cuma-soft cuma-no-balance cuma-blind; do
        [[ -f $OUT/$name/routing.json ]] && routed+=("$OUT/$name")
    done
    if ((${#routed[@]})); then
        echo "## Routing signatures against the cultural clusters"
        echo
        python3 scripts/routing_clusters.py "${routed[@]}"
        echo
    fi
    echo "## Wall time (seconds)"
    echo
    echo '| step | seconds |'
    echo '|---|---|'
    tail -n +2 "$LOG" | sed 's/\t/ | /; s/^/| /; s/$/ |/'
} >"$OUT/results.md"
echo "wrote $OUT/results.md" >&2
