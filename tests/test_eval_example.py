"""How a user puts the eval harness in their own pytest suite: score the chain, assert the floors they accept."""

from pathlib import Path

import pytest

from rag import evals
from rag.answer import AnswerChain
from rag.config import Settings
from rag.embed import LocalEmbedder
from rag.ingest import scan
from rag.retrieve import Retriever
from rag.store import Store, sync

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.integration
def test_my_corpus_keeps_its_citations(tmp_path):
    settings = Settings(home=tmp_path / "home")
    store, embedder = Store(settings), LocalEmbedder()
    sync(store, scan([ROOT / "corpus"], 10**7), settings, embedder)
    chain = AnswerChain(Retriever(store, embedder, settings.retrieve), settings.answer)
    gold = evals.load_gold(ROOT / "evals" / "gold" / "seeds" / "gold.jsonl", evals.store_texts(store))

    report = evals.evaluate(chain, gold)

    failures = [f"{r.id}: {r.failure()}" for r in report.items if not r.passed]
    assert report.metrics["citation_precision"] >= 0.5, failures
    assert report.metrics["evidence_recall"] >= 0.4, failures
    assert report.metrics["invalid_citation_rate"] == 0.0
