"""BM25 index over the store's committed chunks, saved under RAG_HOME and updated in place when the store changes:
a changed document's rows are replaced and nothing else is read or tokenized again. Term counts are stored, not
scores, so word rarity (idf) and length normalisation are taken at query time from the index as it is now."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import bm25s.stopwords
import numpy as np
import scipy.sparse as sp

from rag.cite import stem

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_STOPWORDS = frozenset(bm25s.stopwords.STOPWORDS_EN)
K1, B = 1.5, 0.75  # BM25 (Lucene variant), as bm25s and Lucene default to

# Saved with the index: an index built by another tokenizer or layout is rebuilt rather than searched.
TOKENIZER = "snowball-english-2+counts-1"  # 2: irregular verbs (rag.cite.stem); counts-1: term counts, not scores


def words(text: str) -> list[str]:
    return [w for w in _TOKEN.findall(text.lower()) if w not in _STOPWORDS]


def tokenize(text: str) -> list[str]:
    """Stemmed words: "repelling" finds "repelled", "fighters" finds "fighter"."""
    return [stem(w) for w in words(text)]


class Terms:
    """A chunks x terms matrix of counts (CSC: a term's chunks are one slice) with its growing vocabulary. Rows are
    dropped and appended without touching the others' counts."""

    def __init__(self, vocab: list[str], matrix: sp.csc_matrix) -> None:
        self.vocab = vocab
        self.column = {term: i for i, term in enumerate(vocab)}
        self.matrix = matrix

    @classmethod
    def empty(cls) -> Terms:
        return cls([], sp.csc_matrix((0, 0), dtype=np.float32))

    def df(self, term: str) -> int:
        """Chunks that hold the term."""
        col = self.column.get(term)
        return 0 if col is None else int(self.matrix.indptr[col + 1] - self.matrix.indptr[col])

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, counts) of the chunks that hold the term."""
        col = self.column[term]
        lo, hi = self.matrix.indptr[col], self.matrix.indptr[col + 1]
        return self.matrix.indices[lo:hi], self.matrix.data[lo:hi]

    def keep(self, rows: np.ndarray) -> Terms:
        """Only these rows, in this order."""
        return Terms(self.vocab, self.matrix[rows].tocsc())

    def append(self, counts: Sequence[Counter[str]]) -> Terms:
        vocab, column = list(self.vocab), dict(self.column)
        rows, cols, data = [], [], []
        for row, counter in enumerate(counts):
            for term, n in counter.items():
                if term not in column:
                    column[term] = len(vocab)
                    vocab.append(term)
                rows.append(row)
                cols.append(column[term])
                data.append(n)
        added = sp.csc_matrix((np.asarray(data, dtype=np.float32), (rows, cols)), shape=(len(counts), len(vocab)))
        old = self.matrix.copy()
        old.resize((old.shape[0], len(vocab)))
        return Terms(vocab, sp.vstack([old, added], format="csc"))

    def save(self, folder: Path, name: str) -> None:
        sp.save_npz(folder / f"{name}.npz", self.matrix, compressed=False)
        (folder / f"{name}.json").write_text(json.dumps(self.vocab))

    @classmethod
    def load(cls, folder: Path, name: str) -> Terms:
        return cls(json.loads((folder / f"{name}.json").read_text()), sp.load_npz(folder / f"{name}.npz").tocsc())


class LexicalIndex:
    def __init__(self, ids: list[str], stems: Terms, written: Terms, fingerprint: str = "",
                 generations: dict[str, int] | None = None) -> None:
        self.ids = ids
        self.stems = stems  # stemmed words: what BM25 matches
        self.written = written  # words as written, once a chunk: their rarity for the answer stage
        self.fingerprint = fingerprint  # the store's committed state it was built from (Store.fingerprint)
        self.generations = generations or {}  # document -> the generation its rows are of
        self.position = {chunk_id: i for i, chunk_id in enumerate(ids)}
        # Every chunk counts as at least one word long, so a chunk of stopwords only never divides by zero.
        lengths = np.maximum(np.asarray(stems.matrix.sum(axis=1)).ravel(), 1.0) if ids else np.ones(0)
        self.norm = K1 * (1 - B + B * lengths / lengths.mean()) if ids else lengths  # BM25's length part
        self._stems: frozenset[str] | None = None  # made on first `knows`

    @classmethod
    def build(cls, ids: list[str], texts: list[str], fingerprint: str = "",
              generations: dict[str, int] | None = None) -> LexicalIndex:
        return cls([], Terms.empty(), Terms.empty()).updated((), ids, texts, fingerprint, generations)

    def updated(self, dropped: Sequence[str], ids: Sequence[str], texts: Sequence[str], fingerprint: str,
                generations: dict[str, int] | None = None) -> LexicalIndex:
        """This index without the chunks `dropped` and with the chunks `ids` (of `texts`) added; only the added
        texts are tokenized."""
        gone = set(dropped) | set(ids)  # a chunk added again replaces its row
        keep = np.asarray([i for i, chunk_id in enumerate(self.ids) if chunk_id not in gone], dtype=np.int64)
        written = [words(t) for t in texts]
        stems, seen = self.stems.keep(keep), self.written.keep(keep)
        stems = stems.append([Counter(stem(w) for w in ws) for ws in written])
        seen = seen.append([Counter(set(ws)) for ws in written])
        kept_ids = [self.ids[i] for i in keep]
        return LexicalIndex(kept_ids + list(ids), stems, seen, fingerprint, generations)

    def knows(self, word: str) -> bool:
        """Some chunk uses the word in some form ("elections" is known from "election")."""
        if self._stems is None:
            self._stems = frozenset(stem(w) for w in self.written.vocab if self.written.df(w))
        return stem(word.lower()) in self._stems

    def idf(self, token: str) -> float:
        """BM25's idf of a word as written; a word the corpus never uses is as rare as can be."""
        return _idf(self.written.df(token), len(self.ids))

    def search(self, query: str, k: int, allowed: set[str] | None = None) -> list[tuple[str, float]]:
        """Top-k (chunk id, BM25 score), scores > 0 only; `allowed` limits the hits to those ids."""
        terms = [t for t in tokenize(query) if self.stems.df(t)]
        if not terms or not self.ids:
            return []
        n, norm = len(self.ids), self.norm
        scores = np.zeros(n, dtype=np.float64)
        for term in terms:  # a word said twice counts twice, as in bm25s
            rows, tf = self.stems.postings(term)
            scores[rows] += _idf(len(rows), n) * tf / (norm[rows] + tf)
        if allowed is not None:
            mask = np.zeros(n, dtype=bool)
            mask[[self.position[i] for i in allowed if i in self.position]] = True
            scores[~mask] = 0.0
        k = min(k, n)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.ids[int(i)], float(scores[i])) for i in top if scores[i] > 0]

    def save(self, folder: Path) -> None:
        """Written to a version folder of this process's own, then named current by replacing the pointer file
        `current` in one step: a reader never sees half an index, and concurrent saves never share a folder."""
        folder.mkdir(parents=True, exist_ok=True)
        version = f"v-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp = folder / version
        tmp.mkdir()
        self.stems.save(tmp, "stems")
        self.written.save(tmp, "written")
        (tmp / "ids.json").write_text(json.dumps(self.ids))
        (tmp / "meta.json").write_text(json.dumps({"tokenizer": TOKENIZER, "fingerprint": self.fingerprint,
                                                   "generations": self.generations}))
        pointer = folder / f"current.{version}"
        pointer.write_text(version)
        os.replace(pointer, folder / "current")
        _clean(folder, keep=version)

    @staticmethod
    def _current(folder: Path) -> tuple[Path, dict[str, object]] | None:
        try:
            version = folder / (folder / "current").read_text().strip()
            meta = json.loads((version / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        return (version, meta) if meta.get("tokenizer") == TOKENIZER else None

    @classmethod
    def saved_fingerprint(cls, folder: Path) -> str | None:
        current = cls._current(folder)
        return None if current is None else str(current[1].get("fingerprint", ""))

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex | None:
        """The current saved index; None when there is none, or it is of another tokenizer, or a newer one
        replaced it while it was being read."""
        current = cls._current(folder)
        if current is None:
            return None
        version, meta = current
        try:
            ids = json.loads((version / "ids.json").read_text())
            stems, written = Terms.load(version, "stems"), Terms.load(version, "written")
        except (OSError, ValueError):
            return None
        generations = meta.get("generations")
        return cls(ids, stems, written, str(meta.get("fingerprint", "")),
                   generations if isinstance(generations, dict) else None)


def _idf(df: int, n: int) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


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
