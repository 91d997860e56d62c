"""BM25 index over the store's committed chunks, saved under RAG_HOME and updated in place when the store changes.

The index is a list of segments, as in Lucene: a segment's chunks are indexed once and its files never change. An
update masks the rows of the chunks it drops and adds one small segment of the chunks it adds, so a one-file change
reads, tokenizes and writes that file's chunks alone. Term counts are stored, not scores: word rarity (idf) and
length normalisation are taken at query time over the live rows of every segment, so scores are those of one index
of the chunks as they now are. Small segments are merged once there are many, and all of them once dropped or new
rows are a large share."""

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
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.cite import stem
from rag.imports import import_without

# Only bm25s's stopword list is used here; its package imports scipy.sparse for index builders this module does
# not use (its own term counts are plain numpy), which a cold `rag ask` would pay for.
if TYPE_CHECKING:
    import bm25s
else:
    bm25s = import_without("bm25s", hidden=("scipy.sparse",))

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_STOPWORDS = frozenset(bm25s.stopwords.STOPWORDS_EN)
K1, B = 1.5, 0.75  # BM25 (Lucene variant), as bm25s and Lucene default to
MAX_SEGMENTS = 8  # beyond this the small segments are merged into one
MERGE_SHARE = 0.1  # dropped or added rows beyond this share of the first segment's: all segments merge

# Saved with the index: an index built by another tokenizer or layout is rebuilt rather than searched.
TOKENIZER = "snowball-english-2+segments-1"  # 2: irregular verbs (rag.cite.stem); segments-1: term counts


def words(text: str) -> list[str]:
    return [w for w in _TOKEN.findall(text.lower()) if w not in _STOPWORDS]


def tokenize(text: str) -> list[str]:
    """Stemmed words: "repelling" finds "repelled", "fighters" finds "fighter"."""
    return [stem(w) for w in words(text)]


class Terms:
    """A chunks x terms matrix of counts in compressed columns (a term's chunks are one slice: `indices` and `data`
    from `indptr[col]` to `indptr[col + 1]`), with its vocabulary. Plain numpy: the query path loads no scipy."""

    def __init__(self, vocab: list[str], indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                 n_rows: int) -> None:
        self.vocab = vocab
        self.column = {term: i for i, term in enumerate(vocab)}
        self.indptr, self.indices, self.data, self.n_rows = indptr, indices, data, n_rows

    @classmethod
    def from_triples(cls, vocab: list[str], rows: np.ndarray, cols: np.ndarray, data: np.ndarray,
                     n_rows: int) -> Terms:
        order = np.lexsort((rows, cols))
        indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(cols, minlength=len(vocab)), out=indptr[1:])
        return cls(vocab, indptr, rows[order].astype(np.int32), data[order].astype(np.float32), n_rows)

    @classmethod
    def of(cls, counts: Sequence[Counter[str]]) -> Terms:
        column: dict[str, int] = {}
        rows, cols, data = [], [], []
        for row, counter in enumerate(counts):
            for term, n in counter.items():
                rows.append(row)
                cols.append(column.setdefault(term, len(column)))
                data.append(n)
        return cls.from_triples(list(column), np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64),
                                np.asarray(data, dtype=np.float32), len(counts))

    @classmethod
    def stacked(cls, parts: Sequence[tuple[Terms, np.ndarray]]) -> Terms:
        """The given rows of each part, one part under the other, over the union of their vocabularies."""
        column: dict[str, int] = {}
        rows, cols, data, offset = [], [], [], 0
        for terms, keep in parts:
            remap = np.asarray([column.setdefault(t, len(column)) for t in terms.vocab], dtype=np.int64)
            new_row = np.full(terms.n_rows, -1, dtype=np.int64)
            new_row[keep] = np.arange(len(keep)) + offset
            part_rows = new_row[terms.indices]
            kept = part_rows >= 0
            part_cols = np.repeat(remap, np.diff(terms.indptr)) if len(remap) else np.zeros(0, dtype=np.int64)
            rows.append(part_rows[kept])
            cols.append(part_cols[kept])
            data.append(terms.data[kept])
            offset += len(keep)
        return cls.from_triples(list(column), np.concatenate(rows), np.concatenate(cols), np.concatenate(data),
                                offset)

    def row_sums(self) -> np.ndarray:
        return np.bincount(self.indices, weights=self.data, minlength=self.n_rows)

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, counts) of the chunks that hold the term; none when the term is not in the vocabulary."""
        col = self.column.get(term)
        if col is None:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        lo, hi = self.indptr[col], self.indptr[col + 1]
        return self.indices[lo:hi], self.data[lo:hi]

    def save(self, folder: Path, name: str) -> None:
        np.savez(folder / f"{name}.npz", indptr=self.indptr, indices=self.indices, data=self.data,
                 n_rows=np.asarray(self.n_rows))
        (folder / f"{name}.json").write_text(json.dumps(self.vocab))

    @classmethod
    def load(cls, folder: Path, name: str) -> Terms:
        with np.load(folder / f"{name}.npz") as arrays:
            return cls(json.loads((folder / f"{name}.json").read_text()), arrays["indptr"], arrays["indices"],
                       arrays["data"], int(arrays["n_rows"]))


class Segment:
    """Chunks indexed together; once saved, its files never change."""

    def __init__(self, ids: list[str], stems: Terms, written: Terms, name: str = "") -> None:
        self.ids = ids
        self.stems = stems  # stemmed words: what BM25 matches
        self.written = written  # words as written, once a chunk: their rarity for the answer stage
        self.name = name or f"seg-{uuid.uuid4().hex[:12]}"
        # Every chunk counts as at least one word long, so a chunk of stopwords only never divides by zero.
        self.lengths = np.maximum(stems.row_sums(), 1.0)

    @classmethod
    def of(cls, ids: Sequence[str], texts: Sequence[str]) -> Segment:
        written = [words(t) for t in texts]
        return cls(list(ids), Terms.of([Counter(stem(w) for w in ws) for ws in written]),
                   Terms.of([Counter(set(ws)) for ws in written]))

    @classmethod
    def merged(cls, parts: Sequence[tuple[Segment, np.ndarray]]) -> Segment:
        """One segment of the given rows of each."""
        ids = [seg.ids[i] for seg, keep in parts for i in keep]
        return cls(ids, Terms.stacked([(seg.stems, keep) for seg, keep in parts]),
                   Terms.stacked([(seg.written, keep) for seg, keep in parts]))

    def save(self, folder: Path) -> None:
        """Written once, under a temporary name renamed whole."""
        if (folder / self.name).is_dir():
            return
        tmp = folder / f"tmp-{self.name}-{os.getpid()}"
        tmp.mkdir(parents=True)
        self.stems.save(tmp, "stems")
        self.written.save(tmp, "written")
        (tmp / "ids.json").write_text(json.dumps(self.ids))
        os.replace(tmp, folder / self.name)

    @classmethod
    def load(cls, folder: Path, name: str) -> Segment:
        path = folder / name
        return cls(json.loads((path / "ids.json").read_text()), Terms.load(path, "stems"), Terms.load(path, "written"),
                   name)


class LexicalIndex:
    def __init__(self, segments: Sequence[Segment], dropped: dict[str, set[str]] | None = None,
                 fingerprint: str = "", generations: dict[str, int] | None = None) -> None:
        self.segments = list(segments)
        self.dropped = {s.name: set((dropped or {}).get(s.name, ())) for s in self.segments}  # masked rows' ids
        self.fingerprint = fingerprint  # the store's committed state it was built from (Store.fingerprint)
        self.generations = generations or {}  # document -> the generation its rows are of
        self.alive = [np.asarray([i not in self.dropped[s.name] for i in s.ids], dtype=bool) for s in self.segments]
        # each live chunk: its segment and row
        self.rows = {s.ids[r]: (n, int(r)) for n, (s, alive) in enumerate(zip(self.segments, self.alive, strict=True))
                     for r in np.flatnonzero(alive)}
        self.ids = list(self.rows)
        total = sum(float(s.lengths[alive].sum()) for s, alive in zip(self.segments, self.alive, strict=True))
        avgdl = total / len(self.ids) if self.ids else 1.0
        self.norms = [K1 * (1 - B + B * s.lengths / avgdl) for s in self.segments]  # BM25's length part
        self._df: dict[tuple[str, str], int] = {}
        self._stems: frozenset[str] | None = None  # made on first `knows`

    @classmethod
    def build(cls, ids: Sequence[str], texts: Sequence[str], fingerprint: str = "",
              generations: dict[str, int] | None = None) -> LexicalIndex:
        return cls([Segment.of(ids, texts)], None, fingerprint, generations)

    def updated(self, dropped: Sequence[str], ids: Sequence[str], texts: Sequence[str], fingerprint: str,
                generations: dict[str, int] | None = None) -> LexicalIndex:
        """This index without the chunks `dropped` and with the chunks `ids` (of `texts`) added: their rows are
        masked and the added ones make a new segment; only the added texts are tokenized."""
        gone = set(dropped) | set(ids)  # a chunk added again replaces its row
        masked = {s.name: self.dropped[s.name] | (gone & set(s.ids)) for s in self.segments}
        segments = self.segments + ([Segment.of(ids, texts)] if ids else [])
        return LexicalIndex(segments, masked, fingerprint, generations).compacted()

    def compacted(self) -> LexicalIndex:
        """All segments merged into one when dropped or later rows outweigh MERGE_SHARE of the first segment's;
        else the segments after the first merged once there are more than MAX_SEGMENTS."""
        if not self.segments:
            return self
        first = len(self.segments[0].ids)
        masked = sum(len(d) for d in self.dropped.values())
        later = sum(len(s.ids) for s in self.segments[1:])
        if masked + later > MERGE_SHARE * first:
            tail = self.segments
        elif len(self.segments) > MAX_SEGMENTS:
            tail = self.segments[1:]
        else:
            return self
        keep = [(s, np.flatnonzero(alive)) for s, alive in zip(self.segments, self.alive, strict=True) if s in tail]
        head = [s for s in self.segments if s not in tail]
        return LexicalIndex(head + [Segment.merged(keep)], self.dropped, self.fingerprint, self.generations)

    def _count(self, field: str, term: str) -> int:
        """Live chunks that hold the term (`field`: "stems" or "written")."""
        key = (field, term)
        if key not in self._df:
            n = 0
            for seg, alive in zip(self.segments, self.alive, strict=True):
                rows, _ = getattr(seg, field).postings(term)
                n += int(alive[rows].sum()) if self.dropped[seg.name] else len(rows)
            self._df[key] = n
        return self._df[key]

    def knows(self, word: str) -> bool:
        """Some chunk uses the word in some form ("elections" is known from "election")."""
        if self._stems is None:
            vocab = {w for seg in self.segments for w in seg.written.vocab}
            self._stems = frozenset(stem(w) for w in vocab if self._count("written", w))
        return stem(word.lower()) in self._stems

    def idf(self, token: str) -> float:
        """BM25's idf of a word as written; a word the corpus never uses is as rare as can be."""
        return _idf(self._count("written", token), len(self.ids))

    def search(self, query: str, k: int, allowed: set[str] | None = None) -> list[tuple[str, float]]:
        """Top-k (chunk id, BM25 score), scores > 0 only; `allowed` limits the hits to those ids."""
        terms = [t for t in tokenize(query) if self._count("stems", t)]
        if not terms or not self.ids or k < 1:
            return []
        weight = {t: _idf(self._count("stems", t), len(self.ids)) for t in terms}
        hits: list[tuple[float, str]] = []
        if allowed is not None:
            alives = [np.zeros(len(s.ids), dtype=bool) for s in self.segments]
            for n, row in (self.rows[i] for i in allowed if i in self.rows):
                alives[n][row] = True
        else:
            alives = self.alive
        for seg, alive, norm in zip(self.segments, alives, self.norms, strict=True):
            scores = np.zeros(len(seg.ids), dtype=np.float64)
            for term in terms:  # a word said twice counts twice, as in bm25s
                rows, tf = seg.stems.postings(term)
                scores[rows] += weight[term] * tf / (norm[rows] + tf)
            scores[~alive] = 0.0
            if not len(scores):
                continue
            top = np.argpartition(-scores, min(k, len(scores)) - 1)[:k]
            hits += [(float(scores[i]), seg.ids[int(i)]) for i in top if scores[i] > 0]
        hits.sort(key=lambda hit: -hit[0])
        return [(chunk_id, score) for score, chunk_id in hits[:k]]

    def save(self, folder: Path) -> None:
        """New segments are written whole, then a version file naming the segments and their masked rows replaces
        the pointer `current` in one step: a reader never sees half an index, concurrent saves never share a file,
        and an update writes its own segment and the version, nothing of the segments before."""
        folder.mkdir(parents=True, exist_ok=True)
        for seg in self.segments:
            seg.save(folder)
        version = f"v-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        meta = {"tokenizer": TOKENIZER, "fingerprint": self.fingerprint, "generations": self.generations,
                "segments": [s.name for s in self.segments],
                "dropped": {name: sorted(ids) for name, ids in self.dropped.items() if ids}}
        (folder / version).write_text(json.dumps(meta))
        pointer = folder / f"current.{version}"
        pointer.write_text(version)
        os.replace(pointer, folder / "current")
        _clean(folder, keep={version, *meta["segments"]})

    @staticmethod
    def _current(folder: Path) -> dict[str, Any] | None:
        try:
            meta = json.loads((folder / (folder / "current").read_text().strip()).read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) and meta.get("tokenizer") == TOKENIZER else None

    @classmethod
    def saved_fingerprint(cls, folder: Path) -> str | None:
        meta = cls._current(folder)
        return None if meta is None else str(meta.get("fingerprint", ""))

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex | None:
        """The current saved index; None when there is none, or it is of another tokenizer, or a newer one
        replaced it while it was being read."""
        meta = cls._current(folder)
        if meta is None:
            return None
        try:
            segments = [Segment.load(folder, str(name)) for name in meta.get("segments", [])]
        except (OSError, ValueError):
            return None
        dropped = {str(k): set(v) for k, v in meta.get("dropped", {}).items()}
        return cls(segments, dropped, str(meta.get("fingerprint", "")), meta.get("generations") or None)


def _idf(df: int, n: int) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def _clean(folder: Path, keep: set[str]) -> None:
    """Remove versions and segments the current version does not name, once a minute old (a reader may still be
    loading the version before, or a writer writing the segments of the next)."""
    now = time.time()
    for entry in folder.iterdir():
        if entry.name in keep or entry.name == "current":
            continue
        try:
            if now - entry.stat().st_mtime > 60:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        except OSError:
            pass  # another process removed it first
