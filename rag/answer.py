"""The answer chain: retrieve -> read -> verify.

The retriever finds passages; a reader (rag/read/) picks the spans of them that answer, or abstains; verification
numbers the picked spans as citations, checks every one lies inside a passage shown, and flags (or drops) a
statement left without one. Nothing a reader invents reaches the user as a citation."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.cite import number_citations
from rag.config import AnswerSettings, resolve_backend
from rag.embed import embed_cached
from rag.ingest import is_utf8
from rag.read import CANNOT_ANSWER, Reader, Reading
from rag.read.context import pack, render_passages
from rag.read.extractive import ExtractiveReader
from rag.retrieve import Retriever
from rag.types import Answer, Passage

if TYPE_CHECKING:  # LangChain and the model readers load only for the LLM backend: a cold extractive ask skips them
    from langchain_core.runnables import Runnable

__all__ = ["CANNOT_ANSWER", "AnswerChain", "embed_cached", "pack", "render_passages", "verify_reading"]


def verify_reading(question: str, reading: Reading, passages: Sequence[Passage], backend: str,
                   timings: dict[str, float], drop_unsupported: bool = False) -> Answer:
    """A reading -> the Answer the user sees: citations numbered in order of use, each an exact span of a shown
    passage; an answer left with no citation at all says it cannot answer rather than show unverifiable text."""
    if reading.abstained or not passages:
        return Answer(question, CANNOT_ANSWER, True, (), tuple(passages), backend, timings,
                      dropped_markers=reading.dropped, reader=reading.mode, unparsed_reply=reading.unparsed)
    checked = number_citations(reading.statements, passages, drop_unsupported, reading.dropped)
    if not checked.citations:
        return Answer(question, CANNOT_ANSWER, True, (), tuple(passages), backend, timings,
                      unsupported=checked.unsupported, dropped_markers=checked.dropped_markers,
                      reader=reading.mode, unparsed_reply=reading.unparsed)
    return Answer(question, checked.text, False, checked.citations, tuple(passages), backend, timings,
                  unsupported=checked.unsupported, dropped_markers=checked.dropped_markers,
                  reader=reading.mode, unparsed_reply=reading.unparsed)


LONG_REPLY_TOKENS = 1500  # the longest reply asked for outside a reader: a briefing's reduce step


def bounded(model: Any, max_tokens: int) -> Any:
    """The model with its replies cut at `max_tokens` (and the `max_tokens` a local server reads, when it is sent)."""
    body = getattr(model, "extra_body", None)
    extra = {"extra_body": {**body, "max_tokens": max_tokens}} if body else {}
    return model.bind(max_tokens=max_tokens, **extra)


class AnswerChain:
    """Holds the loaded retriever and reader, so every question after the first is fast."""

    def __init__(self, retriever: Retriever, settings: AnswerSettings, backend: str | None = None,
                 model: Any = None) -> None:
        self.retriever = retriever
        self.settings = settings
        self._model = model
        self.backend = resolve_backend(backend or settings.backend, os.environ)

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        """Switching the backend (the REPL's :backend) switches the reader."""
        self._backend = name
        self.reader: Reader
        if name == "extractive":
            self.reader = ExtractiveReader(self.retriever.embedder, self.retriever.lexical.idf,
                                           self.settings.max_sentences, self.settings.min_confidence)
        elif self.settings.reader == "markers":
            from rag.read.markers import MarkerReader

            self.reader = MarkerReader(self.settings, self._model)
        else:
            from rag.read.sentences import SentenceReader

            self.reader = SentenceReader(self.settings, self._model)

    @property
    def model(self) -> Any:
        """The chat model (the LLM backend's) for callers other than the reader (a briefing's map and reduce, the
        REPL's follow-up condensing): built from settings on first use, its replies bounded by LONG_REPLY_TOKENS
        rather than by an answer's length."""
        from rag.read.markers import MarkerReader
        from rag.read.sentences import SentenceReader

        model = self.reader.model if isinstance(self.reader, (MarkerReader, SentenceReader)) \
            else MarkerReader(self.settings).model
        return bounded(model, max(self.settings.reply_tokens, LONG_REPLY_TOKENS))

    @property
    def cache(self) -> Any:
        return getattr(self.reader, "cache", None)

    @cache.setter
    def cache(self, value: Any) -> None:
        from rag.read.markers import MarkerReader
        from rag.read.sentences import SentenceReader

        if isinstance(self.reader, (MarkerReader, SentenceReader)):
            self.reader.cache = value

    def retrieve(self, question: str, k: int | None = None, docs: Sequence[str] | None = None
                 ) -> tuple[np.ndarray, list[Passage]]:
        q_vec = self.retriever.embedder.embed_query(question)
        found = self.retriever.search(question, k=k, docs=docs, query_vector=q_vec)
        return q_vec, pack(found, self.settings.context_tokens)

    def ask(self, question: str, k: int | None = None, docs: Sequence[str] | None = None,
            on_token: Callable[[str], None] | None = None) -> Answer:
        if not is_utf8(question):  # bytes from a terminal in another encoding: no model or tokenizer takes them
            raise ValueError("the question holds bytes that are not UTF-8 text: check the terminal's encoding")
        t0 = time.perf_counter()
        q_vec, passages = self.retrieve(question, k, docs)
        t1 = time.perf_counter()
        reading = self.reader.read(question, q_vec, passages, on_token) if passages else Reading()
        t2 = time.perf_counter()
        timings = {"retrieve": (t1 - t0) * 1000, "read": (t2 - t1) * 1000}
        answer = verify_reading(question, reading, passages, self.backend, timings,
                                self.settings.unsupported == "drop")
        timings["verify"] = (time.perf_counter() - t2) * 1000
        timings["total"] = (time.perf_counter() - t0) * 1000
        return answer

    def as_runnable(self) -> Runnable:
        """The chain as one LangChain runnable: {"question": ...} -> Answer."""
        from langchain_core.runnables import RunnableLambda

        def run(inputs: dict[str, Any]) -> Answer:
            return self.ask(inputs["question"], inputs.get("k"), inputs.get("docs"))

        return RunnableLambda(run)
