"""The entry point: a topic -> a cited, audited briefing from the chain's store, extractive or by an LLM."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from rag.brief.audit import finalize
from rag.brief.compose import extractive_draft
from rag.brief.gather import gather
from rag.brief.llm import llm_draft
from rag.brief.model import Briefing, Draft
from rag.lexical import words as lexical_words


def make_briefing(chain: Any, topic: str, k: int | None = None, unsupported: str = "drop") -> Briefing:
    """A cited briefing on `topic` from the chain's store. `chain.backend` picks extractive or the LLM map-reduce;
    `k` is the number of passages the topic retrieves; `unsupported` is "drop" or "flag"."""
    if not topic.strip():
        raise ValueError("the topic is empty")
    if unsupported not in ("drop", "flag"):
        raise ValueError(f"unsupported must be 'drop' or 'flag', not {unsupported!r}")
    t0 = time.perf_counter()
    words = tuple(dict.fromkeys(lexical_words(topic)))
    unmentioned = unmentioned_words(words, getattr(chain.retriever, "lexical", None))
    material = gather(chain, topic, k)
    t1 = time.perf_counter()
    if 2 * len(unmentioned) > len(words):
        draft = Draft()  # "Crimea bridge attack" over articles that never name Crimea or a bridge: only "attack"
    elif chain.backend == "extractive":
        draft = extractive_draft(material)
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
