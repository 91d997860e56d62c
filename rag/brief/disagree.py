"""Pure: where sources disagree, found by one general test over pairs of sentences from different documents of the
same event that speak of the same thing (alike in meaning above a fitted bar, sharing a noun or a name):

- figures: both state a figure of the same unit or counted noun, and the figures differ ("30 fighters" / "50");
- negation: one says is not so what the other says: the same word negated of the same thing ("the attack was not
  repelled" / "the attack was repelled"), or a party named as the doer of a negated clause in one and of a clause
  in the other, which negates nothing ("not orchestrated by Ukraine" / "Ukrainian-backed militias launched
  attacks"); the same doer in the same event is the same matter, whatever their likeness;
- attribution: the claims are put in the mouths of different sources ("the Kremlin said" / "Kyiv said"), one
  of them saying that something is not so.

At least one sentence of a pair is on the topic; the other may be any claim sentence of a document on the topic
(a sentence that disputes an on-topic claim is on the topic through it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from itertools import combinations
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from rag.cite import stem
from rag.sentences import Annotation

# Likeness (embedding cosine) above which two sentences that share a noun or a name speak of the same thing (for
# figures, a negated word and opposite sources):
# fitted by evals/fit_brief.py (evidence sentences of one gold question in two documents speak of the same thing).
SAME_THING = float(json.loads(Path(__file__).with_name("bars.json").read_text(encoding="utf-8"))["same_thing"])


class Claim(Protocol):
    doc: str
    text: str
    vector: np.ndarray
    annotation: Annotation
    score: float


C = TypeVar("C", bound=Claim)


def _name_stems(names: Sequence[str]) -> set[str]:
    return {stem(w) for n in names for w in n.split() if len(w) > 3 and w[:1].isupper()}


def same_name(a: set[str], b: set[str]) -> bool:
    """Two sets of name stems share a name, a people's name meeting its country's ("Ukrainian" / "Ukraine"):
    one stem begins the other."""
    return any(x == y or (min(len(x), len(y)) >= 5 and (x.startswith(y) or y.startswith(x))) for x in a for y in b)


def share_something(a: Annotation, b: Annotation) -> bool:
    """The two sentences share a noun or a name."""
    return bool(a.nouns & b.nouns) or same_name(_name_stems(a.names), _name_stems(b.names))


def differ(a: Annotation, b: Annotation, similarity: float, same_thing: float | None = None
           ) -> tuple[str, str] | None:
    """(kind, what differs) when the two sentences disagree, else None."""
    bar = SAME_THING if same_thing is None else same_thing
    if not share_something(a, b):
        return None
    if _denies_party(a, b):
        return ("negation", a.denied[0])
    if _denies_party(b, a):
        return ("negation", b.denied[0])
    if similarity < bar:
        return None
    units = {u for u, _ in a.figures} & {u for u, _ in b.figures}
    for unit in sorted(units):
        fa = sorted({f for u, f in a.figures if u == unit})
        fb = sorted({f for u, f in b.figures if u == unit})
        if fa != fb:
            return ("figures", f"{unit}: {', '.join(fa)} vs {', '.join(fb)}")
    if _denies(a, b) or _denies(b, a):
        return ("negation", _shared_phrase(a, b))
    negative, positive = (a, b) if a.negative else (b, a)
    if (a.speakers and b.speakers and not set(a.speakers) & set(b.speakers) and a.negative != b.negative
            and negative.negated_about & positive.nouns):  # one source says is not so what the other says is
        return ("attribution", _shared_phrase(a, b))
    return None


def _denies(a: Annotation, b: Annotation) -> bool:
    """`a` says is not so what `b` says: a word `a` negates is one `b` asserts of a thing `a` names as its doer or
    object ("the attack was not repelled" / "the attack was repelled")."""
    return bool(a.negated_about & b.nouns) and any(w in b.asserted for w in a.negated)


def _denies_party(a: Annotation, b: Annotation) -> bool:
    """`a` says a party did not do what `b`, negating nothing, says that party did: the party is the doer of a
    negated clause of `a` and of a clause of `b` ("these operations were not orchestrated by Ukraine" /
    "Ukrainian 'terrorist formations' attempted to invade"). Both naming the same doer of the same event makes
    it the same matter, however unlike the rest of the sentences is."""
    denied = _name_stems(a.denied)
    return bool(denied) and not b.negative and same_name(denied, _name_stems(b.doers))


def _shared_phrase(a: Annotation, b: Annotation, about: Sequence[str] = ()) -> str:
    """The noun phrase both sentences use (as the first spells it), else the party at issue, else a noun both hold."""
    theirs = {lemma for _, lemma in b.phrases}
    common = [text for text, lemma in a.phrases if lemma in theirs]
    if common:
        return min(common, key=lambda t: (len(t.split()) > 4, -len(t), t))
    if about:
        return about[0]
    nouns = a.nouns & b.nouns
    return min(nouns) if nouns else (a.names + b.names + ("the same matter",))[0]


def find_disagreements(claims: Sequence[C], event_of: Callable[[str], int], per_event: int = 3,
                       context: Sequence[C] = ()) -> list[tuple[str, int, list[C]]]:
    """(what differs, event index, the two claims) for the likeliest disagreeing pairs, at most `per_event` per
    event, each document pair and each sentence once. A pair holds at least one of `claims` (on the topic); the
    other may come from `context` (other sentences of the same documents)."""
    pairs = []
    on_topic = list(claims)
    candidates = [(a, b) for a, b in combinations(on_topic, 2)]
    candidates += [(a, b) for a in on_topic for b in context]
    for a, b in candidates:
        if a.doc == b.doc or event_of(a.doc) != event_of(b.doc):
            continue
        similarity = float(a.vector @ b.vector)
        found = differ(a.annotation, b.annotation, similarity)
        if found:
            pairs.append((similarity + a.score + b.score, found[1], a, b))
    out: list[tuple[str, int, list[C]]] = []
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
