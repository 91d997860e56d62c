"""Cited briefings: a topic -> a multi-source briefing (Markdown / HTML / JSON) in which every sentence carries a
checked citation.

The data flow:

1. `gather`: retrieve broadly (the topic plus aspect and dispute sub-queries, many passages each, all documents),
   read each document's date and text, and group the documents into *events*: documents that state dates close
   together form one event; a document without a date joins the event whose documents it is most similar to
   (TF-IDF over content words, single-link, so a chain of close articles stays together).
2. Offline (extractive, default): split the passages into source sentences, score them for relevance to the topic
   (embedding cosine + shared words) and centrality within their event, file them under an aspect (what happened,
   who, official claims, losses, aims), pick central, non-redundant ones per aspect, and gather claims from
   different documents that answer the same dispute probe (was Ukraine behind it, what was captured...).
   LLM mode: map (one call per document: key points with [n] markers over that document's passages) and reduce
   (one call: merge the checked points into sections), see prompts/brief_map.md and prompts/brief_reduce.md.
3. The support audit: every claim sentence (overview, points, disagreement claims) goes through
   `rag.cite.verify` against the passages it cites; a sentence without a verified citation is dropped (or
   flagged). Headings and disagreement lead-ins are structure, not claims: they are never audited.
4. Citations are numbered 1..m in order of first appearance; the Sources list has exactly one entry per number.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Any, NamedTuple

import numpy as np

from rag.answer import embed_cached, is_statement, pack, points_back, render_passages, stated_figures
from rag.chunk import as_prose, sentence_spans
from rag.cite import attach_marker, content_words, overlap, parse_claims, stem, verify
from rag.events import group_events, parse_date
from rag.lexical import words as lexical_words
from rag.retrieve import document_texts
from rag.types import Citation, Passage

# -- public result types --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One claim sentence of the briefing with the numbers of the sources that back it."""

    text: str  # the sentence without markers
    cites: tuple[int, ...]  # source numbers (empty only for a flagged sentence)
    doc: str = ""  # the document the sentence comes from (extractive) or its first citation's document
    aspect: str = ""  # aspect label inside a section ("" when the section is not split by aspect)

    @property
    def flagged(self) -> bool:
        return not self.cites

    @property
    def markdown(self) -> str:
        if not self.cites:
            return f"{_markdown_text(self.text)} ⚠ *(no verified source: flagged)*"
        return attach_marker(_markdown_text(self.text), "".join(f"[{n}]" for n in self.cites))


class Section(NamedTuple):
    """A briefing section: `heading, points = section` (points carry their aspect label)."""

    heading: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Disagreement:
    """Claims from different documents about the same thing, shown side by side. `label` is template text
    (a lead-in, not a claim): only the claims are audited."""

    label: str  # e.g. "whether Ukraine was behind it"
    event: str  # heading of the event the claims belong to ("" when the briefing has no events)
    claims: tuple[Point, ...]

    @property
    def lead_in(self) -> str:
        return f"Sources differ on {self.label}:"


@dataclass(frozen=True)
class Event:
    heading: str
    date: str | None  # earliest date stated by the event's documents (YYYY-MM-DD)
    docs: tuple[str, ...]


@dataclass(frozen=True)
class Audit:
    """Support audit of the final text: every claim sentence is `cited`, `dropped` or `flagged`."""

    sentences: int
    cited: int
    dropped: int
    flagged: int = 0
    dropped_sentences: tuple[str, ...] = ()
    invented_markers: tuple[str, ...] = ()  # markers naming no passage that was shown, removed
    draft_dropped: int = 0  # LLM mode: map-stage points that failed verification before the reduce

    @property
    def summary(self) -> str:
        text = f"support audit: {self.sentences} sentences, {self.cited} cited, {self.dropped} dropped"
        if self.flagged:
            text += f", {self.flagged} flagged"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"sentences": self.sentences, "cited": self.cited, "dropped": self.dropped, "flagged": self.flagged,
                "dropped_sentences": list(self.dropped_sentences), "invented_markers": list(self.invented_markers),
                "draft_dropped": self.draft_dropped}


@dataclass(frozen=True)
class Briefing:
    topic: str
    overview: tuple[Point, ...]
    sections: tuple[Section, ...]
    sources: tuple[Citation, ...]  # numbered 1..m, one per inline marker number
    audit: Audit
    disagreements: tuple[Disagreement, ...] = ()
    events: tuple[Event, ...] = ()
    backend: str = "extractive"
    timings_ms: dict[str, float] = field(default_factory=dict)
    unmentioned: tuple[str, ...] = ()  # words of the topic that no ingested article uses

    @property
    def abstained(self) -> bool:
        """True when no sentence of the sources speaks to the topic (the briefing then says so)."""
        return not self.points()

    def points(self) -> list[Point]:
        """Every claim of the briefing in reading order."""
        out = list(self.overview)
        for section in self.sections:
            out.extend(section.points)
        for d in self.disagreements:
            out.extend(d.claims)
        return out

    @property
    def markdown(self) -> str:
        return render_markdown(self)

    @property
    def html(self) -> str:
        return render_html(self)

    def to_json(self) -> dict[str, Any]:
        def point(p: Point) -> dict[str, Any]:
            return {"text": p.text, "cites": list(p.cites), "doc": p.doc, "aspect": p.aspect, "markdown": p.markdown}

        return {
            "topic": self.topic,
            "backend": self.backend,
            "abstained": self.abstained,
            "unmentioned": list(self.unmentioned),
            "events": [{"heading": e.heading, "date": e.date, "docs": list(e.docs)} for e in self.events],
            "overview": [point(p) for p in self.overview],
            "sections": [{"heading": s.heading, "points": [point(p) for p in s.points]} for s in self.sections],
            "disagreements": [{"label": d.label, "lead_in": d.lead_in, "event": d.event,
                               "claims": [point(p) for p in d.claims]} for d in self.disagreements],
            "sources": [{"n": c.n, "doc": c.doc, "chunk_id": c.chunk_id, "start": c.start, "end": c.end,
                         "quote": c.quote, "title": c.title} for c in self.sources],
            "audit": self.audit.to_json(),
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }


def _markdown_text(text: str) -> str:
    """Text from an article or the user as Markdown shows it: "<" and ">" escaped, so a page that renders the
    briefing never runs HTML that an article (or a topic) carried."""
    return text.replace("<", "\\<").replace(">", "\\>")


NOT_IN_SOURCES = "Not in the sources: no ingested article speaks clearly to this topic."


# -- probes: aspects for sections, disputes for disagreements -------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """A question put to every source sentence: `query` is embedded (and used as a retrieval sub-query), `keywords`
    are regexes (case-insensitive) whose hits count as evidence that the sentence answers it.

    For disputes, `kind` says when claims from different documents differ: "stance" (one side matches `pro`, another
    `contra`, or a sentence holds both), "figures" (two documents state numbers, and the numbers differ), "names"
    (the named units differ), "specifics" (the names and numbers the claims commit to differ)."""

    key: str
    label: str
    query: str
    keywords: tuple[str, ...]
    kind: str = "specifics"
    pro: str = ""
    contra: str = ""


ASPECTS: tuple[Probe, ...] = (
    Probe("what", "What happened",
          "fighters crossed the border into the region with tanks and armored vehicles and seized territory",
          (r"\bcross(es|ed|ing)?\b.{0,12}\b(into|over|border)", r"incursion", r"invad|invasion", r"launch",
           r"advance", r"seiz|captur|took control|liberat", r"reached|entered", r"tanks?\b|armou?red")),
    Probe("who", "Who was behind it",
          "the groups that carried out the attack: Legion, Volunteer Corps, Battalion, militias, defectors",
          (r"legion", r"\bcorps\b", r"battalion", r"militia", r"defector", r"partisan", r"made up of|composed of",
           r"groups? (involved|responsible)", r"nationals", r"fighting (for|with)")),
    Probe("claims", "Official claims and response",
          "the defense ministry, the Kremlin and officials said the attack was repelled and claimed",
          (r"ministry", r"kremlin", r"official|authorit", r"governor", r"\bfsb\b|security service",
           r"spokes(man|woman)", r"\b(said|told|announced)\b", r"claim|confirm",
           r"repel|repuls|thwart|stopp|crush")),
    Probe("losses", "Casualties and losses",
          "fighters were killed, heavy casualties and losses, tanks and vehicles destroyed",
          (r"kill", r"casualt", r"\blosses\b", r"destroy", r"\bdead\b|wounded", r"shot down")),
    Probe("aims", "Aims and implications",
          "the stated goals of the attackers and the political and strategic implications for Putin and the war",
          (r"\baims?\b|\bgoals?\b|mission", r"message|statement", r"implication|ramification", r"election",
           r"freedom|liberate russia|downfall", r"counteroffensive", r"strateg", r"psycholog")),
)

DISPUTES: tuple[Probe, ...] = (
    Probe("ukraine", "whether Ukraine was behind it",
          "Ukraine was behind the attack: Ukrainian-backed, assisted by Ukraine, or not orchestrated by Ukraine "
          "and Kyiv has nothing to do with it",
          (r"ukrainian[- ]backed", r"by ukraine", r"working for ukraine", r"kyiv said", r"nothing to do",
           r"on their own", r"independent", r"ukraine is providing", r"assistance", r"orchestrat",
           r"fighting (for|with) ukraine"),
          kind="stance", pro=r"backed|providing|assistance|working for|sabotage",
          contra=r"\bnot\b|nothing to do|on their own|independent|homegrown"),
    Probe("captured", "what was captured",
          "the fighters captured a town, took control of border villages or liberated villages",
          (r"captur", r"seiz", r"took control|take control", r"liberat", r"occup", r"villages?|towns?")),
    Probe("repelled", "whether the attack was repelled",
          "the attackers were repelled, repulsed, thwarted or stopped, or advanced nearly unopposed",
          (r"repel", r"repuls", r"thwart", r"stopp", r"\bfail", r"unopposed", r"crush", r"pushed back"),
          kind="stance", pro=r"repel|repuls|thwart|stopp|\bfail|crush",
          contra=r"unopposed|penetrat|seized|declared|defiance"),
    Probe("losses", "casualties and losses",
          "how many fighters were killed, casualties, losses and destroyed equipment",
          (r"kill", r"casualt", r"\blosses\b", r"destroy", r"\bdead\b|wounded"), kind="figures"),
    Probe("who", "which groups took part",
          "the groups that took part: Freedom of Russia Legion, Russian Volunteer Corps, Siberian Battalion",
          (r"legion", r"\bcorps\b", r"battalion"), kind="names"),
)

_EVENT_NOUNS = ("incursion", "attack", "raid", "invasion", "offensive", "assault", "strike", "walkout", "protest",
                "election", "outbreak", "storm", "earthquake", "flood", "wildfire", "fire", "blaze", "explosion",
                "crash", "collision", "derailment", "theft", "robbery", "burglary", "heist", "trial", "landing",
                "launch", "recall", "merger", "takeover", "summit", "conference", "release", "opening", "closure")
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
                "November", "December")
_PLACE = r"([A-Z][a-z]+(?:-[A-Z][a-z]+)?)"
_PLACE_PATTERNS = (
    re.compile(_PLACE + r" and " + _PLACE + r" (?:regions|oblasts|provinces)\b"),
    re.compile(r"\bregions of " + _PLACE + r"(?: and " + _PLACE + r")?"),
    re.compile(r"\bregion of " + _PLACE),
    re.compile(_PLACE + r" (?:region|Oblast|oblast|province)\b"),
)
_DANGLING = re.compile(r"^(This|These|That|Those|It|Its|They|Their|Them|He|She|His|Her|Such|Interestingly|"
                       r"Furthermore|Moreover|However|But|And|Also|Amidst|As the|As Russia|Whether|Clearly)\b")


def _dangling_penalty(c: Candidate) -> float:
    """A sentence that leans on the one before ("This ...", "They ...", '"...," she said') reads badly on its own."""
    return 0.06 if _DANGLING.match(c.text) or points_back(c.text) else 0.0


# -- gathering material -------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """A source sentence with the passage it was read from (for verification) and its scores."""

    doc: str
    start: int  # offsets into the document text
    end: int
    text: str
    passage: Passage
    vector: np.ndarray = field(repr=False)
    relevance: float = 0.0
    centrality: float = 0.0
    score: float = 0.0
    aspect: str = ""
    aspect_score: float = 0.0

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


def default_k(chain: Any) -> int:
    return max(24, 4 * int(getattr(chain.retriever.settings, "k", 6)))


def sub_queries(topic: str) -> list[str]:
    """The topic, then the topic seen through each aspect and dispute probe: broad recall across documents."""
    return [topic] + [f"{topic}: {p.query}" for p in (*ASPECTS, *DISPUTES)]


def gather(chain: Any, topic: str, k: int | None = None) -> Material:
    """Retrieve broadly for the topic and group the documents found into events."""
    retriever = chain.retriever
    k = k or default_k(chain)
    found: dict[str, Passage] = {}
    order: dict[str, float] = {}
    queries = sub_queries(topic)
    vectors = embed_cached(retriever.embedder, queries)  # one batch: far cheaper than a call per query
    for qi, (query, vector) in enumerate(zip(queries, vectors, strict=True)):
        for rank, p in enumerate(retriever.search(query, k=k, query_vector=vector), start=1):
            prior = (3.0 if qi == 0 else 1.0) / (10 + rank)  # the plain topic query counts most
            order[p.chunk_id] = order.get(p.chunk_id, 0.0) + prior
            found.setdefault(p.chunk_id, p)
    passages = sorted(found.values(), key=lambda p: (-order[p.chunk_id], p.doc, p.start))
    docs = sorted({p.doc for p in passages})
    titles = {p.doc: p.title for p in passages}
    dates: dict[str, str | None] = {p.doc: p.date for p in passages}
    records = _store_documents(retriever)
    for d in docs:
        record = records.get(d) or {}
        titles[d] = titles.get(d) or str(record.get("title") or d)
        dates[d] = dates.get(d) or record.get("date")
    texts = document_texts(retriever, docs, passages)
    groups = group_events(docs, dates, texts)
    events: list[Event] = []
    event_of: dict[str, int] = {}
    for group_docs, group_date in groups:
        heading = event_heading(group_date, [texts[d] for d in group_docs], topic) if group_date else ""
        for d in group_docs:
            event_of[d] = len(events)
        events.append(Event(heading, group_date, tuple(sorted(group_docs))))
    return Material(topic, np.asarray(vectors[0], dtype=np.float32), passages, events, event_of, titles, dates)


def _store_documents(retriever: Any) -> dict[str, dict[str, Any]]:
    store = getattr(retriever, "store", None)
    try:
        return dict(store.documents()) if store is not None else {}
    except Exception:  # noqa: BLE001  a store without a docs collection (or a fake) just has no records
        return {}


# -- events -------------------------------------------------------------------------------------------------------


def event_heading(day: str | None, texts: Sequence[str], topic: str) -> str:
    """'March 2024 incursion (Belgorod and Kursk)': month and year of the event, a noun for what happened (from
    the topic, else the texts), and the places the texts name most (regions, oblasts)."""
    parsed = parse_date(day)
    when = f"{_MONTH_NAMES[parsed.month - 1]} {parsed.year}" if parsed else "Undated"
    noun = event_noun(topic, texts)
    places: Counter[str] = Counter()
    docs_naming: Counter[str] = Counter()
    for text in texts:
        named: list[str] = []
        for pattern in _PLACE_PATTERNS:
            for m in pattern.finditer(text):
                named.extend(g for g in m.groups() if g)
        places.update(named)
        docs_naming.update(set(named))
    top = sorted(places, key=lambda p: (-docs_naming[p], -places[p], p))[:2]
    where = f" ({' and '.join(sorted(top))})" if top else ""
    return f"{when} {noun}{where}"


def event_noun(topic: str, texts: Sequence[str] = ()) -> str:
    """What happened, in a word: the topic's event noun when the event's own articles use it, else the one they
    use most. A topic about an election does not make an incursion that its articles never tie to one an
    election."""
    counts: Counter[str] = Counter()
    for text in texts:
        low = text.lower()
        for noun in _EVENT_NOUNS:
            counts[noun] += len(re.findall(rf"\b{noun}(?:s|es)?\b", low))
    for w in re.findall(r"[a-z]+", topic.lower()):
        for noun in _EVENT_NOUNS:
            if w in (noun, noun + "s", noun + "es") and (counts[noun] or not texts):
                return noun
    best = counts.most_common(1)
    return best[0][0] if best and best[0][1] else "events"


# -- the extractive briefing ----------------------------------------------------------------------------------


def _is_claim_sentence(sentence: str) -> bool:
    """A statement (`is_statement`: no headline, caption or unfinished line) worth briefing: long enough to claim
    something, not a parenthetical, not mostly names."""
    words = sentence.split()
    if len(content_words(sentence)) < 5 or len(words) > 75 or sentence.startswith(("(", "[")):
        return False
    capitalised = sum(1 for w in words if w[:1].isupper())
    return capitalised / len(words) < 0.6 and is_statement(sentence)


MIN_DOC_RELEVANCE = 0.35  # seed corpus: on-topic documents score 0.5-0.8, unrelated topics below 0.3


def candidates(material: Material, embedder: Any, min_doc_relevance: float = MIN_DOC_RELEVANCE) -> list[Candidate]:
    """The claim sentences of the retrieved passages (deduplicated by document span), embedded and scored:
    relevance to the topic (cosine + shared words), centrality within their event, a penalty for sentences that
    lean on the one before ("This ...", "They ..."). Documents with no clearly relevant sentence are left out."""
    seen: dict[tuple[str, int, int], Candidate] = {}
    for p in material.passages:
        for s, e in sentence_spans(p.text):
            key = (p.doc, p.start + s, p.start + e)
            text = as_prose(p.text[s:e])  # a claim is one line, however its source wrapped or marked it
            if key in seen or not _is_claim_sentence(text):
                continue
            seen[key] = Candidate(p.doc, key[1], key[2], text, p, np.zeros(0))
    pool = list(seen.values())
    if not pool:
        return []
    vectors = embed_cached(embedder, [c.text for c in pool])
    for c, v in zip(pool, vectors, strict=True):
        c.vector = np.asarray(v, dtype=np.float32)
        c.relevance = 0.7 * float(c.vector @ material.topic_vector) + 0.3 * overlap(material.topic, c.text)
    by_event: dict[int, list[Candidate]] = defaultdict(list)
    for c in pool:
        by_event[material.event_of.get(c.doc, 0)].append(c)
    for group in by_event.values():
        matrix = np.stack([c.vector for c in group])
        sims = matrix @ matrix.T
        for i, c in enumerate(group):
            others = np.delete(sims[i], i)
            c.centrality = float(others.mean()) if len(others) else 0.0
    for c in pool:
        c.score = 0.6 * c.relevance + 0.4 * c.centrality - _dangling_penalty(c)
    # A document speaks to the topic when at least one of its sentences clearly does; the others stay out.
    best: dict[str, float] = defaultdict(float)
    for c in pool:
        best[c.doc] = max(best[c.doc], c.relevance)
    return [c for c in pool if best[c.doc] >= min_doc_relevance]


def _probe_vectors(embedder: Any, probes: Sequence[Probe]) -> dict[str, np.ndarray]:
    return dict(zip((p.key for p in probes), embed_cached(embedder, [p.query for p in probes]),
                    strict=True))


def hits(probe: Probe, text: str) -> int:
    """How many of the probe's keyword patterns the text matches."""
    return sum(1 for k in probe.keywords if re.search(k, text, re.I))


def assign_aspects(pool: Sequence[Candidate], embedder: Any, min_score: float = 0.3) -> None:
    """File each sentence under the aspect it answers best (meaning plus keyword evidence), else "other"."""
    vectors = _probe_vectors(embedder, ASPECTS)
    for c in pool:
        best, best_score = "", -1.0
        for a in ASPECTS:
            score = 0.5 * float(c.vector @ vectors[a.key]) + 0.12 * min(hits(a, c.text), 3)
            if score > best_score:
                best, best_score = a.key, score
        c.aspect, c.aspect_score = (best, best_score) if best_score >= min_score else ("other", best_score)


def _redundant(c: Candidate, chosen: Iterable[Candidate], threshold: float = 0.8) -> bool:
    for o in chosen:
        if c.key == o.key or float(c.vector @ o.vector) >= threshold or (
                overlap(c.text, o.text) > 0.75 and overlap(o.text, c.text) > 0.75):
            return True
    return False


_NAME = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][a-z]+(?:-[A-Z][a-z]+)?")
_UNIT_WORDS = r"Legion|Corps|Battalion|Brigade|Regiment|Division|Army|Militia|Front|Group|Guard"


def _specifics(text: str) -> frozenset[str]:
    """What a claim commits to: names (capitalised words not opening the sentence) and numbers."""
    return frozenset({w.lower() for w in _NAME.findall(text)} | set(re.findall(r"\d+", text)))


def _differ(probe: Probe, claims: Sequence[Candidate]) -> bool:
    """Do these claims (from different documents) say different things on the probe's question?"""
    texts = [c.text for c in claims]
    if probe.kind == "stance":
        stances = {(bool(re.search(probe.pro, t, re.I)), bool(re.search(probe.contra, t, re.I))) for t in texts}
        return len(stances) > 1 or (True, True) in stances
    if probe.kind == "figures":
        figures = [frozenset(re.findall(r"\d+", t)) for t in texts]
        return sum(1 for f in figures if f) >= 2 and len({f for f in figures if f}) > 1
    if probe.kind == "names":
        units = [frozenset(u.lower() for u in re.findall(rf"\b({_UNIT_WORDS})\b", t)) for t in texts]
        return len({u for u in units if u}) > 1
    return len({_specifics(t) for t in texts}) > 1


def find_disagreements(material: Material, pool: Sequence[Candidate], embedder: Any, min_score: float = 0.35,
                       max_claims: int = 3, per_event: int = 3) -> list[tuple[Probe, int, list[Candidate]]]:
    """Per event and dispute probe, the best matching sentence of each document; reported when at least two
    documents answer the probe, their claims are not near-duplicates and they differ (see `_differ`)."""
    vectors = _probe_vectors(embedder, DISPUTES)
    out: list[tuple[Probe, int, list[Candidate]]] = []
    for ei in range(max(1, len(material.events))):
        in_event = [c for c in pool if material.event_of.get(c.doc, 0) == ei]
        found: list[tuple[Probe, int, list[Candidate]]] = []
        shown: set[frozenset[tuple[str, int, int]]] = set()
        for probe in DISPUTES:
            best: dict[str, tuple[float, Candidate]] = {}
            for c in in_event:
                n_hits = hits(probe, c.text)
                if not n_hits:
                    continue
                score = 0.5 * float(c.vector @ vectors[probe.key]) + 0.12 * min(n_hits, 3) + 0.2 * c.relevance
                if score >= min_score and (c.doc not in best or score > best[c.doc][0]):
                    best[c.doc] = (score, c)
            ranked = [c for _, c in sorted(best.values(), key=lambda t: (-t[0], t[1].doc))]
            claims: list[Candidate] = []
            for c in ranked:
                if len(claims) < max_claims and all(float(c.vector @ o.vector) < 0.92 for o in claims):
                    claims.append(c)
            keys = frozenset(c.key for c in claims)
            if len({c.doc for c in claims}) >= 2 and keys not in shown and _differ(probe, claims):
                shown.add(keys)
                found.append((probe, ei, sorted(claims, key=lambda c: (_doc_day(material, c.doc), c.doc, c.start))))
        out.extend(found[:per_event])
    return out


ACROSS_EVENTS = "Across events"


def figure_disputes(material: Material, pool: Sequence[Candidate]) -> list[tuple[str, str, list[Candidate]]]:
    """Pairs of documents that state different figures in the same unit about the same thing ("The bridge is 412
    metres long", "The bridge, which is 430 metres long"): (label, event heading, the two claims). The same thing:
    two words beside the figures that both use ("bridge", "long"). "Expected to cost £14 million" (a barrier) and
    "which cost £48 million" (a building) share one: no dispute, though it leaves some true ones unseen."""
    facts = [(c, unit, figure, {stem(w) for w in about}) for c in sorted(pool, key=lambda c: (-c.score, c.doc, c.start))
             for unit, figure, about in stated_figures(c.text)]
    out: list[tuple[str, str, list[Candidate]]] = []
    paired: set[frozenset[str]] = set()  # one dispute per unit and pair of documents: their best sentences
    for (a, unit, fa, about_a), (b, unit_b, fb, about_b) in combinations(facts, 2):
        docs = frozenset((a.doc, b.doc, unit))
        if a.doc == b.doc or unit != unit_b or fa == fb or len(about_a & about_b) < 2 or docs in paired:
            continue
        paired.add(docs)
        claims = sorted([(a, fa), (b, fb)], key=lambda t: (_doc_day(material, t[0].doc), t[0].doc, t[0].start))
        events = {material.event_of.get(c.doc, 0) for c, _ in claims}
        heading = material.events[events.pop()].heading if len(events) == 1 and material.events else ACROSS_EVENTS
        out.append((" vs ".join(_figure_text(unit, f) for _, f in claims), heading, [c for c, _ in claims]))
    return out


def _figure_text(unit: str, figure: str) -> str:
    """("£ million", "48") -> "£48 million"; ("metres", "412") -> "412 metres"."""
    first, *rest = unit.split()
    return " ".join([first + figure, *rest]) if first in "£$€" else f"{figure} {unit}"


_WHEN = re.compile(r"\b(January|February|March|April|May|June|July|August|September|October|November|December|"
                   r"Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|\d{4})\b")
_WHERE = re.compile(r"\b(region|regions|oblast|province|city|village|town|border)\b", re.I)


def _overview_score(c: Candidate) -> float:
    """An overview sentence should say what happened, and when and where."""
    return c.score + 0.05 * bool(_WHEN.search(c.text)) + 0.05 * bool(_WHERE.search(c.text))


def _point_rank(c: Candidate) -> float:
    """Within an aspect: relevant to the topic, on the aspect, central to the event."""
    return 0.6 * c.relevance + 0.7 * c.aspect_score + 0.2 * c.centrality - _dangling_penalty(c)


def _doc_day(material: Material, doc: str) -> str:
    return material.dates.get(doc) or "9999"


@dataclass
class Draft:
    """A briefing before the audit: claims as (text with [i] markers, passages those markers index)."""

    overview: list[tuple[str, list[Passage], str]] = field(default_factory=list)  # (claim, passages, doc)
    sections: list[tuple[str, list[tuple[str, list[Passage], str, str]]]] = field(default_factory=list)
    disagreements: list[tuple[str, str, list[tuple[str, list[Passage], str]]]] = field(default_factory=list)
    invented: list[str] = field(default_factory=list)
    draft_dropped: int = 0


_PER_ASPECT = {"what": 3, "other": 1}
# "Other points" fill an event's section up to this many: articles on a topic the aspects do not fit (a theft, a
# wildfire) have most of their sentences there.
_MIN_POINTS = 5


def extractive_draft(material: Material, embedder: Any, per_aspect: int = 2, per_event: int = 10) -> Draft:
    pool = candidates(material, embedder)
    assign_aspects(pool, embedder)
    draft = Draft()
    if not pool:
        return draft

    def claim(c: Candidate) -> tuple[str, list[Passage], str]:
        return attach_marker(c.text, "[1]"), [c.passage], c.doc

    chosen: list[Candidate] = []
    n_events = len(material.events)
    # Overview: the most central, relevant self-standing sentence of each event (oldest event first).
    for ei in range(max(1, n_events)):
        standing = [c for c in pool if material.event_of.get(c.doc, 0) == ei and not _DANGLING.match(c.text)]
        # what happened and who did it; when no sentence fits those, the event's most relevant self-standing one
        fits = [c for c in standing if c.aspect in ("what", "who")] or standing
        for c in sorted(fits, key=lambda c: (-_overview_score(c), c.doc, c.start))[: 1 if n_events > 1 else 2]:
            if not _redundant(c, chosen):
                chosen.append(c)
                draft.overview.append(claim(c))
    # Disagreements: claims side by side. Sections leave these sentences to them (the overview may repeat one,
    # with the same number).
    disputes = [(probe.label, material.events[ei].heading, claims)
                for probe, ei, claims in find_disagreements(material, pool, embedder)]
    probed = [{c.key for c in claims} for _, _, claims in disputes]
    disputes += [d for d in figure_disputes(material, pool) if {c.key for c in d[2]} not in probed]
    disputed = {c.key for _, _, claims in disputes for c in claims}
    # Sections: one per event, points grouped by aspect.
    top = max(c.score for c in pool)
    top_relevance = max(c.relevance for c in pool)
    aspect_order = [a.key for a in ASPECTS] + ["other"]
    aspect_label = {a.key: a.label for a in ASPECTS} | {"other": "Other points"}
    for ei, event in enumerate(material.events):
        in_event = [c for c in pool if material.event_of.get(c.doc, 0) == ei and c.score >= top - 0.4
                    and c.relevance >= 0.25 * top_relevance]
        points: list[Candidate] = []
        for aspect in aspect_order:
            ranked = sorted((c for c in in_event if c.aspect == aspect),
                            key=lambda c: (-_point_rank(c), c.doc, c.start))
            picked: list[Candidate] = []
            most = _PER_ASPECT.get(aspect, per_aspect)
            if aspect == "other":  # "Other points" come last and fill a thin section
                most = max(most, _MIN_POINTS - len(points))
            for c in ranked:
                if len(picked) >= most or len(points) + len(picked) >= per_event:
                    break
                if c.key in disputed or _redundant(c, chosen + picked):
                    continue
                if any(p.doc == c.doc for p in picked) and any(o.doc not in {p.doc for p in picked}
                                                               for o in ranked if o not in picked and o is not c
                                                               and not _redundant(o, chosen + picked)):
                    continue  # another document has something to add to this aspect: let it speak first
                picked.append(c)
            picked.sort(key=lambda c: (_doc_day(material, c.doc), c.doc, c.start))
            points.extend(picked)
            chosen.extend(picked)
        if not points:
            continue
        heading = event.heading or ("Key points" if n_events == 1 else "Other coverage (undated)")
        draft.sections.append((heading, [(*claim(c), aspect_label[c.aspect]) for c in points]))
    for label, heading, claims in disputes:
        draft.disagreements.append((label, heading, [claim(c) for c in claims]))
    return draft


# -- the audit and numbering --------------------------------------------------------------------------------------


class _Numbering:
    """Citations numbered by first appearance; the same document span always gets the same number."""

    def __init__(self) -> None:
        self.sources: list[Citation] = []
        self._by_key: dict[tuple[str, int, int], int] = {}

    def number(self, c: Citation) -> int:
        key = (c.doc, c.start, c.end)
        if key not in self._by_key:
            self._by_key[key] = len(self.sources) + 1
            self.sources.append(replace(c, n=self._by_key[key]))
        return self._by_key[key]


@dataclass
class _Counter:
    sentences: int = 0
    cited: int = 0
    dropped: int = 0
    flagged: int = 0
    dropped_sentences: list[str] = field(default_factory=list)
    invented: list[str] = field(default_factory=list)


def audit_claims(text: str, passages: Sequence[Passage]) -> list[tuple[str, tuple[Citation, ...], tuple[str, ...]]]:
    """Split text into claim sentences and check each with rag.cite.verify against `passages` (the ones its
    markers index): (sentence, verified citations with local numbers, markers dropped)."""
    claims, bad = parse_claims(text, len(passages))
    out = []
    for i, claim in enumerate(claims):
        markers = "".join(f"[{n}]" for n in claim.markers)
        checked = verify(attach_marker(claim.text, markers) if markers else claim.text, list(passages))
        ok = checked.citations if not checked.unsupported else ()
        out.append((claim.text, tuple(ok), tuple(bad if i == 0 else ()) + checked.dropped_markers))
    if not claims and bad:
        out.append(("", (), tuple(bad)))
    return out


def finalize(topic: str, draft: Draft, material: Material | None, backend: str, unsupported: str = "drop",
             timings: dict[str, float] | None = None) -> Briefing:
    """Run every claim of the draft through the audit, number the citations, build the Briefing."""
    numbering = _Numbering()
    tally = _Counter(invented=list(draft.invented))
    keep_flagged = unsupported == "flag"

    def points(text: str, passages: Sequence[Passage], doc: str, aspect: str = "") -> list[Point]:
        out = []
        for sentence, citations, dropped in audit_claims(text, passages):
            tally.invented.extend(m for m in dropped if _is_invented(m, len(passages)))
            if not sentence:
                continue
            tally.sentences += 1
            if citations:
                tally.cited += 1
                cites = tuple(dict.fromkeys(numbering.number(c) for c in citations))
                out.append(Point(sentence, cites, citations[0].doc, aspect))
            elif keep_flagged:
                tally.flagged += 1
                out.append(Point(sentence, (), doc, aspect))
            else:
                tally.dropped += 1
                tally.dropped_sentences.append(sentence)
        return out

    overview = [p for text, ps, doc in draft.overview for p in points(text, ps, doc)]
    sections = []
    for heading, section_claims in draft.sections:
        pts = [p for text, ps, doc, aspect in section_claims for p in points(text, ps, doc, aspect)]
        if pts:
            sections.append(Section(heading, tuple(pts)))
    disagreements = []
    for label, event, claims in draft.disagreements:
        sides = [p for text, ps, doc in claims for p in points(text, ps, doc)]
        if len({p.doc for p in sides if p.cites}) >= 2:  # side by side needs two checked sides
            disagreements.append(Disagreement(label, event, tuple(sides)))
    # A disagreement that fell apart in the audit may have left numbers behind: renumber to what is shown.
    briefing_points = overview + [p for s in sections for p in s.points] + [p for d in disagreements for p in d.claims]
    used = list(dict.fromkeys(n for p in briefing_points for n in p.cites))
    remap = {old: new for new, old in enumerate(used, start=1)}
    sources = tuple(replace(numbering.sources[old - 1], n=new) for old, new in remap.items())

    def renumber(p: Point) -> Point:
        return replace(p, cites=tuple(remap[n] for n in p.cites))

    audit = Audit(tally.sentences, tally.cited, tally.dropped, tally.flagged, tuple(tally.dropped_sentences),
                  tuple(dict.fromkeys(tally.invented)), draft.draft_dropped)
    return Briefing(
        topic=topic,
        overview=tuple(renumber(p) for p in overview),
        sections=tuple(Section(s.heading, tuple(renumber(p) for p in s.points)) for s in sections),
        sources=sources,
        audit=audit,
        disagreements=tuple(Disagreement(d.label, d.event, tuple(renumber(p) for p in d.claims))
                            for d in disagreements),
        events=tuple(material.events) if material else (),
        backend=backend,
        timings_ms=timings or {},
    )


def _is_invented(marker: str, n_passages: int) -> bool:
    """A marker that names no passage shown (out of range or malformed), as opposed to one that was shown but
    does not support its sentence."""
    m = re.fullmatch(r"\[(\d+)\]", marker.strip())
    return not m or not 1 <= int(m.group(1)) <= n_passages


# -- LLM mode: map-reduce ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MapInput:
    doc: str
    title: str
    date: str | None
    event: str
    passages: tuple[Passage, ...]


def map_plan(material: Material, docs: Iterable[str] | None = None, budget_tokens: int = 2500,
             max_docs: int = 12) -> list[MapInput]:
    """One map call per document (most relevant documents first, only `docs` when given), over that document's
    retrieved passages in reading order, within the token budget."""
    allowed = set(docs) if docs is not None else None
    by_doc: dict[str, list[Passage]] = defaultdict(list)
    for p in material.passages:
        by_doc[p.doc].append(p)
    order = [d for d in dict.fromkeys(p.doc for p in material.passages) if allowed is None or d in allowed][:max_docs]
    plan = []
    for doc in order:
        kept = pack(by_doc[doc], budget_tokens)  # best first, then put back in reading order
        event = material.events[material.event_of.get(doc, 0)].heading if material.events else ""
        plan.append(MapInput(doc, material.titles.get(doc, doc), material.dates.get(doc), event,
                             tuple(sorted(kept, key=lambda p: p.start))))
    return plan


def _call_model(chain: Any, messages: list[Any]) -> str:
    from langchain_core.output_parsers import StrOutputParser

    cache = getattr(chain, "cache", None)
    key = cache.key(chain.settings.openai_model, messages) if cache else ""
    if cache and (hit := cache.get(key)) is not None:
        return str(hit)
    reply = str((chain.model | StrOutputParser()).invoke(messages))
    if cache:
        cache.put(key, reply)
    return reply


def _messages(name: str, **values: str) -> list[Any]:
    from langchain_core.messages import HumanMessage, SystemMessage

    from rag.prompts import load_prompt

    system, user = load_prompt(name).render(**values)
    return [SystemMessage(system), HumanMessage(user)]


_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


def _bullets(reply: str) -> list[str]:
    """Bullet lines of a reply (a line without a bullet counts too, if it carries a marker)."""
    out = []
    for line in reply.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if _BULLET.match(line):
            out.append(_BULLET.sub("", line, count=1).strip())
        elif re.search(r"\[\d+\]", line):
            out.append(line)
    return out


def llm_draft(chain: Any, material: Material) -> Draft:
    draft = Draft()
    # Map: per document, key points whose markers index that document's passages; checked right away.
    points: list[tuple[Citation, ...]] = []  # per checked map point: its citations
    texts: list[str] = []
    docs_of_point: list[str] = []
    relevant = {c.doc for c in candidates(material, chain.retriever.embedder)}
    for item in map_plan(material, relevant):
        reply = _call_model(chain, _messages(
            "brief_map", topic=material.topic, title=item.title, doc=item.doc, date=item.date or "not stated",
            event=item.event or "not determined", passages=render_passages(item.passages)))
        for line in _bullets(reply):
            for sentence, citations, dropped in audit_claims(line, item.passages):
                draft.invented.extend(m for m in dropped if _is_invented(m, len(item.passages)))
                if not sentence:
                    continue
                if not citations:
                    draft.draft_dropped += 1
                    continue
                points.append(citations)
                texts.append(sentence)
                docs_of_point.append(item.doc)
    if not points:
        return draft
    # Reduce: the checked points, their quotes numbered once (the numbers the reduce must keep).
    quotes: list[Citation] = []
    index: dict[tuple[str, int, int], int] = {}
    lines_by_event: dict[str, list[str]] = defaultdict(list)
    for sentence, citations, doc in zip(texts, points, docs_of_point, strict=True):
        numbers = []
        for c in citations:
            key = (c.doc, c.start, c.end)
            if key not in index:
                index[key] = len(quotes) + 1
                quotes.append(c)
            numbers.append(index[key])
        event = material.events[material.event_of.get(doc, 0)].heading if material.events else ""
        lines_by_event[event or "Key points"].append(
            f"- {attach_marker(sentence, ''.join(f'[{n}]' for n in numbers))} (from {doc})")
    quote_passages = [Passage(chunk_id=c.chunk_id, doc=c.doc, start=c.start, end=c.end, text=c.quote,
                              title=c.title) for c in quotes]
    notes = "\n\n".join(f"Event: {event}\n" + "\n".join(lines) for event, lines in lines_by_event.items())
    sources = "\n".join(f"[{i}] {c.doc}: “{c.quote}”" for i, c in enumerate(quotes, start=1))
    headings = "\n".join(f"- {e.heading}" for e in material.events if e.heading) or "- Key points"
    reply = _call_model(chain, _messages("brief_reduce", topic=material.topic, points=notes, sources=sources,
                                         headings=headings))
    parsed = _parse_reduce(reply, quote_passages)
    if not parsed.overview and not parsed.sections:
        # The model gave nothing usable: fall back to the checked map points, one section per event.
        for event, lines in lines_by_event.items():
            parsed.sections.append((event, [(line[2:].rsplit(" (from ", 1)[0], quote_passages, "", "")
                                            for line in lines]))
    parsed.invented.extend(draft.invented)
    parsed.draft_dropped = draft.draft_dropped
    return parsed


_DISAGREE_HEADING = re.compile(r"where (the )?sources (disagree|differ)", re.I)


def _parse_reduce(reply: str, passages: list[Passage]) -> Draft:
    """`## Overview`, `## <section>` and `## Where the sources disagree` (with `### <label>` groups) with bullet
    claims; anything else is ignored. Every claim indexes `passages` (the numbered quotes)."""
    draft = Draft()
    part, heading, label = "", "", ""
    for raw in reply.splitlines():
        line = raw.strip()
        if m := re.match(r"^(#{2,3})\s+(.+?)\s*#*$", line):
            level, title = len(m.group(1)), m.group(2).strip().strip("*").strip()
            if level == 2:
                label = ""
                if title.lower().startswith("overview"):
                    part = "overview"
                elif _DISAGREE_HEADING.search(title):
                    part = "disagree"
                elif title.lower().startswith(("sources", "support audit")):
                    part = ""
                else:
                    part, heading = "section", title
                    draft.sections.append((heading, []))
            elif part == "disagree":
                label = re.sub(r"^sources differ on\s+", "", title.rstrip(":"), flags=re.I)
                draft.disagreements.append((label, "", []))
            continue
        items = _bullets(line) if part else []
        if part == "overview" and not items and re.search(r"\[\d+\]", line):
            items = [line]
        for item in items:
            if part == "overview":
                draft.overview.append((item, passages, ""))
            elif part == "section" and draft.sections:
                draft.sections[-1][1].append((item, passages, "", ""))
            elif part == "disagree" and draft.disagreements:
                draft.disagreements[-1][2].append((item, passages, ""))
    return draft


# -- entry point ----------------------------------------------------------------------------------------------


def make_briefing(chain: Any, topic: str, k: int | None = None, unsupported: str = "drop") -> Briefing:
    """A cited briefing on `topic` from the chain's store. `chain.backend` picks extractive or the LLM map-reduce;
    `k` is the number of passages per retrieval sub-query; `unsupported` is "drop" or "flag"."""
    import time

    if not topic.strip():
        raise ValueError("the topic is empty")
    if unsupported not in ("drop", "flag"):
        raise ValueError(f"unsupported must be 'drop' or 'flag', not {unsupported!r}")
    t0 = time.perf_counter()
    material = gather(chain, topic, k)
    t1 = time.perf_counter()
    words = tuple(dict.fromkeys(lexical_words(topic)))
    unmentioned = unmentioned_words(words, getattr(chain.retriever, "lexical", None))
    if 2 * len(unmentioned) > len(words):
        draft = Draft()  # "Crimea bridge attack" over articles that never name Crimea or a bridge: only "attack"
    elif chain.backend == "extractive":
        draft = extractive_draft(material, chain.retriever.embedder)
    else:
        draft = llm_draft(chain, material)
    t2 = time.perf_counter()
    timings = {"retrieve": (t1 - t0) * 1000, "compose": (t2 - t1) * 1000}
    briefing = replace(finalize(topic, draft, material, chain.backend, unsupported, timings), unmentioned=unmentioned)
    timings["audit"] = (time.perf_counter() - t2) * 1000
    timings["total"] = (time.perf_counter() - t0) * 1000
    return briefing


def unmentioned_words(words: Sequence[str], lexical: Any) -> tuple[str, ...]:
    """The topic's words that no ingested article uses in any form. A briefing whose topic is mostly such words
    would be about something else that shares a word with it."""
    return tuple(w for w in words if not lexical.knows(w)) if lexical is not None else ()


# -- rendering --------------------------------------------------------------------------------------------------


def _meta_line(b: Briefing) -> str:
    docs = len({c.doc for c in b.sources})
    shown = {s.heading for s in b.sections} | {d.event for d in b.disagreements}
    events = [e.heading for e in b.events if e.heading and e.heading in shown]
    cited = len(b.sources)
    parts = [f"{docs} source document{'s' if docs != 1 else ''}", f"{cited} cited passage{'s' if cited != 1 else ''}"]
    if len(events) > 1:
        parts.append(f"{len(events)} events kept apart")
    parts.append(f"{b.backend} backend")
    parts.append(b.audit.summary)
    return " · ".join(parts)


def _grouped(points: Sequence[Point]) -> list[tuple[str, list[Point]]]:
    groups: list[tuple[str, list[Point]]] = []
    for p in points:
        if groups and groups[-1][0] == p.aspect:
            groups[-1][1].append(p)
        else:
            groups.append((p.aspect, [p]))
    return groups


def _unmentioned_line(b: Briefing) -> str:
    return "The sources never mention: " + ", ".join(f"“{w}”" for w in b.unmentioned) + "." if b.unmentioned else ""


def render_markdown(b: Briefing) -> str:
    lines = [f"# Briefing: {_markdown_text(b.topic)}", "", f"_{_meta_line(b)}_", ""]
    if b.unmentioned:
        lines += [f"_{_unmentioned_line(b)}_", ""]
    if b.abstained:
        lines += [f"_{NOT_IN_SOURCES}_", ""]
    if b.overview:
        lines += ["## Overview", "", " ".join(p.markdown for p in b.overview), ""]
    for section in b.sections:
        lines += [f"## {_markdown_text(section.heading)}", ""]
        groups = _grouped(section.points)
        for aspect, points in groups:
            if aspect and len(groups) > 1:
                lines += [f"### {aspect}", ""]
            lines += [f"- {p.markdown}" for p in points] + [""]
    if b.disagreements:
        lines += ["## Where the sources disagree", ""]
        event = None
        for d in b.disagreements:
            if d.event and d.event != event:
                lines += [f"### {d.event}", ""]
            event = d.event
            lines += [f"**{d.lead_in}**", ""] + [f"- {p.markdown}" for p in d.claims] + [""]
    lines += ["## Support audit", "", _audit_text(b.audit), ""]
    lines += ["## Sources", ""] if b.sources else []
    for c in b.sources:
        lines += [f"[{c.n}] {_markdown_text(c.title or c.doc)} — {c.doc} — “{_markdown_text(as_prose(c.quote))}”", ""]
    return "\n".join(lines).rstrip() + "\n"


def _audit_text(a: Audit) -> str:
    text = (f"{a.sentences} claim sentences checked against their sources: {a.cited} carry a verified citation, "
            f"{a.dropped} dropped")
    text += f", {a.flagged} flagged." if a.flagged else "."
    if a.invented_markers:
        named = ", ".join(m.strip("[]") for m in a.invented_markers)
        text += f" Removed {len(a.invented_markers)} citation marker(s) naming no source shown (numbers {named})."
    if a.draft_dropped:
        text += f" {a.draft_dropped} draft points failed verification before the merge."
    text += " Headings and lead-ins are structure, not claims, and are not audited."
    return text


_CSS = """
:root { --ink:#1d232b; --muted:#5b6675; --accent:#1f5fae; --rule:#dde3ea; --paper:#ffffff; --mark:#fff4c2; }
* { box-sizing: border-box; }
body { margin:0; background:#f3f5f8; color:var(--ink); font:16px/1.55 Georgia, 'Times New Roman', serif; }
main { max-width: 880px; margin: 32px auto; background: var(--paper); padding: 40px 56px 48px;
       border: 1px solid var(--rule); border-radius: 6px; box-shadow: 0 2px 10px rgba(0,0,0,.05); }
h1 { font: 700 28px/1.25 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0 0 6px; }
h2 { font: 650 20px/1.3 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 32px 0 10px;
     padding-bottom: 4px; border-bottom: 2px solid var(--rule); }
h3 { font: 600 15px/1.3 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 18px 0 6px; color: var(--muted);
     text-transform: uppercase; letter-spacing: .04em; }
.meta { color: var(--muted); font: 13px/1.4 system-ui, sans-serif; margin: 0 0 8px; }
ul { padding-left: 22px; margin: 6px 0; } li { margin: 4px 0; }
.lead { font-weight: 600; margin: 16px 0 4px; }
.disagree ul { border-left: 3px solid #d9822b; padding-left: 24px; }
.disagree h3 { text-transform: none; letter-spacing: 0; color: var(--ink); font-size: 16px; margin-top: 22px; }
a.cite { color: var(--accent); text-decoration: none; font: 600 12px/1 system-ui, sans-serif;
         vertical-align: super; padding: 0 1px; }
a.cite:hover, a.cite:focus { text-decoration: underline; outline: none; }
main li, main p { position: relative; }
a.cite .pop { display: none; position: absolute; left: 0; right: 0; margin-top: 1.3em; z-index: 10;
              padding: 10px 12px; background: #fffdf5; color: var(--ink); border: 1px solid #e2d7a8;
              border-radius: 6px; box-shadow: 0 6px 18px rgba(0,0,0,.15); font: italic 14px/1.45 Georgia, serif;
              white-space: normal; vertical-align: baseline; }
a.cite .pop small { display: block; margin-top: 6px; font: normal 12px/1.3 system-ui, sans-serif;
                    color: var(--muted); }
a.cite:hover .pop, a.cite:focus .pop { display: block; }
.flag { color: #b3261e; font: 600 12px system-ui, sans-serif; }
.audit { background: #f0f7f0; border: 1px solid #cfe5cf; border-radius: 6px; padding: 10px 14px;
         font: 14px/1.45 system-ui, sans-serif; }
ol.sources { padding-left: 0; list-style: none; font: 14px/1.45 system-ui, sans-serif; }
ol.sources li { padding: 8px 10px; border-radius: 6px; margin: 2px 0; }
ol.sources li:target { background: var(--mark); outline: 2px solid #e8c860; }
ol.sources .n { font-weight: 700; color: var(--accent); margin-right: 4px; }
ol.sources .file { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: 12px; color: var(--muted); }
ol.sources q { font-family: Georgia, serif; font-style: italic; }
""".strip()


def render_html(b: Briefing) -> str:
    """One self-contained page: inline CSS, no scripts, no external resources. Each [n] is a link to its source
    entry (#src-n) that shows the quoted passage on hover or focus (and in its title attribute)."""
    esc = html.escape
    by_n = {c.n: c for c in b.sources}

    def cite(n: int) -> str:
        c = by_n[n]
        quote = as_prose(c.quote)
        tip = f"“{quote}” — {c.title or c.doc} ({c.doc})"
        return (f'<a class="cite" href="#src-{n}" title="{esc(tip)}">[{n}]'
                f'<span class="pop" aria-hidden="true">“{esc(quote)}”<small>[{n}] {esc(c.title or c.doc)}'
                f" — {esc(c.doc)}</small></span></a>")

    def point(p: Point) -> str:
        if not p.cites:
            return f'{esc(p.text)} <span class="flag">⚠ no verified source (flagged)</span>'
        marked = attach_marker(p.text, "\x00")  # the markers' place, before the closing punctuation
        before, after = marked.split("\x00", 1)
        return esc(before.rstrip()) + "".join(cite(n) for n in p.cites) + esc(after)

    parts = [f"<h1>Briefing: {esc(b.topic)}</h1>", f'<p class="meta">{esc(_meta_line(b))}</p>']
    if b.unmentioned:
        parts.append(f"<p><em>{esc(_unmentioned_line(b))}</em></p>")
    if b.abstained:
        parts.append(f"<p><em>{esc(NOT_IN_SOURCES)}</em></p>")
    if b.overview:
        parts.append('<section class="overview"><h2>Overview</h2><p>'
                     + " ".join(point(p) for p in b.overview) + "</p></section>")
    for section in b.sections:
        body = [f"<section><h2>{esc(section.heading)}</h2>"]
        groups = _grouped(section.points)
        for aspect, points in groups:
            if aspect and len(groups) > 1:
                body.append(f"<h3>{esc(aspect)}</h3>")
            body.append("<ul>" + "".join(f"<li>{point(p)}</li>" for p in points) + "</ul>")
        parts.append("".join(body) + "</section>")
    if b.disagreements:
        body = ['<section class="disagree"><h2>Where the sources disagree</h2>']
        event = None
        for d in b.disagreements:
            if d.event and d.event != event:
                body.append(f"<h3>{esc(d.event)}</h3>")
            event = d.event
            body.append(f'<p class="lead">{esc(d.lead_in)}</p><ul>'
                        + "".join(f"<li>{point(p)}</li>" for p in d.claims) + "</ul>")
        parts.append("".join(body) + "</section>")
    parts.append(f'<section><h2>Support audit</h2><p class="audit">{esc(_audit_text(b.audit))}</p></section>')
    items = "".join(
        f'<li id="src-{c.n}"><span class="n">[{c.n}]</span> <b>{esc(c.title or c.doc)}</b> — '
        f'<span class="file">{esc(c.doc)}</span> — <q>{esc(as_prose(c.quote))}</q></li>' for c in b.sources)
    parts.append(f'<section><h2>Sources</h2><ol class="sources">{items}</ol></section>')
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>Briefing: {esc(b.topic)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(parts) + "\n</main>\n</body>\n</html>\n")


def to_json_text(b: Briefing) -> str:
    return json.dumps(b.to_json(), ensure_ascii=False, indent=2)
