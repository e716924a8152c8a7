# `make demo` and `make test` bootstrap .venv from the committed lock when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test venv lint bench lock clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/propensity demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --timeout 600 -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy features training serving experiments fairness monitoring content reports propensity bench

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

# Re-resolve the lock after editing pyproject.toml (needs uv: pip install uv).
lock:
	uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) work .pytest_cache
