"""Pure: where sources disagree, found by one general test over pairs of on-topic sentences from different
documents of the same event that speak of the same thing (alike in meaning, sharing a noun):

- figures: both state a figure of the same unit or counted noun, and the figures differ ("30 fighters" / "50");
- negation: one says it, the other says it is not so ("was not orchestrated by Ukraine" / "Ukrainian-backed");
- attribution: the claims are put in the mouths of different sources ("the Kremlin said" / "Kyiv said"), one
  of them saying that something is not so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Protocol

import numpy as np

from rag.sentences import Annotation

# Likeness (embedding cosine) above which two sentences speak of the same thing, for each kind of disagreement:
# a figure of the same unit needs the least, an attribution the most (different speakers often say different
# things about different matters).
SAME_THING = {"figures": 0.45, "negation": 0.45, "attribution": 0.55}


class Claim(Protocol):
    doc: str
    text: str
    vector: np.ndarray
    annotation: Annotation
    score: float


def differ(a: Annotation, b: Annotation, similarity: float) -> tuple[str, str] | None:
    """(kind, what differs) when the two sentences disagree, else None."""
    shared = (a.nouns & b.nouns)
    if not shared:
        return None
    if similarity >= SAME_THING["figures"]:
        units = {u for u, _ in a.figures} & {u for u, _ in b.figures}
        for unit in sorted(units):
            fa = sorted({f for u, f in a.figures if u == unit})
            fb = sorted({f for u, f in b.figures if u == unit})
            if fa != fb:
                return ("figures", f"{unit}: {', '.join(fa)} vs {', '.join(fb)}")
    label = _shared_phrase(a, b)
    if similarity >= SAME_THING["negation"] and (_denies(a, b) or _denies(b, a)):
        return ("negation", label)
    if (a.speakers and b.speakers and not set(a.speakers) & set(b.speakers)
            and similarity >= SAME_THING["attribution"] and bool(a.negated) != bool(b.negated)):
        return ("attribution", label)
    return None


def _denies(a: Annotation, b: Annotation) -> bool:
    """`a` says is not so what `b` says: a word `a` negates is one `b` asserts."""
    return any(w in b.lemmas and w not in b.negated for w in a.negated)


def _shared_phrase(a: Annotation, b: Annotation) -> str:
    """The noun phrase both sentences use (as the first spells it), else a noun both hold."""
    theirs = {lemma for _, lemma in b.phrases}
    common = [text for text, lemma in a.phrases if lemma in theirs]
    if common:
        return min(common, key=lambda t: (len(t.split()) > 4, -len(t), t))
    return min(a.nouns & b.nouns)


def find_disagreements(claims: Sequence[Claim], event_of: Callable[[str], int], per_event: int = 3
                       ) -> list[tuple[str, int, list[Claim]]]:
    """(what differs, event index, the two claims) for the likeliest disagreeing pairs, at most `per_event` per
    event, each document pair and each sentence once."""
    pairs = []
    for a, b in combinations(claims, 2):
        if a.doc == b.doc or event_of(a.doc) != event_of(b.doc):
            continue
        similarity = float(a.vector @ b.vector)
        found = differ(a.annotation, b.annotation, similarity)
        if found:
            pairs.append((similarity + a.score + b.score, found[1], a, b))
    out: list[tuple[str, int, list[Claim]]] = []
    used: set[int] = set()
    per: dict[int, int] = {}
    for _, label, a, b in sorted(pairs, key=lambda t: -t[0]):
        ei = event_of(a.doc)
        if id(a) in used or id(b) in used or per.get(ei, 0) >= per_event:
            continue
        used.update((id(a), id(b)))
        per[ei] = per.get(ei, 0) + 1
        out.append((label, ei, [a, b]))
    return out
