"""Chroma store (embedded under RAG_HOME, or a Chroma server) and the sync that keeps it equal to a corpus."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import numpy as np
from filelock import FileLock, Timeout

from rag.chunk import SPLITTER_VERSION, chunk_text
from rag.config import Settings
from rag.embed import Embedder
from rag.ingest import Scan, Skip
from rag.lexical import LexicalIndex
from rag.server_lock import renew_server_lock, server_lock_held, server_write_lock
from rag.types import Chunk, Document, Passage


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

    @server_errors
    def count(self) -> int:
        collection = self.chunks_collection()
        return 0 if collection is None else collection.count()

    @server_errors
    def embedder_name(self) -> str | None:
        collection = self.chunks_collection()
        return None if collection is None else (collection.metadata or {}).get("embedder")

    @server_errors
    def documents(self, tombstones: bool = False) -> dict[str, dict[str, Any]]:
        """doc id -> record (hash, file_hash, title, source, date, root, chunking, gen); `tombstones` adds the
        documents whose pruning was interrupted (generation -1, nothing in view)."""
        got = self.docs_collection().get(include=["metadatas"])
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
    def fingerprint(self) -> str:
        """Names the committed state: every document and its generation. Any other client's commit changes it."""
        state = sorted(self.generations().items())
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

    def saved_fingerprint(self) -> str | None:
        return LexicalIndex.saved_fingerprint(self.lexical_path)

    @server_errors
    def lexical_index(self) -> LexicalIndex:
        """The saved BM25 index, rebuilt when it no longer names the store's committed state (another client
        committed, or an ingest was interrupted after its commit)."""
        fingerprint = self.fingerprint()
        index = LexicalIndex.load(self.lexical_path)
        if index is None or index.fingerprint != fingerprint:
            index = self.rebuild_lexical_index(fingerprint)
        return index

    @server_errors
    def rebuild_lexical_index(self, fingerprint: str | None = None) -> LexicalIndex:
        fingerprint = fingerprint or self.fingerprint()
        ids, texts = [], []
        for chunk_id, text, _ in self.all_chunks(committed=True):
            ids.append(chunk_id)
            texts.append(text)
        index = LexicalIndex.build(ids, texts, fingerprint)
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


def visible(meta: dict[str, Any], generations: dict[str, int]) -> bool:
    """Is this chunk part of the committed generation of its document?"""
    gen = generations.get(str(meta.get("doc")))
    return gen is not None and int(meta.get("since", 0)) <= gen <= int(meta.get("until", FOREVER))


def _chunk_metadata(chunk: Chunk, doc: Document, since: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"doc": doc.id, "start": chunk.start, "end": chunk.end, "index": chunk.index,
                            "title": doc.title, "source": doc.source, "doc_hash": doc.content_hash,
                            "since": since, "until": FOREVER}
    if doc.date:
        meta["date"] = doc.date
    return meta


def _batches(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def _chunk_ids_by_doc(collection: Any, doc_ids: list[str], max_batch: int) -> dict[str, dict[str, tuple[int, int]]]:
    """The stored chunk ids of these documents (id -> the generations that see it), in a few queries rather than
    one per document."""
    found: dict[str, dict[str, tuple[int, int]]] = {}
    if not doc_ids or not collection.count():
        return found
    step = max(1, min(max_batch, 500))
    for part in _batches(len(doc_ids), step):
        got = collection.get(where={"doc": {"$in": doc_ids[part]}}, include=["metadatas"])
        for chunk_id, meta in zip(got["ids"], got["metadatas"], strict=True):
            span = (int(meta.get("since", 0)), int(meta.get("until", FOREVER)))
            found.setdefault(str(meta["doc"]), {})[chunk_id] = span
    return found


PENDING = "__sync_pending__"  # a record naming the documents a running sync is changing


def _pending(docs_col: Any) -> set[str]:
    got = docs_col.get(ids=[PENDING], include=["metadatas"])
    return set(json.loads(got["metadatas"][0].get("docs", "[]"))) if got["ids"] else set()


def _mark_pending(docs_col: Any, docs: set[str]) -> None:
    docs_col.upsert(ids=[PENDING], embeddings=[[0.0]], metadatas=[{"docs": json.dumps(sorted(docs))}])


def _out_of_view(store: Store, chunks_col: Any, docs: list[str], max_batch: int) -> list[str]:
    """Chunks of these documents that their committed generation does not see: left by a killed sync."""
    spans = _chunk_ids_by_doc(chunks_col, docs, max_batch)
    generations = store.generations(docs)
    return sorted(i for doc, ids in spans.items() for i, (since, until) in ids.items()
                  if not since <= generations.get(doc, -1) <= until)


@dataclass
class _Plan:
    doc: Document
    chunks: list[Chunk]
    old: dict[str, int]  # chunk id -> generation it was first written for
    gen: int  # the generation this sync commits


@server_errors
def sync(store: Store, scan: Scan, settings: Settings, embedder: Embedder, prune: bool = True,
         progress: Progress | None = None) -> SyncReport:
    """Make the store match the scanned corpus: unchanged documents cost nothing, changed ones have only their
    new chunks embedded, removed files are pruned. New chunks are written under a generation no reader sees, a
    document's record then commits them, and only then are its old chunks deleted: an interrupted sync leaves
    every document as it was, and the next run finishes the job (embedding only the chunks not yet written)."""
    report = SyncReport(skipped=list(scan.skipped), ignored=list(scan.ignored), unchanged=list(scan.unchanged))
    with store.write_lock():
        # Made when the first vectors are in hand: a first ingest whose embedder fails leaves no collection
        # bound to that embedder behind.
        chunks_col = store.chunks_collection(embedder.name)
        known = store.documents(tombstones=True)
        max_batch = store.client.get_max_batch_size()
        plans, records = _plan(store, scan, settings, known, chunks_col, max_batch, report)
        docs_col = store.docs_collection()
        pending = _pending(docs_col)  # documents a killed sync may have left chunks of, out of view
        if plans:
            _mark_pending(docs_col, pending | {p.doc.id for p in plans})
        _embed_fresh(store, embedder, plans, max_batch, report, progress)
        chunks_col = store.chunks_collection(embedder.name, create=True)
        stale = _stage(chunks_col, plans, max_batch)
        chunking = chunking_key(settings)
        for plan in plans:
            doc = plan.doc
            meta = {"hash": doc.content_hash, "file_hash": doc.file_hash, "title": doc.title, "source": doc.source,
                    "chunking": chunking, "root": _root_of(doc), "chunks": len(plan.chunks), "gen": plan.gen}
            if doc.date:
                meta["date"] = doc.date
            records.append((doc.id, meta))
        for part in _batches(len(records), max_batch):  # the commit: one write per batch, not per document
            docs_col.upsert(ids=[i for i, _ in records[part]], embeddings=[[0.0]] * len(records[part]),
                            metadatas=[m for _, m in records[part]])
        stale += _out_of_view(store, chunks_col, sorted(pending - {p.doc.id for p in plans}), max_batch)
        for part in _batches(len(stale), max_batch):
            chunks_col.delete(ids=stale[part])
        if pending or plans:
            docs_col.delete(ids=[PENDING])
        if prune:
            _prune(store, scan, known, chunks_col, report)
        if plans or report.removed or store.saved_fingerprint() != store.fingerprint():
            store.rebuild_lexical_index()
        report.chunks = chunks_col.count()
    return report


def _plan(store: Store, scan: Scan, settings: Settings, known: dict[str, dict[str, Any]], chunks_col: Any,
          max_batch: int, report: SyncReport) -> tuple[list[_Plan], list[tuple[str, dict[str, Any]]]]:
    """What to write for each scanned document; records to refresh for unchanged ones that moved."""
    chunking = chunking_key(settings)
    plans: list[_Plan] = []
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
        gen = int(record.get("gen", 0)) if record else 0
        if record and gen >= 0 and record.get("hash") == doc.content_hash and record.get("chunking") == chunking:
            report.unchanged.append(doc.id)
            # Same text from other bytes or another place (a moved corpus): remember where it is now, so
            # pruning finds the document when its file is later deleted.
            now = {"file_hash": doc.file_hash, "source": doc.source, "root": _root_of(doc)}
            if any(record.get(k) != v for k, v in now.items()):
                records.append((doc.id, record | now))
            continue
        (report.updated if record and gen >= 0 else report.added).append(doc.id)
        chunks = chunk_text(doc.id, doc.text, settings.chunk.size, settings.chunk.overlap)
        old = {i: since for i, (since, _) in stored_chunks.get(doc.id, {}).items()}
        plans.append(_Plan(doc, chunks, old, max(gen, 0) + 1))
    return plans, records


def _embed_fresh(store: Store, embedder: Embedder, plans: list[_Plan], max_batch: int, report: SyncReport,
                 progress: Progress | None) -> None:
    """Embed every new chunk of every changed document in large batches (the embedder's fast path), sorted by
    length so that each batch pads its texts to about the same length, as one big encode call would."""
    fresh = [(p, c) for p in plans for c in p.chunks if c.id not in p.old]
    fresh.sort(key=lambda pc: len(pc[1].text))
    step = max(1, min(max_batch, 256))
    for part in _batches(len(fresh), step):
        batch = fresh[part]
        vectors = embedder.embed_documents([c.text for _, c in batch])
        if len(vectors) != len(batch):
            raise StoreError(f"the embedder {embedder.name} returned {len(vectors)} vectors for {len(batch)} texts")
        chunks_col = store.chunks_collection(embedder.name, create=True)
        store.renew_write_lock()
        chunks_col.upsert(ids=[c.id for _, c in batch], embeddings=vectors.tolist(),
                          documents=[c.text for _, c in batch],
                          metadatas=[_chunk_metadata(c, p.doc, p.gen) for p, c in batch])
        report.embedded += len(batch)
        if progress:
            progress(report.embedded, len(fresh))


def _stage(chunks_col: Any, plans: list[_Plan], max_batch: int) -> list[str]:
    """Before the commit: chunks kept from the old text get fresh offsets and stay in view; chunks the new text
    drops leave view at the new generation. Returns those dropped, to delete once the records commit."""
    stale: list[str] = []
    for plan in plans:
        kept = [c for c in plan.chunks if c.id in plan.old]  # same text, maybe moved: refresh offsets only
        for part in _batches(len(kept), max_batch):
            chunks_col.update(ids=[c.id for c in kept[part]],
                              metadatas=[_chunk_metadata(c, plan.doc, min(plan.old[c.id], plan.gen))
                                         for c in kept[part]])
        dropped = sorted(set(plan.old) - {c.id for c in plan.chunks})
        for part in _batches(len(dropped), max_batch):
            chunks_col.update(ids=dropped[part], metadatas=[{"until": plan.gen - 1}] * len(dropped[part]))
        stale.extend(dropped)
    return stale


def _prune(store: Store, scan: Scan, known: dict[str, dict[str, Any]], chunks_col: Any, report: SyncReport) -> None:
    docs_col = store.docs_collection()
    scanned = {d.id for d in scan.documents} | set(scan.unchanged)
    skipped_paths = {s.path for s in scan.skipped}
    for doc_id, record in known.items():
        source = record["source"]
        # A file that still exists but failed to load keeps its chunks: bad input never deletes data.
        left_folder = (under_roots(record.get("root"), scan.roots) and doc_id not in scanned
                       and source not in skipped_paths)
        named_and_gone = source in scan.gone  # `rag ingest old.txt` after old.txt was deleted
        if (left_folder or named_and_gone) and not Path(source).exists():
            # A tombstone first (no generation is in view), so a kill before the end hides the whole document
            # and the next sync prunes it again.
            docs_col.upsert(ids=[doc_id], embeddings=[[0.0]], metadatas=[record | {"gen": -1}])
            chunks_col.delete(where={"doc": doc_id})
            docs_col.delete(ids=[doc_id])
            report.removed.append(doc_id)
            report.skipped = [s for s in report.skipped if os.path.abspath(s.path) != source]


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
