# MLX Manager. `make run` serves the app, `make test` runs every test; both set themselves up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT

.PHONY: run test test-postgresql check lint bench setup dev-setup system-deps agents migrate clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(VENV)/.installed $@

setup: $(VENV)/.installed
dev-setup: $(VENV)/.dev-installed

migrate: setup
	@pending=$$($(PY) manage.py showmigrations --plan | grep -c '^\[ \]'); \
		$(PY) manage.py migrate --noinput -v 0 && \
		if [ "$$pending" -gt 0 ]; then echo "Database: $$pending migrations applied."; else echo "Database: up to date."; fi
	@$(PY) manage.py collectstatic --noinput -v 0

## Serve the web app (gunicorn) and the supervisor together; Ctrl-C stops both.
run: migrate
	@echo "MLX Manager on http://$(HOST):$(PORT)/ (Ctrl-C stops the web server and the supervisor)"
	@$(PY) -m mlxmanager.run -f Procfile start

## The Debian packages the tests use, in one apt call: chromium (Playwright drives it; nothing is
## downloaded by Playwright), systemd-analyze (verifies the generated systemd units), prometheus
## (promtool and a real server scraping the app) and postgresql (the throwaway clusters of
## testing/postgres.py; no service is started). Installs only what is missing.
SYSTEM_DEPS_MISSING = $(strip \
	$(if $(shell command -v chromium),,chromium) \
	$(if $(shell command -v systemd-analyze),,systemd) \
	$(if $(and $(shell command -v prometheus),$(shell command -v promtool)),,prometheus) \
	$(if $(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql))
system-deps:
	@if [ -n "$(SYSTEM_DEPS_MISSING)" ]; then \
		echo "Installing Debian's $(SYSTEM_DEPS_MISSING) for the tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(SYSTEM_DEPS_MISSING) >/dev/null; \
	fi

## The agent CLIs the tests drive through /v1/ (Claude Code, Codex), at the versions of
## testing/agents/package-lock.json; skipped where npm is absent (the tests say so).
AGENTS := testing/agents
$(AGENTS)/node_modules/.installed: $(AGENTS)/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix $(AGENTS) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm is absent: the agent CLI tests will be skipped"; fi
agents: $(AGENTS)/node_modules/.installed

## The tests that exercise the database (services, permissions, the supervisor's plumbing, the
## gateway's records) are marked `postgres` and run a second time on a throwaway PostgreSQL.

## Every test, browser ones included, on every core (TEST_WORKERS=0 runs them in one process);
## then the database tests again on PostgreSQL. Work stealing: a worker that runs out takes tests
## queued for the other, so the run does not end with one worker idle beside a minute-long test
## (943 s instead of 1053 s for the first pass, on 2 cores).
TEST_WORKERS ?= auto
XDIST = -n $(TEST_WORKERS) --dist worksteal
test: dev-setup system-deps agents
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-postgresql

test-postgresql: dev-setup system-deps
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) -m testing.postgres run -- $(PY) -m pytest $(XDIST) -m "postgres and not browser" $(PYTEST_ARGS)

## The quick loop: lint, types, and the tests that need no browser, no model server and no Debian
## package (make test runs everything).
check: lint
	$(PY) -m pytest $(XDIST) -q -m "not browser and not mlx and not debian" $(PYTEST_ARGS)

lint: dev-setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

## Every benchmark, or some: `make bench BENCH=gateway` runs bench/bench_gateway*.py only.
BENCH ?=
bench: dev-setup
	$(PY) -m bench $(BENCH)

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .mypy_cache .ruff_cache
