"""Pure: headings made of the cited sentences' own words. A heading is the noun phrase most characteristic of its
sentences (its head recurs in them more than in the rest of the briefing), with the date and the place they state
most often. No word of a heading is missing from its sentences (`words_missing` checks it)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from rag.cite import stem
from rag.ingest import MONTHS, YEAR
from rag.sentences import Annotation

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_MARKUP = re.compile(r"[`*_#|~<>\[\]{}]")  # Markdown and code marks: not words of a heading


def words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def words_missing(heading: str, sentences: Sequence[str]) -> set[str]:
    """The heading's words that none of the sentences holds (empty for a heading made by `heading`)."""
    have = set().union(*(words(s) for s in sentences)) if sentences else set()
    return words(heading) - have


def _phrase(group: Sequence[Annotation], others: Sequence[Sequence[Annotation]], topic: str) -> str:
    """The noun phrase whose head lemma is most characteristic of the group: how many of its sentences hold it,
    times how rare it is among the other groups; a word of the topic counts half (it sets no group apart)."""
    in_group: Counter[str] = Counter()
    for a in group:
        in_group.update({lemma for _, lemma in a.phrases})
    if not in_group:
        return ""
    elsewhere = Counter(lemma for g in others for lemma in {lm for a in g for _, lm in a.phrases})
    topic_stems = {stem(w) for w in words(topic)}

    def weight(lemma: str) -> float:
        rarity = math.log((2 + len(others)) / (1 + elsewhere[lemma]))
        shared = in_group[lemma] - (0.5 if len(group) > 1 else 0.0)  # a head only one sentence has counts less
        return shared * rarity * (0.5 if stem(lemma) in topic_stems else 1.0) + 1e-3 * len(lemma)

    head = max(sorted(in_group), key=weight)
    forms = Counter(text for a in group for text, lemma in a.phrases if lemma == head)
    # a form of two to four words says more than the bare noun ("compressed file", not "File"); then the form
    # most sentences use, then the shortest
    form = min(forms, key=lambda t: (not 2 <= len(t.split()) <= 4, -forms[t], len(t), t))
    return " ".join(_MARKUP.sub("", form).split())




def names_a_time(date: str) -> bool:
    """A date worth a heading names a point in the calendar: a month or a year ("March 12", "April 2006"), not a
    weekday, a bare day ("14") or a span ("43 years")."""
    return bool(YEAR.search(date)) or bool(words(date) & MONTHS.keys())


def _stems(text: str) -> set[str]:
    return {stem(w) for w in words(text)}


def _qualifier(values: Sequence[str], taken: set[str], elsewhere: set[str]) -> str:
    """The value the group states most often, when it adds something: none of its words is already said (by the
    phrase, the topic or the other qualifier) and the other groups do not state it too."""
    counts = Counter(v for v in values if v.lower() not in elsewhere and not _stems(v) & taken)
    return min(counts, key=lambda v: (-counts[v], len(v), v)) if counts else ""


def heading(group: Sequence[Annotation], others: Sequence[Sequence[Annotation]] = (), topic: str = "",
            when_where: bool = True, fallback: str = "") -> str:
    """"Two anti-Kremlin Russian groups (March 12, Belgorod)": the group's characteristic noun phrase, then the
    calendar date and the place its sentences state most, each only when it adds something (not a word of the
    phrase or the topic, not stated by the other groups as well). `fallback` when the sentences hold no noun
    phrase."""
    phrase = _phrase(group, others, topic)
    extra: list[str] = []
    if when_where:
        taken = _stems(phrase) | _stems(topic)
        other_dates = {d.lower() for g in others for a in g for d in a.dates}
        other_places = {p.lower() for g in others for a in g for p in a.places}
        when = _qualifier([d for a in group for d in a.dates if names_a_time(d)], taken, other_dates)
        where = _qualifier([p for a in group for p in a.places], taken | _stems(when), other_places)
        extra = [x for x in (when, where) if x]
    if not phrase:
        phrase, extra = (extra[0], extra[1:]) if extra else (fallback, [])
    text = phrase[:1].upper() + phrase[1:]
    return f"{text} ({', '.join(extra)})" if extra else text
