#!/usr/bin/env bash
# The whole test suite once per CPU kernel setting of libtorch (ATEN_CPU_CAPABILITY) and MKL
# (MKL_CBWR), on this one machine. The snapshots pin inference on fixed weights up to stated
# near-ties, so they must pass whichever kernels compute them; a test that pins one CPU's last
# bits fails here before it fails on the next machine.
#
#   bash scripts/test_kernels.sh            # the three settings below (after scripts/bootstrap.sh)
#   KERNEL_SETTINGS="ATEN_CPU_CAPABILITY=default" bash scripts/test_kernels.sh   # just one
#
# libtorch does not clamp ATEN_CPU_CAPABILITY to what the CPU has: asked for avx512 on an
# AVX2-only CPU it runs AVX-512 kernels and the tests die of SIGILL (seen on an AMD EPYC Zen 3).
# So a setting that names AVX-512 is skipped, and reported as skipped, on a CPU without avx512f;
# run the script on an AVX-512 machine for it. The summary prints the capability libtorch used.
# ONNX Runtime and tract choose their kernels from the CPU alone; they are compared with tch
# live on the same machine, never against a snapshot. Logs: target/test-kernels/*.log.
set -uo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
[ -x "$python" ] || { echo "test_kernels: run scripts/bootstrap.sh first (no $python)" >&2; exit 2; }

if [ -n "${KERNEL_SETTINGS:-}" ]; then
  IFS=';' read -r -a settings <<< "$KERNEL_SETTINGS"
else
  settings=(
    "ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE"
    "ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2"
    "ATEN_CPU_CAPABILITY=avx512 MKL_CBWR=AVX512"
  )
fi

logs=target/test-kernels
mkdir -p "$logs"
echo "test_kernels: building the test binaries once"
cargo test --workspace --no-run -q || exit 1

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
isa=$(grep -o -w -E 'avx512f|avx2' /proc/cpuinfo | sort -u | paste -sd' ' -)
summary=()
failed=0
for setting in "${settings[@]}"; do
  name=$(printf '%s' "$setting" | tr ' =' '_-')
  if printf '%s' "$setting" | grep -qi avx512 && ! grep -qw avx512f /proc/cpuinfo; then
    summary+=("$setting: skipped, this CPU has no AVX-512")
    echo "test_kernels: $setting skipped (no avx512f in /proc/cpuinfo)"
    continue
  fi
  # shellcheck disable=SC2086 # the setting is a list of VAR=value words
  used=$(env $setting "$python" -c 'import torch; print(torch.backends.cpu.get_cpu_capability())' 2>/dev/null)
  echo "test_kernels: $setting (libtorch uses ${used:-?})"
  start=$(date +%s)
  # shellcheck disable=SC2086
  env $setting cargo test --workspace --no-fail-fast -- --show-output > "$logs/$name.log" 2>&1
  rc=$?
  passed=$(grep -E '^test result:' "$logs/$name.log" | awk '{s += $4} END {print s + 0}')
  failures=$(grep -E '^test result:' "$logs/$name.log" | awk '{s += $6} END {print s + 0}')
  # Snapshot tests print "<label>: matches its snapshot; tokens: N decisions: a exact, b differ
  # only at near-ties, 0 differ; routing: ..." (tests/runtime.rs).
  snapshots=$(grep -c 'matches its snapshot' "$logs/$name.log")
  ties=$(grep 'matches its snapshot' "$logs/$name.log" | grep -c -v -E 'tokens: [0-9]+ decisions: [0-9]+ exact, 0 differ only at near-ties, 0 differ; routing: [0-9]+ decisions: [0-9]+ exact, 0 differ only')
  line="$setting (libtorch: ${used:-?}): rc $rc, $passed passed, $failures failed, $snapshots snapshots matched ($ties with near-ties), $(( $(date +%s) - start ))s"
  [ "$rc" -eq 0 ] || { failed=1; line="$line  <- FAILED, see $logs/$name.log"; }
  summary+=("$line")
done

echo
echo "test_kernels on $cpu ($isa), $(date -u +%Y-%m-%d):"
printf '  %s\n' "${summary[@]}"
exit "$failed"
