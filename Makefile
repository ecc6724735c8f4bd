# All set-up is idempotent and lives in .venv (Python 3.11, exact pins from requirements/lock.txt).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements/lock.txt pyproject.toml | sha256sum | cut -c1-12)
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup test demo clean

setup: $(STAMP)

$(STAMP): requirements/lock.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip==24.3.1" "setuptools==84.2.1" "wheel==0.48.0"
	$(PY) -m pip install -q -c requirements/lock.txt --no-build-isolation -e ".[all,test]"
	$(PY) -m pip check
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q -ra tests

demo: setup
	$(VENV)/bin/edgepack demo

clean:
	rm -rf $(VENV) demo
