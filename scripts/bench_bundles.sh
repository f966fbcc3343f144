# Sourced by scripts/bench.sh, scripts/serve_bench.sh and scripts/quant_bench.sh: the bundles the
# benchmarks serve, made once under $1 with the cuma binary $2: $1/plain (the bare SmolLM2
# backbone), $1/cuma/bundle (CuMA, E 8, k 2, r 8 on q,v, one training step: speed does not depend
# on what the experts learned), the same CuMA run exported with its routers' profile terms inside
# the decoder ($1/cuma-vector, `--no-profile-terms`), and 4-bit exports $1/plain-int4 and
# $1/cuma-int4.
bench_bundles() {
    local out=$1 cuma=$2
    mkdir -p "$out"
    [[ -f $out/plain/manifest.json ]] || "$cuma" export --out "$out/plain" --force
    # The training run is made once; its bundles are exported again whenever they are missing
    # (deleted to re-export them with a newer cuma).
    if [[ ! -d $out/cuma/checkpoint ]]; then
        "$cuma" data synth --out-dir "$out/synth"
        "$cuma" train --data "$out/synth/items.jsonl" --out "$out/cuma" --method cuma --experts 8 --top-k 2 --rank 8 \
            --targets q-proj,v-proj --steps 1 --batch-size 2 --warmup-steps 0 --force
    fi
    [[ -f $out/cuma/bundle/manifest.json ]] || "$cuma" export --onnx "$out/cuma" --out "$out/cuma/bundle" --force
    [[ -f $out/cuma-vector/manifest.json ]] || "$cuma" export --onnx "$out/cuma" --out "$out/cuma-vector" --no-profile-terms --force
    [[ -f $out/plain-int4/manifest.json ]] || "$cuma" export --out "$out/plain-int4" --quant int4 --force
    [[ -f $out/cuma-int4/manifest.json ]] || "$cuma" export --onnx "$out/cuma" --out "$out/cuma-int4" --quant int4 --force
}
