#!/usr/bin/env bash
# The main job on the embedded default models (SmolLM2-135M-Instruct + all-MiniLM-L6-v2), end to
# end in a few minutes on a CPU:
#   1. survey data: WVS wave 7 from ../shared/data/wvs7 (or `cuma data synth` when it is absent)
#   2. a short `cuma train` of CuMA (8 experts, top-2, rank 8 on q,v)
#   3. `cuma export --onnx` to a bundle
#   4. `cuma-run` on ONNX Runtime and on tract for two contrasting profiles: each profile's answer
#      distribution and routing.
#   5. `cuma-serve` on the bundle: the same two profiles asked over HTTP with curl, then stopped.
# The profiles are Indonesian Muslim and Dutch without a denomination: in the survey, 97 % and
# 5 % say religion is very important (the WVS experiment's ranking puts this question second
# among the 80 for how much countries disagree). The training set is the three religion
# questions, so a few minutes of CPU training learn what the profile says about them.
# Environment: OUT (runs/demo), WVS (../shared/data/wvs7), STEPS (150), CUMA_BIN / CUMA_RUN_BIN /
# CUMA_SERVE_BIN, PORT (8765).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-runs/demo}
WVS=${WVS:-../shared/data/wvs7}
STEPS=${STEPS:-150}
PORT=${PORT:-8765}
if [[ -z "${CUMA_BIN:-}" || -z "${CUMA_RUN_BIN:-}" || -z "${CUMA_SERVE_BIN:-}" ]]; then
    cargo build --quiet --workspace --bins --features cuma-runtime/server
    CUMA_BIN=target/debug/cuma
    CUMA_RUN_BIN=target/debug/cuma-run
    CUMA_SERVE_BIN=target/debug/cuma-serve
fi
mkdir -p "$OUT"

echo "== 1/5 data" >&2
if [[ -f "$WVS/codebook.json" ]]; then
    # The importance of religion (Q6), religious faith as a quality for children (Q15) and
    # confidence in the churches (Q64).
    "$CUMA_BIN" data convert --wvs "$WVS" --questions Q6,Q15,Q64 --out "$OUT/data/items.jsonl"
else
    echo "no WVS data at $WVS; using synthetic survey data" >&2
    "$CUMA_BIN" data synth --out-dir "$OUT/data"
fi

echo "== 2/5 train CuMA ($STEPS steps)" >&2
resume=()
[[ -f "$OUT/run/checkpoint/cuma.json" ]] && resume=(--resume)
"$CUMA_BIN" train --data "$OUT/data/items.jsonl" --out "$OUT/run" --method cuma --experts 8 --top-k 2 --rank 8 \
    --targets q-proj,v-proj --steps "$STEPS" --batch-size 4 --lr 1e-3 --warmup-steps 10 --checkpoint-every 10 "${resume[@]}"

echo "== 3/5 export" >&2
"$CUMA_BIN" export --onnx "$OUT/run" --out "$OUT/bundle" --force

echo "== 4/5 serve two contrasting profiles" >&2
QUESTION="How important is religion in your life?"
# The question as training saw it (the survey's wording with its scale), when it is WVS data.
if [[ -f "$WVS/codebook.json" ]]; then
    QUESTION=$(python3 -c 'import json, sys
print(next(i["question"] for i in map(json.loads, open(sys.argv[1])) if i["question_id"] == "Q6"))' "$OUT/data/items.jsonl")
fi
OPTIONS=(--option "Very important" --option "Rather important" --option "Not very important" --option "Not at all important")
PROFILES=("country=Indonesia,age=45-54,gender=Female,religion=Muslim"
    "country=Netherlands,age=25-34,gender=Male,religion=Do not belong to a denomination")
if [[ -f "$WVS/codebook.json" ]]; then
    echo "-- what the survey says (all answers to Q6 of each country):" >&2
    python3 - "$OUT/data/items.jsonl" Indonesia Netherlands >&2 <<'PY'
import collections, json, sys
counts = collections.defaultdict(collections.Counter)
for line in open(sys.argv[1]):
    item = json.loads(line)
    if item["question_id"] == "Q6":
        counts[item["profile"].get("country")][item["answer"]] += 1
for country in sys.argv[2:]:
    c, n = counts[country], sum(counts[country].values())
    print(f"   {country}: " + " / ".join(f"{c[j] / n:.3f}" for j in range(4)) + f" ({n} respondents)")
PY
fi
for backend in ort tract; do
    for profile in "${PROFILES[@]}"; do
        echo "-- $backend: $profile" >&2
        "$CUMA_RUN_BIN" --bundle "$OUT/bundle" --backend "$backend" --profile "$profile" \
            --question "$QUESTION" "${OPTIONS[@]}" --trace-routing --timings
    done
done

echo "== 5/5 the same two profiles over HTTP (cuma-serve on port $PORT)" >&2
"$CUMA_SERVE_BIN" --bundle "$OUT/bundle" --port "$PORT" --model-name cuma-demo &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
    sleep 0.5
done
curl -sf "http://127.0.0.1:$PORT/v1/choice" -H 'Content-Type: application/json' -d "{
  \"profiles\": [{\"country\": \"Thailand\", \"age\": \"55-64\", \"gender\": \"Female\", \"religion\": \"Buddhist\"},
                {\"country\": \"Germany\", \"age\": \"25-34\", \"gender\": \"Male\", \"religion\": \"No religion\"}],
  \"question\": \"$QUESTION\",
  \"options\": [\"Very important\", \"Rather important\", \"Not very important\", \"Not at all important\"]}"
echo
curl -sf "http://127.0.0.1:$PORT/v1/chat/completions" -H 'Content-Type: application/json' -d '{
  "messages": [{"role": "user", "content": "In one sentence: what matters most in life?"}],
  "max_tokens": 32, "temperature": 0, "profile": {"country": "Indonesia", "religion": "Muslim"}}'
echo
kill -TERM $server
wait $server || true
trap - EXIT
