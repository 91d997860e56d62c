"""Readers: a question and the numbered passages retrieved for it -> statements, each backed by exact spans of
those passages (`rag.types.Pick`). The chain (rag/answer.py) is retrieve -> read -> verify; every reader sits
behind the one `Reader` protocol, so the chain, the eval harness and the ways in never ask which one answered.

- `rag.read.extractive.ExtractiveReader`: offline; picks source sentences with a scorer whose weights were fitted
  on gold sets from many domains (evals/fit_reader.py), and abstains below a fitted answerability bar.
- `rag.read.markers.MarkerReader`: a chat model writes prose with [n] passage markers; each marker is narrowed to
  the sentence of its passage that supports the statement.
- `rag.read.sentences.SentenceReader`: a chat model gets every sentence numbered and answers in JSON, each claim
  with the ids of the sentences that state it; falls back to the marker reader on a server without JSON replies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rag.types import Passage, Statement

CANNOT_ANSWER = "Not in the sources: the ingested articles do not answer this question."


@dataclass(frozen=True)
class Reading:
    """What a reader made of the passages: statements with picked spans (none: it abstained)."""

    statements: tuple[Statement, ...] = ()
    dropped: tuple[str, ...] = ()  # evidence keys the reader gave that name nothing it was shown
    mode: str = ""  # how it read: "extractive", "sentences" (JSON schema), "json" (JSON object), "markers"
    unparsed: bool = False  # the model's reply was not of the shape asked for (read as no answer)
    confidence: float | None = None  # the reader's own estimate that it answered (extractive: fitted)

    @property
    def abstained(self) -> bool:
        return not any(s.evidence for s in self.statements)


class Reader(Protocol):
    name: str

    def read(self, question: str, q_vec: np.ndarray, passages: Sequence[Passage],
             on_token: Callable[[str], None] | None = None) -> Reading: ...
