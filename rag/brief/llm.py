"""LLM mode: map (one call per relevant document: its key points, checked right away) and reduce (one call: merge
the checked points into an overview, sections and disagreements).

By numbered sentences (the default, as the sentence reader reads; prompts/brief_map_sentences.md and
brief_reduce_sentences.md): the map sees every sentence of the document's passages numbered `[p.s]` and answers in
JSON, each point with the ids of the sentences that state it; the reduce sees the points' sentences numbered once
and answers in JSON, each sentence with the ids of the quotes that state it. Every citation is thus a whole source
sentence, exact by construction; an id that names nothing is dropped and counted, and a claim without evidence
(none given, or evidence that does not state it) is flagged or dropped by the audit. A server that refuses JSON
replies, or RAG_ANSWER__READER=markers, gets the marker prompts (prompts/brief_map.md and brief_reduce.md): points
with [n] passage markers, narrowed to sentences by verification. A reduce reply without the layout falls back to
the checked map points, one section per event."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rag.answer import pack, render_passages
from rag.brief.audit import _is_invented, audit_claims
from rag.brief.gather import Material
from rag.brief.model import Checked, Claim, Draft
from rag.cite import attach_marker, number_citations
from rag.read.sentences import (
    Numbered,
    SentenceReader,
    claims_of,
    load_reply,
    number_passages,
    parse_reply,
    schema_for,
    statements_of,
)
from rag.types import Citation, Passage, Pick


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
    """The briefing's draft by numbered sentences, or by the marker prompts (chosen, or the server's refusal of
    JSON replies)."""
    if getattr(chain.settings, "reader", "sentences") == "sentences":
        reader = SentenceReader(chain.settings, chain.model)
        reader.cache = chain.cache
        draft = sentence_draft(reader, material)
        if draft is not None:
            return draft
    return marker_draft(chain, material)


def marker_draft(chain: Any, material: Material) -> Draft:
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
            for sentence, citations, dropped in audit_claims(line, item.passages, draft.removed_links):
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
            claims: list[tuple[Claim, list[Passage], str, str]] = [
                (line[2:].rsplit(" (from ", 1)[0], quote_passages, "", "") for line in lines]
            parsed.sections.append((event, claims))
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


# -- by numbered sentences ---------------------------------------------------------------------------------------

MAP_POINTS = 6  # the most key points a map call may give (its prompt says so; a grammar holds it to it)


def sentence_draft(reader: SentenceReader, material: Material) -> Draft | None:
    """Map and reduce by numbered sentences; None when the server refuses JSON replies (read by markers then)."""
    draft = Draft()
    points: list[tuple[Checked, str]] = []  # the checked map points and their documents
    for item in map_plan(material, {c.doc for c in material.pool}):
        numbered = number_passages(item.passages, reader.settings.context_tokens)
        raw, mode = reader.reply(_messages(
            "brief_map_sentences", topic=material.topic, title=item.title, doc=item.doc,
            date=item.date or "not stated", event=item.event or "not determined", passages=numbered.text),
            None, list(numbered.ids), MAP_POINTS)
        if mode == "markers":
            return None
        parsed = parse_reply(raw)
        if parsed is None or parsed[1]:
            continue  # an unparsed reply gives no points; "unanswerable": the article says nothing of the topic
        for point in checked(parsed[0], numbered, MAP_POINTS):
            draft.invented.extend(point.dropped)
            if not point.text:
                continue
            if point.citations:
                points.append((Checked(point.text, point.citations), item.doc))  # its bad ids counted here, once
            else:
                draft.draft_dropped += 1
    if points:
        _sentence_reduce(reader, material, points, draft)
    return draft


def checked(claims: list[tuple[str, list[str]]], numbered: Numbered, max_claims: int) -> list[Checked]:
    """Claims with evidence ids -> Checked claims: each id resolved to its whole sentence, an id that names nothing
    dropped (as `[id]`), a claim whose evidence does not state it left without citations."""
    out = []
    for text, ids in claims[:max_claims]:
        links: list[str] = []
        statements, dropped = statements_of([(text, ids)], numbered, 1, links)
        cites = number_citations(statements, list(numbered.passages)).citations if statements else ()
        out.append(Checked(statements[0].text if statements else "", tuple(cites), tuple(dropped), tuple(links)))
    return out


def _sentence_reduce(reader: SentenceReader, material: Material, points: list[tuple[Checked, str]],
                     draft: Draft) -> None:
    """The checked points' sentences numbered once ("1".."m", each a quote: a whole source sentence); the reduce
    writes the briefing in JSON, every sentence naming its quotes, and each is checked as a map point is."""
    quotes: list[Citation] = []
    index: dict[tuple[str, int, int], str] = {}
    lines_by_event: dict[str, list[str]] = defaultdict(list)
    by_event: dict[str, list[tuple[Claim, list[Passage], str, str]]] = defaultdict(list)
    for point, doc in points:
        ids = []
        for c in point.citations:
            key = (c.doc, c.start, c.end)
            if key not in index:
                quotes.append(c)
                index[key] = str(len(quotes))
            ids.append(index[key])
        event = material.events[material.event_of.get(doc, 0)].heading if material.events else ""
        lines_by_event[event or "Key points"].append(f"- {point.text} (evidence: {', '.join(ids)}; from {doc})")
        by_event[event or "Key points"].append((point, [], doc, ""))
    passages = [Passage(chunk_id=c.chunk_id, doc=c.doc, start=c.start, end=c.end, text=c.quote, title=c.title)
                for c in quotes]
    numbered = Numbered(tuple(passages), {str(i): Pick(i, 0, len(c.quote)) for i, c in enumerate(quotes, 1)}, "")
    notes = "\n\n".join(f"Event: {event}\n" + "\n".join(lines) for event, lines in lines_by_event.items())
    sources = "\n".join(f"[{i}] {c.doc}: “{' '.join(c.quote.split())}”" for i, c in enumerate(quotes, start=1))
    headings = "\n".join(f"- {e.heading}" for e in material.events if e.heading) or "- Key points"
    raw, mode = reader.reply(_messages("brief_reduce_sentences", topic=material.topic, points=notes,
                                       sources=sources, headings=headings),
                             None, list(numbered.ids), schema=reduce_schema(list(numbered.ids)))
    if mode != "markers":
        _read_reduce(load_reply(raw), numbered, draft)
    if not draft.overview and not draft.sections:
        # The model gave nothing usable: the checked map points, one section per event.
        draft.sections.extend(by_event.items())


def reduce_schema(ids: list[str]) -> dict[str, Any]:
    claim = schema_for(ids)["properties"]["answer"]["items"]

    def group(name: str, items: str) -> dict[str, Any]:
        return {"type": "object", "properties": {name: {"type": "string"}, items: {"type": "array", "items": claim}},
                "required": [name, items], "additionalProperties": False}

    return {"type": "object", "properties": {
        "overview": {"type": "array", "items": claim},
        "sections": {"type": "array", "items": group("heading", "points")},
        "disagreements": {"type": "array", "items": group("label", "claims")},
    }, "required": ["overview", "sections", "disagreements"], "additionalProperties": False}


def _read_reduce(data: Any, numbered: Numbered, draft: Draft) -> None:
    """The reduce's JSON -> the draft's overview, sections and disagreements, every claim Checked against the
    quotes it names; a part not of the schema's shape is left out."""
    if not isinstance(data, dict):
        return
    passages = list(numbered.passages)

    def claims(items: Any) -> list[Checked]:
        found = claims_of(items)
        return [c for c in checked(found, numbered, len(found)) if c.text] if found else []

    def doc(c: Checked) -> str:
        return c.citations[0].doc if c.citations else ""

    draft.overview.extend((c, passages, doc(c)) for c in claims(data.get("overview")))
    for key, name, items in (("sections", "heading", "points"), ("disagreements", "label", "claims")):
        groups = data.get(key)
        for group in groups if isinstance(groups, list) else []:
            if not isinstance(group, dict) or not isinstance(group.get(name), str):
                continue
            found = claims(group.get(items))
            if key == "sections":
                draft.sections.append((group[name], [(c, passages, doc(c), "") for c in found]))
            else:
                label = re.sub(r"^sources differ on\s+", "", group[name].strip().rstrip(":"), flags=re.I)
                draft.disagreements.append((label, "", [(c, passages, doc(c)) for c in found]))
