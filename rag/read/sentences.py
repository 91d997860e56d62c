"""The sentence reader: a chat model gets the passages with every sentence numbered (`[2.3]` is sentence 3 of
passage 2, split by the chunker's own splitter) and answers in JSON, each claim with the ids of the sentences
that state it. A citation is then a numbered sentence itself: an exact span of its source, a whole sentence by
construction. An id that names no sentence shown is dropped and counted; a claim left without evidence, or whose
content words share too little with its evidence, is flagged (or dropped) by verification.

The reply format is asked for as strictly as the server allows: `json_schema` (OpenAI structured outputs, vLLM),
else `json_object` with the schema beside it (llama.cpp's server constrains decoding to it), else the marker
reader's [n] prose. The first mode a server takes is kept for the reader's life."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser

from rag.chunk import count_tokens, sentence_spans
from rag.cite import overlap, strip_foreign_links
from rag.config import AnswerSettings
from rag.prompts import load_prompt
from rag.read import Reading
from rag.read.context import fenced
from rag.read.markers import MarkerReader
from rag.types import Passage, Pick, Statement

MODES = ("sentences", "json", "markers")  # most to least strict; "markers" is the marker reader
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {"type": "array", "items": {
            "type": "object",
            "properties": {"text": {"type": "string"}, "evidence": {"type": "array", "items": {"type": "string"}}},
            "required": ["text", "evidence"], "additionalProperties": False}},
        "unanswerable": {"type": "boolean"},
    },
    "required": ["answer", "unanswerable"],
    "additionalProperties": False,
}
# The least share of a claim's content words (stemmed) that its evidence sentences must hold. Measured with
# evals/claim_check.py on the gold sets' dev halves (233 claims, each its question and gold answer): at 0.2, 98.7%
# of claims keep their gold evidence and 7.7% pass with another item's evidence (0.1: 100% and 27.9%; 0.3: 93.6%
# and 3.0%). Below it the claim is not what the cited sentences say.
MIN_SHARED = 0.2


@dataclass(frozen=True)
class Numbered:
    """Passages as the model sees them: the text of the prompt and where each sentence id points."""

    passages: tuple[Passage, ...]
    ids: dict[str, Pick]  # "2.3" -> passage 2, its sentence 3 as offsets into the passage's text
    text: str


def number_passage(n: int, passage: Passage, limit: int | None = None) -> tuple[str, dict[str, Pick]]:
    """One fenced passage with its sentences numbered, on a line each (a line break inside a sentence becomes a
    space: the id still points at the exact span of the source)."""
    lines, ids = [], {}
    for i, (start, end) in enumerate(sentence_spans(passage.text)[:limit], start=1):
        key = f"{n}.{i}"
        ids[key] = Pick(n, start, end)
        lines.append(f"[{key}] {' '.join(passage.text[start:end].split())}")
    return fenced(n, passage.title, "\n".join(lines)), ids


def number_passages(passages: Sequence[Passage], budget_tokens: int) -> Numbered:
    """Passages in rank order while they fit the token budget, counted (tiktoken) as the model sees them: with
    their fences and sentence ids. The first passage always goes in, cut to the sentences that fit if need be."""
    blocks: list[str] = []
    ids: dict[str, Pick] = {}
    used = 0
    for n, passage in enumerate(passages, start=1):
        block, found = number_passage(n, passage)
        cost = count_tokens(block) + 2  # + the blank line between blocks
        if used + cost > budget_tokens:
            if blocks:
                break
            block, found = _first_that_fits(passage, budget_tokens)
            cost = count_tokens(block)
        blocks.append(block)
        ids.update(found)
        used += cost
    return Numbered(tuple(passages[:len(blocks)]), ids, "\n\n".join(blocks))


def _first_that_fits(passage: Passage, budget_tokens: int) -> tuple[str, dict[str, Pick]]:
    """The first passage cut to its leading sentences that fit the budget (at least one)."""
    total = len(sentence_spans(passage.text))
    for limit in range(total, 0, -1):
        block, ids = number_passage(1, passage, limit)
        if count_tokens(block) <= budget_tokens or limit == 1:
            return block, ids
    return number_passage(1, passage, 1)


def schema_for(ids: Sequence[str], max_claims: int | None = None) -> dict[str, Any]:
    """The reply's schema with the evidence ids limited to the ones shown: a server that constrains decoding to the
    schema cannot write an id that names nothing. With `max_claims`, at most that many claims of three ids each
    (llama.cpp's grammar honours the bounds; OpenAI's strict mode is not asked to)."""
    claim = SCHEMA["properties"]["answer"]["items"]
    evidence: dict[str, Any] = {"type": "array", "items": {"type": "string", "enum": list(ids)}}
    answer = {**SCHEMA["properties"]["answer"]}
    if max_claims:
        evidence["maxItems"] = 3
        answer["maxItems"] = max_claims
    answer["items"] = {**claim, "properties": {**claim["properties"], "evidence": evidence}}
    return {**SCHEMA, "properties": {**SCHEMA["properties"], "answer": answer}}


def response_format(mode: str, ids: Sequence[str], max_claims: int, schema: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    """The request's reply format in `mode`: the answer's schema with `ids`, or `schema` when a caller (a
    briefing's reduce) asks for a shape of its own."""
    if mode == "sentences":
        return {"type": "json_schema", "json_schema": {"name": "cited_answer", "schema": schema or schema_for(ids),
                                                       "strict": True}}
    return {"type": "json_object", "schema": schema or schema_for(ids, max_claims)}


def load_reply(raw: str) -> Any:
    """A JSON reply (in a code fence or not) -> its value; None when it is not JSON."""
    try:
        return json.loads(re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", raw))
    except json.JSONDecodeError:
        return None


def claims_of(items: Any) -> list[tuple[str, list[str]]] | None:
    """A list of `{"text", "evidence"}` objects -> [(claim, evidence ids)]; None when it is not of that shape."""
    if not isinstance(items, list):
        return None
    claims = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            return None
        evidence = item.get("evidence", [])
        if not isinstance(evidence, list):
            return None
        claims.append((item["text"], [str(e) for e in evidence if isinstance(e, (str, int, float))]))
    return claims


def parse_reply(raw: str) -> tuple[list[tuple[str, list[str]]], bool] | None:
    """A reply -> ([(claim, evidence ids)], unanswerable); None when it is not an object of the schema's shape."""
    data = load_reply(raw)
    claims = claims_of(data.get("answer", [])) if isinstance(data, dict) else None
    if claims is None or not isinstance(data, dict):
        return None
    return claims, bool(data.get("unanswerable", False))


def backed(claim: str, evidence: Sequence[str]) -> bool:
    """Do the claim's content words share enough with the sentences it cites? A claim of no content words (a
    bare figure is one) is taken at its word."""
    return overlap(claim, " ".join(evidence)) >= MIN_SHARED or not claim.strip(" .,;:!?")


def statements_of(claims: Sequence[tuple[str, list[str]]], numbered: Numbered, max_claims: int,
                  removed_links: list[str] | None = None) -> tuple[list[Statement], list[str]]:
    """Claims -> statements with the picked sentences; ids that name no sentence shown are returned as dropped.
    A claim whose words its evidence does not hold keeps no evidence, so verification flags it."""
    statements, dropped = [], []
    shown = list(numbered.passages)
    for text, ids in claims[:max_claims]:
        text = " ".join(strip_foreign_links(text, shown, removed=removed_links).split())
        picks: list[Pick] = []
        for key in ids:
            pick = numbered.ids.get(key.strip().strip("[]").strip())
            if pick is None:
                dropped.append(f"[{key}]")
            elif pick not in picks:
                picks.append(pick)
        quotes = [shown[p.passage - 1].text[p.start:p.end] for p in picks]
        if text:
            statements.append(Statement(text, tuple(picks) if backed(text, quotes) else ()))
    return statements, dropped


class ClaimStream:
    """Shows the claims' text as a JSON reply arrives: tokens in, the new part of the readable answer out."""

    TEXT = re.compile(r'"text"\s*:\s*"((?:[^"\\]|\\.)*)')

    def __init__(self, on_text: Callable[[str], None]) -> None:
        self.on_text, self.raw, self.shown = on_text, "", ""

    def __call__(self, token: str) -> None:
        self.raw += token
        parts = []
        for m in self.TEXT.finditer(self.raw):
            body = re.sub(r"\\(u[0-9a-fA-F]{0,3})?$", "", m.group(1))  # an escape cut in half waits for the rest
            try:
                parts.append(json.loads(f'"{body}"'))
            except json.JSONDecodeError:
                parts.append(body)
        text = " ".join(parts)
        if text.startswith(self.shown) and len(text) > len(self.shown):
            self.on_text(text[len(self.shown):])
            self.shown = text


class SentenceReader:
    name = "sentences"

    def __init__(self, settings: AnswerSettings, model: Any = None) -> None:
        self.settings = settings
        self.prompt = load_prompt("answer_sentences")
        self.fallback = MarkerReader(settings, model)
        self.mode = MODES[0]

    @property
    def model(self) -> Any:
        return self.fallback.model

    @property
    def cache(self) -> Any:
        return self.fallback.cache

    @cache.setter
    def cache(self, value: Any) -> None:
        self.fallback.cache = value

    def messages(self, question: str, numbered: Numbered) -> list[Any]:
        system, user = self.prompt.render(question=question, passages=numbered.text,
                                          max_sentences=str(self.settings.max_sentences))
        return [SystemMessage(system), HumanMessage(user)]

    def read(self, question: str, q_vec: np.ndarray, passages: Sequence[Passage],
             on_token: Callable[[str], None] | None = None) -> Reading:
        numbered = number_passages(passages, self.settings.context_tokens)
        messages = self.messages(question, numbered)
        raw, mode = self.reply(messages, on_token, list(numbered.ids))
        if mode == "markers":
            return self.fallback.read(question, q_vec, numbered.passages, on_token)
        parsed = parse_reply(raw)
        if parsed is None:
            return Reading(mode=mode, unparsed=True)
        claims, unanswerable = parsed
        if unanswerable:
            return Reading(mode=mode)
        statements, dropped = statements_of(claims, numbered, self.settings.max_sentences)
        return Reading(tuple(statements), tuple(dropped), mode)

    def reply(self, messages: list[Any], on_token: Callable[[str], None] | None = None, ids: Sequence[str] = (),
              max_claims: int | None = None, schema: dict[str, Any] | None = None) -> tuple[str, str]:
        """The reply and the mode that gave it: the recorded one when replaying (the modes in order, as they were
        tried), else the first mode from the current one on that the server takes. `max_claims` and `schema`
        replace the answer's bound and schema (a briefing's map and reduce)."""
        cache = self.cache
        for mode in MODES[MODES.index(self.mode):]:
            if mode == "markers":
                self._fall_back_to(mode)
                return "", mode
            key = cache.key(f"{self.settings.openai_model}|{mode}", messages) if cache else ""
            if cache and key in cache.entries:
                return str(cache.entries[key]), mode
            if cache and cache.mode == "replay":
                continue
            try:
                reply_format = response_format(mode, ids, max_claims or self.settings.max_sentences, schema)
                reply = self._call(messages, reply_format, on_token)
            except Exception as e:
                if not refused(e):
                    raise
                self._fall_back_to(MODES[MODES.index(mode) + 1])
                continue
            if cache:
                cache.put(key, reply)
            return reply, mode
        raise AssertionError("unreachable: the marker mode always answers")

    def _call(self, messages: list[Any], reply_format: dict[str, Any], on_token: Callable[[str], None] | None) -> str:
        # In the request body as it is, not as LangChain's `response_format`: that takes its parse path, which
        # raises on a reply cut at max_tokens instead of returning it (a cut reply counts as unparsed).
        body = {**(getattr(self.model, "extra_body", None) or {}), "response_format": reply_format}
        llm = self.model.bind(extra_body=body) | StrOutputParser()
        if on_token is None:
            return str(llm.invoke(messages))
        stream = ClaimStream(on_token)
        for token in llm.stream(messages):
            stream(token)
        return stream.raw

    def _fall_back_to(self, mode: str) -> None:
        if self.mode != mode:
            how = {"json": "a JSON object reply (json_object)", "markers": "[n] markers in prose"}[mode]
            print(f"note: the model server refused the {self.mode} reply format; reading with {how}",
                  file=sys.stderr)
            self.mode = mode


def refused(e: BaseException) -> bool:
    """Did the server turn down the reply format (as opposed to failing: a timeout, no connection, a bad key)?"""
    import openai

    status = getattr(e, "status_code", None)
    if not isinstance(e, openai.APIStatusError) and status is None:
        return False
    return status in (400, 404, 415, 422, 500, 501) and not isinstance(e, openai.AuthenticationError)
