# mailprobe: the front door. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install lock browser unbound netns dovecot blackbox alertmanager prometheus run test lint bench soak fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# requirements.lock pins, with hashes, every package of `.[dev,embedded]` (ruff and mypy
# included) for Python 3.11 on Linux x86_64; the project itself goes on top, editable and
# without dependencies, so nothing unpinned comes in.
LOCK := requirements.lock
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP) ## create .venv with the product and its development tools

# Keeps the pins that still satisfy pyproject.toml; LOCK_ARGS=--upgrade moves all to the newest,
# LOCK_ARGS='--upgrade-package ruff' one.
lock: $(STAMP) ## regenerate requirements.lock from pyproject.toml (uv pip compile, PyPI)
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev --extra embedded \
	  --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	  --generate-hashes \
	  --custom-compile-command 'make lock' --output-file $(LOCK) $(LOCK_ARGS)

run: $(STAMP) ## start PostgreSQL, NATS, the controller and one agent per DEV_COUNTRIES (Ctrl-C stops all)
	$(BIN)/python tools/devrun.py

# Debian packages the tests run (never a download of their own): installed with apt-get when
# the binary is missing, as root, else through sudo, never asking (debconf's defaults).
# $(1): a binary to look for; $(2): packages.
define apt_when_missing
	@if [ -x $(1) ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q --no-install-recommends $(2); \
	else \
	  sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q --no-install-recommends $(2); \
	fi
endef

# The console's browser tests drive Debian's Chromium through Debian's chromedriver.
browser: ## install Debian's chromium and chromium-driver when missing (the console's browser tests)
	$(call apt_when_missing,/usr/bin/chromedriver,chromium chromium-driver)
	$(call apt_when_missing,/usr/bin/chromium,chromium chromium-driver)

# The DANE tests validate DNSSEC with Debian's unbound, run unprivileged on a loopback port by
# the tests themselves (no service is enabled).
unbound: ## install Debian's unbound when missing (the DANE tests' validating resolver)
	$(call apt_when_missing,/usr/sbin/unbound,unbound)

# `make bench exporter` sets the agent beside Debian's prometheus-blackbox-exporter against
# Debian's Postfix and Dovecot, which the benchmark runs itself from a temporary directory on
# loopback ports (as root; no service is enabled).
blackbox: ## install Debian's prometheus-blackbox-exporter, postfix and dovecot when missing (the exporter benchmark)
	$(call apt_when_missing,/usr/bin/prometheus-blackbox-exporter,prometheus-blackbox-exporter)
	$(call apt_when_missing,/usr/sbin/postfix,postfix)
	$(call apt_when_missing,/usr/lib/dovecot/imap-login,dovecot-imapd)
	$(call apt_when_missing,/usr/lib/dovecot/pop3-login,dovecot-pop3d)

# The agent self-check tests run agents in network namespaces with egress filtered by nftables
# (tests/netns.py); as root only: elsewhere those tests skip.
netns: ## install Debian's iproute2 and nftables when missing (the agent self-check tests' namespaces)
	$(call apt_when_missing,/usr/sbin/ip,iproute2)
	$(call apt_when_missing,/usr/sbin/nft,nftables)

# The OAuth2 login tests run Debian's Dovecot (OAuth2 passdb) and a private Postfix submitting
# through it, both started by the tests themselves on loopback ports (no service is enabled).
# Postfix's installer asks questions: noninteractive takes its defaults.
dovecot: ## install Debian's dovecot-imapd, dovecot-pop3d and postfix when missing (the OAuth2 login tests)
	$(call apt_when_missing,/usr/lib/dovecot/imap,dovecot-imapd dovecot-pop3d)
	$(call apt_when_missing,/usr/lib/dovecot/pop3,dovecot-imapd dovecot-pop3d)
	$(call apt_when_missing,/usr/lib/postfix/sbin/master,postfix)

# The notification channel tests post alerts to Debian's Prometheus Alertmanager, started by the
# tests themselves on a loopback port (no service is enabled).
alertmanager: ## install Debian's prometheus-alertmanager when missing (the Alertmanager channel's tests)
	$(call apt_when_missing,/usr/bin/prometheus-alertmanager,prometheus-alertmanager)

# The Grafana dashboard's queries are answered by Debian's Prometheus scraping the controller,
# started by the test itself on a loopback port (no service is enabled).
prometheus: ## install Debian's prometheus when missing (the scrape and dashboard test)
	$(call apt_when_missing,/usr/bin/prometheus,prometheus)

# The suite waits on real servers far more than it computes: four workers (pytest-xdist), each
# with its own embedded PostgreSQL and NATS, a test file per worker at a time (module fixtures
# such as the short soak's campaign run once), the files marked `slow` first (tests/conftest.py)
# so that no long file starts last. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 4
test: $(STAMP) browser unbound netns dovecot alertmanager prometheus ## run the whole test suite against real PostgreSQL, NATS, mail servers, Chromium, unbound, Dovecot, Postfix, Alertmanager, Prometheus and network namespaces
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

fuzz: $(STAMP) ## schemathesis, longer than make test's run: a drawn seed too, coverage phase, FUZZ_EXAMPLES (100) per operation
	FUZZ_RANDOM=$${FUZZ_RANDOM:-1} FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-100} FUZZ_PHASES=$${FUZZ_PHASES:-examples,coverage,fuzzing,stateful} \
	  $(BIN)/pytest tests/fuzz $(PYTEST_ARGS)

lint: $(STAMP) ## ruff (format and lint) and mypy --strict
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/mypy tools bench deploy

# `make bench scale` runs the named benchmarks only; BENCH_ARGS go after the names
# (`make bench scale BENCH_ARGS='--window 60'`).
BENCH_NAMES := $(if $(filter bench,$(firstword $(MAKECMDGOALS))),$(wordlist 2,$(words $(MAKECMDGOALS)),$(MAKECMDGOALS)))
bench: $(STAMP) blackbox ## benchmarks with their targets (`make bench scale`: only the named); prints the figures
	$(BIN)/python -m bench $(BENCH_NAMES) $(BENCH_ARGS)
ifneq ($(BENCH_NAMES),)
$(BENCH_NAMES): ; @:
endif

soak: $(STAMP) ## the fault campaign of issue 13 (~15 min, loopback); exits 1 when a target is missed
	$(BIN)/python -m bench.soak

clean: ## remove the virtual environment and local run data
	rm -rf $(VENV) .run
