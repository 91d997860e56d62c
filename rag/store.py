"""Chroma store (embedded under RAG_HOME, or a Chroma server): committed chunks only for readers, the BM25 index
beside it, the write lock. The sync that keeps it equal to a corpus is rag/sync.py."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import numpy as np
from filelock import FileLock, Timeout

from rag.chunk import doc_of
from rag.config import Settings
from rag.lexical import LexicalIndex
from rag.server_lock import renew_server_lock, server_lock_held, server_write_lock
from rag.types import Passage


class StoreError(Exception):
    """A problem with the store that the user must act on; the message says what and where."""


class StoreBusy(StoreError):
    pass


F = TypeVar("F", bound=Callable[..., Any])


def server_errors(method: F) -> F:
    """A Chroma server that dies or stops answering mid-way becomes one StoreError naming it, not a traceback
    from the HTTP stack (nor a model server's failure)."""
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except StoreError:
            raise
        except Exception as e:  # noqa: BLE001  httpx and chromadb raise many types for one lost connection
            store = args[0] if isinstance(args[0], Store) else None
            url = store.url if store is not None else None
            if not url or not type(e).__module__.startswith(("httpx", "chromadb", "httpcore", "requests")):
                raise
            raise StoreError(f"lost the Chroma server at {url}: {type(e).__name__}: {e}".rstrip(": ")) from None
    return wrapper  # type: ignore[return-value]


class Store:
    """One Chroma collection of chunks plus a companion collection that records each document's hash."""

    def __init__(self, settings: Settings) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        self.home = settings.home
        self.name = settings.collection
        self.url = settings.chroma_url
        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        if self.url:
            parsed = urlparse(self.url if "://" in self.url else f"http://{self.url}")
            try:
                self.client = chromadb.HttpClient(host=parsed.hostname or "127.0.0.1", port=parsed.port or 8000,
                                                  ssl=parsed.scheme == "https", settings=chroma_settings)
                self.client.heartbeat()
            except Exception as e:  # noqa: BLE001  chromadb raises several unrelated types here
                raise StoreError(f"cannot reach the Chroma server at {self.url}: {e}") from e
        else:
            self.home.mkdir(parents=True, exist_ok=True)
            # Chroma creates its tables when a folder is first opened, and two processes doing that at once crash
            # ("table collections already exists", "database is locked"): open embedded clients one at a time.
            try:
                with FileLock(str(self.home / "open.lock"), timeout=30):
                    self.client = chromadb.PersistentClient(path=str(self.home / "chroma"), settings=chroma_settings)
            except Timeout:
                raise StoreBusy(f"store is busy: another process is opening {self.home} "
                                f"(lock {self.home / 'open.lock'}); try again in a moment") from None
            except Exception as e:  # noqa: BLE001  chromadb's rust bindings raise InternalError and others
                raise StoreError(f"cannot open the store in {self.home / 'chroma'}: {e}") from e
        self._chunks: Any = None
        self._docs: Any = None

    @property
    def where(self) -> str:
        return self.url or str(self.home)

    # -- collections ---------------------------------------------------------------------------------
    def chunks_collection(self, embedder_name: str | None = None, create: bool = False) -> Any:
        """The chunk collection; its `embedder` metadata must match the embedder that will query or write it."""
        if self._chunks is None:
            try:
                self._chunks = self.client.get_collection(self.name, embedding_function=None)
            except Exception:  # noqa: BLE001  NotFoundError differs between client kinds
                if not create:
                    return None
                self._chunks = self.client.create_collection(
                    self.name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}},
                    metadata={"embedder": embedder_name or "unknown"})
        built_with = (self._chunks.metadata or {}).get("embedder")
        if embedder_name and built_with and built_with != embedder_name:
            raise StoreError(
                f"collection {self.name!r} in {self.where} was built with {built_with}, not {embedder_name}: "
                "use the same embedder (RAG_EMBED__PROVIDER) or ingest into another RAG_HOME")
        return self._chunks

    def docs_collection(self) -> Any:
        # Documents' hashes live next to their chunks (not in a side file) so that sync state and data share
        # one store, embedded or server. Chroma needs a vector per record: a constant 1-d one.
        if self._docs is None:
            self._docs = self.client.get_or_create_collection(f"{self.name}__docs", embedding_function=None)
        return self._docs

    @server_errors
    def count(self) -> int:
        collection = self.chunks_collection()
        return 0 if collection is None else collection.count()

    @server_errors
    def embedder_name(self) -> str | None:
        collection = self.chunks_collection()
        return None if collection is None else (collection.metadata or {}).get("embedder")

    @server_errors
    def documents(self, tombstones: bool = False, ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """doc id -> record (hash, file_hash, title, source, date, root, chunking, gen), of every document or of
        `ids`; `tombstones` adds the documents whose pruning was interrupted (generation -1, nothing in view)."""
        got = self.docs_collection().get(ids=None if ids is None else list(ids), include=["metadatas"])
        records = {d: r for d, r in zip(got["ids"], got["metadatas"] or [], strict=False) if d != PENDING}
        return records if tombstones else {d: r for d, r in records.items() if int(r.get("gen", 0)) >= 0}

    @server_errors
    def generations(self, docs: Sequence[str] | None = None) -> dict[str, int]:
        """doc id -> its committed generation, for these documents (all when None)."""
        if docs is not None and not docs:
            return {}
        got = self.docs_collection().get(ids=None if docs is None else sorted(set(docs)), include=["metadatas"])
        rows = zip(got["ids"], got["metadatas"] or [], strict=False)
        return {d: int((m or {}).get("gen", 0)) for d, m in rows if d != PENDING}

    @server_errors
    def fingerprint(self, generations: dict[str, int] | None = None) -> str:
        """Names the committed state: every document and its generation. Any other client's commit changes it."""
        state = sorted((self.generations() if generations is None else generations).items())
        return hashlib.sha1(json.dumps([self.embedder_name(), state]).encode()).hexdigest()

    # -- reads: only chunks of committed generations are ever returned ---------------------------------
    def all_chunks(self, page: int = 5000, committed: bool = False) -> Iterator[tuple[str, str, dict[str, Any]]]:
        collection = self.chunks_collection()
        if collection is None:
            return
        generations = self.generations() if committed else None
        offset = 0
        while True:
            got = collection.get(include=["documents", "metadatas"], limit=page, offset=offset)
            if not got["ids"]:
                return
            for row in zip(got["ids"], got["documents"], got["metadatas"], strict=False):
                if generations is None or visible(row[2], generations):
                    yield row
            offset += len(got["ids"])

    def _in_view(self, got: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        rows = list(zip(got["ids"], got["documents"], got["metadatas"], strict=True))
        generations = self.generations([str(m["doc"]) for _, _, m in rows])
        return [r for r in rows if visible(r[2], generations)]

    @server_errors
    def passages(self, ids: Sequence[str]) -> dict[str, Passage]:
        if not ids:
            return {}
        got = self.chunks_collection().get(ids=list(ids), include=["documents", "metadatas"])
        return {i: passage_from(i, t, m) for i, t, m in self._in_view(got)}

    @server_errors
    def doc_passages(self, docs: Sequence[str]) -> list[Passage]:
        """Every committed chunk of these documents, in one query."""
        collection = self.chunks_collection()
        if collection is None or not docs:
            return []
        got = collection.get(where={"doc": {"$in": list(docs)}}, include=["documents", "metadatas"])
        return [passage_from(i, t, m) for i, t, m in self._in_view(got)]

    @server_errors
    def dense_search(self, vector: np.ndarray, k: int, where: dict[str, Any] | None = None) -> list[tuple[str, float]]:
        """The k nearest committed chunks. Chunks out of view (an ingest running or interrupted) are passed over,
        asking for more neighbours until k are found or none are left."""
        collection = self.chunks_collection()
        n = collection.count() if collection is not None else 0
        fetch = min(k, n)
        while fetch > 0:
            got = collection.query(query_embeddings=[vector.tolist()], n_results=fetch, where=where,
                                   include=["distances", "metadatas"])
            rows = list(zip(got["ids"][0], got["distances"][0], got["metadatas"][0], strict=False))
            generations = self.generations([str(m["doc"]) for _, _, m in rows])
            hits = [(i, 1.0 - d) for i, d, m in rows if visible(m, generations)]
            if len(hits) >= k or len(hits) == len(rows) or fetch >= n:
                return hits[:k]
            fetch = min(n, fetch * 4)
        return []

    @server_errors
    def embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        got = self.chunks_collection().get(ids=list(ids), include=["embeddings"])
        return {i: np.asarray(e, dtype=np.float32) for i, e in zip(got["ids"], got["embeddings"], strict=False)}

    # -- lexical index kept beside the store ---------------------------------------------------------
    @property
    def lexical_path(self) -> Path:
        key = hashlib.sha1(f"{self.url or ''}|{self.name}".encode()).hexdigest()[:10]
        return self.home / "bm25" / f"{self.name}-{key}"

    @server_errors
    def lexical_index(self) -> LexicalIndex:
        """The saved BM25 index, brought up to date when it no longer names the store's committed state (another
        client committed, or an ingest was interrupted after its commit)."""
        return self._up_to_date(LexicalIndex.load(self.lexical_path), self.generations())

    @server_errors
    def update_lexical_index(self) -> None:
        """After a write: bring the saved index to the committed state, unless it names that state already (the
        saved fingerprint is read, not the index)."""
        generations = self.generations()
        if LexicalIndex.saved_fingerprint(self.lexical_path) != self.fingerprint(generations):
            self._up_to_date(LexicalIndex.load(self.lexical_path), generations)

    def _up_to_date(self, index: LexicalIndex | None, generations: dict[str, int]) -> LexicalIndex:
        """`index` at the committed state `generations`: the rows of each document whose generation changed are
        replaced by its committed chunks, and only those are read and tokenized. Without an index (or one that
        names no generations) every chunk is read."""
        fingerprint = self.fingerprint(generations)
        if index is not None and index.fingerprint == fingerprint:
            return index
        if index is None or not index.generations:
            return self.rebuild_lexical_index()
        changed = {d for d in set(generations) | set(index.generations)
                   if generations.get(d) != index.generations.get(d)}
        dropped = [i for i in index.ids if doc_of(i) in changed]
        docs = sorted(changed & set(generations))
        fresh = [p for part in batches(len(docs), 500) for p in self.doc_passages(docs[part])]
        index = index.updated(dropped, [p.chunk_id for p in fresh], [p.text for p in fresh], fingerprint, generations)
        index.save(self.lexical_path)
        return index

    @server_errors
    def rebuild_lexical_index(self) -> LexicalIndex:
        """A new index of every committed chunk."""
        generations = self.generations()
        ids, texts = [], []
        for chunk_id, text, _ in self.all_chunks(committed=True):
            ids.append(chunk_id)
            texts.append(text)
        index = LexicalIndex.build(ids, texts, self.fingerprint(generations), generations)
        index.save(self.lexical_path)
        return index

    # -- writes --------------------------------------------------------------------------------------
    @contextmanager
    def write_lock(self, wait_s: float = 2.0) -> Iterator[None]:
        """One writer at a time: a lock file under RAG_HOME and, for a Chroma server, a lock on the server itself
        (writers with different homes share the server's data)."""
        self.home.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.home / "write.lock"))
        try:
            lock.acquire(timeout=wait_s)
        except Timeout:
            raise StoreBusy(f"store is busy: another process is writing to {self.where} "
                            f"(lock {self.home / 'write.lock'}); try again when it finishes") from None
        try:
            with server_write_lock(self) if self.url else nullcontext():
                yield
        finally:
            lock.release()

    def writer_active(self) -> bool:
        """Is some process writing to this store right now?"""
        if self.url:
            return server_lock_held(self)
        lock = FileLock(str(self.home / "write.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return True
        except OSError:
            return False
        lock.release()
        return False

    def renew_write_lock(self) -> None:
        if self.url:
            renew_server_lock(self)


def passage_from(chunk_id: str, text: str, meta: dict[str, Any], score: float = 0.0) -> Passage:
    return Passage(chunk_id=chunk_id, doc=meta["doc"], start=int(meta["start"]), end=int(meta["end"]), text=text,
                   title=meta.get("title", ""), source=meta.get("source", ""), date=meta.get("date"), score=score)


# A chunk is seen by the generations of its document from `since` to `until`; a document's record names the
# generation that is committed. Chunks written by a sync that has not committed (killed, Ctrl-C) are seen by
# nobody, and an update's old chunks stay in view until the record commits the new ones.
FOREVER = 1 << 40


def batches(n: int, size: int) -> Iterator[slice]:
    """Slices of at most `size` over n items: writes and reads in batches the store takes."""
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def visible(meta: dict[str, Any], generations: dict[str, int]) -> bool:
    """Is this chunk part of the committed generation of its document?"""
    gen = generations.get(str(meta.get("doc")))
    return gen is not None and int(meta.get("since", 0)) <= gen <= int(meta.get("until", FOREVER))


PENDING = "__sync_pending__"  # a record naming the documents a running sync is changing


# The sync lives in rag/sync.py; it is imported from here as it always was.
from rag.sync import SyncReport, chunking_key, file_hashes, sync, under_roots  # noqa: E402, F401
