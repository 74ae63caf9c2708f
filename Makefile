# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test demo demo-roundtrip bench clean

setup: $(STAMP)

# Re-installs only when the pins or the package metadata change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest tests

demo: setup
	$(BIN)/python scripts/demo.py

demo-roundtrip: setup
	$(BIN)/python scripts/hf_roundtrip_demo.py

bench: setup
	$(BIN)/python scripts/bench_forward.py

clean:
	rm -rf $(VENV) build *.egg-info demo_out
