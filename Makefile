# postroom: the two set-up commands of the README, and a few helpers.
#   make run       - virtualenv, install, trial config (if none), migrations, serve
#   make test      - Debian and Python packages the tests need, then the whole suite
#   make install   - production install (README, "Production install"; tools/install.sh)
#   make uninstall - removes it again; keeps /etc/postroom and /var/lib/postroom

PYTHON ?= python3
VENV   ?= .venv
CONFIG ?= postroom.toml
STATE  ?= state
BIN     = $(VENV)/bin

# Production install: DESTDIR stages the tree for packaging (empty = the live system);
# PREFIX is the application's own virtualenv. The service runs as an unprivileged user
# with ProtectHome=yes, so the virtualenv is made from the system interpreter, never
# from one under a home directory (pyenv). EXTRAS: psycopg, so that [database] url
# may name PostgreSQL without touching the virtualenv by hand.
DESTDIR       ?=
PREFIX        ?= /opt/postroom
SYSTEM_PYTHON ?= /usr/bin/python3
EXTRAS        ?= postgresql
# apt-get waits up to 5 minutes for another apt or dpkg (unattended-upgrades, a parallel
# make) instead of failing at once.
APT_GET = apt-get -o DPkg::Lock::Timeout=300
# `apt-get update` (apt 2.6, Debian 12) ignores that option for its lists lock and fails
# at once while another update runs: retry then, for as long (60 tries, 5 s apart).
APT_UPDATE = for try in $$(seq 60); do \
	  errors=$$($(APT_GET) update -qq 2>&1 >/dev/null); status=$$?; \
	  case "$$status $$errors" in \
	    "0 "*) [ -z "$$errors" ] || echo "$$errors" >&2; exit 0 ;; \
	    *"Could not get lock"*) [ $$try -gt 1 ] || echo "apt lists locked by another apt-get: waiting"; sleep 5 ;; \
	    *) echo "$$errors" >&2; exit $$status ;; \
	  esac; \
	done; echo "$$errors" >&2; exit 1

# Peers the benchmarks compare against (not needed by the tests).
BENCH_DEBS = libsisimai-perl

# Real peers of the flow tests (ARCHITECTURE.md, "Testing with real peers").
TEST_DEBS = postfix swaks nsd bind9-utils postgresql openssl systemd util-linux dovecot-imapd \
            libmail-dkim-perl opendkim-tools chromium fonts-dejavu-core libemail-mime-perl

.PHONY: run test venv develop install-test install uninstall test-debs debs apt-update lint bench clean

run: develop
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

develop: venv
	$(BIN)/python -m pip install --quiet -e .

install-test: venv
	$(BIN)/python -m pip install --quiet -e '.[test]'

# The production install builds its virtualenv with the checkout's pip (the venv target).
install uninstall: INSTALL_ENV = DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" \
	SYSTEM_PYTHON="$(SYSTEM_PYTHON)" EXTRAS="$(EXTRAS)" BUILD_PYTHON="$(BIN)/python"
install: venv
	@$(INSTALL_ENV) sh tools/install.sh install

uninstall:
	@$(INSTALL_ENV) sh tools/install.sh uninstall

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
	  ( $(APT_UPDATE) ) && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq $$missing; \
	  status=$$?; \
	  if [ -n "$$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	  exit $$status; \
	fi

apt-update:
	@$(APT_UPDATE)

lint: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: install-test test-debs
	@$(MAKE) --no-print-directory debs DEBS="$(BENCH_DEBS)"
	$(BIN)/python bench/relay.py --sign
	$(BIN)/python bench/campaign.py
	$(BIN)/python bench/crash.py
	$(BIN)/python bench/signing.py
	$(BIN)/python bench/submission.py
	$(BIN)/python bench/connections.py
	$(BIN)/python bench/bounces.py
	$(BIN)/python bench/fuzz_bounces.py
	$(BIN)/python bench/addresses.py
	$(BIN)/python bench/import_csv.py
	$(BIN)/python bench/cli_startup.py

clean:
	rm -rf $(VENV) $(STATE) build src/*.egg-info .pytest_cache .ruff_cache
