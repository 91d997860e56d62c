"""The extractive reader: offline and deterministic. It never writes a word of its own: it picks the source
sentences that answer the question, or abstains.

1. Every sentence of the passages gets the features of rag.read.features (meaning, shared rare words, the kind of
   answer asked for, the question's names, ...).
2. A linear ranker, fitted listwise (softmax over one question's sentences) on the dev halves of every gold set,
   orders them.
3. An answerability model, fitted on the same items, reads the best sentence's features and how far it stands
   out, and gives the probability that the best sentence answers; below the fitted bar the reader abstains.

The weights live in weights.json beside this file, written by evals/fit_reader.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from rag.chunk import as_prose
from rag.cite import content_words
from rag.embed import Embedder, embed_cached
from rag.language import entities, load_in_background, proper_nouns_and_entities
from rag.read import Reading
from rag.read.features import FEATURES, Question, Sentence, answer_labels, entities_in, featurize, question_names
from rag.read.features import sentences as passage_sentences
from rag.types import Passage, Pick, Statement

WEIGHTS_FILE = Path(__file__).with_name("weights.json")
ANSWER_FEATURES = ("top_share", "top_margin", "coverage", "names_anywhere", "dense", "lexical", "lexical_context",
                   "lexical_passage", "rarest_held", "names", "names_passage", "answer_type", "typed_question",
                   "new_entity", "novelty")


@dataclass(frozen=True)
class Weights:
    mean: np.ndarray  # per feature, for standardising
    scale: np.ndarray
    ranker: np.ndarray  # one weight per feature
    answer_coef: np.ndarray  # one weight per ANSWER_FEATURES
    answer_bias: float
    min_confidence: float  # below this answerability the reader abstains
    second_share: float  # a second sentence is shown when its share of the ranking is at least this of the first's

    @classmethod
    def load(cls, path: Path = WEIGHTS_FILE) -> Weights:
        data = json.loads(path.read_text(encoding="utf-8"))
        if tuple(data["features"]) != FEATURES or tuple(data["answer_features"]) != ANSWER_FEATURES:
            raise ValueError(f"{path}: fitted for other features; run evals/fit_reader.py again")
        return cls(np.array(data["mean"]), np.array(data["scale"]), np.array(data["ranker"]),
                   np.array(data["answer_coef"]), float(data["answer_bias"]), float(data["min_confidence"]),
                   float(data["second_share"]))

    def to_json(self, **about: Any) -> dict[str, Any]:
        return {"features": list(FEATURES), "answer_features": list(ANSWER_FEATURES),
                "mean": self.mean.round(6).tolist(), "scale": self.scale.round(6).tolist(),
                "ranker": self.ranker.round(6).tolist(), "answer_coef": self.answer_coef.round(6).tolist(),
                "answer_bias": round(self.answer_bias, 6), "min_confidence": round(self.min_confidence, 4),
                "second_share": round(self.second_share, 4), **about}


@lru_cache(maxsize=1)
def fitted_weights() -> Weights:
    return Weights.load()


def analyse(question: str) -> Question:
    proper, found = proper_nouns_and_entities(question)
    return Question(question, tuple(content_words(question)), answer_labels(question), question_names(found, proper))


@dataclass(frozen=True)
class Candidates:
    """The sentences of the passages with their features, in the order found."""

    sentences: list[Sentence]
    features: np.ndarray  # len(sentences) x len(FEATURES)


def candidates(question: str, q_vec: np.ndarray, passages: Sequence[Passage], embedder: Embedder,
               idf: Callable[[str], float]) -> Candidates:
    found = passage_sentences(passages)
    if not found:
        return Candidates([], np.zeros((0, len(FEATURES))))
    vectors = embed_cached(embedder, [s.text for s in found])
    cosines = np.array([float(v @ q_vec) for v in vectors])
    per_passage = {n: entities(p.text) for n, p in enumerate(passages, start=1)}
    in_sentence = [entities_in(s, per_passage[s.passage]) for s in found]
    return Candidates(found, featurize(analyse(question), found, cosines, passages, idf, in_sentence))


def rank_scores(features: np.ndarray, w: Weights) -> np.ndarray:
    return ((features - w.mean) / w.scale) @ w.ranker


def shares(scores: np.ndarray) -> np.ndarray:
    """Softmax: each sentence's share of the ranking."""
    e = np.exp(scores - scores.max())
    return e / e.sum()


def answer_features(features: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """What the answerability model reads: how far the best sentence stands out, and its own features."""
    order = np.argsort(-scores)
    top = features[order[0]]
    margin = float(scores[order[0]] - scores[order[1]]) if len(order) > 1 else 5.0
    col = {name: top[i] for i, name in enumerate(FEATURES)}
    # how much of the question any passage speaks of: a near miss often matches all but the word that sets it apart
    coverage = features[:, FEATURES.index("lexical_passage")].max()
    names_anywhere = features[:, FEATURES.index("names_passage")].max()
    return np.array([shares(scores)[order[0]], min(margin, 5.0), coverage, names_anywhere,
                     *(col[name] for name in ANSWER_FEATURES[4:])])


def answerability(features: np.ndarray, scores: np.ndarray, w: Weights) -> float:
    z = float(answer_features(features, scores) @ w.answer_coef + w.answer_bias)
    return 1.0 / (1.0 + np.exp(-z))


def choose(found: Candidates, w: Weights, max_sentences: int, min_confidence: float | None = None
           ) -> tuple[list[Sentence], float]:
    """The sentences to show (best first; none: abstain) and the answerability of the best one."""
    if not found.sentences:
        return [], 0.0
    scores = rank_scores(found.features, w)
    confidence = answerability(found.features, scores, w)
    if confidence < (w.min_confidence if min_confidence is None else min_confidence):
        return [], confidence
    order = np.argsort(-scores)
    share = shares(scores)
    chosen = [found.sentences[order[0]]]
    for i in order[1:max_sentences]:
        if share[i] >= w.second_share * share[order[0]] and found.sentences[i].text != chosen[0].text:
            chosen.append(found.sentences[i])
    return chosen, confidence


class ExtractiveReader:
    name = "extractive"

    def __init__(self, embedder: Embedder, idf: Callable[[str], float], max_sentences: int = 2,
                 min_confidence: float | None = None, weights: Weights | None = None) -> None:
        self.embedder = embedder
        self.idf = idf
        self.max_sentences = max_sentences
        self.min_confidence = min_confidence
        self.weights = weights
        load_in_background()  # the language model loads while the first question is embedded and searched

    def read(self, question: str, q_vec: np.ndarray, passages: Sequence[Passage],
             on_token: Callable[[str], None] | None = None) -> Reading:
        found = candidates(question, q_vec, passages, self.embedder, self.idf)
        chosen, confidence = choose(found, self.weights or fitted_weights(), self.max_sentences,
                                    self.min_confidence)
        # shown as prose (a hard-wrapped line or a list item's bullet is layout); cited as the exact source span
        statements = tuple(Statement(as_prose(s.text), (Pick(s.passage, s.start, s.end),)) for s in chosen)
        return Reading(statements, mode=self.name, confidence=round(confidence, 4))
