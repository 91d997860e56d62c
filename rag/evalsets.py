"""A folder of gold sets: each set is a folder with `gold.jsonl` and the `corpus/` its quotes point into. Every
set is ingested into a store of its own (under RAG_HOME/evalsets/NAME, a no-op when nothing changed), split
into fixed dev and test halves, and scored; the report gives each set's row, the macro average and the spread.

The split is fixed by the item itself: an item's `"split"` field ("dev" or "test"), else the parity of a hash of
its set and id, so adding an item never moves another one to the other half."""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.evals import EvalReport, GoldError, GoldItem

SPLITS = ("dev", "test", "all")
HEADLINE = ("evidence_recall", "citation_precision", "abstention_accuracy", "false_abstention_rate",
            "answer_str_em", "retrieval_recall_at_k")


@dataclass(frozen=True)
class GoldSet:
    name: str
    gold: Path
    corpus: Path


def discover(folder: Path) -> list[GoldSet]:
    """The sets in a folder: itself when it holds gold.jsonl, else each subfolder that does."""
    if not folder.is_dir():
        raise GoldError(f"{folder}: not a folder of gold sets")
    candidates = [folder] if (folder / "gold.jsonl").is_file() else sorted(p for p in folder.iterdir() if p.is_dir())
    sets = [GoldSet(p.name, p / "gold.jsonl", p / "corpus") for p in candidates if (p / "gold.jsonl").is_file()]
    if not sets:
        raise GoldError(f"{folder}: no gold sets (a set is a folder with gold.jsonl and corpus/)")
    for s in sets:
        if not s.corpus.is_dir():
            raise GoldError(f"{s.gold.parent}: no corpus/ folder beside gold.jsonl")
    return sets


def split_of(set_name: str, item: GoldItem) -> str:
    if item.split in ("dev", "test"):
        return item.split
    digest = hashlib.sha256(f"{set_name}/{item.id}".encode()).digest()
    return "dev" if digest[0] % 2 == 0 else "test"


def select(set_name: str, items: Sequence[GoldItem], split: str) -> list[GoldItem]:
    return [i for i in items if split == "all" or split_of(set_name, i) == split]


@dataclass
class SetsReport:
    """One report per set, their macro average and spread (best minus worst set) of each metric."""

    reports: dict[str, EvalReport]

    @property
    def macro(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name in next(iter(self.reports.values())).metrics:
            values = [v for r in self.reports.values() if (v := r.metrics[name]) is not None]
            if name == "n_items":
                out[name] = float(sum(values))
            else:
                out[name] = round(statistics.fmean(values), 4) if values else None
        return out

    @property
    def spread(self) -> dict[str, float]:
        out = {}
        for name in HEADLINE:
            values = [v for r in self.reports.values() if (v := r.metrics.get(name)) is not None]
            if values:
                out[name] = round(max(values) - min(values), 4)
        return out

    def to_json(self) -> dict[str, Any]:
        items = [{"set": name, **i.to_json()} for name, r in self.reports.items() for i in r.items]
        return {"metrics": self.macro, "spread": self.spread,
                "sets": {name: r.metrics for name, r in self.reports.items()}, "items": items}


def evaluate_sets(sets: Sequence[GoldSet], split: str, run_set: Callable[[GoldSet, str], EvalReport]
                  ) -> SetsReport:
    return SetsReport({s.name: run_set(s, split) for s in sets})


def set_settings(settings: Any, gold_set: GoldSet) -> Any:
    """The settings of a set's own store: RAG_HOME/evalsets/NAME, always embedded (never the user's server)."""
    return settings.model_copy(update={"home": settings.home / "evalsets" / gold_set.name, "chroma_url": None})


def ingest_set(gold_set: GoldSet, settings: Any, embedder: Any) -> Any:
    """Sync the set's corpus into its store (unchanged files cost nothing) and return the store. A file of a gold
    corpus that cannot be read is an error: its quotes would point at nothing."""
    from rag.ingest import scan
    from rag.store import Store, file_hashes, sync

    store = Store(settings)
    records = store.documents()
    found = scan([gold_set.corpus], int(settings.ingest.max_file_mb * 1_000_000), known=file_hashes(records, settings),
                 store=settings.home, stored_ids={str(r.get("source")): d for d, r in records.items()})
    if found.skipped:
        raise GoldError(f"{gold_set.corpus}: cannot read {found.skipped[0].path} ({found.skipped[0].reason})")
    sync(store, found, settings, embedder, prune=True)
    return store


def run_set(gold_set: GoldSet, split: str, settings: Any, embedder: Any, backend: str | None = None,
            k: int | None = None, progress: Callable[[int, int], None] | None = None, cache: Any = None,
            limit: int | None = None) -> EvalReport:
    """Ingest a set into its own store, answer its items of the split (the first `limit` of them) with the chain,
    answering from / recording to `cache` (rag.llm.ResponseCache), and score them."""
    from rag.answer import AnswerChain
    from rag.evals import evaluate, load_gold, store_texts
    from rag.retrieve import Retriever

    own = set_settings(settings, gold_set)
    store = ingest_set(gold_set, own, embedder)
    retrieve = own.retrieve.model_copy(update={"k": k}) if k else own.retrieve
    chain = AnswerChain(Retriever(store, embedder, retrieve), own.answer, backend=backend)
    if cache is not None:
        chain.cache = cache
    texts = store_texts(store)
    items = select(gold_set.name, load_gold(gold_set.gold, texts), split)
    report = evaluate(chain, items[:limit], progress)
    check_quotes(report, texts)
    return report


def check_quotes(report: EvalReport, texts: Callable[[str], str | None]) -> None:
    """Every citation of every answer must be an exact span of its source: GoldError naming the first that is not
    (an invariant of the chain, so no tolerance applies)."""
    for item in report.items:
        for c in item.citations:
            text = texts(c["doc"])
            if text is None or text[c["start"]:c["end"]] != c["quote"]:
                raise GoldError(f"{item.id}: citation [{c['n']}] is not the span {c['start']}-{c['end']} of "
                                f"{c['doc']}: {c['quote'][:60]!r}")
