"""Composing the extractive briefing from the on-topic sentences: an overview (the most central self-standing
sentence of each event), one section per event whose points are grouped by meaning (average-link clustering of
their embeddings), headings from the points' own words, and disagreements side by side."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from rag.brief.disagree import find_disagreements
from rag.brief.gather import BARS, Candidate, Material, dangling_penalty
from rag.brief.headings import heading
from rag.brief.model import Draft, Event
from rag.cite import attach_marker, overlap
from rag.types import Passage

# Two groups of points merge while the mean likeness (embedding cosine) of their sentences is at least this:
# fitted by evals/fit_brief.py (evidence sentences of one gold question belong together).
GROUP_LIKENESS = BARS["group_likeness"]


def cluster(vectors: Sequence[np.ndarray], min_likeness: float = GROUP_LIKENESS) -> list[list[int]]:
    """Average-link agglomerative clustering: indices grouped, groups in order of their first member."""
    groups = [[i] for i in range(len(vectors))]
    if len(groups) < 2:
        return groups
    sims = np.stack(vectors) @ np.stack(vectors).T
    while len(groups) > 1:
        best, pair = -1.0, (0, 0)
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                likeness = float(sims[np.ix_(groups[i], groups[j])].mean())
                if likeness > best:
                    best, pair = likeness, (i, j)
        if best < min_likeness:
            break
        i, j = pair
        groups[i] = sorted(groups[i] + groups.pop(j))
    return sorted(groups, key=lambda g: g[0])


def absorb_singletons(groups: list[list[int]], vectors: Sequence[np.ndarray]) -> list[list[int]]:
    """A point alike to no other joins the group it is likest to; when no points are alike, they are one group
    (a label for each point would only repeat it)."""
    big = [g for g in groups if len(g) > 1]
    if not big:
        return [sorted(i for g in groups for i in g)] if groups else groups
    for g in groups:
        if len(g) == 1:
            likeness = [float(np.mean([vectors[g[0]] @ vectors[i] for i in b])) for b in big]
            big[int(np.argmax(likeness))].append(g[0])
    return sorted((sorted(b) for b in big), key=lambda b: b[0])


def _redundant(c: Candidate, chosen: Iterable[Candidate], threshold: float = 0.8) -> bool:
    return any(c.key == o.key or float(c.vector @ o.vector) >= threshold
               or (overlap(c.text, o.text) > 0.75 and overlap(o.text, c.text) > 0.75) for o in chosen)


def pick(ranked: Sequence[Candidate], chosen: list[Candidate], most: int) -> list[Candidate]:
    """Up to `most` of the ranked sentences that repeat nothing chosen: first the best sentence of each document
    (every document is heard once), then the best of the rest whatever their document. In rank order."""
    picked: list[Candidate] = []
    for first_round in (True, False):
        for c in ranked:
            if len(picked) >= most:
                break
            if c in picked or _redundant(c, chosen + picked):
                continue
            if first_round and any(p.doc == c.doc for p in picked):
                continue
            picked.append(c)
    order = {id(c): i for i, c in enumerate(ranked)}
    return sorted(picked, key=lambda c: order[id(c)])


def _overview_score(c: Candidate) -> float:
    """An overview sentence says what happened, best with when and where."""
    a = c.annotation
    return c.score + 0.05 * any(any(ch.isdigit() for ch in d) for d in a.dates) + 0.05 * bool(a.places)


def _doc_day(material: Material, doc: str) -> str:
    return material.dates.get(doc) or "9999"


def _claim(c: Candidate) -> tuple[str, list[Passage], str]:
    return attach_marker(c.text, "[1]"), [c.passage], c.doc


def extractive_draft(material: Material, embedder: Any = None, per_event: int = 8) -> Draft:
    """The draft of an extractive briefing (`embedder` is unused: the material's sentences carry their vectors)."""
    pool, draft = material.pool, Draft()
    if not pool:
        return draft
    n_events = max(1, len(material.events))

    def event(c: Candidate) -> int:
        return material.event_of.get(c.doc, 0)

    chosen: list[Candidate] = []
    for ei in range(n_events):
        standing = [c for c in pool if event(c) == ei and not c.annotation.leans_back]
        ranked = sorted(standing, key=lambda c: (-_overview_score(c), c.doc, c.start))
        for c in pick(ranked, chosen, 1 if n_events > 1 else 2):
            chosen.append(c)
            draft.overview.append(_claim(c))
    disputes = find_disagreements(sorted(pool, key=lambda c: (-c.score, c.doc, c.start)),
                                  lambda d: material.event_of.get(d, 0), context=material.context)
    disputed = {c.key for _, _, claims in disputes for c in claims}
    event_heading: dict[int, str] = {}
    for ei in range(n_events):
        ranked = sorted((c for c in pool if event(c) == ei and c.key not in disputed),
                        key=lambda c: (-(c.score - dangling_penalty(c)), c.doc, c.start))
        points = pick(ranked, chosen, per_event)
        chosen.extend(points)
        if points:
            event_heading[ei] = _section(draft, material, points)
    others = [[c.annotation for c in pool if event(c) == ei] for ei in range(n_events)]
    for label, ei, claims in disputes:
        title = event_heading.get(ei) or heading([c.annotation for c in claims], others[:ei] + others[ei + 1:],
                                                 material.topic, fallback="Key points")
        claims = sorted(claims, key=lambda c: (_doc_day(material, c.doc), c.doc, c.start))
        draft.disagreements.append((label, title, [_claim(c) for c in claims]))
    for ei, title in event_heading.items():
        if ei < len(material.events):
            e = material.events[ei]
            material.events[ei] = Event(title, e.date, e.docs)
    return draft


def _section(draft: Draft, material: Material, points: list[Candidate]) -> str:
    """Add one event's section: its points grouped by meaning, each group labelled by its own words (when there
    is more than one), the section headed by the words of all its points. Returns the heading."""
    groups = [[points[i] for i in g] for g in absorb_singletons(cluster([c.vector for c in points]),
                                                                [c.vector for c in points])]
    groups.sort(key=lambda g: -max(c.score for c in g))
    ordered: list[tuple[Candidate, str]] = []
    for g in groups:
        rest = [c.annotation for o in groups if o is not g for c in o]
        label = heading([c.annotation for c in g], [rest], material.topic, when_where=False) if len(groups) > 1 else ""
        g.sort(key=lambda c: (_doc_day(material, c.doc), c.doc, c.start))
        ordered.extend((c, label) for c in g)
    others = [[c.annotation for c in material.pool if material.event_of.get(c.doc, 0) != material.event_of.get(
        points[0].doc, 0)]]
    title = heading([c.annotation for c, _ in ordered], others, material.topic, fallback="Key points")
    draft.sections.append((title, [(*_claim(c), label) for c, label in ordered]))
    return title
