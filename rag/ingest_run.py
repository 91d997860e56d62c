"""One ingest run, as `rag ingest` and `POST /v1/ingest` both do it: scan the paths against what the store holds,
decide what a deleted file means (pruned, not skipped), refuse a run with nothing to read, then sync."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rag.config import Settings

if TYPE_CHECKING:
    from rag.ingest import Skip
    from rag.sync import Progress, SyncReport


class NothingToIngest(ValueError):
    """The paths hold nothing to read (mistyped, empty, every file skipped): one line saying which."""


@dataclass(frozen=True)
class IngestRun:
    report: SyncReport
    skipped_before: list[Skip]  # skipped by the scan (already reported through `on_skipped`)
    where: str  # the store's folder or server

    @property
    def skipped_after(self) -> list[Skip]:
        """Files found bad only when compared with the store."""
        return [k for k in self.report.skipped if k not in self.skipped_before]


def ingest_paths(settings: Settings, paths: Sequence[Path], keep_removed: bool = False,
                 progress: Progress | None = None,
                 on_skipped: Callable[[list[Skip], set[str]], None] | None = None) -> IngestRun:
    """Sync the store with `paths`. `on_skipped(skips, stored_sources)` hears of skipped files before the long
    embedding starts. NothingToIngest for a run with nothing to read; StoreError and ModelError as sync raises
    them (a failed embedder stops before any document's record is written)."""
    from rag.embed import make_embedder
    from rag.ingest import scan, why_missing
    from rag.store import Store, file_hashes, sync, under_roots  # looked up when called: rag.store.sync is patched

    paths = list(paths)
    missing = [p for p in paths if not p.exists()]
    if len(missing) == len(paths) and not settings.has_store():
        # a mistyped path: no store is made for nothing
        raise NothingToIngest("nothing to ingest: " + "; ".join(f"{p}: {why_missing(p)}" for p in missing))
    store = Store(settings)
    records = store.documents()  # read once: what scan may pass over, and what a skip leaves in place
    stored_ids = {str(r.get("source")): doc_id for doc_id, r in records.items()}  # source path -> doc id
    found = scan(paths, int(settings.ingest.max_file_mb * 1_000_000), known=file_hashes(records, settings),
                 store=settings.home, stored_ids=stored_ids)
    nothing_found = not found.documents and not found.unchanged
    prune = settings.ingest.prune and not keep_removed
    held = set(stored_ids)  # the source paths the store holds
    # A deleted file named again is pruned, as a deleted file of a folder is: it is not "skipped".
    removing = set(found.gone) & held if prune else set()
    skips = [k for k in found.skipped if os.path.abspath(k.path) not in removing]
    if on_skipped:
        on_skipped(skips, held)
    # A folder emptied of its articles still has them pruned; any other run with nothing to read is a mistake.
    emptied = prune and (removing or (not skips and any(under_roots(r.get("root"), found.roots)
                                                        for r in records.values())))
    if nothing_found and not emptied:
        raise NothingToIngest("nothing to ingest: " + ("every file was skipped" if found.skipped
                                                       else "no supported files"))
    report = sync(store, found, settings, make_embedder(settings.embed), prune=prune, progress=progress)
    return IngestRun(report, skips, str(store.where))
