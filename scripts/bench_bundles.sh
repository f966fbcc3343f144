# Sourced by scripts/bench.sh and scripts/serve_bench.sh: the two bundles the benchmarks serve,
# made once under $1 with the cuma binary $2: $1/plain (the bare SmolLM2 backbone) and
# $1/cuma/bundle (CuMA, E 8, k 2, r 8 on q,v, one training step: speed does not depend on what
# the experts learned).
bench_bundles() {
    local out=$1 cuma=$2
    mkdir -p "$out"
    [[ -f $out/plain/manifest.json ]] || "$cuma" export --out "$out/plain" --force
    if [[ ! -f $out/cuma/bundle/manifest.json ]]; then
        "$cuma" data synth --out-dir "$out/synth"
        "$cuma" train --data "$out/synth/items.jsonl" --out "$out/cuma" --method cuma --experts 8 --top-k 2 --rank 8 \
            --targets q-proj,v-proj --steps 1 --batch-size 2 --warmup-steps 0
        "$cuma" export --onnx "$out/cuma" --out "$out/cuma/bundle" --force
    fi
}
