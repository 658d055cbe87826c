# `make test` and `make demo` set everything up from nothing: venv, install, broker.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU wheel first, so that no dependency resolves torch to a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check streambind tests
	$(PY) -m pytest -q -ra

demo: $(STAMP)
	$(VENV)/bin/streambind demo

lint: $(STAMP)
	$(VENV)/bin/ruff check streambind tests

clean:
	rm -rf $(VENV) .pytest_cache
