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

# Every benchmark; bench/seed_scale.py is the data generator bench/console.py runs, not a benchmark of its own.
bench: $(STAMP)
	@for f in bench/[!_]*.py; do [ "$$f" = bench/seed_scale.py ] || $(BIN)/python $$f || exit 1; done

translations: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k N_ -o core/translations/messages.pot --ignore-dirs=".venv tests bench migrations instance" .
	$(BIN)/pybabel update -i core/translations/messages.pot -d core/translations
	$(BIN)/pybabel compile -d core/translations

clean:
	rm -rf $(VENV) instance .pytest_cache
