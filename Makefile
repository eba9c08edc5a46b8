# The two commands of the README: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
HOME_DIR ?= .scheduler-home
BIN := $(VENV)/bin

.PHONY: install serve test lint bench clean

$(BIN)/scheduler: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/scheduler

serve: install
	@test -d $(HOME_DIR) || $(BIN)/scheduler init --home $(HOME_DIR)
	$(BIN)/scheduler serve --home $(HOME_DIR)

test: install
	$(BIN)/ruff check scheduler tests bench
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) $(HOME_DIR) .pytest_cache .mypy_cache
