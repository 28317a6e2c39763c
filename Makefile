# The two set-up commands of the README: `make run` and `make test`. Each creates .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: run test chromium lint bench space-check clean-venv

# torch first, then basicsr without build isolation: basicsr 1.4.2 is source-only and its isolated build would
# download a second copy of torch.
$(VENV)/.runtime-installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip setuptools wheel
	$(BIN)/pip install $$(grep -E '^(torch|torchvision)==' requirements.txt)
	$(BIN)/pip install --no-build-isolation $$(grep -E '^basicsr==' requirements.txt)
	$(BIN)/pip install -r requirements.txt
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	touch $@

# The tests also cover the optional extras: the onnxruntime backend and ONNX export (requirements-onnx.txt) and Ray
# (requirements-ray.txt); a Space installs neither.
$(VENV)/.test-installed: $(VENV)/.runtime-installed requirements-test.txt requirements-onnx.txt requirements-ray.txt
	$(BIN)/pip install -r requirements-test.txt -r requirements-onnx.txt -r requirements-ray.txt
	touch $@

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .

# Fetching ahead is best effort: without a network the app still starts and says which files are missing.
run: $(VENV)/.runtime-installed
	-$(BIN)/python -m codeformer_core download --task restore
	$(BIN)/python app.py --host $(HOST) --port $(PORT)

# chromium first: a machine that cannot have it hears so before the minutes of installing, not at the suite's end.
test: chromium $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

# The reference path needs the published architecture as spandrel packages it (bench only, not the app).
bench: $(VENV)/.runtime-installed
	$(BIN)/pip install --no-deps -r bench/requirements.txt
	$(BIN)/python -m bench.bench

# A fresh venv installed exactly as a Hugging Face Space builder installs requirements.txt, then the app started as
# a Space and asked for one restore (downloads several GB; not part of `make test`).
space-check: $(VENV)/.runtime-installed
	$(BIN)/python -m tools.space_check

chromium:
	@bash tools/ensure_chromium.sh

clean-venv:
	rm -rf $(VENV)

# Issue 15's GPU check: fills the git-ignored bench/gpu-carry/ with what a bare GPU machine lacks (pure-Python wheels,
# the golden vectors, the sample photo); then run `bash bench/gpu_check.sh` there (bench/README.md, "GPU check").
.PHONY: gpu-check-prep
gpu-check-prep: $(VENV)/.runtime-installed
	$(BIN)/pip install --no-deps -r bench/requirements.txt
	$(BIN)/python -m bench.gpu_check.prep
