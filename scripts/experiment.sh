#!/usr/bin/env bash
# The WVS experiment of docs/results.md, with the design fixed there before the runs:
#
#   scripts/experiment.sh [out dir, default runs/wvs-experiment]
#
# 1. Data: every WVS value question converted and split by respondent (seed 0, 5 % of the
#    profiles held out); the questions ranked by how much countries disagree, on the training
#    split only; the top TOP_QUESTIONS kept (the same respondents on each side).
# 2. Count baselines (pooled table, per-country table, shrunk per-country table): no model.
# 3. Trained methods, one budget (EPOCHS over the training split), snapshots every
#    SNAPSHOT_EVERY steps; every snapshot is evaluated on the test split (the learning curve).
# 4. Final evaluations (test, held-out profiles, routing), then `cuma compare`: bootstrap
#    intervals over respondents and paired differences against LoRA.
#
# Every step is skipped when its output is already there (a killed run picks up where it
# stopped; an interrupted training run is resumed from its checkpoint), so the script can be
# re-run after a crash or after changing only the evaluation.
#
# Environment: WVS (default ../shared/data/wvs7), TOP_QUESTIONS (16), QUESTIONS (an explicit
# comma-separated list instead of the ranking), EPOCHS (1), STEPS (instead of EPOCHS), BATCH (8),
# LR (5e-4), SEED (0), SNAPSHOT_EVERY (250; 0: no curve), DEVICE (auto), CUMA_BIN (default:
# target/debug/cuma, built first), TRAIN_ONLY (stop after training), ABLATIONS=1 (also soft
# gates and no balance loss), FEWSHOT=1 (also 3-shot prompting; four times longer prompts).
# The 100-step pilot of docs/results.md: QUESTIONS=Q6,Q15,Q22,Q27,Q29,Q33,Q45,Q46,Q57,Q64,Q69,Q71
# STEPS=100 SNAPSHOT_EVERY=0 ABLATIONS=1.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-runs/wvs-experiment}
WVS=${WVS:-../shared/data/wvs7}
TOP_QUESTIONS=${TOP_QUESTIONS:-16}
EPOCHS=${EPOCHS:-1}
BATCH=${BATCH:-8}
LR=${LR:-5e-4}
SEED=${SEED:-0}
SNAPSHOT_EVERY=${SNAPSHOT_EVERY:-250}
DEVICE=${DEVICE:-auto}

if [[ -z "${CUMA_BIN:-}" ]]; then
    cargo build --quiet --bin cuma
    CUMA_BIN=target/debug/cuma
fi
mkdir -p "$OUT/data"
LOG="$OUT/timings.tsv"
[[ -f $LOG ]] || printf 'step\tseconds\n' >"$LOG"

. scripts/timed.sh

if [[ ! -f $OUT/data/all/heldout.jsonl ]]; then
    timed convert "$CUMA_BIN" data convert --wvs "$WVS" --out "$OUT/data/all-items.jsonl"
    timed "split all" "$CUMA_BIN" data split --in "$OUT/data/all-items.jsonl" --out-dir "$OUT/data/all" \
        --seed "$SEED" --heldout-fraction 0.05
fi
# One ranking: written to question-ranking.{json,md}, its top ids printed.
top=$("$CUMA_BIN" data rank-questions --in "$OUT/data/all/train.jsonl" --ids "$TOP_QUESTIONS" \
    --out "$OUT/data/question-ranking")
QUESTIONS=${QUESTIONS:-$top}
echo "questions: $QUESTIONS" >&2
made_with=$(cat "$OUT/data/questions" 2>/dev/null || true)
if [[ -n $made_with && $made_with != "$QUESTIONS" ]]; then
    echo "error: $OUT was made with questions $made_with, not $QUESTIONS; use another out dir" >&2
    exit 1
fi
if [[ ! -f $OUT/data/heldout.jsonl || -z $made_with ]]; then
    timed split "$CUMA_BIN" data split --in "$OUT/data/all-items.jsonl" --out-dir "$OUT/data" --seed "$SEED" \
        --heldout-fraction 0.05 --questions "$QUESTIONS"
    echo "$QUESTIONS" >"$OUT/data/questions"
fi
TRAIN_ITEMS=$(wc -l <"$OUT/data/train.jsonl")
STEPS=${STEPS:-$(((EPOCHS * TRAIN_ITEMS + BATCH - 1) / BATCH))}
echo "budget: $STEPS steps of $BATCH ($TRAIN_ITEMS training items)" >&2

# Count baselines: what the training answers alone predict (see docs/results.md).
for entry in "pooled-table|--method pooled-table" "country-table|--method country-table" \
    "country-table-10|--method country-table --pseudo-counts 10"; do
    name=${entry%%|*}
    read -r -a flags <<<"${entry#*|}"
    [[ -f $OUT/$name/heldout.json ]] && continue
    "$CUMA_BIN" eval "${flags[@]}" --examples "$OUT/data/train.jsonl" --data "$OUT/data/test.jsonl" \
        --heldout "$OUT/data/heldout.jsonl" --out "$OUT/$name" >/dev/null
done

# name and method flags of every trained model; all share one budget.
TRAINED=(
    "lora|--method lora"
    "hydralora|--method hydralora"
    "cuma|--method cuma"
    # The mean-collapse setting: the profile is kept out of the prompt, so only CuMA's routers
    # can see who is answering.
    "lora-blind|--method lora --no-profile-prompt"
    "cuma-blind|--method cuma --no-profile-prompt"
)
[[ -n "${ABLATIONS:-}" ]] && TRAINED+=("cuma-soft|--method cuma --gate soft" "cuma-no-balance|--method cuma --no-balance")
snapshots=()
((SNAPSHOT_EVERY > 0)) && snapshots=(--snapshot-every "$SNAPSHOT_EVERY")
for entry in "${TRAINED[@]}"; do
    name=${entry%%|*}
    read -r -a flags <<<"${entry#*|}"
    run=$OUT/$name
    [[ -f $run/trained ]] && continue
    resume=()
    [[ -f $run/checkpoint/cuma.json ]] && resume=(--resume)
    timed "train $name" "$CUMA_BIN" train --data "$OUT/data/train.jsonl" --out "$run" "${flags[@]}" \
        --rank 8 --alpha 16 --steps "$STEPS" --batch-size "$BATCH" --lr "$LR" --warmup-steps 10 \
        --seed "$SEED" --checkpoint-every 25 --device "$DEVICE" "${snapshots[@]}" "${resume[@]}"
    touch "$run/trained"
done
[[ -n "${TRAIN_ONLY:-}" ]] && exit 0

# The learning curve: every snapshot on the test split (curve.tsv per run).
for entry in "${TRAINED[@]}"; do
    name=${entry%%|*}
    run=$OUT/$name
    [[ -d $run/snapshots ]] || continue
    for snap in "$run"/snapshots/step-*; do
        step=${snap##*/step-}
        [[ -f $run/curve/$step/eval.json ]] && continue
        timed "curve $name $step" "$CUMA_BIN" eval --checkpoint "$snap" --data "$OUT/data/test.jsonl" \
            --device "$DEVICE" --out "$run/curve/$step" >/dev/null
    done
    {
        printf 'step\taccuracy\temd_country\temd_cluster\temd_country_scale\tece\n'
        for f in "$run"/curve/*/eval.json; do
            step=$(basename "$(dirname "$f")")
            python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("\t".join([sys.argv[2]] + [str(s[k]) for k in ("accuracy","emd_country","emd_cluster","emd_country_scale","ece")]))' "$f" "$((10#$step))"
        done
    } >"$run/curve.tsv"
done
curved=()
for entry in "${TRAINED[@]}"; do
    [[ -d $OUT/${entry%%|*}/curve ]] && curved+=("$OUT/${entry%%|*}")
done
if ((${#curved[@]})); then
    for metric in emd_cluster emd_country accuracy; do
        "$CUMA_BIN" curve "${curved[@]}" --metric "$metric" --baseline "$OUT/pooled-table" \
            --baseline "$OUT/country-table" --out "$OUT/curve-$metric.png"
    done
fi

# Evaluation, main comparison first: the trained methods on the test split (the main three also
# on the held-out profiles), the untrained baselines, the two ablations and the blind runs (and
# few-shot when asked). RESULTS_ONLY=1 skips to the summary, with whatever evaluations exist.
EVALUATED=(hydralora cuma lora vanilla persona lora-blind cuma-blind)
[[ -n "${ABLATIONS:-}" ]] && EVALUATED+=(cuma-soft cuma-no-balance)
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
                --examples "$OUT/data/train.jsonl" --device "$DEVICE" --out "$run" ;;
        lora | hydralora | cuma)
            timed "eval $name" "$CUMA_BIN" eval --checkpoint "$run" --data "$OUT/data/test.jsonl" \
                --heldout "$OUT/data/heldout.jsonl" --routing --device "$DEVICE" --out "$run" ;;
        *)
            timed "eval $name" "$CUMA_BIN" eval --checkpoint "$run" --data "$OUT/data/test.jsonl" \
                --routing --device "$DEVICE" --out "$run" ;;
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
    head -n 2 "$OUT/pooled-table/eval.md"
    for name in pooled-table country-table country-table-10 vanilla persona fewshot lora hydralora cuma cuma-soft cuma-no-balance lora-blind cuma-blind; do
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
    compared=()
    for name in lora pooled-table country-table country-table-10 vanilla persona hydralora cuma lora-blind cuma-blind cuma-soft cuma-no-balance; do
        [[ -f $OUT/$name/predictions.jsonl ]] && compared+=("$OUT/$name")
    done
    if ((${#compared[@]} > 1)); then
        echo "## Intervals and paired differences (bootstrap over respondents)"
        echo
        "$CUMA_BIN" compare "${compared[@]}" --seed "$SEED" --out "$OUT/compare"
        echo
    fi
    echo "## Wall time (seconds)"
    echo
    echo '| step | seconds |'
    echo '|---|---|'
    tail -n +2 "$LOG" | sed 's/\t/ | /; s/^/| /; s/$/ |/'
} >"$OUT/results.md"
echo "wrote $OUT/results.md" >&2
