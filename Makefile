# cuma: the two commands of the README, plus set-up on its own.
#   make demo   set up (idempotent), then the main job on the embedded default models:
#               train CuMA on WVS data, export to ONNX, serve two profiles on ort and tract
#   make test   set up (idempotent), then run every test of the workspace, `cargo fmt --check`
#               and clippy with -D warnings; every test binary runs even after one fails
#               (--no-fail-fast), each check runs after another failed, and any failure fails
#               the target
#   make test-kernels
#               the whole suite once per CPU kernel setting of libtorch and MKL (default, AVX2,
#               AVX-512), to show that no test depends on one CPU's last bits
#   make fuzz   every cargo-fuzz target to 10^6 executions or 30 minutes (scripts/fuzz.sh)
# Both start with scripts/bootstrap.sh, which is a no-op once everything is in place.

CARGO ?= cargo

.PHONY: setup demo test test-kernels fuzz
setup:
	@bash scripts/bootstrap.sh

demo: setup
	bash scripts/demo.sh

test:
	@CUMA_TEST_EXTRAS=1 bash scripts/bootstrap.sh
	@status=0; \
	$(CARGO) test --workspace --no-fail-fast || status=1; \
	$(CARGO) fmt --all --check || status=1; \
	$(CARGO) clippy --workspace --all-targets -- -D warnings || status=1; \
	exit $$status

fuzz:
	@CUMA_TEST_EXTRAS=1 bash scripts/bootstrap.sh
	bash scripts/fuzz.sh

test-kernels:
	@CUMA_TEST_EXTRAS=1 bash scripts/bootstrap.sh
	bash scripts/test_kernels.sh
