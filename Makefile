# Front door: `make demo` (set up + detect and segment the sample photos offline, with the embedded
# models), `make test` (set up + run the tests), `make models` (rebuild the embedded models from
# ../shared/data). All create .venv with pip; torch/torchvision are pinned exactly in pyproject.toml.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SETUP ?= setup
# Extras installed into .venv: the tests exercise every backend, INT8 export and the Ray engine.
EXTRAS ?= dev,onnx,openvino,int8,ray
DEMO_SOURCE ?= samples
DEMO_OUT    ?= runs/demo
DEMO_ARGS   ?=

.PHONY: setup sysdeps demo models test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

# Offline on purpose: with no official weights cached, densecnn says it uses its embedded models.
demo: $(SETUP)
	DENSECNN_OFFLINE=1 $(PY) -m densecnn detect $(DEMO_SOURCE) --out $(DEMO_OUT) --name detect --exist-ok $(DEMO_ARGS)
	DENSECNN_OFFLINE=1 $(PY) -m densecnn segment $(DEMO_SOURCE) --out $(DEMO_OUT) --name segment --exist-ok $(DEMO_ARGS)
	@echo "Annotated outputs: $(DEMO_OUT)/detect (person boxes) and $(DEMO_OUT)/segment (person masks)"

# Rebuild weights/person-yolov8n.safetensors and weights/person-unet.safetensors from DATA (Penn-Fudan,
# COCO128 and coco-person, see weights/MODELS.md for where to get them): fine-tunes version 1 (read from
# git history) with fixed seeds, registers the digests, prints the held-out figures. About 95 minutes on
# 2 CPU cores; an interrupted training step continues where it stopped when run again.
DATA ?= ../shared/data
models: $(SETUP)
	@for d in pennfudan coco128 coco-person; do test -d "$(DATA)/$$d" || { echo "make models needs DATA=folder with pennfudan/, coco128/ and coco-person/ (see weights/MODELS.md: where to get them)"; exit 2; }; done
	DENSECNN_DATA="$(DATA)" OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) tools/build_models.py all

# System tools for the live-stream tests (ffmpeg, Xvfb, GStreamer RTSP server); a no-op when present.
sysdeps:
	@bash .ci/sysdeps

# Two workers, one test file per worker (module fixtures are built once). Training DataLoaders start
# their workers with forkserver, so forking beside xdist's I/O thread cannot hang them.
PYTEST_WORKERS ?= 2
test: setup sysdeps
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

lint: setup
	$(VENV)/bin/ruff check densecnn tests
	$(VENV)/bin/ruff format --check densecnn tests

clean:
	rm -rf $(VENV) runs .pytest_cache build
