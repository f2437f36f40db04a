# postroom: the two set-up commands of the README, and a few helpers.
#   make run   - virtualenv, install, default config (if none), migrations, serve
#   make test  - Debian and Python packages the tests need, then the whole suite

PYTHON ?= python3
VENV   ?= .venv
CONFIG ?= postroom.toml
STATE  ?= state
BIN     = $(VENV)/bin

# Peers the benchmarks compare against (not needed by the tests).
BENCH_DEBS = libsisimai-perl

# Real peers of the flow tests (ARCHITECTURE.md, "Testing with real peers").
TEST_DEBS = postfix swaks nsd bind9-utils postgresql openssl systemd util-linux dovecot-imapd \
            libmail-dkim-perl opendkim-tools

.PHONY: run test venv install install-test test-debs debs lint bench clean

run: install
	$(BIN)/postroom -c $(CONFIG) config init --state-dir $(STATE)
	$(BIN)/postroom -c $(CONFIG) db upgrade
	$(BIN)/postroom -c $(CONFIG) serve

test: test-debs install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest -q

venv: $(BIN)/python

# Debian's python3 lacks ensurepip (so venv) until python3-venv is installed.
$(BIN)/python:
	@$(PYTHON) -c "import ensurepip" >/dev/null 2>&1 || $(MAKE) --no-print-directory debs DEBS="python3-venv python3-pip"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: venv
	$(BIN)/python -m pip install --quiet -e .

install-test: venv
	$(BIN)/python -m pip install --quiet -e '.[test]'

test-debs:
	@$(MAKE) --no-print-directory debs DEBS="$(TEST_DEBS)"

# Installs Debian packages that are missing; `apt-get update` only when needed.
# Tests run private instances of these servers only, so the packages' own
# services are kept from starting (policy-rc.d, unless the machine has one) and
# Postfix is preseeded to "No configuration".
debs:
	@missing=""; for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  guard=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1; \
	  fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; status=$$?; \
	  if [ -n "$$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	  exit $$status; \
	fi

lint: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: install-test test-debs
	@$(MAKE) --no-print-directory debs DEBS="$(BENCH_DEBS)"
	$(BIN)/python bench/relay.py
	$(BIN)/python bench/relay.py --sign
	$(BIN)/python bench/signing.py
	$(BIN)/python bench/submission.py
	$(BIN)/python bench/bounces.py
	$(BIN)/python bench/fuzz_bounces.py
	$(BIN)/python bench/addresses.py
	$(BIN)/python bench/import_csv.py

clean:
	rm -rf $(VENV) $(STATE) build src/*.egg-info .pytest_cache .ruff_cache
