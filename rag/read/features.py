"""Pure: what tells whether a source sentence answers a question, as numbers.

Every feature is general: meaning (embedding cosine), the question's rare words the sentence shares, whether it
holds the kind of answer the question asks for (an entity the trained pipeline labels a date, a sum of money, a
person...), whether it names what the question names, and where it was found. How much each one counts is not
set here: the weights are fitted on the dev halves of every gold set by evals/fit_reader.py."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.chunk import ends_as_sentence, sentence_spans
from rag.cite import content_stems, content_words, stem
from rag.language import Entity
from rag.types import Passage

# The wh-phrase of a question -> the entity labels (spaCy's OntoNotes scheme) that an answer to it carries. A
# question of another form ("What is X?", "Why ...") asks for no particular kind of entity.
_ANSWER_LABELS: tuple[tuple[re.Pattern[str], frozenset[str]], ...] = tuple(
    (re.compile(pattern), frozenset(labels.split())) for pattern, labels in (
        (r"\bhow (many|much)\b", "CARDINAL QUANTITY MONEY PERCENT"),
        (r"\bhow (long|old|far|tall|high|big|large|wide|deep|heavy|often|soon|fast)\b",
         "QUANTITY DATE TIME CARDINAL PERCENT"),
        (r"\b(what|which) (percentage|percent|share|proportion|rate)\b", "PERCENT CARDINAL"),
        (r"\b(when|since when|(what|which) (year|date|day|month|time|decade|century))\b", "DATE TIME"),
        (r"\b(who|whom|whose)\b", "PERSON ORG NORP GPE"),
        (r"\bwhere\b", "GPE LOC FAC ORG"),
    ))

FEATURES = ("dense", "dense_gap", "dense_before", "lexical", "lexical_gap", "lexical_context", "lexical_passage",
            "rarest_held", "answer_type", "typed_question", "new_entity", "names", "names_passage", "novelty", "rank",
            "statement", "length")


@dataclass(frozen=True)
class Question:
    text: str
    terms: tuple[str, ...]  # content words, lower case
    labels: frozenset[str]  # entity labels an answer may carry (empty: any)
    names: tuple[str, ...]  # what the question names (entities, proper nouns), lower case


def answer_labels(question: str) -> frozenset[str]:
    low = question.lower()
    for pattern, labels in _ANSWER_LABELS:
        if pattern.search(low):
            return labels
    return frozenset()


def question_names(entities: Sequence[Entity], proper_nouns: Sequence[str]) -> tuple[str, ...]:
    """The question's names: its entities that are no bare number, and its proper nouns outside them."""
    names = [e.text.lower() for e in entities if e.label not in ("CARDINAL", "ORDINAL")]
    inside = " ".join(names)
    names += [w.lower() for w in proper_nouns if w.lower() not in inside]
    return tuple(dict.fromkeys(n.removeprefix("the ") for n in names))


@dataclass(frozen=True)
class Sentence:
    passage: int  # 1-based
    start: int  # offsets into the passage's text
    end: int
    text: str
    before: str  # the sentence before it in its passage ("It stands 46 metres tall" leans on it)


def sentences(passages: Sequence[Passage]) -> list[Sentence]:
    """Every sentence of the passages once (neighbouring chunks overlap), with its position."""
    seen: set[tuple[str, int]] = set()
    out = []
    for n, p in enumerate(passages, start=1):
        before = ""
        for s, e in sentence_spans(p.text):
            text = p.text[s:e]
            if (p.doc, p.start + s) not in seen and len(content_words(text)) >= 2:
                seen.add((p.doc, p.start + s))
                out.append(Sentence(n, s, e, text, before))
            before = text
    return out


def overlap(terms: Sequence[str], text: str, idf: Callable[[str], float]) -> float:
    """Share of the question's word weight (rare words weigh more) that the text holds, by stem."""
    total = sum(idf(t) for t in terms)
    if not total:
        return 0.0
    have = content_stems(text)
    return sum(idf(t) for t in terms if stem(t) in have) / total


def _share_named(names: Sequence[str], text: str) -> float:
    if not names:
        return 1.0
    low = text.lower()
    return sum(n in low for n in names) / len(names)


def featurize(q: Question, found: Sequence[Sentence], cosines: np.ndarray, passages: Sequence[Passage],
              idf: Callable[[str], float], sentence_entities: Sequence[Sequence[Entity]]) -> np.ndarray:
    """One row of FEATURES per sentence."""
    q_low = q.text.lower()
    q_stems = {stem(t) for t in q.terms}
    lexical = np.array([overlap(q.terms, s.text, idf) for s in found])
    # The question's rarest word names what sets it apart: a near miss ("the fine for the 2013 notice") often
    # matches everything else.
    rarest = max(q.terms, key=idf) if q.terms else ""
    # The sentence before may restate the question while this one answers it ("We acknowledge that some users
    # require non-free works." - "We have created "contrib" and "non-free" areas for these works.")
    cosine_of = {s.text: float(c) for s, c in zip(found, cosines, strict=True)}
    rows = []
    for i, s in enumerate(found):
        # An entity the question already states adds nothing: "in March 2024" does not answer "when in 2024".
        new = [e for e in sentence_entities[i] if e.text.lower() not in q_low]
        typed = 1.0 if q.labels else 0.0
        matches = any(e.label in q.labels for e in new)
        words = content_words(s.text)
        novelty = sum(stem(w) not in q_stems for w in words) / max(len(words), 1)
        rows.append([
            cosines[i], cosines[i] - cosines.max(), cosine_of.get(s.before, 0.0),
            lexical[i], lexical[i] - lexical.max(), overlap(q.terms, f"{s.before} {s.text}", idf),
            overlap(q.terms, passages[s.passage - 1].text, idf),
            1.0 if not rarest or stem(rarest) in content_stems(f"{s.before} {s.text}") else 0.0,
            (1.0 if matches else -1.0) * typed, typed, 1.0 if new else 0.0,
            _share_named(q.names, f"{s.before} {s.text}"), _share_named(q.names, passages[s.passage - 1].text),
            novelty, 1.0 / s.passage, float(ends_as_sentence(s.text)), min(math.log1p(len(words)) / 4, 1.0),
        ])
    return np.array(rows, dtype=np.float64).reshape(len(found), len(FEATURES))


def entities_in(sentence: Sentence, passage_entities: Sequence[Entity]) -> list[Entity]:
    return [e for e in passage_entities if sentence.start <= e.start and e.end <= sentence.end]
