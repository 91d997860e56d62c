"""Pure: which articles report the same event. Dated articles close in time form one event; an undated article
joins the event whose articles it most resembles (TF-IDF over content words), so a briefing files it under that
event even though the article itself states no date."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import date as Date

from rag.cite import content_words, stem


def parse_date(value: str | None) -> Date | None:
    if not value:
        return None
    try:
        return Date.fromisoformat(value[:10])
    except ValueError:
        return None


def tfidf_vectors(texts: dict[str, str]) -> dict[str, dict[str, float]]:
    """Unit TF-IDF vectors over stemmed content words (sublinear tf, smoothed idf over these texts)."""
    tf = {d: Counter(stem(w) for w in content_words(t)) for d, t in texts.items()}
    df = Counter(w for counts in tf.values() for w in counts)
    n = len(texts)
    out = {}
    for d, counts in tf.items():
        v = {w: (1 + math.log(c)) * math.log((n + 1) / df[w]) for w, c in counts.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        out[d] = {w: x / norm for w, x in v.items() if x > 0}
    return out


def _cos(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(x * b.get(w, 0.0) for w, x in a.items())


def group_events(docs: Sequence[str], dates: Mapping[str, str | None], texts: Mapping[str, str],
                 gap_days: int = 10, min_similarity: float = 0.02) -> list[tuple[list[str], str | None]]:
    """Documents grouped into events, oldest first, as (docs, earliest date).

    Dated documents whose dates lie within `gap_days` of each other form one event. Then, single-link on TF-IDF
    similarity (most similar pair first), undated documents join groups, never merging two dated events. An
    undated document similar to no event (below `min_similarity`) ends in an undated group at the end. When no
    document states a date, everything is one group."""
    dated = sorted((d, day) for d in docs if (day := parse_date(dates.get(d))) is not None)
    if not dated:
        return [(list(docs), None)]
    cluster: dict[str, int] = {}
    anchors: list[Date] = []
    for d, day in sorted(dated, key=lambda t: (t[1], t[0])):
        if not anchors or (day - anchors[-1]).days > gap_days:
            anchors.append(day)
        cluster[d] = len(anchors) - 1
        anchors[-1] = max(anchors[-1], day)
    first_day: dict[int, Date] = {}
    for d, day in dated:
        first_day[cluster[d]] = min(first_day.get(cluster[d], day), day)

    vectors = tfidf_vectors({d: texts.get(d, "") for d in docs})
    pairs = sorted(((_cos(vectors[a], vectors[b]), a, b) for i, a in enumerate(docs) for b in docs[i + 1:]),
                   key=lambda t: (-t[0], t[1], t[2]))
    # union-find over documents; a component carries at most one event label
    parent = {d: d for d in docs}
    label: dict[str, int | None] = {d: cluster.get(d) for d in docs}

    def find(d: str) -> str:
        while parent[d] != d:
            parent[d] = parent[parent[d]]
            d = parent[d]
        return d

    # dated documents of one event are one component from the start: each hangs under the event's first document
    first_doc: dict[int, str] = {}
    for d, c in cluster.items():
        parent[d] = first_doc.setdefault(c, d)
    for sim, a, b in pairs:
        if sim < min_similarity:
            break
        ra, rb = find(a), find(b)
        if ra == rb or (label[ra] is not None and label[rb] is not None and label[ra] != label[rb]):
            continue
        parent[rb] = ra
        label[ra] = label[ra] if label[ra] is not None else label[rb]
    groups: dict[int | None, list[str]] = defaultdict(list)
    for d in docs:
        groups[label[find(d)]].append(d)
    out: list[tuple[list[str], str | None]] = [
        (sorted(groups[c]), first_day[c].isoformat()) for c in sorted(first_day, key=lambda c: first_day[c])
        if groups.get(c)]
    if groups.get(None):
        out.append((sorted(groups[None]), None))
    return out
