"""BM25 index (bm25s) over the store's chunks, saved under RAG_HOME and rebuilt whenever ingest changes the store."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rag.cite import stem
from rag.imports import import_without

# bm25s imports scipy.sparse only for an index builder it offers (csc_backend="scipy"); the default builder and the
# saved index's search are numpy.
if TYPE_CHECKING:
    import bm25s
else:
    bm25s = import_without("bm25s", hidden=("scipy.sparse",))

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_STOPWORDS = frozenset(bm25s.stopwords.STOPWORDS_EN)


# Saved with the index: an index built by another tokenizer is rebuilt rather than searched with the wrong words.
TOKENIZER = "snowball-english-2"  # 2: irregular verbs (rag.cite.stem)


def words(text: str) -> list[str]:
    return [w for w in _TOKEN.findall(text.lower()) if w not in _STOPWORDS]


def tokenize(text: str) -> list[str]:
    """Stemmed words: "repelling" finds "repelled", "fighters" finds "fighter"."""
    return [stem(w) for w in words(text)]


class LexicalIndex:
    def __init__(self, model: bm25s.BM25, ids: list[str], df: dict[str, int], fingerprint: str = "") -> None:
        self.model = model
        self.fingerprint = fingerprint  # the store's committed state it was built from (Store.fingerprint)
        self.ids = ids
        self.df = df  # chunks that contain each token: word rarity for the answer stage
        self.position = {chunk_id: i for i, chunk_id in enumerate(ids)}
        self._stems: frozenset[str] | None = None  # made on first `knows`

    @classmethod
    def build(cls, ids: list[str], texts: list[str], fingerprint: str = "") -> LexicalIndex:
        model = bm25s.BM25()
        # Every chunk gets at least one token so positions line up with ids even for chunks of stopwords only.
        written = [words(t) for t in texts]
        tokens = [[stem(w) for w in ws] or ["\u2205"] for ws in written]
        model.index(tokens or [["\u2205"]], show_progress=False)  # bm25s indexes nothing only as one empty chunk
        # Rarity of each word as written: the answer stage weighs the question's own words.
        df = Counter(word for ws in written for word in set(ws))
        return cls(model, ids, dict(df), fingerprint)

    def knows(self, word: str) -> bool:
        """Some chunk uses the word in some form ("elections" is known from "election")."""
        if self._stems is None:
            self._stems = frozenset(stem(w) for w in self.df)
        return stem(word.lower()) in self._stems

    def idf(self, token: str) -> float:
        """BM25's idf; a word the corpus never uses is as rare as can be."""
        n = len(self.ids)
        df = self.df.get(token, 0)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def save(self, folder: Path) -> None:
        """Written to a version folder of this process's own, then named current by replacing the pointer file
        `current` in one step: a reader never sees half an index, and concurrent rebuilds never share a folder."""
        folder.mkdir(parents=True, exist_ok=True)
        version = f"v-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp = folder / version
        self.model.save(str(tmp), show_progress=False)
        (tmp / "ids.json").write_text(json.dumps(self.ids))
        (tmp / "df.json").write_text(json.dumps(self.df))
        (tmp / "meta.json").write_text(json.dumps({"tokenizer": TOKENIZER, "fingerprint": self.fingerprint}))
        pointer = folder / f"current.{version}"
        pointer.write_text(version)
        os.replace(pointer, folder / "current")
        _clean(folder, keep=version)

    @staticmethod
    def _current(folder: Path) -> tuple[Path, dict[str, str]] | None:
        try:
            version = folder / (folder / "current").read_text().strip()
            meta = json.loads((version / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        return (version, meta) if meta.get("tokenizer") == TOKENIZER else None

    @classmethod
    def saved_fingerprint(cls, folder: Path) -> str | None:
        current = cls._current(folder)
        return None if current is None else current[1].get("fingerprint")

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex | None:
        """The current saved index; None when there is none, or it is of another tokenizer, or a newer one
        replaced it while it was being read."""
        current = cls._current(folder)
        if current is None:
            return None
        version, meta = current
        try:
            model = bm25s.BM25.load(str(version), show_progress=False, mmap=False)
            ids = json.loads((version / "ids.json").read_text())
            df = json.loads((version / "df.json").read_text())
        except (OSError, ValueError):
            return None
        return cls(model, ids, df, meta.get("fingerprint", ""))

    def search(self, query: str, k: int, allowed: set[str] | None = None) -> list[tuple[str, float]]:
        """Top-k (chunk id, BM25 score), scores > 0 only; `allowed` limits the hits to those ids."""
        terms = [t for t in tokenize(query) if t in self.model.vocab_dict]
        if not terms or not self.ids:
            return []
        mask = None
        if allowed is not None:
            mask = np.zeros(len(self.ids), dtype=np.float32)
            for chunk_id in allowed:
                if chunk_id in self.position:
                    mask[self.position[chunk_id]] = 1.0
        k = min(k, len(self.ids))
        docs, scores = self.model.retrieve([terms], k=k, show_progress=False, weight_mask=mask, n_threads=0)
        return [(self.ids[int(i)], float(s)) for i, s in zip(docs[0], scores[0], strict=False) if s > 0]


def _clean(folder: Path, keep: str) -> None:
    """Remove versions replaced more than a minute ago (a reader may still be loading a newer one)."""
    now = time.time()
    for entry in folder.iterdir():
        if entry.name in (keep, "current"):
            continue
        try:
            if now - entry.stat().st_mtime > 60:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        except OSError:
            pass  # another process removed it first
