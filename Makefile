# NerveWatch: `make run` starts everything locally; `make test` runs lint, types and the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench bench-smoke console-timings screenshots soak schemas simulate clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded,dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/nervewatch run

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider

bench-smoke: $(STAMP)
	$(BIN)/nervewatch bench --smoke

bench: $(STAMP)
	$(BIN)/nervewatch bench --write docs/performance.md

# Browser-measured console timings (500 open alerts in the inbox, a patient with 365 days); needs Chromium.
console-timings: $(STAMP)
	$(BIN)/nervewatch console-timings

# The README's console screenshots, from a simulator run.
screenshots: $(STAMP)
	$(BIN)/nervewatch screenshots --out docs/img

# Not part of `make test`: 1 million check-ins through the stack, RSS of every service every 10 s.
soak: $(STAMP)
	$(BIN)/nervewatch soak --events 1000000 --interval 10 --write docs/performance.md

schemas: $(STAMP)
	$(BIN)/python -m schemas.export

simulate: $(STAMP)
	$(BIN)/nervewatch simulate --per-archetype 50 --evaluate --report docs/detection-quality.md

clean:
	rm -rf $(VENV) .nervewatch .mypy_cache .ruff_cache .pytest_cache .import_linter_cache .grimp_cache
