"""Chroma store (embedded under RAG_HOME, or a Chroma server) and the sync that keeps it equal to a corpus."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from filelock import FileLock, Timeout

from rag.chunk import SPLITTER_VERSION, chunk_text
from rag.config import Settings
from rag.embed import Embedder
from rag.ingest import Scan, Skip
from rag.lexical import LexicalIndex
from rag.types import Chunk, Document, Passage


class StoreError(Exception):
    """A problem with the store that the user must act on; the message says what and where."""


class StoreBusy(StoreError):
    pass


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    embedded: int = 0  # chunks sent to the embedder
    chunks: int = 0  # chunks in the store afterwards
    ignored: list[str] = field(default_factory=list)  # files of types not read

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added, "updated": self.updated, "unchanged": self.unchanged, "removed": self.removed,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "embedded": self.embedded, "chunks": self.chunks, "ignored": len(self.ignored),
            "ignored_files": self.ignored,
        }


Progress = Callable[[int, int], None]  # (done, total) chunks embedded


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

    def count(self) -> int:
        collection = self.chunks_collection()
        return 0 if collection is None else collection.count()

    def embedder_name(self) -> str | None:
        collection = self.chunks_collection()
        return None if collection is None else (collection.metadata or {}).get("embedder")

    def documents(self) -> dict[str, dict[str, Any]]:
        """doc id -> record (hash, file_hash, title, source, date, root, chunking)."""
        got = self.docs_collection().get(include=["metadatas"])
        return dict(zip(got["ids"], got["metadatas"] or [], strict=False))

    # -- reads ---------------------------------------------------------------------------------------
    def all_chunks(self, page: int = 5000) -> Iterator[tuple[str, str, dict[str, Any]]]:
        collection = self.chunks_collection()
        if collection is None:
            return
        offset = 0
        while True:
            got = collection.get(include=["documents", "metadatas"], limit=page, offset=offset)
            if not got["ids"]:
                return
            yield from zip(got["ids"], got["documents"], got["metadatas"], strict=False)
            offset += len(got["ids"])

    def passages(self, ids: Sequence[str]) -> dict[str, Passage]:
        if not ids:
            return {}
        got = self.chunks_collection().get(ids=list(ids), include=["documents", "metadatas"])
        rows = zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        return {i: passage_from(i, t, m) for i, t, m in rows}

    def doc_passages(self, docs: Sequence[str]) -> list[Passage]:
        """Every stored chunk of these documents, in one query."""
        collection = self.chunks_collection()
        if collection is None or not docs:
            return []
        got = collection.get(where={"doc": {"$in": list(docs)}}, include=["documents", "metadatas"])
        return [passage_from(i, t, m) for i, t, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)]

    def dense_search(self, vector: np.ndarray, k: int, where: dict[str, Any] | None = None) -> list[tuple[str, float]]:
        collection = self.chunks_collection()
        n = collection.count() if collection is not None else 0
        if n == 0:
            return []
        got = collection.query(query_embeddings=[vector.tolist()], n_results=min(k, n), where=where,
                               include=["distances"])
        return [(i, 1.0 - d) for i, d in zip(got["ids"][0], got["distances"][0], strict=False)]

    def embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        got = self.chunks_collection().get(ids=list(ids), include=["embeddings"])
        return {i: np.asarray(e, dtype=np.float32) for i, e in zip(got["ids"], got["embeddings"], strict=False)}

    # -- lexical index kept beside the store ---------------------------------------------------------
    @property
    def lexical_path(self) -> Path:
        key = hashlib.sha1(f"{self.url or ''}|{self.name}".encode()).hexdigest()[:10]
        return self.home / "bm25" / f"{self.name}-{key}"

    def lexical_index(self) -> LexicalIndex:
        """The saved BM25 index, rebuilt when it no longer matches the store (e.g. another client wrote)."""
        index = LexicalIndex.load(self.lexical_path)
        if index is None or len(index.ids) != self.count():
            index = self.rebuild_lexical_index()
        return index

    def rebuild_lexical_index(self) -> LexicalIndex:
        ids, texts = [], []
        for chunk_id, text, _ in self.all_chunks():
            ids.append(chunk_id)
            texts.append(text)
        index = LexicalIndex.build(ids, texts)
        self.lexical_path.parent.mkdir(parents=True, exist_ok=True)
        index.save(self.lexical_path)
        return index

    # -- writes --------------------------------------------------------------------------------------
    @contextmanager
    def write_lock(self, wait_s: float = 2.0) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.home / "write.lock"))
        try:
            lock.acquire(timeout=wait_s)
        except Timeout:
            raise StoreBusy(f"store is busy: another process is writing to {self.where} "
                            f"(lock {self.home / 'write.lock'}); try again when it finishes") from None
        try:
            yield
        finally:
            lock.release()


def passage_from(chunk_id: str, text: str, meta: dict[str, Any], score: float = 0.0) -> Passage:
    return Passage(chunk_id=chunk_id, doc=meta["doc"], start=int(meta["start"]), end=int(meta["end"]), text=text,
                   title=meta.get("title", ""), source=meta.get("source", ""), date=meta.get("date"), score=score)


def _chunk_metadata(chunk: Chunk, doc: Document) -> dict[str, Any]:
    meta: dict[str, Any] = {"doc": doc.id, "start": chunk.start, "end": chunk.end, "index": chunk.index,
                            "title": doc.title, "source": doc.source, "doc_hash": doc.content_hash}
    if doc.date:
        meta["date"] = doc.date
    return meta


def _batches(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def _chunk_ids_by_doc(collection: Any, doc_ids: list[str], max_batch: int) -> dict[str, set[str]]:
    """The stored chunk ids of these documents, in a few queries rather than one per document."""
    found: dict[str, set[str]] = {}
    if not doc_ids or not collection.count():
        return found
    step = max(1, min(max_batch, 500))
    for part in _batches(len(doc_ids), step):
        got = collection.get(where={"doc": {"$in": doc_ids[part]}}, include=["metadatas"])
        for chunk_id, meta in zip(got["ids"], got["metadatas"], strict=True):
            found.setdefault(str(meta["doc"]), set()).add(chunk_id)
    return found


def sync(store: Store, scan: Scan, settings: Settings, embedder: Embedder, prune: bool = True,
         progress: Progress | None = None) -> SyncReport:
    """Make the store match the scanned corpus: unchanged documents cost nothing, changed ones have only their
    new chunks embedded, removed files are pruned. New chunks are written before old ones are deleted, and a
    document's record last, so an interrupted sync loses nothing and the next run finishes the job (embedding
    only the chunks the interrupted one did not write)."""
    report = SyncReport(skipped=list(scan.skipped), ignored=list(scan.ignored), unchanged=list(scan.unchanged))
    chunking = chunking_key(settings)
    with store.write_lock():
        # Made when the first vectors are in hand: a first ingest whose embedder fails leaves no collection
        # bound to that embedder behind.
        chunks_col = store.chunks_collection(embedder.name)
        docs_col = store.docs_collection()
        known = store.documents()
        max_batch = store.client.get_max_batch_size()

        plans: list[tuple[Document, list[Chunk], set[str]]] = []
        records: list[tuple[str, dict[str, Any]]] = []
        # The chunks each document has in the store: from its last sync, or from one interrupted before it wrote
        # the record. Those the new chunking keeps are not embedded again.
        stored_chunks = _chunk_ids_by_doc(chunks_col, [d.id for d in scan.documents], max_batch) if chunks_col else {}
        for doc in scan.documents:
            record = known.get(doc.id)
            if record and record.get("source") != doc.source and Path(record["source"]).exists():
                # Another folder's file of the same name holds the id ("index.html"): never overwrite it.
                report.skipped.append(Skip.id_taken(doc.source, doc.id, record["source"]))
                continue
            if record and record.get("hash") == doc.content_hash and record.get("chunking") == chunking:
                report.unchanged.append(doc.id)
                # Same text from other bytes or another place (a moved corpus): remember where it is now, so
                # pruning finds the document when its file is later deleted.
                now = {"file_hash": doc.file_hash, "source": doc.source, "root": _root_of(doc)}
                if any(record.get(k) != v for k, v in now.items()):
                    records.append((doc.id, record | now))
                continue
            (report.updated if record else report.added).append(doc.id)
            old_ids = stored_chunks.get(doc.id, set())
            plans.append((doc, chunk_text(doc.id, doc.text, settings.chunk.size, settings.chunk.overlap), old_ids))

        # Embed every new chunk of every changed document in large batches (the embedder's fast path), sorted by
        # length so that each batch pads its texts to about the same length, as one big encode call would.
        fresh = [(doc, c) for doc, chunks, old in plans for c in chunks if c.id not in old]
        fresh.sort(key=lambda dc: len(dc[1].text))
        step = max(1, min(max_batch, 256))
        for part in _batches(len(fresh), step):
            batch = fresh[part]
            vectors = embedder.embed_documents([c.text for _, c in batch])
            chunks_col = chunks_col or store.chunks_collection(embedder.name, create=True)
            chunks_col.upsert(ids=[c.id for _, c in batch], embeddings=vectors.tolist(),
                              documents=[c.text for _, c in batch],
                              metadatas=[_chunk_metadata(c, d) for d, c in batch])
            report.embedded += len(batch)
            if progress:
                progress(report.embedded, len(fresh))

        chunks_col = chunks_col or store.chunks_collection(embedder.name, create=True)
        for doc, chunks, old_ids in plans:
            kept = [c for c in chunks if c.id in old_ids]  # same text, maybe moved: refresh offsets only
            for part in _batches(len(kept), max_batch):
                chunks_col.update(ids=[c.id for c in kept[part]],
                                  metadatas=[_chunk_metadata(c, doc) for c in kept[part]])
            stale = sorted(old_ids - {c.id for c in chunks})
            for part in _batches(len(stale), max_batch):
                chunks_col.delete(ids=stale[part])
            meta = {"hash": doc.content_hash, "file_hash": doc.file_hash, "title": doc.title, "source": doc.source,
                    "chunking": chunking, "root": _root_of(doc), "chunks": len(chunks)}
            if doc.date:
                meta["date"] = doc.date
            records.append((doc.id, meta))
        for part in _batches(len(records), max_batch):  # one write per batch, not per document
            docs_col.upsert(ids=[i for i, _ in records[part]], embeddings=[[0.0]] * len(records[part]),
                            metadatas=[m for _, m in records[part]])

        if prune:
            scanned = {d.id for d in scan.documents} | set(scan.unchanged)
            skipped_paths = {s.path for s in scan.skipped}
            for doc_id, record in known.items():
                source = record["source"]
                # A file that still exists but failed to load keeps its chunks: bad input never deletes data.
                left_folder = (under_roots(record.get("root"), scan.roots) and doc_id not in scanned
                               and source not in skipped_paths)
                named_and_gone = source in scan.gone  # `rag ingest old.txt` after old.txt was deleted
                if (left_folder or named_and_gone) and not Path(source).exists():
                    chunks_col.delete(where={"doc": doc_id})
                    docs_col.delete(ids=[doc_id])
                    report.removed.append(doc_id)
                    report.skipped = [s for s in report.skipped if os.path.abspath(s.path) != source]

        if plans or report.removed or not store.lexical_path.exists():
            store.rebuild_lexical_index()
        report.chunks = chunks_col.count()
    return report


def file_hashes(records: dict[str, dict[str, Any]], settings: Settings) -> dict[tuple[str, str], str]:
    """(doc id, source path) -> hash of the file's bytes, for documents (`Store.documents()`) chunked with the
    current settings: what `scan` needs to pass over unchanged files without parsing them."""
    chunking = chunking_key(settings)
    return {(doc_id, r["source"]): r["file_hash"] for doc_id, r in records.items()
            if r.get("file_hash") and r.get("chunking") == chunking}


def chunking_key(settings: Settings) -> str:
    """The chunk settings a document was chunked with: other settings mean chunking it again."""
    return json.dumps({"size": settings.chunk.size, "overlap": settings.chunk.overlap, "splitter": SPLITTER_VERSION})


def under_roots(folder: str | None, roots: Sequence[str]) -> bool:
    """Is the folder one of the roots or under one: ingesting a corpus also covers the subfolders ingested alone."""
    return folder is not None and any(Path(folder).is_relative_to(root) for root in roots)


def _root_of(doc: Document) -> str:
    source = Path(doc.source)
    parts = Path(doc.id).parts
    return str(source.parents[len(parts) - 1]) if parts else str(source.parent)
