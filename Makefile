# All set-up is idempotent and lives in .venv (Python 3.11, exact pins from requirements/lock.txt).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
# CPU-only laptops: `make test TORCH_INDEX=https://download.pytorch.org/whl/cpu` takes torch/torchvision (the lock's
# versions, +cpu builds) from PyTorch's CPU wheel index, so no CUDA libraries are installed. Default: PyPI's wheels.
TORCH_INDEX ?=
# Python 3.10 and 3.12 have their own locks (pins without a wheel for them replaced): `make test PYTHON=python3.12`.
PYVER  := $(shell $(PYTHON) -c 'import sys; print("%d%d" % sys.version_info[:2])' 2>/dev/null)
LOCK   := $(if $(wildcard requirements/lock-py$(PYVER).txt),requirements/lock-py$(PYVER).txt,requirements/lock.txt)
# The extras install with the lock as constraints, then the whole lock with --no-deps: four packages come that way
# only, because they declare pins that contradict the others and that nothing they run needs (onnx2tf: ai-edge-litert
# 2.1.0, and onnxsim 0.4.36 on 3.12; executorch: numpy>=2; litert-torch / litert-converter: transformers, xdsl). Their
# extras (onnx2tf, executorch, litert-torch) hold what they import. pip check's lines about exactly these four are
# expected; any other line fails the set-up.
NO_DEPS := ^(onnx2tf 1\.29\.24|executorch 1\.5\.1|litert-torch 0\.10\.0|litert-converter 0\.5\.0)[[:space:]]
STAMP  := $(VENV)/.installed-$(shell (cat $(LOCK) pyproject.toml; echo "$(TORCH_INDEX)") | sha256sum | cut -c1-12)
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup system-deps test test-unit demo clean aarch64-check aarch64-device-check

setup: $(STAMP)

$(STAMP): $(LOCK) pyproject.toml
	@test -n "$(PYVER)" || { echo "make: $(PYTHON) not found (set PYTHON=python3.10, python3.11 or python3.12)"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip==24.3.1" "setuptools==84.2.1" "wheel==0.48.0"
	$(if $(TORCH_INDEX),$(PY) -m pip install -q --index-url $(TORCH_INDEX) $$(grep -E '^(torch|torchvision)==' $(LOCK)))
	rm -rf edgepack.egg-info            # an old build's metadata here would shadow the installed one's pins
	$(PY) -m pip install -q -c $(LOCK) --no-build-isolation -e ".[all,test]"
	$(PY) -m pip install -q --no-deps -r $(LOCK)
	$(PY) -m pip check | grep -v -x -F -e "No broken requirements found." | grep -v -E -e "$(NO_DEPS)"; test $$? -eq 1
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# Test files run on TEST_WORKERS pytest-xdist workers, one file per worker at a time (the session fixtures of a file
# are built once); the suite spends much of its time in single-threaded imports and subprocesses, so 2 workers on the
# 2-core machine take ~0.7x the time of one. TEST_WORKERS=0: one process, as plain `pytest tests` runs.
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# Debian packages the tests use (installed as root where apt-get is there): espeak-ng speaks the synthetic keyword
# set; openssh-server (sshd) serves this machine as a loopback "device" for `deploy --device ssh://...`.
SYSTEM_PKGS := espeak-ng:espeak-ng openssh-server:/usr/sbin/sshd openssh-client:ssh
system-deps:
	@missing="$(foreach p,$(SYSTEM_PKGS),$$(command -v $(lastword $(subst :, ,$(p))) >/dev/null || echo $(firstword $(subst :, ,$(p)))))"; \
	missing=$$(echo $$missing); [ -z "$$missing" ] || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -q $$missing || (apt-get update -q && apt-get install -y -q $$missing)) >/dev/null; \
	  else echo "make: missing Debian packages the tests need: $$missing (apt-get install $$missing)"; fi; }

# Both tiers; the data folder must be there (../shared/data, or EDGEPACK_TEST_DATA): CI never passes by skipping.
test: setup system-deps
	EDGEPACK_REQUIRE_DATA=1 $(PY) -m pytest -q -ra $(XDIST) tests

# The unit tier alone: no data set, no training or conversion of real models (under a minute).
test-unit: setup
	$(PY) -m pytest -q -ra $(XDIST) -m "not integration and not slow" tests

demo: setup
	$(VENV)/bin/edgepack demo

# The Pi path on aarch64 under qemu-user emulation (root; Debian's qemu-user-static and debootstrap, installed if
# missing): the quickstart on real MNIST, then its .onnx, .tflite and .epk files benched in an arm64 userland that
# has only `.[runtime]`. Results (accuracies next to x86's, versions, no timings): benchmarks/results/aarch64/.
DATA ?= ../shared/data
aarch64-check: setup
	EDGEPACK_DATA=$(abspath $(DATA)) $(VENV)/bin/edgepack run examples/quickstart.toml --out runs/quickstart-real
	bash tools/aarch64_check.sh benchmarks/results/aarch64 $(abspath $(DATA))/mnist \
	  runs/quickstart-real/export-torch/model.onnx runs/quickstart-real/export-torch/model.int8.onnx \
	  runs/quickstart-real/export-torch/model.int8.tflite runs/quickstart-real/export-keras/model.int8.onnx \
	  runs/quickstart-real/export-keras/model.int8.tflite runs/quickstart-real/export-pruned/model.sparse.epk

# Two devices at once through `deploy --device` (root): this machine over a loopback sshd, and the arm64 userland
# above with its own sshd under qemu-user; a pick per device and the fleet report, the arm64 timings flagged as
# emulated. Output in runs/aarch64-device/ (run.log, summary.json, deploy/fleet/fleet.md); results written down in
# benchmarks/results/aarch64/device.md.
aarch64-device-check: setup system-deps
	$(VENV)/bin/edgepack train --framework keras --arch mnist-tutorial --data mnist --data-dir $(abspath $(DATA))/mnist \
	  --epochs 2 --out runs/aarch64-device/train
	$(PY) tools/aarch64_device.py runs/aarch64-device runs/aarch64-device/train/model.keras $(abspath $(DATA))/mnist

clean:
	rm -rf $(VENV) demo
