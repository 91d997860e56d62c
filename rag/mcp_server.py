"""`rag mcp`: the store served to MCP clients over stdio. Tools ask, search and get_document, resources the
document list and each document's text. No logic of its own: every call goes to rag.service.Service, and its
results are the CLI's --json objects (structured content) with a plain-text rendering beside them.

stdout is the protocol channel: the models load with fd 1 pointed at stderr, and while serving the SDK keeps
fd 1 on stderr and writes the protocol through a private copy of it."""

from __future__ import annotations

import inspect
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from typing import Annotated, Any
from urllib.parse import quote

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from rag.config import Settings
from rag.service import Service, ServiceError

log = logging.getLogger("rag.mcp")

DOCUMENTS_URI = "rag://documents"
MAX_K = 50  # passages per call: more than any answer's token budget reads, few enough to keep a reply readable
MAX_TEXT = 4000  # characters of a question or query

INSTRUCTIONS = (
    "Cited answers from a private collection of articles. `ask` answers a question with citations that are "
    "exact spans of the sources (doc, start, end, quote); `search` lists the passages a query retrieves; "
    "`get_document` reads a stored document or a span of it by the same offsets. The resource rag://documents "
    "lists the documents (ids, titles, dates)."
)


# -- what the tools return (the CLI's --json objects; published as output schemas) ----------------------------
class CitationOut(BaseModel):
    n: int = Field(description="the [n] marker in the answer text")
    doc: str = Field(description="document id (get_document's id)")
    chunk_id: str
    start: int = Field(description="offset of the quote in the document's text")
    end: int = Field(description="offset just past the quote")
    quote: str = Field(description="exactly the document's text[start:end]")
    title: str = ""


class AskOut(BaseModel):
    question: str
    answer: str = Field(description="the answer, each sentence carrying [n] citation markers")
    abstained: bool = Field(description="true when no source answers well enough to cite")
    citations: list[CitationOut]
    backend: str
    timings_ms: dict[str, float]
    unsupported_sentences: list[str] = Field(description="answer sentences no valid citation backs")
    dropped_markers: list[str] = Field(description="markers the model wrote that pointed at no passage")
    reader: str
    unparsed_reply: bool


class PassageOut(BaseModel):
    n: int
    doc: str
    chunk_id: str
    start: int
    end: int
    score: float = Field(description="fused rank score (reciprocal rank fusion of dense and BM25); higher is better")
    title: str
    text: str = Field(description="the passage, exactly the document's text[start:end]")


class SearchOut(BaseModel):
    query: str
    passages: list[PassageOut]


class DocumentOut(BaseModel):
    id: str
    title: str
    date: str | None
    source: str = Field(description="the file the document was ingested from")
    start: int
    end: int
    text: str = Field(description="the document's stored text[start:end]")


Question = Annotated[str, Field(min_length=1, max_length=MAX_TEXT, description="a question in plain language")]
Passages = Annotated[int | None, Field(ge=1, le=MAX_K, description="passages to retrieve (default: the store's "
                                                                    "setting, 8)")]
Docs = Annotated[list[str] | None, Field(max_length=100, description="only these documents: ids or glob patterns "
                                                                    "such as '2024-*'; default all")]


def make_server(service: Service) -> MCPServer:
    server = MCPServer("rag", instructions=INSTRUCTIONS, log_level="WARNING")

    def ask(question: Question, k: Passages = None, docs: Docs = None) -> Annotated[CallToolResult, AskOut]:
        """Answer a question from the ingested articles. Every sentence of the answer carries [n] markers, and
        each citation is a verified exact span of a source document (doc, start, end, quote). `abstained` is true
        when nothing in the articles answers it: say so rather than guess. Use this for factual questions about
        the articles' contents; use `search` to see what the articles hold on a topic."""
        return _result(lambda: service.ask(question, k=k, docs=docs), render_answer)

    def search(query: Annotated[str, Field(min_length=1, max_length=MAX_TEXT, description="what to look for")],
               k: Passages = None, docs: Docs = None) -> Annotated[CallToolResult, SearchOut]:
        """Find the passages of the ingested articles that match a query (hybrid dense + keyword retrieval), best
        first, each with its document id, offsets and score. Nothing is read or verified: use `ask` for an
        answer, and this to survey the sources or to gather passages to read yourself."""
        return _result(lambda: service.search(query, k=k, docs=docs), render_search)

    def get_document(
        id: Annotated[str, Field(min_length=1, description="document id, as in citations, search results and "
                                                           "rag://documents")],
        start: Annotated[int | None, Field(ge=0, description="first character (default 0)")] = None,
        end: Annotated[int | None, Field(ge=0, description="character just past the span (default the end)")] = None,
    ) -> Annotated[CallToolResult, DocumentOut]:
        """Read a stored document, whole or the span [start, end). Offsets are those of citations and search
        results, so a citation's start and end return exactly its quote; widen them to read the context around
        it."""
        return _result(lambda: service.document(id, start, end), render_document)

    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
    for tool, title in ((ask, "Ask the articles"), (search, "Search the articles"), (get_document, "Read a document")):
        server.add_tool(tool, title=title, description=inspect.getdoc(tool), annotations=read_only)

    @server.resource(DOCUMENTS_URI, name="documents", title="Documents in the store", mime_type="application/json")
    def documents() -> str:
        """Every ingested document: id, title, date, source file, and the URI of its text."""
        listed = _resource(service.documents)
        return json.dumps([{**d, "uri": document_uri(d["id"])} for d in listed], ensure_ascii=False, indent=1)

    @server.resource(DOCUMENTS_URI + "/{+id}", name="document", title="A document's text", mime_type="text/plain")
    def document(id: str) -> str:
        """The stored text of one document; offsets in it are those of citations and search results."""
        return str(_resource(lambda: service.document(id))["text"])

    return server


def document_uri(doc_id: str) -> str:
    return f"{DOCUMENTS_URI}/{quote(doc_id, safe='/')}"


def _result(call: Callable[[], dict[str, Any]], render: Callable[[dict[str, Any]], str]) -> CallToolResult:
    """The service's object as structured content with its rendering as text; a ServiceError becomes a tool
    error carrying its one line (the model reads it and can correct the call)."""
    try:
        found = call()
    except ServiceError as e:
        log.info("tool call failed: %s", e)
        return CallToolResult(content=[TextContent(type="text", text=str(e))], is_error=True)
    return CallToolResult(content=[TextContent(type="text", text=render(found))], structured_content=found)


def _resource(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ServiceError as e:
        raise (ResourceNotFoundError if e.status == 404 else ResourceError)(str(e)) from None


# -- plain-text renderings (what a client without structured content shows the model) -------------------------
def render_answer(answer: dict[str, Any]) -> str:
    lines = [answer["answer"]]
    if answer.get("unsupported_sentences"):
        lines += ["", "Not supported by any cited source:", *(f"  ! {s}" for s in answer["unsupported_sentences"])]
    if answer["citations"]:
        lines += ["", "Sources:"]
        for c in answer["citations"]:
            lines += [f"[{c['n']}] {c['title'] or c['doc']} — {c['doc']} ({c['start']}-{c['end']})",
                      f"    “{c['quote']}”"]
    return "\n".join(lines)


def render_search(found: dict[str, Any]) -> str:
    if not found["passages"]:
        return f"No passage matches {found['query']!r}."
    blocks = [f"{p['n']}. {p['title'] or p['doc']} — {p['doc']} ({p['start']}-{p['end']}), score {p['score']:.4f}\n"
              f"{p['text']}" for p in found["passages"]]
    return "\n\n".join(blocks)


def render_document(doc: dict[str, Any]) -> str:
    head = f"{doc['title'] or doc['id']} — {doc['id']}, characters {doc['start']}-{doc['end']}"
    return f"{head}\n\n{doc['text']}"


# -- running -------------------------------------------------------------------------------------------------
@contextmanager
def stdout_on_stderr() -> Iterator[None]:
    """Whatever a library prints while the models load (a progress bar, a warning) goes to stderr, at the file
    descriptor as well as in Python: stdout must carry nothing but the protocol."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def load_service(settings: Settings, backend: str | None = None) -> Service:
    """The store, embedder, indexes and answer chain loaded once, before serving, so the first call is as fast as
    the later ones; ServiceError when there is no store."""
    with stdout_on_stderr():
        return Service(settings, backend).load()


def serve(service: Service) -> None:
    """Serve until the client closes stdin."""
    make_server(service).run("stdio")
