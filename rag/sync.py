"""The sync that keeps a store equal to a corpus: unchanged documents cost nothing, changed ones have only their
new chunks embedded under a generation no reader sees until the document's record commits it, removed files are
pruned."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.chunk import SPLITTER_VERSION, chunk_text
from rag.config import Settings
from rag.embed import Embedder
from rag.ingest import Scan, Skip
from rag.store import FOREVER, PENDING, Store, StoreError, batches, server_errors
from rag.types import Chunk, Document


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


def _chunk_metadata(chunk: Chunk, doc: Document, since: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"doc": doc.id, "start": chunk.start, "end": chunk.end, "index": chunk.index,
                            "title": doc.title, "source": doc.source, "doc_hash": doc.content_hash,
                            "since": since, "until": FOREVER}
    if doc.date:
        meta["date"] = doc.date
    return meta


def _chunk_ids_by_doc(collection: Any, doc_ids: list[str], max_batch: int) -> dict[str, dict[str, tuple[int, int]]]:
    """The stored chunk ids of these documents (id -> the generations that see it), in a few queries rather than
    one per document."""
    found: dict[str, dict[str, tuple[int, int]]] = {}
    if not doc_ids or not collection.count():
        return found
    step = max(1, min(max_batch, 500))
    for part in batches(len(doc_ids), step):
        got = collection.get(where={"doc": {"$in": doc_ids[part]}}, include=["metadatas"])
        for chunk_id, meta in zip(got["ids"], got["metadatas"], strict=True):
            span = (int(meta.get("since", 0)), int(meta.get("until", FOREVER)))
            found.setdefault(str(meta["doc"]), {})[chunk_id] = span
    return found




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
        for part in batches(len(records), max_batch):  # the commit: one write per batch, not per document
            docs_col.upsert(ids=[i for i, _ in records[part]], embeddings=[[0.0]] * len(records[part]),
                            metadatas=[m for _, m in records[part]])
        stale += _out_of_view(store, chunks_col, sorted(pending - {p.doc.id for p in plans}), max_batch)
        for part in batches(len(stale), max_batch):
            chunks_col.delete(ids=stale[part])
        if pending or plans:
            docs_col.delete(ids=[PENDING])
        if prune:
            _prune(store, scan, known, chunks_col, report)
        store.update_lexical_index()  # reads nothing more when the index names the committed state already
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
    for part in batches(len(fresh), step):
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
        for part in batches(len(kept), max_batch):
            chunks_col.update(ids=[c.id for c in kept[part]],
                              metadatas=[_chunk_metadata(c, plan.doc, min(plan.old[c.id], plan.gen))
                                         for c in kept[part]])
        dropped = sorted(set(plan.old) - {c.id for c in plan.chunks})
        for part in batches(len(dropped), max_batch):
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
