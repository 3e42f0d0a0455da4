# cleanmig: the front door. `make` lists the targets.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO      ?= cargo
BIN        := target/debug/cleanmig
DEVDB      ?= .devdb
SCALE      ?= 1
SEED       ?= 42
ARTIFACTS  ?= artifacts
# The demo's test accounts have lesson progress and tags; the demo chooses to delete those rows
# with the accounts (the default, `refuse`, stops and lists them).
DEMO_LOAD_FLAGS ?= --dependents delete
LOAD_FLAGS ?=
SCALES     ?= 1 10 100
RUNS       ?= 3
READERS_ENV := target/pyenv-readers
READERS_PY  := $(READERS_ENV)/bin/python
export CLEANMIG_ARTIFACTS := $(ARTIFACTS)

.PHONY: help
help: ## Show this list
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: setup
setup: setup-postgres setup-pgbouncer setup-openssl setup-readers setup-chromium ## Install what the demo and the tests need when missing

# Debian's package when apt-get is there; otherwise say what to install.
APT_INSTALL = SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends

.PHONY: setup-postgres
setup-postgres:
	@if [ -n "$$CLEANMIG_PG_BINDIR" ] && [ -x "$$CLEANMIG_PG_BINDIR/initdb" ]; then exit 0; fi; \
	if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	   || [ -x "$$(pg_config --bindir 2>/dev/null)/initdb" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1; then \
	  echo "make: no Postgres server binaries found; installing Debian's postgresql package" >&2; \
	  $(APT_INSTALL) postgresql postgresql-client >/dev/null; \
	else \
	  echo "make: no Postgres server binaries (initdb, pg_ctl) found. Install the PostgreSQL server:" >&2; \
	  echo "  Debian/Ubuntu: apt-get install postgresql   Fedora: dnf install postgresql-server" >&2; \
	  echo "  macOS: brew install postgresql              or set CLEANMIG_PG_BINDIR to its bin directory" >&2; \
	  exit 1; \
	fi

.PHONY: setup-pgbouncer
# The pooler tests run their own PgBouncer (own ini file, free port) in front of the test
# Postgres; Debian's pgbouncer service is not wanted and is stopped and disabled if it started.
setup-pgbouncer:
	@if [ -n "$$CLEANMIG_PGBOUNCER" ] && [ -x "$$CLEANMIG_PGBOUNCER" ]; then exit 0; fi; \
	if [ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1; then \
	  echo "make: installing Debian's pgbouncer (the pooler tests run it in front of the test Postgres)" >&2; \
	  $(APT_INSTALL) pgbouncer >/dev/null; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO systemctl disable --now pgbouncer >/dev/null 2>&1 \
	    || $$SUDO service pgbouncer stop >/dev/null 2>&1 || true; \
	else \
	  echo "make: the pooler tests need PgBouncer. Install it:" >&2; \
	  echo "  Debian/Ubuntu: apt-get install pgbouncer   Fedora: dnf install pgbouncer" >&2; \
	  echo "  macOS: brew install pgbouncer              or set CLEANMIG_PGBOUNCER to its binary" >&2; \
	  exit 1; \
	fi

.PHONY: setup-openssl
setup-openssl:
	@if command -v openssl >/dev/null 2>&1; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1; then \
	  echo "make: installing openssl (the TLS tests make their own certificates)" >&2; \
	  $(APT_INSTALL) openssl >/dev/null; \
	else echo "make: the TLS tests need the openssl command; please install it" >&2; exit 1; fi

.PHONY: setup-readers
# The tests open the artifacts in DuckDB and pyarrow from this environment; they never install
# anything themselves.
setup-readers:
	@set -e; \
	if $(READERS_PY) -c 'import duckdb, pyarrow' >/dev/null 2>&1; then exit 0; fi; \
	echo "make: creating $(READERS_ENV) with duckdb and pyarrow (the reader tests use it)" >&2; \
	rm -rf $(READERS_ENV); \
	if ! python3 -m venv $(READERS_ENV) >/dev/null 2>&1; then \
	  rm -rf $(READERS_ENV); \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "make: python3 -m venv failed; installing Debian's python3-venv" >&2; \
	    $(APT_INSTALL) python3-venv >/dev/null; \
	    python3 -m venv $(READERS_ENV); \
	  else \
	    echo "make: python3 -m venv failed; install Python 3 with its venv module" >&2; exit 1; \
	  fi; \
	fi; \
	$(READERS_PY) -m pip install -q duckdb pyarrow; \
	$(READERS_PY) -c 'import duckdb, pyarrow'

.PHONY: setup-chromium
setup-chromium:
	@if [ -n "$$CLEANMIG_CHROMIUM" ] && [ -x "$$CLEANMIG_CHROMIUM" ]; then exit 0; fi; \
	if command -v chromium >/dev/null 2>&1; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1; then \
	  echo "make: installing Debian's chromium (the review page test renders the page in it)" >&2; \
	  $(APT_INSTALL) chromium >/dev/null; \
	else \
	  echo "make: the review page test needs Chromium. Install it:" >&2; \
	  echo "  Debian/Ubuntu: apt-get install chromium   Fedora: dnf install chromium" >&2; \
	  echo "  or set CLEANMIG_CHROMIUM to a Chromium or Chrome binary" >&2; \
	  exit 1; \
	fi

.PHONY: build
build: ## Build the cleanmig binary (debug profile)
	$(CARGO) build

.PHONY: test
test: setup ## Run every test (unit, SQL rules, end to end against a throwaway Postgres)
	$(CARGO) test --no-fail-fast

.PHONY: lint
lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

.PHONY: demo
demo: setup build ## The whole pipeline on a throwaway Postgres filled with synthetic data
	@set -euo pipefail; \
	$(BIN) dev-db stop --dir $(DEVDB) 2>/dev/null || true; \
	trap '$(BIN) dev-db stop --dir $(DEVDB) >/dev/null 2>&1 || true' EXIT INT TERM; \
	export DATABASE_URL=$$($(BIN) dev-db start --dir $(DEVDB)); \
	rm -rf $(ARTIFACTS)/extract $(ARTIFACTS)/stage $(ARTIFACTS)/approved.json; \
	echo "== demo-data (scale $(SCALE), seed $(SEED))" >&2; \
	$(BIN) demo-data --scale $(SCALE) --seed $(SEED) --ground-truth $(ARTIFACTS)/demo/ground_truth.json; \
	echo "== extract" >&2; $(BIN) extract; \
	echo "== transform" >&2; $(BIN) transform; \
	echo "== approve" >&2; $(BIN) approve --by demo; \
	echo "== load (dry run)" >&2; $(BIN) load $(DEMO_LOAD_FLAGS); \
	echo "== load --apply" >&2; $(BIN) load --apply $(DEMO_LOAD_FLAGS); \
	echo "== load --apply again (must change nothing)" >&2; $(BIN) load --apply $(DEMO_LOAD_FLAGS); \
	echo "== status" >&2; $(BIN) status; \
	echo "== review page (open it in a browser; it holds customer data)" >&2; \
	echo "$$(cd $(ARTIFACTS)/stage && pwd)/review.html"

.PHONY: extract
extract: build ## Extract sources and destination tables to artifacts/extract (needs DATABASE_URL or PG*)
	$(BIN) extract

.PHONY: transform
transform: build ## Run pipeline/*.sql over the extract into artifacts/stage
	$(BIN) transform

.PHONY: query
query: build ## Query the artifacts: make query SQL="SELECT ..."
	$(BIN) query $(if $(SQL),"$(SQL)")

.PHONY: review
review: build ## Render artifacts/stage/review.html from the artifacts; open it (with a display) and print its path
	@page=$$($(BIN) review) || exit 1; echo "$$page"; \
	if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] && command -v xdg-open >/dev/null 2>&1; then \
	  xdg-open "$$page" >/dev/null 2>&1 & \
	fi

.PHONY: explain
explain: build ## Trace one person or payment through the pipeline: make explain EMAIL=... (or KEY=...)
	$(BIN) explain $(if $(KEY),--key "$(KEY)",$(if $(EMAIL),"$(EMAIL)"))

.PHONY: approve
approve: build ## Freeze the reviewed artifacts into artifacts/approved.json
	$(BIN) approve

.PHONY: dry-run
dry-run: build ## Run the load in a transaction and roll it back
	$(BIN) load $(LOAD_FLAGS)

.PHONY: load
load: build ## Load the approved artifacts and commit
	$(BIN) load --apply $(LOAD_FLAGS)

.PHONY: status
status: build ## Artifacts, approval, source drift and the last runs
	$(BIN) status

# The peers the figures are measured against, pinned: a new release of one would move its side
# of every ratio, and the README's figures could no longer be compared run to run.
BENCH_PEERS        := duckdb==2.0.1 connectorx==0.4.6 pyarrow==26.0.1 matplotlib==3.11.2
PG2PARQUET_VERSION := 0.2.2

.PHONY: bench
bench: setup ## Speed and memory at SCALES (default "1 10 100") beside the COPY floor and peers
	$(CARGO) build --release
	@mkdir -p bench/.work
	@test -x bench/.work/venv/bin/python || python3 -m venv bench/.work/venv
	bench/.work/venv/bin/pip install -q $(BENCH_PEERS)
	@test -x bench/.work/tools/bin/pg2parquet || $(CARGO) install -q --locked pg2parquet@$(PG2PARQUET_VERSION) --root bench/.work/tools
	bench/.work/venv/bin/python bench/bench.py --bin target/release/cleanmig --scales "$(SCALES)" --runs $(RUNS)

.PHONY: clean
clean: ## Remove artifacts (not the build)
	rm -rf $(ARTIFACTS)/extract $(ARTIFACTS)/stage $(ARTIFACTS)/approved.json $(ARTIFACTS)/demo
