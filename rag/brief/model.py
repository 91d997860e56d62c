"""The briefing's result types: claims (`Point`), sections, disagreements, events, the support audit, and the
`Briefing` that renders itself as Markdown, HTML or JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from rag.cite import attach_marker
from rag.types import Citation, Passage


@dataclass(frozen=True)
class Point:
    """One claim sentence of the briefing with the numbers of the sources that back it."""

    text: str  # the sentence without markers
    cites: tuple[int, ...]  # source numbers (empty only for a flagged sentence)
    doc: str = ""  # the document the sentence comes from (extractive) or its first citation's document
    aspect: str = ""  # label of the group of like points inside a section ("" when it is not split)

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

    label: str  # what the claims differ on, in their own words ("412 metres vs 430 metres")
    event: str  # heading of the event the claims belong to ("" when the briefing has no events)
    claims: tuple[Point, ...]

    @property
    def lead_in(self) -> str:
        return f"Sources differ on {self.label}:"


@dataclass(frozen=True)
class Event:
    heading: str
    date: str | None  # earliest date of the event's documents, from their metadata or the dates they state
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
    removed_links: tuple[str, ...] = ()  # links and images the post-check took out of the model's words

    @property
    def summary(self) -> str:
        text = f"support audit: {self.sentences} sentences, {self.cited} cited, {self.dropped} dropped"
        if self.flagged:
            text += f", {self.flagged} flagged"
        if self.removed_links:
            n = len(self.removed_links)
            text += f", {n} link{'s' if n != 1 else ''} removed"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"sentences": self.sentences, "cited": self.cited, "dropped": self.dropped, "flagged": self.flagged,
                "dropped_sentences": list(self.dropped_sentences), "invented_markers": list(self.invented_markers),
                "draft_dropped": self.draft_dropped, "removed_links": list(self.removed_links)}


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
        from rag.brief.render import render_markdown

        return render_markdown(self)

    @property
    def html(self) -> str:
        from rag.brief.render import render_html

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
    return text.replace("<", "\\<").replace(">", "\\>").replace("![", "!\\[")  # nor a live remote image


NOT_IN_SOURCES = "Not in the sources: no ingested article speaks clearly to this topic."


@dataclass(frozen=True)
class Checked:
    """A claim read by numbered sentences (the LLM path's JSON reply): its citations are the whole source
    sentences its evidence ids named, already resolved and checked; `dropped` are the ids that named nothing.
    No citations: the claim had no evidence, or its evidence did not state it."""

    text: str
    citations: tuple[Citation, ...] = ()
    dropped: tuple[str, ...] = ()
    removed_links: tuple[str, ...] = ()  # link targets the post-check took out of the model's words


Claim = str | Checked  # text with [i] markers into the claim's passages, or a claim checked already


@dataclass
class Draft:
    """A briefing before the audit: claims as (text with [i] markers, passages those markers index), or as
    `Checked` claims."""

    overview: list[tuple[Claim, list[Passage], str]] = field(default_factory=list)  # (claim, passages, doc)
    sections: list[tuple[str, list[tuple[Claim, list[Passage], str, str]]]] = field(default_factory=list)
    disagreements: list[tuple[str, str, list[tuple[Claim, list[Passage], str]]]] = field(default_factory=list)
    invented: list[str] = field(default_factory=list)
    draft_dropped: int = 0
    removed_links: list[str] = field(default_factory=list)  # taken out before the audit (map stage)
