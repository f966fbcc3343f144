#!/usr/bin/env bash
# The GPU check: one command for a machine with an NVIDIA GPU and PyTorch 2.11 but no network
# and no cargo, from what scripts/gpu_pack.sh put in .gpu/. Writes report.json, report.md
# and logs.tar.gz (every step's log and JSON) to the folder given as the argument, or $OUT.
#
#   1. environment: GPU, driver, PyTorch, whether ONNX Runtime has its CUDA provider;
#   2. parity: the tests that pin libtorch's logits, routing and greedy tokens to the committed
#      CPU snapshots and to ONNX Runtime / tract on the CPU, with libtorch on CUDA
#      (CUMA_TEST_DEVICE=cuda), and SFT losses on CUDA against the CPU's;
#   3. training at a real model's shape (Qwen3-8B, random weights made on the GPU, MiniLM-sized
#      profile vectors): CuMA (E 8, k 2, q,v) at r 8 and r 64 and LoRA r 8, bf16 products with f32
#      masters: tokens/s, MFU against 790 TFLOP/s, peak GPU memory, the loss on the fixed batch;
#   4. decoding at that shape: plain and CuMA at batch 1 and 8, first-token latency and steps/s
#      against the memory-bandwidth bound (f32 weights / 4.8 TB/s).
#
# --dry-run: the same steps on the CPU with the tiny shape (the test suite runs it); binaries from
# target/debug, parity skipped unless CUMA_GPU_BIN holds the packed test binaries.
set -uo pipefail
dry=0
if [ "${1:-}" = --dry-run ]; then
  dry=1
  shift
fi
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-${OUT:-$root/target/gpu-check}}
mkdir -p "$out"
final=$(cd "$out" && pwd)
# Steps write into a work folder; only the report and one archive of it end in $OUT (a device
# command brings back at most 8 files).
out=$(mktemp -d "${TMPDIR:-/tmp}/cuma-gpu-check.XXXXXX")
cd "$root"
started=$(date +%s)

if [ $dry = 1 ]; then
  device=cpu shape=tiny batch=2 seq=32 warmup=1 steps=2 prompt=16 new=4 big_batch=2
  bin=${CUMA_GPU_BIN:-$root/target/debug}
  python=${CUMA_PYTHON:-python3}
else
  device=cuda shape=qwen3-8b batch=8 seq=256 warmup=2 steps=5 prompt=128 new=32 big_batch=8
  bin=${CUMA_GPU_BIN:-$root/.gpu}
  python=python3
fi
# Packed binaries arrive xz-compressed.
for f in "$bin"/*.xz; do
  [ -e "$f" ] && xz -d -f -k "$f" && chmod +x "${f%.xz}" 2>/dev/null
done
cuma="$bin/cuma"
[ -x "$cuma" ] || { echo "gpu_check: no cuma binary in $bin (run scripts/gpu_pack.sh)" >&2; exit 1; }

torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') || {
  echo "gpu_check: $python cannot import torch" >&2
  exit 1
}
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -f "$bin/libonnxruntime.so" ]; then
  export ORT_DYLIB_PATH="$bin/libonnxruntime.so"
fi

# 1. Environment.
"$python" - "$out/environment.json" <<'PY'
import json, shutil, subprocess, sys
import torch
env = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    env["gpu"] = torch.cuda.get_device_name(0)
    env["cuda"] = torch.version.cuda
if shutil.which("nvidia-smi"):
    q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                       capture_output=True, text=True)
    env["nvidia_smi"] = q.stdout.strip()
try:
    import onnxruntime
    env["onnxruntime"] = onnxruntime.__version__
    env["onnxruntime_providers"] = onnxruntime.get_available_providers()
except ImportError:
    env["onnxruntime"] = None
json.dump(env, open(sys.argv[1], "w"), indent=1)
print("environment:", env)
PY
[ $? = 0 ] || { echo "gpu_check: the environment check failed" >&2; exit 1; }

# Runs "$@" with its output in $out/$name.log; records the exit code and seconds in
# $out/steps.tsv. While it runs on a GPU, samples the used GPU memory every 0.2 s.
run_step() {
  local name=$1
  shift
  local t0 rc peak=""
  t0=$(date +%s.%N)
  if [ $dry = 0 ] && command -v nvidia-smi >/dev/null; then
    (while sleep 0.2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done) >"$out/$name.mem" &
    local sampler=$!
  fi
  "$@" >"$out/$name.log" 2>&1
  rc=$?
  if [ -n "${sampler:-}" ]; then
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    peak=$(sort -n "$out/$name.mem" | tail -n 1)
    unset sampler
  fi
  printf "%s\t%s\t%s\t%s\n" "$name" "$rc" "$(awk -v a="$t0" -v b="$(date +%s.%N)" "BEGIN { print b - a }")" "$peak" >>"$out/steps.tsv"
  echo "gpu_check: $name exit $rc"
}
: >"$out/steps.tsv"

# 2. Parity (the packed test binaries; on the dry run only when given).
parity_tests='bare_backbones_agree_across_tch_ort_and_tract seeded_cuma_in_every_gate_mode_agrees_across_runtimes baseline_adapters_agree_across_runtimes decoder_profile_encoder_exports_and_agrees_across_runtimes'
if [ -x "$bin/test-runtime" ] && [ -x "$bin/test-train" ]; then
  export CUMA_TEST_DEVICE=$device CUMA_BIN="$cuma" CUMA_REPO="$root" CUMA_TEST_TMPDIR="$out.scratch"
  # shellcheck disable=SC2086
  run_step parity-inference "$bin/test-runtime" --exact $parity_tests --test-threads 1 --nocapture
  run_step parity-training "$bin/test-train" --exact sft_losses_on_the_test_device_follow_the_cpu --nocapture
  unset CUMA_TEST_DEVICE
else
  printf 'parity\tskipped\t0\t\n' >>"$out/steps.tsv"
fi

# 3. Training at scale.
common=(--shape "$shape" --device "$device" --batch "$batch" --seq "$seq" --warmup "$warmup" --steps "$steps")
[ $dry = 0 ] && common+=(--peak-tflops 790)
cuma_method=(--method cuma --experts 8 --top-k 2 --targets q-proj,v-proj)
run_step train-cuma-r8 "$cuma" bench train "${common[@]}" "${cuma_method[@]}" --rank 8 --json "$out/train-cuma-r8.json"
run_step train-cuma-r64 "$cuma" bench train "${common[@]}" "${cuma_method[@]}" --rank 64 --json "$out/train-cuma-r64.json"
run_step train-lora-r8 "$cuma" bench train "${common[@]}" --method lora --rank 8 --targets q-proj,v-proj \
  --json "$out/train-lora-r8.json"

# 4. Decoding at scale.
decode=(--shape "$shape" --device "$device" --prompt-tokens "$prompt" --new-tokens "$new")
[ $dry = 0 ] && decode+=(--peak-bandwidth 4.8e12)
for b in 1 "$big_batch"; do
  run_step "decode-plain-b$b" "$cuma" bench decode "${decode[@]}" --plain --batch "$b" --json "$out/decode-plain-b$b.json"
  run_step "decode-cuma-b$b" "$cuma" bench decode "${decode[@]}" "${cuma_method[@]}" --rank 8 --batch "$b" \
    --json "$out/decode-cuma-b$b.json"
done

# The report.
"$python" - "$out" "$dry" "$(($(date +%s) - started))" <<'PY'
import json, os, sys
out, dry, seconds = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.isfile(p) else None
steps = []
for line in open(os.path.join(out, "steps.tsv")):
    name, rc, secs, peak = (line.rstrip("\n").split("\t") + [""] * 4)[:4]
    steps.append({"step": name, "exit": rc, "seconds": float(secs or 0), "peak_gpu_mib": int(peak) if peak else None})
report = {"dry_run": dry, "seconds": seconds, "environment": load("environment.json"), "steps": steps,
          "train": {}, "decode": {}}
for s in steps:
    if s["step"].startswith("train-"):
        report["train"][s["step"][6:]] = load(s["step"] + ".json")
    if s["step"].startswith("decode-"):
        report["decode"][s["step"][7:]] = load(s["step"] + ".json")
env = report["environment"] or {}
providers = env.get("onnxruntime_providers") or []
report["onnxruntime_cuda"] = (
    "available" if "CUDAExecutionProvider" in providers else
    "not run: this machine's onnxruntime has no CUDA provider (providers: %s); onnxruntime-gpu 1.31.1's wheel is "
    "256 MB (its CUDA provider library alone 284 MB unpacked), more than the 64 MiB one command carries" % providers)
json.dump(report, open(os.path.join(out, "report.json"), "w"), indent=1)

md = ["# cuma GPU check" + (" (dry run, CPU, tiny shape)" if dry else ""), "",
      "Environment: %s" % json.dumps(env), "", "| step | exit | seconds | peak GPU MiB |", "| --- | --- | --- | --- |"]
md += ["| %s | %s | %.1f | %s |" % (s["step"], s["exit"], s["seconds"], s["peak_gpu_mib"] or "") for s in steps]
md += ["", "| training | tokens/s | MFU | loss first -> last |", "| --- | --- | --- | --- |"]
for name, r in report["train"].items():
    if r:
        mfu = "%.1f %%" % (100 * r["mfu"]) if r.get("mfu") is not None else "-"
        md.append("| %s | %.0f | %s | %.4f -> %.4f |" % (name, r["tokens_per_second"], mfu, r["losses"][0], r["losses"][-1]))
md += ["", "| decode | first token ms | steps/s | bandwidth bound |", "| --- | --- | --- | --- |"]
for name, r in report["decode"].items():
    if r:
        bound = "%.1f" % r["bandwidth_bound_tokens_per_second"] if r.get("bandwidth_bound_tokens_per_second") else "-"
        md.append("| %s | %.1f | %.1f | %s |" % (name, r["first_token_ms"], r["tokens_per_second"], bound))
md += ["", "ONNX Runtime CUDA: " + report["onnxruntime_cuda"], ""]
open(os.path.join(out, "report.md"), "w").write("\n".join(md))
print("\n".join(md))
PY
failed=$(awk -F'\t' '$2 != "0" && $2 != "skipped"' "$out/steps.tsv" | wc -l)
mv "$out/report.json" "$out/report.md" "$final/"
tar -czf "$final/logs.tar.gz" -C "$out" .
rm -rf "$out" "$out.scratch"
echo "gpu_check: $failed failed step(s); report in $final/report.md"
[ "$failed" = 0 ]
