"""The answer chain (LangChain runnables): retrieve -> number and pack passages -> backend -> verify citations.

Backends: `extractive` (offline, deterministic: picks the source sentences that answer the question) and `openai`
(a chat model behind any OpenAI-compatible server). Both produce text with [n] markers; the same verification
turns markers into checked citations, so the user never sees a citation the sources do not back."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import Runnable, RunnableLambda

from rag.chunk import count_tokens, sentence_spans
from rag.cite import attach_marker, content_words, strip_foreign_links, verify
from rag.config import AnswerSettings
from rag.embed import Embedder
from rag.prompts import load_prompt
from rag.retrieve import Retriever
from rag.types import Answer, Passage

CANNOT_ANSWER = "Not in the sources: the ingested articles do not answer this question."


def pack(passages: Sequence[Passage], budget_tokens: int) -> list[Passage]:
    """Passages in rank order while they fit the token budget (the first one always goes in)."""
    packed: list[Passage] = []
    used = 0
    for p in passages:
        cost = count_tokens(p.text) + 20  # + the fence around it
        if packed and used + cost > budget_tokens:
            break
        packed.append(p)
        used += cost
    return packed


def render_passages(passages: Sequence[Passage]) -> str:
    """Fenced, numbered passages: the fence tells the model where data starts and ends."""
    blocks = []
    for n, p in enumerate(passages, start=1):
        text = p.text.replace("<passage", "&lt;passage").replace("</passage", "&lt;/passage")
        blocks.append(f'<passage n="{n}" title="{p.title}">\n{text}\n</passage>')
    return "\n\n".join(blocks)


# -- extractive backend ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    passage: int  # 1-based passage number
    text: str
    score: float
    vector: np.ndarray = field(repr=False, compare=False)


_MONTHS = ("january february march april may june july august september october november december "
           "monday tuesday wednesday thursday friday saturday sunday").split()
_NUMBER_WORDS = set("one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty "
                    "hundred hundreds thousand thousands million billion dozen dozens".split())
_TIME_WORD = re.compile(r"^(\d{4}|" + "|".join(_MONTHS) + ")$")
_CAPITALISED = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][\w-]+")


def answer_type(question: str) -> str | None:
    """What kind of string answers the question, when the wording says so."""
    q = question.lower().strip()
    if re.search(r"\bhow (many|much|large|big|long)\b|\bwhat (number|amount|sum|size)\b", q):
        return "number"
    if re.match(r"(when|what date|on what day|which (day|month|year|date))\b", q) or "what date" in q:
        return "date"
    if re.match(r"(who|whom|whose)\b", q) or re.search(r"\b(what|which) (is the )?(name|village|town|city|"
                                                      r"group|groups|person|official|organisation)\b", q):
        return "name"
    return None


def has_answer_of_type(kind: str | None, sentence: str, question: str) -> bool:
    """Does the sentence hold a candidate answer of that kind that the question does not already contain?"""
    if kind is None:
        return True
    asked = {w.lower() for w in re.findall(r"[\w-]+", question)}
    words = re.findall(r"[\w-]+", sentence)
    if kind == "number":
        return any((w.isdigit() or w.lower() in _NUMBER_WORDS) and w.lower() not in asked for w in words)
    if kind == "date":
        return any((w.lower() in _MONTHS or re.fullmatch(r"\d{1,4}", w)) and w.lower() not in asked for w in words)
    return any(m.group(0).lower() not in asked for m in _CAPITALISED.finditer(sentence))


# Words that shape a question rather than name what it is about ("how many", "what kind", "which day").
_QUESTION_FORM = frozenset("many much kind type sort name names date day week weekday month year happen happened "
                           "take took place part according reportedly describe".split())


def question_terms(question: str) -> list[str]:
    """Content words of the question; dates and years drop out unless the question asks for a date, since they
    name the event rather than what is asked about it."""
    words = [w for w in content_words(question) if w not in _QUESTION_FORM]
    if answer_type(question) == "date":
        return words
    return [w for w in words if not _TIME_WORD.match(w)] or words


def weighted_overlap(terms: Sequence[str], sentence: str, idf: Callable[[str], float]) -> float:
    """Share of the question's word weight (idf: rare words weigh more) that the sentence contains."""
    if not terms:
        return 0.0
    have = {w[:6] for w in content_words(sentence)}
    total = sum(idf(t) for t in terms)
    return sum(idf(t) for t in terms if t[:6] in have) / total if total else 0.0


def _is_statement(sentence: str) -> bool:
    """Headlines and captions are not answers: a statement ends like a sentence or is long."""
    return sentence.rstrip()[-1:] in '.!?"”’\'' or len(sentence.split()) >= 12


# Weights of the extractive score, chosen on evals/gold/seeds.jsonl (see `rag eval`).
W_DENSE, W_TYPE, W_EXTRA = 0.5, 1.0, 1.0


def event_fit(question: str, passage: Passage) -> float:
    """+1 when the question names the year (and month) of the passage's document date, -1 when it names another
    year, 0 when either says nothing: 'the May 2023 incursion' should not be answered from a 2024 article."""
    years = re.findall(r"\b(19\d\d|20\d\d)\b", question)
    if not years or not passage.date:
        return 0.0
    return 1.0 if passage.date[:4] in years else -1.0


def score_sentences(question: str, q_vec: np.ndarray, passages: Sequence[Passage], embedder: Embedder,
                    idf: Callable[[str], float], max_candidates: int = 16) -> list[Candidate]:
    """Source sentences of the passages, scored by meaning (cosine), rare shared words, answer type and event.
    Only the `max_candidates` most promising by words and rank are embedded: embedding is the expensive step."""
    terms = question_terms(question)
    asked = {t[:6] for t in terms}
    kind = answer_type(question)
    pool: dict[tuple[str, int], tuple[float, float, int, str, float]] = {}
    for n, p in enumerate(passages, start=1):
        fit = event_fit(question, p)
        for s, e in sentence_spans(p.text):
            sentence = p.text[s:e]
            words = content_words(sentence)
            if len(words) < 3 or not _is_statement(sentence) or (p.doc, p.start + s) in pool:
                continue  # overlapping chunks repeat sentences: score each once
            lexical = weighted_overlap(terms, sentence, idf)
            # An answer adds something to the question: a sentence made only of the question's words does not.
            novelty = sum(w[:6] not in asked for w in words) / len(words)
            prior = 0.5 * lexical + 0.1 * fit + 0.1 * novelty + 0.05 / n
            pool[(p.doc, p.start + s)] = (prior, lexical, n, sentence, 0.1 * fit + 0.05 * novelty)
    ranked = sorted(pool.values(), key=lambda t: -t[0])[:max_candidates]
    if not ranked:
        return []
    vectors = _embed_cached(embedder, [t[3] for t in ranked])
    out = []
    for (_, lexical, n, text, extra), v in zip(ranked, vectors, strict=False):
        typed = 0.05 if kind and has_answer_of_type(kind, text, question) else (-0.1 if kind else 0.0)
        score = W_DENSE * float(v @ q_vec) + (1 - W_DENSE) * lexical + W_TYPE * typed + W_EXTRA * extra + 0.01 / n
        out.append(Candidate(n, text, score, v))
    return sorted(out, key=lambda c: -c.score)


_SENTENCE_VECTORS: dict[tuple[str, str], np.ndarray] = {}


def _embed_cached(embedder: Embedder, texts: list[str]) -> list[np.ndarray]:
    """Sentence vectors, remembered per process: follow-up questions mostly meet the same passages."""
    missing = [t for t in dict.fromkeys(texts) if (embedder.name, t) not in _SENTENCE_VECTORS]
    if missing:
        if len(_SENTENCE_VECTORS) > 50_000:
            _SENTENCE_VECTORS.clear()
        for t, v in zip(missing, embedder.embed_documents(missing), strict=False):
            _SENTENCE_VECTORS[(embedder.name, t)] = v
    return [_SENTENCE_VECTORS[(embedder.name, t)] for t in texts]


def select_sentences(candidates: Sequence[Candidate], max_sentences: int, min_relevance: float,
                     margin: float = 0.05, redundancy: float = 0.8) -> list[Candidate]:
    """The best sentence, plus the next ones that are nearly as relevant and say something new."""
    if not candidates or candidates[0].score < min_relevance:
        return []
    chosen = [candidates[0]]
    for c in candidates[1:]:
        if len(chosen) >= max_sentences or c.score < candidates[0].score - margin:
            break
        if all(float(c.vector @ o.vector) < redundancy for o in chosen):
            chosen.append(c)
    return chosen


def extractive_answer(question: str, q_vec: np.ndarray, passages: Sequence[Passage], embedder: Embedder,
                      idf: Callable[[str], float], settings: AnswerSettings) -> str:
    chosen = select_sentences(score_sentences(question, q_vec, passages, embedder, idf), settings.max_sentences,
                              settings.min_relevance, settings.margin)
    if not chosen:
        return CANNOT_ANSWER
    return " ".join(attach_marker(c.text, f"[{c.passage}]") for c in chosen)


# -- the chain ------------------------------------------------------------------------------------------
class AnswerChain:
    """Holds the loaded retriever and model, so every question after the first is fast."""

    def __init__(self, retriever: Retriever, settings: AnswerSettings, backend: str | None = None,
                 model: Any = None) -> None:
        self.retriever = retriever
        self.settings = settings
        self.backend = backend or settings.backend
        self.prompt = load_prompt("answer")
        self._model = model  # a LangChain chat model; built from settings on first use when None
        self.cache: Any = None  # rag.llm.ResponseCache for recorded / replayed model replies

    @property
    def model(self) -> Any:
        if self._model is None:
            from rag.llm import openai_chat_model

            self._model = openai_chat_model(self.settings)
        return self._model

    def retrieve(self, question: str, k: int | None = None, docs: Sequence[str] | None = None
                 ) -> tuple[np.ndarray, list[Passage]]:
        q_vec = self.retriever.embedder.embed_query(question)
        found = self.retriever.search(question, k=k, docs=docs, query_vector=q_vec)
        return q_vec, pack(found, self.settings.context_tokens)

    def messages(self, question: str, passages: Sequence[Passage]) -> list[Any]:
        system, user = self.prompt.render(question=question, passages=render_passages(passages),
                                          cannot_answer=CANNOT_ANSWER, max_sentences=str(self.settings.max_sentences))
        return [SystemMessage(system), HumanMessage(user)]

    def generate(self, question: str, q_vec: np.ndarray, passages: Sequence[Passage],
                 on_token: Callable[[str], None] | None = None) -> str:
        if self.backend == "extractive":
            return extractive_answer(question, q_vec, passages, self.retriever.embedder,
                                     self.retriever.lexical.idf, self.settings)
        messages = self.messages(question, passages)
        key = self.cache.key(self.settings.openai_model, messages) if self.cache else ""
        if self.cache and (hit := self.cache.get(key)) is not None:
            return str(hit)
        llm = self.model | StrOutputParser()
        if on_token is None:
            reply = str(llm.invoke(messages))
        else:
            parts = []
            for token in llm.stream(messages):
                parts.append(token)
                on_token(token)
            reply = "".join(parts)
        if self.cache:
            self.cache.put(key, reply)
        return reply

    def finalize(self, question: str, raw: str, passages: Sequence[Passage], timings: dict[str, float]) -> Answer:
        raw = strip_foreign_links(raw, list(passages))
        if CANNOT_ANSWER.lower().rstrip(".") in raw.lower() or not passages:
            return Answer(question, CANNOT_ANSWER, True, (), tuple(passages), self.backend, timings)
        checked = verify(raw, list(passages), drop_unsupported=self.settings.unsupported == "drop")
        if not checked.citations:  # nothing the sources back: say so rather than show unverifiable text
            return Answer(question, CANNOT_ANSWER, True, (), tuple(passages), self.backend, timings,
                          unsupported=checked.unsupported, dropped_markers=checked.dropped_markers)
        return Answer(question, checked.text, False, checked.citations, tuple(passages), self.backend, timings,
                      unsupported=checked.unsupported, dropped_markers=checked.dropped_markers)

    def ask(self, question: str, k: int | None = None, docs: Sequence[str] | None = None,
            on_token: Callable[[str], None] | None = None) -> Answer:
        t0 = time.perf_counter()
        q_vec, passages = self.retrieve(question, k, docs)
        t1 = time.perf_counter()
        raw = self.generate(question, q_vec, passages, on_token)
        t2 = time.perf_counter()
        timings = {"retrieve": (t1 - t0) * 1000, "generate": (t2 - t1) * 1000}
        answer = self.finalize(question, raw, passages, timings)
        timings["verify"] = (time.perf_counter() - t2) * 1000
        timings["total"] = (time.perf_counter() - t0) * 1000
        return answer

    def as_runnable(self) -> Runnable:
        """The chain as one LangChain runnable: {"question": ...} -> Answer."""

        def run(inputs: dict[str, Any]) -> Answer:
            return self.ask(inputs["question"], inputs.get("k"), inputs.get("docs"))

        return RunnableLambda(run)
