# The two commands in README.md are `make demo` and `make test`; every target sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint setup clean

$(STAMP): pyproject.toml scripts/setup-dev.sh scripts/apt-need.sh
	bash scripts/setup-dev.sh "$(PYTHON)" "$(VENV)"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	bash scripts/link-modules.sh $(VENV)
	$(BIN)/odar demo

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	bash scripts/test.sh

clean:
	rm -rf $(VENV) .venv-* .pytest_cache build *.egg-info
