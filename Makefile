# MLX Manager. `make run` serves the app, `make test` runs every test; both set themselves up.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT

.PHONY: run test lint bench setup dev-setup browser systemd-analyze prometheus migrate clean

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

## Debian's Chromium for the browser tests (Playwright drives it; nothing is downloaded by Playwright).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

## systemd-analyze, with which the tests verify the generated systemd units (system/tests/test_installservice.py).
systemd-analyze:
	@command -v systemd-analyze >/dev/null 2>&1 || { \
		echo "Installing Debian's systemd for systemd-analyze verify"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq systemd >/dev/null; }

## Debian's prometheus: `promtool check metrics` and a real server scraping the app (monitoring/tests/).
prometheus:
	@{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || { \
		echo "Installing Debian's prometheus for the metrics tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq prometheus >/dev/null; }

## Every test, browser ones included, on every core (TEST_WORKERS=0 runs them in one process).
TEST_WORKERS ?= auto
test: dev-setup browser systemd-analyze prometheus
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: dev-setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

bench: dev-setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .mypy_cache .ruff_cache
