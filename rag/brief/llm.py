"""LLM mode: map (one call per relevant document: key points with [n] markers over that document's passages,
checked right away) and reduce (one call: merge the checked points into an overview, sections and disagreements);
see prompts/brief_map.md and prompts/brief_reduce.md. A reply without that layout falls back to the checked map
points, one section per event."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rag.answer import pack, render_passages
from rag.brief.audit import _is_invented, audit_claims
from rag.brief.gather import Material
from rag.brief.model import Draft
from rag.cite import attach_marker
from rag.types import Citation, Passage


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
    relevant = {c.doc for c in material.pool}
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
