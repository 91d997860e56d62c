"""Hybrid retrieval: dense (Chroma) + BM25 (rag.lexical) fused by reciprocal-rank fusion, optional MMR, doc filters."""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.chunk import doc_of
from rag.config import RetrieveSettings
from rag.embed import Embedder
from rag.lexical import LexicalIndex
from rag.store import Store, StoreError
from rag.types import Passage

if TYPE_CHECKING:  # LangChain loads when its retriever is asked for: `rag ask` does without it
    from langchain_core.documents import Document as LCDocument


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    score: float


def rrf(rankings: Sequence[Sequence[str]], k: int = 60) -> list[Hit]:
    """Reciprocal-rank fusion: each list adds 1 / (k + rank) to the ids it ranks."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (k + rank)
    return [Hit(i, s) for i, s in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]


def mmr(query: np.ndarray, candidates: np.ndarray, k: int, lam: float) -> list[int]:
    """Maximal marginal relevance over unit vectors: indices of `k` relevant, mutually different candidates."""
    if len(candidates) == 0:
        return []
    relevance = candidates @ query
    chosen = [int(np.argmax(relevance))]
    while len(chosen) < min(k, len(candidates)):
        redundancy = (candidates @ candidates[chosen].T).max(axis=1)
        score = lam * relevance - (1 - lam) * redundancy
        score[chosen] = -np.inf
        chosen.append(int(np.argmax(score)))
    return chosen


class Retriever:
    """Loads its indexes once; every search after the first costs a query embedding and two index look-ups."""

    def __init__(self, store: Store, embedder: Embedder, settings: RetrieveSettings) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings
        if store.chunks_collection(embedder.name) is None or store.count() == 0 or not store.generations():
            raise StoreError(empty_store_message(store))
        self._lexical: LexicalIndex | None = None
        self._doc_ids: list[str] | None = None

    @property
    def lexical(self) -> LexicalIndex:
        if self._lexical is None:
            self._lexical = self.store.lexical_index()
        return self._lexical

    def doc_ids(self) -> list[str]:
        if self._doc_ids is None:
            self._doc_ids = sorted(self.store.documents())
        return self._doc_ids

    def resolve_docs(self, patterns: Sequence[str]) -> list[str]:
        """Document ids matching ids or glob patterns; an unknown name is a clear error."""
        known = self.doc_ids()
        out: list[str] = []
        for pattern in patterns:
            matches = [d for d in known if fnmatch.fnmatchcase(d, pattern) or d == pattern]
            if not matches:
                raise ValueError(f"no document matches {pattern!r} (try one of: {', '.join(known[:5])}"
                                 + ("…)" if len(known) > 5 else ")"))
            out.extend(m for m in matches if m not in out)
        return out

    def dense(self, query_vector: np.ndarray, n: int, docs: Sequence[str] | None = None) -> list[tuple[str, float]]:
        where = {"doc": {"$in": list(docs)}} if docs else None
        return self.store.dense_search(query_vector, n, where)

    def bm25(self, query: str, n: int, docs: Sequence[str] | None = None) -> list[tuple[str, float]]:
        allowed = None
        if docs:
            wanted = set(docs)
            allowed = {i for i in self.lexical.ids if doc_of(i) in wanted}
        return self.lexical.search(query, n, allowed)

    def search(self, query: str, k: int | None = None, docs: Sequence[str] | None = None,
               use_mmr: bool | None = None, query_vector: np.ndarray | None = None,
               answer_words: Sequence[str] = ()) -> list[Passage]:
        """The k best passages for the query. `answer_words` are words an answer may hold that the query does not
        ("Monday" ... "Sunday" for "which day of the week"): BM25 ranks by them too, the embedding does not."""
        k = k or self.settings.k
        docs = self.resolve_docs(docs) if docs else None
        n = max(self.settings.candidates, k)
        vector = self.embedder.embed_query(query) if query_vector is None else query_vector
        dense = self.dense(vector, n, docs)
        lexical = self.bm25(" ".join([query, *answer_words]), n, docs)
        fused = rrf([[i for i, _ in dense], [i for i, _ in lexical]], self.settings.rrf_k)
        if use_mmr if use_mmr is not None else self.settings.mmr:
            pool = [h.chunk_id for h in fused[: max(2 * k, 10)]]
            vectors = self.store.embeddings(pool)
            pool = [i for i in pool if i in vectors]  # a chunk deleted since the BM25 index was read
            fused = [h for h in fused if h.chunk_id in vectors]
            order = mmr(vector, np.stack([vectors[i] for i in pool]), k, self.settings.mmr_lambda)
            fused = [fused[i] for i in order]
        top = fused[:k]
        found = self.store.passages([h.chunk_id for h in top])
        return [Passage(**{**found[h.chunk_id].__dict__, "score": h.score}) for h in top if h.chunk_id in found]


def empty_store_message(store: Store) -> str:
    """Why a store has nothing to search: empty, being filled by an ingest, or left by an interrupted one."""
    if store.writer_active():
        return (f"the store in {store.where} has no finished documents yet: an ingest is writing to it; "
                "ask again when it finishes")
    if store.count():
        return (f"the store in {store.where} has no finished documents: an ingest was interrupted; "
                "run `rag ingest PATH` again to finish it")
    return f"the store in {store.where} is empty: run `rag ingest PATH` first"


@cache
def _hybrid_retriever_class() -> type:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.retrievers import BaseRetriever

    class HybridRetriever(BaseRetriever):
        """The hybrid search as a LangChain retriever, so it composes with any chain."""

        retriever: Any
        k: int = 6
        docs: list[str] | None = None

        def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun
                                    ) -> list[LCDocument]:
            return [to_langchain(p) for p in self.retriever.search(query, k=self.k, docs=self.docs)]

    HybridRetriever.__module__ = __name__
    return HybridRetriever


def __getattr__(name: str) -> Any:
    """`HybridRetriever` is made on first use (PEP 562), with LangChain imported only then."""
    if name == "HybridRetriever":
        return _hybrid_retriever_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def to_langchain(p: Passage) -> LCDocument:
    from langchain_core.documents import Document as LCDocument

    return LCDocument(page_content=p.text, id=p.chunk_id,
                      metadata={"chunk_id": p.chunk_id, "doc": p.doc, "start": p.start, "end": p.end,
                                "title": p.title, "source": p.source, "date": p.date, "score": p.score})


def from_langchain(d: LCDocument) -> Passage:
    m = d.metadata
    return Passage(chunk_id=m["chunk_id"], doc=m["doc"], start=m["start"], end=m["end"], text=d.page_content,
                   title=m.get("title", ""), source=m.get("source", ""), date=m.get("date"),
                   score=m.get("score", 0.0))


def document_texts(retriever: Any, docs: Sequence[str], passages: Sequence[Passage]) -> dict[str, str]:
    """Each document's text rebuilt from its stored chunks (falls back to the retrieved passages)."""
    pieces: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    store: Any = getattr(retriever, "store", None)  # none behind a fake retriever: the passages are all we know
    for p in store.doc_passages(docs) if store is not None else []:
        pieces[p.doc].append((p.start, p.end, p.text))
    for p in passages:
        if p.doc not in pieces or not pieces[p.doc]:
            pieces.setdefault(p.doc, []).append((p.start, p.end, p.text))
    out = {}
    for d in docs:
        parts, covered = [], 0
        for start, end, text in sorted(set(pieces.get(d, []))):
            if end <= covered:
                continue
            parts.append(text[max(0, covered - start):])
            covered = end
        out[d] = " ".join(parts)
    return out
