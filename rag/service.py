"""The loaded corpus behind the long-running ways in (`rag serve`, `rag mcp`): one store, embedder and retriever,
one answer chain per backend, and the JSON objects of the CLI's `--json` for ask, search, brief and documents.
No logic of its own: it calls the chain, the briefing and the store."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from rag.config import BACKENDS, Settings, resolve_backend


class ServiceError(Exception):
    """A request the corpus cannot serve; `status` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Service:
    """Loads the store, the embedder and the indexes once (on `load()` or the first request)."""

    def __init__(self, settings: Settings, backend: str | None = None) -> None:
        self.settings = settings
        self.default_backend = backend
        self._chains: dict[str, Any] = {}
        self._retriever: Any = None
        self._lock = threading.Lock()  # the first requests race to load; one loads, the others wait
        self._ingest_lock = threading.Lock()

    # -- loading -----------------------------------------------------------------------------------------------
    def load(self) -> Service:
        """The store, the embedding model, the indexes and the language model, now rather than at the first
        request (which would pay seconds for them, and several first requests would each start loading). The
        offline reader answers a throwaway question to load what it reads with; a model server is never called."""
        from rag.language import LanguageModelMissing, pipeline

        chain = self.chain(self.default_backend)
        _model_call(lambda: chain.ask("warm-up") if chain.backend == "extractive" else chain.retrieve("warm-up"))
        try:
            pipeline()
        except LanguageModelMissing as e:
            raise ServiceError(str(e), status=503) from None
        return self

    @property
    def retriever(self) -> Any:
        with self._lock:
            if self._retriever is None:
                self._retriever = _open_retriever(self.settings)
            return self._retriever

    def chain(self, backend: str | None = None) -> Any:
        """The answer chain of this backend (the default when None), made once and kept."""
        from rag.answer import AnswerChain

        if backend is not None and backend not in BACKENDS:
            raise ServiceError(f"unknown backend {backend!r}: one of {', '.join(BACKENDS)}")
        name = resolve_backend(backend or self.default_backend or self.settings.answer.backend, os.environ)
        retriever = self.retriever
        with self._lock:
            if name not in self._chains:
                self._chains[name] = AnswerChain(retriever, self.settings.answer, backend=name)
            return self._chains[name]

    # -- requests: each returns the CLI's --json object ------------------------------------------------------
    def ask(self, question: str, k: int | None = None, docs: Sequence[str] | None = None,
            backend: str | None = None, on_token: Callable[[str], None] | None = None,
            with_passages: bool = False) -> dict[str, Any]:
        """`rag ask --json`."""
        if not question.strip():
            raise ServiceError("the question is empty")
        chain = self.chain(backend)
        answer = _model_call(lambda: chain.ask(question, k=k, docs=self._docs(docs), on_token=on_token))
        return answer.to_json(with_passages=with_passages)

    def search(self, query: str, k: int | None = None, docs: Sequence[str] | None = None) -> dict[str, Any]:
        """The passages a question retrieves, best first, with their fused scores (no reading)."""
        if not query.strip():
            raise ServiceError("the query is empty")
        found = self.retriever.search(query, k=k, docs=self._docs(docs))
        return {"query": query, "passages": [
            {"n": n, "doc": p.doc, "chunk_id": p.chunk_id, "start": p.start, "end": p.end, "score": p.score,
             "title": p.title, "text": p.text} for n, p in enumerate(found, start=1)]}

    def brief(self, topic: str, k: int | None = None, backend: str | None = None,
              flag_unsupported: bool = False) -> dict[str, Any]:
        """`rag brief --json`, with the rendered briefing as `markdown` and `html`."""
        from rag.brief import make_briefing

        if not topic.strip():
            raise ServiceError("the topic is empty")
        chain = self.chain(backend)
        briefing = _model_call(lambda: make_briefing(chain, topic, k=k,
                                                     unsupported="flag" if flag_unsupported else "drop"))
        return {**briefing.to_json(), "markdown": briefing.markdown, "html": briefing.html}

    def documents(self) -> list[dict[str, Any]]:
        """Every committed document: id, title, date, source file."""
        records = _store_call(self.retriever.store.documents)
        return [{"id": d, "title": r.get("title", ""), "date": r.get("date") or None, "source": r.get("source", "")}
                for d, r in sorted(records.items())]

    def document(self, doc_id: str, start: int | None = None, end: int | None = None) -> dict[str, Any]:
        """A document's stored text (its chunks at their offsets: `text[c.start:c.end] == c.quote` for every
        citation of it), or the span [start, end) of it."""
        record = _store_call(lambda: self.retriever.store.documents(ids=[doc_id])).get(doc_id)
        if record is None:
            raise ServiceError(f"no document {doc_id!r} in the store", status=404)
        text = stored_text(_store_call(lambda: self.retriever.store.doc_passages([doc_id])))
        if start is not None or end is not None:
            lo, hi = start or 0, len(text) if end is None else end
            if not 0 <= lo <= hi <= len(text):
                raise ServiceError(f"span [{lo}, {hi}) is outside {doc_id!r} (0 to {len(text)})")
            text = text[lo:hi]
        else:
            lo, hi = 0, len(text)
        return {"id": doc_id, "title": record.get("title", ""), "date": record.get("date") or None,
                "source": record.get("source", ""), "start": lo, "end": hi, "text": text}

    def ingest(self, paths: Sequence[str], keep_removed: bool = False) -> dict[str, Any]:
        """`rag ingest --json` (the same run), then the indexes reload for the next request; one ingest at a
        time, while requests already running finish on the indexes they began with."""
        from pathlib import Path

        from rag.ingest_run import NothingToIngest, ingest_paths

        def run_ingest() -> Any:
            try:
                return ingest_paths(self.settings, [Path(p) for p in paths], keep_removed)
            except NothingToIngest as e:  # before _model_call takes it for any ValueError
                raise ServiceError(str(e), status=422) from None

        with self._ingest_lock:
            run = _model_call(run_ingest)
            with self._lock:
                self._retriever, self._chains = None, {}
        return run.report.to_json()

    def _docs(self, patterns: Sequence[str] | None) -> list[str] | None:
        if not patterns:
            return None
        try:
            docs = self.retriever.resolve_docs(list(patterns))
        except ValueError as e:  # a pattern no stored document matches: the message names some that exist
            raise ServiceError(str(e), status=404) from None
        if not docs:
            raise ServiceError(f"no stored document matches {', '.join(patterns)}", status=404)
        return docs


def stored_text(passages: Sequence[Any]) -> str:
    """A document's text rebuilt from its chunks, each at its own offsets; what lies between chunks (only the
    whitespace that separates sentences) becomes newlines, so every offset means what it meant at ingest."""
    length = max((p.end for p in passages), default=0)
    chars = ["\n"] * length
    for p in passages:
        chars[p.start:p.end] = p.text
    return "".join(chars)


def _open_retriever(settings: Settings) -> Any:
    from rag.embed import make_embedder
    from rag.llm import ModelError
    from rag.retrieve import Retriever
    from rag.store import Store, StoreError

    if not settings.has_store():
        raise ServiceError(f"no store in {settings.home}: run `rag ingest PATH` first", status=503)
    try:
        return Retriever(Store(settings), make_embedder(settings.embed), settings.retrieve)
    except (StoreError, ModelError) as e:
        raise ServiceError(str(e), status=503) from None


def _model_call(call: Callable[[], Any]) -> Any:
    """A model or store failure becomes a ServiceError: 502 when the model server failed, 503 for the store."""
    from rag.llm import ModelError
    from rag.store import StoreError

    try:
        return call()
    except ModelError as e:
        raise ServiceError(str(e), status=502) from None
    except StoreError as e:
        raise ServiceError(str(e), status=503) from None
    except ValueError as e:  # a question that is not UTF-8 text
        raise ServiceError(str(e)) from None


def _store_call(call: Callable[[], Any]) -> Any:
    from rag.store import StoreError

    try:
        return call()
    except StoreError as e:
        raise ServiceError(str(e), status=503) from None
