"""BM25 index (bm25s) over the store's chunks, saved under RAG_HOME and rebuilt whenever ingest changes the store."""

from __future__ import annotations

import json
import math
import re
import shutil
from collections import Counter
from pathlib import Path

import bm25s
import numpy as np

from rag.cite import stem

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
    def __init__(self, model: bm25s.BM25, ids: list[str], df: dict[str, int]) -> None:
        self.model = model
        self.ids = ids
        self.df = df  # chunks that contain each token: word rarity for the answer stage
        self.position = {chunk_id: i for i, chunk_id in enumerate(ids)}
        self._stems: frozenset[str] | None = None  # made on first `knows`

    @classmethod
    def build(cls, ids: list[str], texts: list[str]) -> LexicalIndex:
        model = bm25s.BM25()
        # Every chunk gets at least one token so positions line up with ids even for chunks of stopwords only.
        written = [words(t) for t in texts]
        tokens = [[stem(w) for w in ws] or ["\u2205"] for ws in written]
        model.index(tokens or [["\u2205"]], show_progress=False)  # bm25s indexes nothing only as one empty chunk
        # Rarity of each word as written: the answer stage weighs the question's own words.
        df = Counter(word for ws in written for word in set(ws))
        return cls(model, ids, dict(df))

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
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save(str(tmp), show_progress=False)
        (tmp / "ids.json").write_text(json.dumps(self.ids))
        (tmp / "df.json").write_text(json.dumps(self.df))
        (tmp / "tokenizer.txt").write_text(TOKENIZER)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)  # swap in whole: a reader never sees half an index

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex | None:
        marker = folder / "tokenizer.txt"
        complete = all((folder / f).exists() for f in ("ids.json", "df.json", "tokenizer.txt"))
        if not complete or marker.read_text() != TOKENIZER:
            return None
        model = bm25s.BM25.load(str(folder), show_progress=False, mmap=False)
        return cls(model, json.loads((folder / "ids.json").read_text()), json.loads((folder / "df.json").read_text()))

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
