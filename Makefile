# The two commands of the README: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
HOME_DIR ?= .scheduler-home
# Where `make serve`'s home keeps the CA, server and admin certificates (see certs/README.md).
CERTS_DIR ?= certs
# The port `make serve` serves on (`make serve PORT=9443`), recorded in the home so that the
# client finds it; empty: the port the home records (8443 for a new one).
PORT ?=
BIN := $(VENV)/bin
# Each install is made once, and again when pyproject.toml changes: the service with its
# runtime dependencies alone (`make serve`), and with the test extras (`make test`).
RUNTIME_INSTALLED := $(VENV)/.installed-runtime
TEST_INSTALLED := $(VENV)/.installed-test
PORT_FLAG := $(if $(PORT),--port $(PORT))
# Azurite, the Azure Storage emulator the storageQueue tests put messages on (npm registry).
TOOLS ?= .tools
AZURITE := $(TOOLS)/node_modules/.bin/azurite-queue
AZURITE_VERSION ?= 3.37.0
# The browser of the browser tests: Debian's chromium package, never one downloaded by
# Playwright (as root, or through sudo).
CHROMIUM := /usr/bin/chromium
AS_ROOT := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: install install-test serve test test-fast lint bench screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUNTIME_INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# The test extras come with the runtime dependencies: both installs are then up to date.
$(TEST_INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(RUNTIME_INSTALLED)

install: $(RUNTIME_INSTALLED)

install-test: $(TEST_INSTALLED)

$(AZURITE):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) azurite@$(AZURITE_VERSION)
	touch $@

$(CHROMIUM):
	$(AS_ROOT) apt-get update -qq
	$(AS_ROOT) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

serve: install
	@echo 'To run scheduler from this shell: export PATH="$(abspath $(BIN)):$$PATH"'
	@test -d $(HOME_DIR) || $(BIN)/scheduler init --home $(HOME_DIR) --certs-dir $(CERTS_DIR) $(PORT_FLAG)
	$(BIN)/scheduler serve --home $(HOME_DIR) $(PORT_FLAG)

test: install-test $(AZURITE) $(CHROMIUM)
	$(BIN)/ruff check scheduler tests bench
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

# The fast lane: every test that starts no `scheduler serve` and needs no PostgreSQL, on two
# workers (a test file stays on one, with its module's fixtures), with hypothesis' `fast`
# profile (fewer examples per property; tests/conftest.py).
test-fast: install-test $(AZURITE) $(CHROMIUM)
	$(BIN)/pytest -m "not e2e and not postgres" -n 2 --dist loadfile --hypothesis-profile fast \
		$(PYTEST_ARGS)

bench: install-test
	$(BIN)/python bench/api.py

# The README's pictures of the dashboard, taken by its browser tests.
screenshots: install-test $(CHROMIUM)
	DASHBOARD_SCREENSHOTS=docs/images $(BIN)/pytest tests/e2e/test_dashboard_browser.py \
		-k "overview or run_now"

clean:
	rm -rf $(VENV) $(HOME_DIR) $(TOOLS) .pytest_cache .mypy_cache
	rm -f $(addprefix $(CERTS_DIR)/,ca.pem ca-key.pem server.pem server-key.pem admin.pem)
