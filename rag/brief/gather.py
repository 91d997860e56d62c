"""Gathering a briefing's material: retrieve for the topic (then each document the topic finds, for more of what
it says), keep the source sentences that speak to the topic, annotate them (dates, places, names, figures) and
group the documents into events by the dates they carry or state and by likeness."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.brief.headings import heading
from rag.brief.model import Event
from rag.chunk import as_prose, sentence_spans
from rag.cite import content_words, overlap
from rag.embed import embed_cached
from rag.events import group_events
from rag.ingest import YEAR, first_date, month_and_year
from rag.retrieve import document_texts
from rag.sentences import Annotation, annotate, is_statement
from rag.types import Passage

# Relevance of a sentence to the topic: W_MEANING * cosine of their embeddings + W_WORDS * share of the topic's
# content words it holds. The bars (and the grouping and same-thing bars of compose and disagree) are fitted by
# evals/fit_brief.py on the dev halves of all gold sets and stored in bars.json beside this file; the share of a
# briefing's cited sentences on its topic is checked per corpus with bench/brief_quality.py.
W_MEANING, W_WORDS = 0.7, 0.3
BARS_FILE = Path(__file__).with_name("bars.json")


def load_bars() -> dict[str, float]:
    return {k: float(v) for k, v in json.loads(BARS_FILE.read_text(encoding="utf-8")).items() if not k.startswith("_")}


BARS = load_bars()
MIN_RELEVANCE = BARS["min_relevance"]  # a sentence below this is not on the topic
MIN_DOC_RELEVANCE = BARS["min_doc_relevance"]  # a document none of whose sentences reaches this does not speak to it


@dataclass
class Candidate:
    """A source sentence with the passage it was read from (for verification), its scores and annotation."""

    doc: str
    start: int  # offsets into the document text
    end: int
    text: str
    passage: Passage
    vector: np.ndarray = field(repr=False)
    relevance: float = 0.0
    centrality: float = 0.0
    score: float = 0.0
    annotation: Annotation = field(default_factory=Annotation, repr=False)

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.doc, self.start, self.end)


@dataclass
class Material:
    topic: str
    topic_vector: np.ndarray
    passages: list[Passage]  # every passage retrieved, best first
    events: list[Event]
    event_of: dict[str, int]  # doc id -> index into events
    titles: dict[str, str]
    dates: dict[str, str | None]
    pool: list[Candidate] = field(default_factory=list)  # the on-topic sentences, annotated and scored
    # the other claim sentences of the documents that speak to the topic: one that disputes an on-topic sentence
    # (rag.brief.disagree) is on the topic through the claim it disputes
    context: list[Candidate] = field(default_factory=list)


def default_k(chain: Any) -> int:
    return max(24, 4 * int(getattr(chain.retriever.settings, "k", 6)))


def gather(chain: Any, topic: str, k: int | None = None) -> Material:
    """Retrieve for the topic, keep its on-topic sentences and group the documents into events."""
    retriever = chain.retriever
    topic_vector = np.asarray(embed_cached(retriever.embedder, [topic])[0], dtype=np.float32)
    passages = retrieve(retriever, topic, topic_vector, k or default_k(chain))
    docs = sorted({p.doc for p in passages})
    titles = {p.doc: p.title for p in passages}
    dates: dict[str, str | None] = {p.doc: p.date for p in passages}
    records = _store_documents(retriever)
    for d in docs:
        record = records.get(d) or {}
        titles[d] = titles.get(d) or str(record.get("title") or d)
        dates[d] = dates.get(d) or record.get("date")
    context: list[Candidate] = []
    pool = candidates(passages, topic, topic_vector, retriever.embedder, rest=context)
    texts = document_texts(retriever, docs, passages)
    events, event_of = find_events(pool, dates, texts)
    score(pool, event_of)
    return Material(topic, topic_vector, passages, events, event_of, titles, dates, pool, context)


def retrieve(retriever: Any, topic: str, topic_vector: np.ndarray, k: int, per_doc: int = 6,
             max_docs: int = 12) -> list[Passage]:
    """The topic's passages, then more passages of each document they come from (searched one by one): a
    briefing hears every document that speaks to the topic on more than its best passage. Best first."""
    order: dict[str, float] = {}
    found: dict[str, Passage] = {}
    first = retriever.search(topic, k=k, query_vector=topic_vector)
    for rank, p in enumerate(first, start=1):
        order[p.chunk_id], found[p.chunk_id] = 3.0 / (10 + rank), p
    for doc in list(dict.fromkeys(p.doc for p in first))[:max_docs]:
        try:
            more = retriever.search(topic, k=per_doc, docs=[doc], query_vector=topic_vector)
        except (ValueError, TypeError):  # a retriever without document filters: the first search is all
            break
        for rank, p in enumerate(more, start=1):
            order[p.chunk_id] = order.get(p.chunk_id, 0.0) + 1.0 / (10 + rank)
            found.setdefault(p.chunk_id, p)
    return sorted(found.values(), key=lambda p: (-order[p.chunk_id], p.doc, p.start))


def _store_documents(retriever: Any) -> dict[str, dict[str, Any]]:
    store = getattr(retriever, "store", None)
    try:
        return dict(store.documents()) if store is not None else {}
    except Exception:  # noqa: BLE001  a store without a docs collection (or a fake) just has no records
        return {}


def is_claim_sentence(sentence: str) -> bool:
    """A statement (no headline, caption or unfinished line) worth briefing: long enough to claim something, not a
    parenthetical, not mostly names."""
    words = sentence.split()
    if len(content_words(sentence)) < 5 or len(words) > 75 or sentence.startswith(("(", "[")):
        return False
    capitalised = sum(1 for w in words if w[:1].isupper())
    return capitalised / len(words) < 0.6 and is_statement(sentence)


def relevance(topic: str, topic_vector: np.ndarray, text: str, vector: np.ndarray) -> float:
    return W_MEANING * float(vector @ topic_vector) + W_WORDS * overlap(topic, text)


def candidates(passages: Sequence[Passage], topic: str, topic_vector: np.ndarray, embedder: Any,
               min_relevance: float = MIN_RELEVANCE, min_doc_relevance: float = MIN_DOC_RELEVANCE,
               rest: list[Candidate] | None = None) -> list[Candidate]:
    """The claim sentences of the passages (one per document span) that speak to the topic, embedded, scored for
    relevance and annotated. A document with no clearly relevant sentence is left out whole. `rest`, when given,
    receives the other claim sentences of the documents kept (annotated too)."""
    seen: dict[tuple[str, int, int], Candidate] = {}
    for p in passages:
        for s, e in sentence_spans(p.text):
            key = (p.doc, p.start + s, p.start + e)
            text = as_prose(p.text[s:e])  # a claim is one line, however its source wrapped or marked it
            if key not in seen and is_claim_sentence(text):
                seen[key] = Candidate(p.doc, key[1], key[2], text, p, np.zeros(0))
    pool = list(seen.values())
    for c, v in zip(pool, embed_cached(embedder, [c.text for c in pool]), strict=True):
        c.vector = np.asarray(v, dtype=np.float32)
        c.relevance = relevance(topic, topic_vector, c.text, c.vector)
    best: dict[str, float] = defaultdict(float)
    for c in pool:
        best[c.doc] = max(best[c.doc], c.relevance)
    kept = [c for c in pool if c.relevance >= min_relevance and best[c.doc] >= min_doc_relevance]
    others = [c for c in pool if c.relevance < min_relevance and best[c.doc] >= min_doc_relevance]
    if rest is not None:
        rest.extend(others)
    annotated = kept + others if rest is not None else kept
    for c, a in zip(annotated, annotate([c.text for c in annotated]), strict=True):
        c.annotation = a
    return kept


def dangling_penalty(c: Candidate) -> float:
    """A sentence that leans on the one before ("This ...", "They ...", '"...," she said') reads badly alone."""
    return 0.06 if c.annotation.leans_back else 0.0


def score(pool: Sequence[Candidate], event_of: Mapping[str, int]) -> None:
    """Centrality (mean likeness to the other sentences of its event) and the overall score of each sentence."""
    by_event: dict[int, list[Candidate]] = defaultdict(list)
    for c in pool:
        by_event[event_of.get(c.doc, 0)].append(c)
    for group in by_event.values():
        sims = np.stack([c.vector for c in group]) @ np.stack([c.vector for c in group]).T
        for i, c in enumerate(group):
            others = np.delete(sims[i], i)
            c.centrality = float(others.mean()) if len(others) else 0.0
    for c in pool:
        c.score = 0.6 * c.relevance + 0.4 * c.centrality - dangling_penalty(c)


# -- events -------------------------------------------------------------------------------------------------------

def stated_day(date_texts: Sequence[str], default_year: int | None) -> str | None:
    """The calendar day (or month: its first day) a DATE entity names most often: "March 12" in an article of 2024
    -> "2024-03-12"; "May 2023" -> "2023-05-01". Weekdays, "days before" and bare years tell no month: None."""
    days: Counter[str] = Counter()
    for text in date_texts:
        full = first_date(text)
        month = month_and_year(text)
        year = month[1] if month and month[1] else default_year
        if full:
            days[full] += 1
        elif month and year:
            day = re.search(r"\b(\d{1,2})(?:st|nd|rd|th)?\b", text.replace(month[2], " "))
            days[f"{year:04d}-{month[0]:02d}-{int(day.group(1)) if day else 1:02d}"] += 1
    return min(days, key=lambda d: (-days[d], d)) if days else None


def common_year(text: str) -> int | None:
    years = Counter(int(y) for y in YEAR.findall(text))
    return min(years, key=lambda y: (-years[y], y)) if years else None


def find_events(pool: Sequence[Candidate], dates: Mapping[str, str | None], texts: Mapping[str, str]
                ) -> tuple[list[Event], dict[str, int]]:
    """Documents grouped into events (rag.events.group_events): by their own date (metadata, dateline) or else the
    day their on-topic sentences state, and by likeness of their words (the places their on-topic sentences name
    count once more)."""
    by_doc: dict[str, list[Candidate]] = defaultdict(list)
    for c in pool:
        by_doc[c.doc].append(c)
    docs = sorted(by_doc)
    when: dict[str, str | None] = {}
    likeness: dict[str, str] = {}
    for d in docs:
        own = dates.get(d)
        year = int(own[:4]) if own else common_year(texts.get(d, ""))
        when[d] = own or stated_day([t for c in by_doc[d] for t in c.annotation.dates], year)
        places = " ".join(p for c in by_doc[d] for p in c.annotation.places)
        likeness[d] = texts.get(d) or " ".join(c.text for c in by_doc[d])
        likeness[d] += " " + places
    groups = group_events(docs, when, likeness)
    annotations = [[c.annotation for d in group_docs for c in by_doc[d]] for group_docs, _ in groups]
    events: list[Event] = []
    event_of: dict[str, int] = {}
    for i, (group_docs, day) in enumerate(groups):
        for d in group_docs:
            event_of[d] = len(events)
        title = heading(annotations[i], annotations[:i] + annotations[i + 1:], fallback="Key points")
        events.append(Event(title, day, tuple(sorted(group_docs))))
    return events, event_of
