# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lint clean windows exe linux-agent mutation

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "pointwatch needs Python >= 3.10")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[collector,postgres,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pointwatch-collector --data-dir ./pointwatch-data demo

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Mutation testing (mutmut) of the critical modules, one after the other, each against its own fast tests
# (MODULES in tests/mutation.py); the scores and the equivalent survivors are in tests/README.md. Hours
# for all of them on two shared cores: one module at a time is the usual use. MUTATION_ARGS: module paths, --record (write tests/mutation-scores.json), --changed.
mutation: $(STAMP)
	nice -n 10 $(BIN)/python -m tests.mutation $(MUTATION_ARGS)

# The Windows tier's interpreters (embeddable CPython 3.10 and 3.11 + the agent's Windows wheels) and its
# Wine prefix, under build/windows/; the tests prepare it themselves, this is for a look by hand.
windows: $(STAMP)
	$(BIN)/python tests/windows/prepare.py

# dist/pointwatch-agent.exe, built by PyInstaller's Windows wheel under Wine (cached; see tests/windows/exe.py).
exe: $(STAMP)
	$(BIN)/python tests/windows/exe.py

# dist/linux-<arch>/pointwatch-agent: one self-contained binary for Kylin/UOS PCs whose Python is older than
# 3.10, built by PyInstaller in build/linux/venv (cached; see tests/linux/build.py and docs/en/operations.md).
linux-agent: $(STAMP)
	$(BIN)/python tests/linux/build.py

clean:
	rm -rf $(VENV) pointwatch-data .pytest_cache mutants
