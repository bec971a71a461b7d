# Two commands on a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck check system-deps venv clean serve bench translations

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	bash scripts/system-deps.sh

demo: system-deps venv
	$(PY) scripts/demo.py

serve: system-deps venv
	$(PY) scripts/serve.py

test: system-deps venv
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest

lint: venv
	$(PY) -m ruff check .

typecheck: venv
	$(PY) -m mypy

bench: venv
	$(PY) bench/crypto.py

# the RA web UI's messages: extract from ra/web.py, ra/i18n.py and the templates, merge into
# the catalogs (translate what is new in the .po files, then run this again), compile the .mo
translations: venv
	$(VENV)/bin/pybabel extract -F ra/translations/babel.cfg -k lazy_gettext -k _l --no-location \
		--sort-output --project sscard-pki -o ra/translations/messages.pot .
	$(VENV)/bin/pybabel update -i ra/translations/messages.pot -d ra/translations \
		--no-fuzzy-matching --ignore-obsolete
	$(VENV)/bin/pybabel compile -d ra/translations --statistics

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
