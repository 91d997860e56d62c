"""`rag mcp` end to end: the MCP SDK's own client launches `rag --home HOME mcp` over stdio, on the seed articles
ingested with the real embedding model, and talks to it as any MCP client would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import CallToolResult

from rag.config import Settings
from rag.ingest import load_file

RAG = str(Path(sys.executable).parent / "rag")
QUESTION = "Who is the governor of the Kursk region?"  # the seed gold set's q03
ANSWER_DOC = "004_d30e4aad0120d6ab.txt"
TOOLS = {"ask", "search", "get_document"}


async def converse(home: Path) -> dict[str, Any]:
    """One session with the server: every request the tests look at, and anything on its stdout that was not a
    protocol message (the client reports such a line to the message handler as an exception)."""
    stray: list[Exception] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            stray.append(message)

    server = StdioServerParameters(command=RAG, args=["--home", str(home), "mcp"], env=dict(os.environ))
    async with Client(server, message_handler=on_message, read_timeout_seconds=600) as client:
        got: dict[str, Any] = {"tools": (await client.list_tools()).tools}
        got["ask"] = await client.call_tool("ask", {"question": QUESTION})
        cited = {c["doc"] for c in got["ask"].structured_content["citations"]}
        got["documents_of_citations"] = {doc: await client.call_tool("get_document", {"id": doc}) for doc in cited}
        got["search"] = await client.call_tool("search", {"query": "drones shot down", "k": 3})
        got["search_one_doc"] = await client.call_tool("search", {"query": "drones", "docs": [ANSWER_DOC]})
        got["span"] = await client.call_tool("get_document", {"id": ANSWER_DOC, "start": 10, "end": 60})
        got["whole"] = await client.call_tool("get_document", {"id": ANSWER_DOC})
        got["unknown_doc"] = await client.call_tool("get_document", {"id": "no-such-article.txt"})
        got["outside_span"] = await client.call_tool("get_document", {"id": ANSWER_DOC, "start": 0, "end": 10**7})
        got["empty_question"] = await client.call_tool("ask", {"question": "   "})
        got["unknown_filter"] = await client.call_tool("search", {"query": "drones", "docs": ["zzz-*"]})
        got["k_zero"] = await client.call_tool("ask", {"question": QUESTION, "k": 0})
        got["resources"] = (await client.list_resources()).resources
        got["templates"] = (await client.list_resource_templates()).resource_templates
        got["documents"] = (await client.read_resource("rag://documents")).contents
        got["document_resource"] = (await client.read_resource(f"rag://documents/{ANSWER_DOC}")).contents
    got["stray"] = stray
    return got


@pytest.fixture(scope="module")
def session(ingested_home: Settings) -> dict[str, Any]:
    return anyio.run(converse, ingested_home.home)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


@pytest.mark.integration
def test_stdout_carries_only_the_protocol(session: dict[str, Any]) -> None:
    assert session["stray"] == []


@pytest.mark.integration
def test_three_tools_with_bounded_typed_parameters(session: dict[str, Any]) -> None:
    tools = {t.name: t for t in session["tools"]}
    assert set(tools) == TOOLS
    ask, search, document = (tools[name].input_schema for name in ("ask", "search", "get_document"))
    assert ask["required"] == ["question"] and search["required"] == ["query"] and document["required"] == ["id"]
    assert ask["properties"]["question"]["type"] == "string" and ask["properties"]["question"]["minLength"] == 1
    k = next(s for s in ask["properties"]["k"]["anyOf"] if s["type"] == "integer")
    assert k["minimum"] == 1 and k["maximum"] >= 8
    assert {s["type"] for s in ask["properties"]["docs"]["anyOf"]} == {"array", "null"}
    start = next(s for s in document["properties"]["start"]["anyOf"] if s["type"] == "integer")
    assert start["minimum"] == 0
    for tool in tools.values():
        assert tool.description and len(tool.description) > 80, tool.name  # the model reads it to choose
        assert tool.output_schema is not None and tool.annotations and tool.annotations.read_only_hint
    assert "citations" in tools["ask"].output_schema["properties"]


@pytest.mark.integration
def test_ask_returns_the_cli_json_with_citations_that_are_exact_spans(session: dict[str, Any],
                                                                     seed_corpus_session: Path) -> None:
    result = session["ask"]
    assert not result.is_error
    answer = result.structured_content
    assert answer["question"] == QUESTION and not answer["abstained"]
    assert {"answer", "citations", "backend", "timings_ms"} <= set(answer)
    assert "Starovoyt" in answer["answer"] and answer["citations"]
    for c in answer["citations"]:
        stored = session["documents_of_citations"][c["doc"]].structured_content["text"]
        assert stored[c["start"]:c["end"]] == c["quote"]
        source = load_file(seed_corpus_session / c["doc"], c["doc"], 10**7).text
        assert source[c["start"]:c["end"]] == c["quote"]
        assert f"[{c['n']}]" in answer["answer"]
    # the text rendering: the answer, then each source with its document and offsets
    text = text_of(result)
    assert text.startswith(answer["answer"])
    for c in answer["citations"]:
        assert f"{c['doc']} ({c['start']}-{c['end']})" in text and c["quote"] in text


@pytest.mark.integration
def test_search_returns_scored_passages_best_first(session: dict[str, Any], seed_corpus_session: Path) -> None:
    found = session["search"].structured_content
    passages = found["passages"]
    assert found["query"] == "drones shot down" and 1 <= len(passages) <= 3
    scores = [p["score"] for p in passages]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert [p["n"] for p in passages] == list(range(1, len(passages) + 1))
    for p in passages:
        assert load_file(seed_corpus_session / p["doc"], p["doc"], 10**7).text[p["start"]:p["end"]] == p["text"]
    assert any("26 drones" in p["text"] for p in passages)
    only = session["search_one_doc"].structured_content["passages"]
    assert only and {p["doc"] for p in only} == {ANSWER_DOC}


@pytest.mark.integration
def test_get_document_returns_a_span_by_the_stored_offsets(session: dict[str, Any]) -> None:
    whole = session["whole"].structured_content
    span = session["span"].structured_content
    assert (span["id"], span["start"], span["end"]) == (ANSWER_DOC, 10, 60)
    assert span["text"] == whole["text"][10:60] and len(span["text"]) == 50
    assert whole["start"] == 0 and whole["end"] == len(whole["text"]) and whole["title"]


@pytest.mark.integration
@pytest.mark.parametrize(("call", "message"), [
    ("unknown_doc", "no document 'no-such-article.txt' in the store"),
    ("outside_span", f"span [0, 10000000) is outside '{ANSWER_DOC}'"),
    ("empty_question", "the question is empty"),
    ("unknown_filter", "no document matches 'zzz-*'"),
])
def test_service_errors_are_tool_errors_with_their_line(session: dict[str, Any], call: str, message: str) -> None:
    result = session[call]
    assert result.is_error and result.structured_content is None
    assert text_of(result).startswith(message) and "\n" not in text_of(result)


@pytest.mark.integration
def test_arguments_out_of_bounds_are_refused_before_the_call(session: dict[str, Any]) -> None:
    result = session["k_zero"]
    assert result.is_error and "greater than or equal to 1" in text_of(result)


@pytest.mark.integration
def test_documents_resource_lists_every_document(session: dict[str, Any], seed_corpus_session: Path) -> None:
    assert [str(r.uri) for r in session["resources"]] == ["rag://documents"]
    assert [t.uri_template for t in session["templates"]] == ["rag://documents/{+id}"]
    (listing,) = session["documents"]
    assert listing.mime_type == "application/json"
    documents = json.loads(listing.text)
    assert [d["id"] for d in documents] == sorted(f.name for f in seed_corpus_session.glob("*.txt"))
    assert all(d["uri"] == f"rag://documents/{d['id']}" and d["title"] for d in documents)
    (text,) = session["document_resource"]
    assert text.text == session["whole"].structured_content["text"]


def test_no_store_is_one_line_and_exit_2_before_serving(tmp_path: Path) -> None:
    done = subprocess.run([RAG, "--home", str(tmp_path / "empty"), "mcp"], input="", capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"error: no store in {tmp_path / 'empty'}: run `rag ingest PATH` "
                                                "first, or point --home (RAG_HOME) at one"]
    assert not (tmp_path / "empty").exists()


def test_help_says_how_a_client_starts_it() -> None:
    done = subprocess.run([RAG, "mcp", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert '"mcpServers"' in done.stdout and '"args": ["--home", "/path/to/.rag", "mcp"]' in done.stdout
