# Foyer developer entry points. The README's quick start is `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test install bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## run: one Foyer node on the embedded default (PostgreSQL + Valkey under ./var), http://127.0.0.1:8080
run: $(STAMP)
	$(PY) run.py serve

## test: the whole test suite (embedded services, or FOYER_TEST_DATABASE_URL / FOYER_TEST_REDIS_URL)
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## bench: the benchmarks listed in README "Benchmarks and load tests", one after the other, each with
##        its defaults (minutes each, every core loaded: run nothing else you are timing beside it).
##        A subset: make bench BENCHES="ticket push". PostgreSQL/Redis: FOYER_TEST_DATABASE_URL /
##        FOYER_TEST_REDIS_URL as in README (push needs neither).
BENCHES ?= ticket fanout idle outbox push
bench: $(STAMP)
	@set -e; for b in $(BENCHES); do echo "== bench/$${b}_bench.py"; $(PY) bench/$${b}_bench.py; done

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
