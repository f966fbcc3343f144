#!/usr/bin/env bash
# Prepares what scripts/gpu_check.sh needs on a GPU machine that has PyTorch 2.11 but no cargo and
# no network: the `cuma` binary, the two parity test binaries (tests/runtime.rs, tests/train.rs)
# and ONNX Runtime's library, xz-compressed into .gpu/ (ignored by git; 23 MiB when last packed, under the
# 64 MiB one device command carries). Binaries link libtorch by name (RUNPATH points at this
# machine's venv, which does not exist there), so the check finds the machine's own torch/lib
# through LD_LIBRARY_PATH.
#
# Then, with the device tool: run `bash scripts/gpu_check.sh` carrying `.gpu`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh >/dev/null
pack="$root/.gpu"
rm -rf "$pack"
mkdir -p "$pack"

cargo build --bin cuma
# The test executables' paths, from cargo's JSON messages.
cargo test --no-run --test runtime --test train --message-format=json 2>/dev/null \
  | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in ("runtime", "train"):
        print(m["target"]["name"], m["executable"])
' >"$pack/tests.txt"
[ "$(wc -l <"$pack/tests.txt")" -eq 2 ] || { echo "gpu_pack: test executables not found" >&2; exit 1; }

cp target/debug/cuma "$pack/cuma"
while read -r name path; do cp "$path" "$pack/test-$name"; done <"$pack/tests.txt"
rm "$pack/tests.txt"
ort_lib=$(sed -n 's/^ORT_DYLIB_PATH = "\(.*\)"$/\1/p' .cargo/config.toml)
cp "$ort_lib" "$pack/libonnxruntime.so"
strip --strip-debug "$pack"/cuma "$pack"/test-*
xz -T2 -6 "$pack"/*
du -ch "$pack"/* | tail -n 1 | sed 's/total/gpu_pack: .gpu holds/'
