# postroom: the two set-up commands of the README, and a few helpers.
#   make run   - virtualenv, install, default config (if none), migrations, serve
#   make test  - Debian and Python packages the tests need, then the whole suite

PYTHON ?= python3
VENV   ?= .venv
CONFIG ?= postroom.toml
STATE  ?= state
BIN     = $(VENV)/bin

# Real peers of the flow tests (ARCHITECTURE.md, "Testing with real peers").
TEST_DEBS = postfix swaks nsd bind9-utils postgresql openssl systemd util-linux

.PHONY: run test venv install install-test test-debs lint bench clean

run: install
	$(BIN)/postroom -c $(CONFIG) config init --state-dir $(STATE)
	$(BIN)/postroom -c $(CONFIG) db upgrade
	$(BIN)/postroom -c $(CONFIG) serve

test: test-debs install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest -q

venv: $(BIN)/python

$(BIN)/python:
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || $(MAKE) debs DEBS="python3-venv python3-pip"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: venv
	$(BIN)/python -m pip install --quiet -e .

install-test: venv
	$(BIN)/python -m pip install --quiet -e '.[test]'

test-debs:
	@$(MAKE) --no-print-directory debs DEBS="$(TEST_DEBS)"

# Installs Debian packages that are missing; `apt-get update` only when needed.
# Postfix is preseeded to "No configuration": tests run private instances only.
debs:
	@missing=""; for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

lint: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: install-test test-debs
	$(BIN)/python bench/relay.py

clean:
	rm -rf $(VENV) $(STATE) build src/*.egg-info .pytest_cache .ruff_cache
