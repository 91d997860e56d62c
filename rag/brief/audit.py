"""The support audit: every claim sentence of a draft is checked with `rag.cite.verify` against the passages it
cites and dropped (or flagged) without a verified citation; citations are numbered 1..m by first appearance."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rag.brief.headings import heading as make_heading
from rag.brief.headings import words_missing
from rag.brief.model import Audit, Briefing, Checked, Claim, Disagreement, Draft, Point, Section
from rag.cite import attach_marker, parse_claims, strip_foreign_links, verify
from rag.sentences import annotate
from rag.types import Citation, Passage


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


def audit_claims(text: Claim, passages: Sequence[Passage], removed_links: list[str] | None = None
                 ) -> list[tuple[str, tuple[Citation, ...], tuple[str, ...]]]:
    """Split text into claim sentences and check each with rag.cite.verify against `passages` (the ones its
    markers index): (sentence, verified citations with local numbers, markers dropped). A `Checked` claim was
    checked when its evidence ids were resolved: it is counted as it stands (its ids that named nothing count as
    invented markers; no citations: flagged or dropped). Links the post-check takes out are added to
    `removed_links`."""
    if isinstance(text, Checked):
        if removed_links is not None:
            removed_links.extend(text.removed_links)
        return [(text.text, text.citations, text.dropped)]
    claims, bad = parse_claims(strip_foreign_links(text, passages, escape_html=False, removed=removed_links),
                               len(passages))
    out = []
    for i, claim in enumerate(claims):
        markers = "".join(f"[{n}]" for n in claim.markers)
        checked = verify(attach_marker(claim.text, markers) if markers else claim.text, list(passages))
        ok = checked.citations if not checked.unsupported else ()
        out.append((claim.text, tuple(ok), tuple(bad if i == 0 else ()) + checked.dropped_markers))
    if not claims and bad:
        out.append(("", (), tuple(bad)))
    return out


def finalize(topic: str, draft: Draft, material: Any, backend: str, unsupported: str = "drop",
             timings: dict[str, float] | None = None) -> Briefing:
    """Run every claim of the draft through the audit, number the citations, build the Briefing."""
    numbering = _Numbering()
    tally = _Counter(invented=list(draft.invented))
    keep_flagged = unsupported == "flag"
    removed = list(draft.removed_links)

    def points(text: Claim, passages: Sequence[Passage], doc: str, aspect: str = "") -> list[Point]:
        out = []
        for sentence, citations, dropped in audit_claims(text, passages, removed):
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
            sections.append(Section(fit_heading(heading, [p.text for p in pts]), tuple(fit_labels(pts))))
    disagreements = []
    shown = {s.heading: [p.text for p in s.points] for s in sections}
    for label, event, claims in draft.disagreements:
        sides = [p for text, ps, doc in claims for p in points(text, ps, doc)]
        if len({p.doc for p in sides if p.cites}) >= 2:  # side by side needs two checked sides
            event = event if event in shown else fit_heading(event, [p.text for p in sides])
            disagreements.append(Disagreement(label, event, tuple(sides)))
    # A disagreement that fell apart in the audit may have left numbers behind: renumber to what is shown.
    briefing_points = overview + [p for s in sections for p in s.points] + [p for d in disagreements for p in d.claims]
    used = list(dict.fromkeys(n for p in briefing_points for n in p.cites))
    remap = {old: new for new, old in enumerate(used, start=1)}
    sources = tuple(replace(numbering.sources[old - 1], n=new) for old, new in remap.items())

    def renumber(p: Point) -> Point:
        return replace(p, cites=tuple(remap[n] for n in p.cites))

    audit = Audit(tally.sentences, tally.cited, tally.dropped, tally.flagged, tuple(tally.dropped_sentences),
                  tuple(dict.fromkeys(tally.invented)), draft.draft_dropped, tuple(removed))
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


def fit_heading(heading: str, texts: Sequence[str]) -> str:
    """The heading, or when it holds a word none of its sentences holds (a model's heading, or a point dropped by
    the audit), one made of the sentences' own words."""
    if not texts or not words_missing(heading, texts):
        return heading
    return make_heading(annotate(list(texts)), fallback="Key points")


def fit_labels(points: Sequence[Point]) -> list[Point]:
    """Each group label of a section's points held to the same rule as headings, against its group's points."""
    groups: dict[str, list[str]] = {}
    for p in points:
        groups.setdefault(p.aspect, []).append(p.text)
    fitted = {label: fit_heading(label, texts) if label else "" for label, texts in groups.items()}
    return [replace(p, aspect=fitted[p.aspect]) for p in points]


def _is_invented(marker: str, n_passages: int) -> bool:
    """A marker that names no passage shown (out of range or malformed), as opposed to one that was shown but
    does not support its sentence."""
    m = re.fullmatch(r"\[(\d+)\]", marker.strip())
    return not m or not 1 <= int(m.group(1)) <= n_passages
