# cuma: the two commands of the README, plus set-up on its own.
#   make demo   set up (idempotent), then run the main job on the embedded default models
#   make test   set up (idempotent), then run every test of the workspace
# Both start with scripts/bootstrap.sh, which is a no-op once everything is in place.

CARGO ?= cargo
PROMPT ?= In one sentence, what matters most in a good life?
PROFILE ?= You are a person from Thailand, age group: 55-64, gender: Female, religion: Buddhist.

.PHONY: setup demo test
setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(CARGO) build --bin cuma
	./target/debug/cuma info
	./target/debug/cuma generate --system "$(PROFILE)" --prompt "$(PROMPT)" --max-tokens 64 --timings
	./target/debug/cuma embed --text "$(PROFILE)" --text "You are a person from Germany, age group: 25-34, gender: Male."

test:
	@CUMA_TEST_EXTRAS=1 bash scripts/bootstrap.sh
	$(CARGO) test --workspace
