# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install migrate demo serve worker bench translations clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/flask --app wsgi db upgrade

demo: migrate
	$(BIN)/flask --app wsgi demo

# Without REDIS_URL the rate limits and jobs live in the process: serve with one worker and threads.
serve: $(STAMP)
	@echo ""
	@echo "  Union member card platform: http://$(HOST):$(PORT)/"
	@echo "  API document:               http://$(HOST):$(PORT)/api/v1/openapi.json"
	@echo ""
	$(BIN)/gunicorn --bind $(HOST):$(PORT) --workers $${WEB_WORKERS:-1} --threads 8 --timeout 120 wsgi:app

run: demo serve

test: $(STAMP)
	$(BIN)/pytest

worker: $(STAMP)
	$(BIN)/flask --app wsgi worker

# Every benchmark and one table of their figures against pgbench in the same run (BENCH_QUICK=1: small sizes).
bench: $(STAMP)
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python bench/run.py

translations: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k N_ -o core/translations/messages.pot --ignore-dirs=".venv tests bench migrations instance" .
	$(BIN)/pybabel update -i core/translations/messages.pot -d core/translations
	$(BIN)/pybabel compile -d core/translations

clean:
	rm -rf $(VENV) instance .pytest_cache
