"""Cited briefings: a topic -> a multi-source briefing (Markdown / HTML / JSON) in which every sentence carries a
checked citation.

The data flow, one module each:

1. `gather`: retrieve for the topic (and within each document it finds), keep the sentences that speak to the
   topic (embedding cosine + shared words; the bars in bars.json are fitted by evals/fit_brief.py on the dev
   halves of all gold sets and checked by bench/brief_quality.py), annotate them with
   spaCy (dates, places, names, noun phrases, figures, negation, attribution) and group the documents into
   events by the dates they carry (metadata, dateline) or state, and by likeness of their words.
2. `compose` (offline, extractive): an overview, one section per event with its points grouped by meaning
   (clustering of their embeddings), `headings` made of the points' own words, and `disagree`: the same thing
   said by two documents with different figures, negated (the same word, or a clause about a party the other
   names), or put in the mouths of different sources; a sentence below the topic bar may dispute an on-topic one.
   `llm` (with a model): map (one call per document) and reduce (one call), see prompts/brief_*.md.
3. `audit`: every claim sentence goes through `rag.cite.verify` against the passages it cites; a sentence without
   a verified citation is dropped (or flagged); a heading holding a word none of its points holds is remade
   from their words. Citations are numbered 1..m in order of first appearance.
4. `render`: Markdown, one self-contained HTML page, JSON.
"""

from rag.brief.audit import audit_claims, finalize
from rag.brief.compose import cluster, extractive_draft
from rag.brief.disagree import find_disagreements
from rag.brief.gather import (
    MIN_DOC_RELEVANCE,
    MIN_RELEVANCE,
    Candidate,
    Material,
    candidates,
    default_k,
    gather,
    is_claim_sentence,
)
from rag.brief.headings import heading, words_missing
from rag.brief.llm import MapInput, _parse_reduce, llm_draft, map_plan
from rag.brief.make import make_briefing, unmentioned_words
from rag.brief.model import NOT_IN_SOURCES, Audit, Briefing, Disagreement, Draft, Event, Point, Section
from rag.brief.render import render_html, render_markdown, to_json_text
from rag.cite import attach_marker

__all__ = [
    "MIN_DOC_RELEVANCE", "MIN_RELEVANCE", "NOT_IN_SOURCES", "Audit", "Briefing", "Candidate", "Disagreement",
    "Draft", "Event", "MapInput", "Material", "Point", "Section", "_parse_reduce", "attach_marker", "audit_claims",
    "candidates", "cluster", "default_k", "extractive_draft", "find_disagreements", "finalize", "gather", "heading",
    "is_claim_sentence", "llm_draft", "make_briefing", "map_plan", "render_html", "render_markdown",
    "to_json_text", "unmentioned_words", "words_missing",
]
