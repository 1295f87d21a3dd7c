# The commands people type. `make test` and `make demo` set up a fresh machine by themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(wildcard protos/stamen/v1/*.proto)

.PHONY: install test lint lint-imports typecheck unit protos demo bench chaos certs keys clean golden browser image image-torch compose-check

install: $(STAMP)

# torch first, pinned to the CPU wheel: a looser pin would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,torch,plot,xgboost]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check shared services tests examples benchmarks
	$(BIN)/ruff format --check shared services tests examples benchmarks
	$(MAKE) --no-print-directory lint-imports

# The import contracts in pyproject.toml. import-linter walks the package's folders:
# shared/stamen, whose <service> links lead to services/<service>.
lint-imports: $(STAMP)
	$(BIN)/lint-imports pyproject.toml --no-cache

# The editable install is a static path (shared/, where shared/stamen/<service> link to
# services/<service>), so mypy finds stamen as a user's mypy does. Each example is checked
# as a user's app, with examples/mypy.ini (mypy's defaults), from its own directory.
EXAMPLES := $(wildcard examples/*/)
typecheck: $(STAMP)
	$(BIN)/mypy -p stamen
	for d in $(EXAMPLES); do (cd $$d && $(CURDIR)/$(BIN)/mypy --cache-dir $(CURDIR)/.mypy_cache/examples \
		--config-file $(CURDIR)/examples/mypy.ini .) || exit 1; done

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

test: lint typecheck browser
	$(BIN)/pytest -q

# Debian's Chromium, for the dashboard's browser test (Playwright drives it; no browser
# download). Installed once; later runs only find it.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

protos: $(STAMP)
	$(BIN)/python protos/generate.py shared/stamen/proto

demo: $(STAMP)
	cd examples/quickstart-pytorch && ../../$(BIN)/stamen-simulation \
		--server-app server:app --client-app client:app --num-supernodes 10 \
		--run-config 'num-server-rounds=3' --output-dir $(CURDIR)/build/demo
	@echo "metrics plot: $(CURDIR)/build/demo/metrics.png (and history.json, metrics.csv, final_arrays.npz)"

# Flower 1.42 is the oracle: each tests/golden/gen_*.py runs under Flower's own venv and
# writes facts (public names, strategy outputs) to tests/golden/data/, which is committed.
FLOWER_VENV := benchmarks/.venv-flower
$(FLOWER_VENV)/.installed:
	test -x $(FLOWER_VENV)/bin/python || $(PYTHON) -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(FLOWER_VENV)/bin/python -m pip install --quiet 'flwr[simulation,dp]==1.42.0' scikit-learn psutil
	touch $@

golden: $(FLOWER_VENV)/.installed
	for gen in tests/golden/gen_*.py; do $(FLOWER_VENV)/bin/python $$gen || exit 1; done

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# Faults on purpose (SIGKILLs, network drops and stalls) against a loopback deployment;
# minutes, bounded; not part of `make test`. Writes benchmarks/CHAOS.md.
chaos: $(STAMP)
	$(BIN)/python -m benchmarks.chaos --runs 20 --minutes 10

certs:
	bash scripts/make-certs.sh certs

# Node authentication and operator tokens (SECURITY.md): two SuperNode key pairs, the
# SuperLink's list of their public keys, and one operator token with its hash file.
keys: $(STAMP)
	bash scripts/make-keys.sh keys

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Images, built offline from a wheelhouse made here (scripts/build-image.sh); where no
# registry can be reached, the base is a debootstrap stand-in for python:3.11-slim.
image: $(STAMP)
	bash scripts/build-image.sh stamen:dev

image-torch: $(STAMP)
	bash scripts/build-image.sh stamen:torch torch

# compose.yaml on a real Docker engine, clean and with faults; not part of `make test`.
compose-check: image
	$(BIN)/python scripts/compose_check.py
