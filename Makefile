# Two commands for a fresh machine: `make demo` (main job) and `make test` (whole test suite).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
LD := $(VENV)/bin/live-decode
QT_LIBS := libegl1 libgl1 libxkbcommon0 libfontconfig1 libglib2.0-0 libdbus-1-3

.PHONY: setup sysdeps demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[qt,test,dev]"
	# Picasso's reader for the format tests; its own requirements would pull PyQt6 beside PySide6.
	$(PY) -m pip install -q --no-deps picassosr==0.11.3
	$(PY) -m pip install -q numba nd2 playsound3 tqdm
	touch $@

setup: $(VENV)/.installed sysdeps

# Qt needs a few system libraries even offscreen; install them when missing and we may.
sysdeps:
	@if ! ldconfig -p | grep -q 'libEGL.so.1' || ! ldconfig -p | grep -q 'libxkbcommon.so.0'; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(QT_LIBS) >/dev/null; \
	  else echo "warning: Qt system libraries missing; install: $(QT_LIBS)"; fi; fi

demo: setup
	$(LD) demo --out runs/demo

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check live_decode tests benchmarks
	$(VENV)/bin/ruff format --check live_decode tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest benchmarks --benchmark-only --benchmark-json=benchmarks/results.json -p no:cacheprovider

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
