# The two commands a newcomer needs: `make serve` and `make test`. Both create the
# virtual environment and install on first use; `serve` migrates before serving.

VENV    ?= .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
SYSTEM_PYTHON ?= python3

.PHONY: install serve worker migrate chat studio test lint typecheck bench clean

$(PYTHON):
	$(SYSTEM_PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	$(PYTHON) -m graph.infra.embeddings
	touch $(STAMP)

# The dashboard's front-end packages (Chart.js), exactly as locked, served from node_modules.
DASHBOARD := server/http/dashboard
$(DASHBOARD)/node_modules/.package-lock.json: $(DASHBOARD)/package-lock.json
	cd $(DASHBOARD) && npm ci --no-audit --no-fund --loglevel=error

install: $(STAMP) $(DASHBOARD)/node_modules/.package-lock.json

serve: install
	$(VENV)/bin/wa-agent serve

worker: install
	$(VENV)/bin/wa-agent worker

migrate: install
	$(VENV)/bin/wa-agent migrate

chat: install
	$(VENV)/bin/wa-agent chat

# LangGraph Studio on the production graph (docs/studio-tracing-replay.md).
studio: install
	$(VENV)/bin/langgraph dev --no-browser --allow-blocking

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

test: lint typecheck
	$(PYTHON) -m pytest -p no:cacheprovider

bench: install
	$(PYTHON) -m tests.bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
