# The two commands of the README: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
HOME_DIR ?= .scheduler-home
# Where `make serve`'s home keeps the CA, server and admin certificates (see certs/README.md).
CERTS_DIR ?= certs
BIN := $(VENV)/bin
# Azurite, the Azure Storage emulator the storageQueue tests put messages on (npm registry).
TOOLS ?= .tools
AZURITE := $(TOOLS)/node_modules/.bin/azurite-queue
AZURITE_VERSION ?= 3.37.0

.PHONY: install serve test lint bench clean

$(BIN)/scheduler: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/scheduler

$(AZURITE):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) azurite@$(AZURITE_VERSION)
	touch $@

serve: install
	@test -d $(HOME_DIR) || $(BIN)/scheduler init --home $(HOME_DIR) --certs-dir $(CERTS_DIR)
	$(BIN)/scheduler serve --home $(HOME_DIR)

test: install $(AZURITE)
	$(BIN)/ruff check scheduler tests bench
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) $(HOME_DIR) $(TOOLS) .pytest_cache .mypy_cache
	rm -f $(addprefix $(CERTS_DIR)/,ca.pem ca-key.pem server.pem server-key.pem admin.pem)
