# Front door: `make demo` (set up + run detection on real media), `make test` (set up + run the tests).
# Both create .venv with pip; torch/torchvision are pinned exactly in pyproject.toml.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEMO_SOURCE ?= ../shared/data/video/slow_traffic_small.mp4
DEMO_MODEL  ?= yolov8n
DEMO_ARGS   ?=

.PHONY: setup sysdeps demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: setup
	$(VENV)/bin/densecnn detect $(DEMO_SOURCE) --model $(DEMO_MODEL) --name demo $(DEMO_ARGS)

# System tools for the live-stream tests (ffmpeg, Xvfb, GStreamer RTSP server); a no-op when present.
sysdeps:
	@bash .ci/sysdeps

test: setup sysdeps
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check densecnn tests
	$(VENV)/bin/ruff format --check densecnn tests

clean:
	rm -rf $(VENV) runs .pytest_cache
