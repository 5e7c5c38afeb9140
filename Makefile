# Two commands on a fresh machine with Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
TOOLS := .venv-tools
BIN := $(VENV)/bin
# The SAM CLI pins its own boto3 and pydantic: it lives in a tools environment of its own, with uv,
# which locks the layer's dependencies for Lambda's Python and platform (`make layer-requirements`).
UV_REQUIREMENT := uv~=0.13.9
TOOLS_REQUIREMENTS := aws-sam-cli~=1.170 cfn-lint~=1.58 $(UV_REQUIREMENT)

.PHONY: demo test test-unit lint typecheck pytest template bench layer-requirements hooks clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "vtriage needs Python 3.11 or newer: set PYTHON=python3.11 (or newer)")'
	@echo "setting up $(VENV) (log: $(VENV)/install.log)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --upgrade pip > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@$(BIN)/python -m pip install -e ".[dev]" >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@touch $@

$(TOOLS)/.installed:
	@echo "setting up $(TOOLS) for the SAM CLI and cfn-lint (log: $(TOOLS)/install.log)"
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/python -m pip install $(TOOLS_REQUIREMENTS) > $(TOOLS)/install.log 2>&1 || (cat $(TOOLS)/install.log; exit 1)
	@touch $@

# A tools environment made before uv joined TOOLS_REQUIREMENTS gets it here.
$(TOOLS)/bin/uv: | $(TOOLS)/.installed
	$(TOOLS)/bin/python -m pip install --quiet '$(UV_REQUIREMENT)'

demo: $(VENV)/.installed
	$(BIN)/vtriage run events/*.json

test: lint typecheck pytest template

# The unit and template suites alone: no moto server, no network, well under a minute.
test-unit: $(VENV)/.installed
	$(BIN)/pytest tests/unit tests/template tests/contract -m "not functional"

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python scripts/gen-layer-requirements.py --check

typecheck: $(VENV)/.installed
	$(BIN)/mypy layers/common/vtriage local/vtriage_local local/vtriage_ops local/vtriage_cli tests bench
	@for handler in functions/*/app.py; do $(BIN)/mypy --strict "$$handler" || exit 1; done

# Every suite, one worker per core (pytest-xdist), with line coverage failing under the floor in
# pyproject.toml ([tool.coverage.report]). Under coverage on Python 3.11 moto's server threads run
# untraced (tests/coverage_threads.py): tracing them doubled the functional suites' time.
pytest: $(VENV)/.installed
	$(BIN)/pytest -n auto --cov --cov-report=term

template: $(VENV)/.installed $(TOOLS)/.installed
	TOOLS=$(TOOLS)/bin scripts/check-template.sh

bench: $(VENV)/.installed
	$(BIN)/python -m bench

# Needs PyPI; `make layer-requirements UPGRADE=1` also moves every pin to the newest version allowed.
layer-requirements: $(VENV)/.installed $(TOOLS)/bin/uv
	$(BIN)/python scripts/gen-layer-requirements.py --uv $(TOOLS)/bin/uv $(if $(UPGRADE),--upgrade)

# ruff, ruff format and mypy on each commit (.pre-commit-config.yaml).
hooks: $(VENV)/.installed
	$(BIN)/pre-commit install

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .coverage
