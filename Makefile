# Two commands for a fresh machine: `make demo` (main job) and `make test` (whole test suite).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
LD := $(VENV)/bin/live-decode
QT_LIBS := libegl1 libgl1 libxkbcommon0 libfontconfig1 libglib2.0-0 libdbus-1-3
# Xvfb: napari draws with OpenGL, which Qt's offscreen platform cannot give it; the napari plugin's
# widget tests run on a virtual X display instead (no window is shown).
XVFB := xvfb xauth
PLUGIN := plugins/napari-live-decode
XCB_LIBS := libx11-6 libx11-xcb1 libxcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 \
  libxcb-randr0 libxcb-render0 libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1 \
  libxcb-util1 libxcb-xfixes0 libxcb-xkb1 libxkbcommon-x11-0

.PHONY: setup sysdeps demo test lint bench clean

$(VENV)/.installed: pyproject.toml $(PLUGIN)/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[qt,test,dev,dask]"
	# Picasso's reader for the format tests, and its NeNA/FRC for the quality tests (statsmodels,
	# sqlalchemy: what picasso.postprocess imports); its own requirements would pull PyQt6.
	$(PY) -m pip install -q --no-deps picassosr==0.11.3
	$(PY) -m pip install -q numba nd2 playsound3 tqdm statsmodels sqlalchemy
	# The napari plugin (napari, npe2 and its test extras; PySide6 stays the Qt binding).
	$(PY) -m pip install -q -e "$(PLUGIN)[test]"
	touch $@

setup: $(VENV)/.installed sysdeps

# Qt needs a few system libraries even offscreen, and the xcb ones for a window on X11 (what
# PySide6's platforms/libqxcb.so links, read with `readelf -d`); install the missing ones when we may.
sysdeps:
	@if ! command -v dpkg-query >/dev/null; then \
	  echo "not Debian/Ubuntu: make sure these libraries (or your system's names for them) are installed: $(QT_LIBS) $(XCB_LIBS)"; exit 0; fi; \
	missing=$$(for p in $(QT_LIBS) $(XCB_LIBS); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q 'ok installed' || echo "$$p"; done; \
	  command -v xvfb-run >/dev/null || echo $(XVFB)); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: Qt system libraries missing; install them with: sudo apt-get install" $$missing; fi; fi

demo: setup
	$(LD) demo --out runs/demo

# The package's tests (Qt offscreen), then the napari plugin's with its own pytest config: on the
# display there is, else under Xvfb; without either its widget tests skip, saying why.
test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest
	run=""; qpa=xcb; if [ -z "$$DISPLAY" ]; then if command -v xvfb-run >/dev/null; then \
	  run='xvfb-run -a -s "-screen 0 1600x1200x24"'; else qpa=offscreen; \
	  echo "no display and no xvfb-run: the napari widget tests will skip (make sysdeps installs xvfb)"; fi; fi; \
	eval $$run env QT_QPA_PLATFORM=$$qpa $(PY) -m pytest -c $(PLUGIN)/pyproject.toml $(PLUGIN)/tests

lint: setup
	$(VENV)/bin/ruff check live_decode tests benchmarks plugins
	$(VENV)/bin/ruff format --check live_decode tests benchmarks plugins
	$(VENV)/bin/mypy
	cd $(PLUGIN) && $(abspath $(VENV))/bin/mypy   # strict too, with its own config (src/)
	$(VENV)/bin/lint-imports

bench: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest benchmarks --benchmark-only --benchmark-json=benchmarks/results.json -p no:cacheprovider

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
