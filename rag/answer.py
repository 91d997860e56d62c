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
from rag.cite import attach_marker, content_words, overlap, strip_foreign_links, verify
from rag.config import AnswerSettings
from rag.embed import Embedder
from rag.prompts import load_prompt
from rag.retrieve import Retriever
from rag.types import Answer, Passage

CANNOT_ANSWER = "Not in the sources: the ingested articles do not answer this question."


def pack(passages: Sequence[Passage], budget_tokens: int) -> list[Passage]:
    """Passages in rank order while they fit the token budget (the first one always goes in)."""
    packed, used = [], 0
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


_NUMBER = re.compile(r"\d")
_DATE_WORDS = re.compile(r"\b(\d{4}|January|February|March|April|May|June|July|August|September|October|November|"
                         r"December|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|ago|since)\b")
_NAME = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)+")


def _type_bonus(question: str, sentence: str) -> float:
    q = question.lower()
    if re.search(r"\bhow (many|much)\b|\bwhat (number|amount|sum)\b", q):
        return 0.06 if _NUMBER.search(sentence) else -0.04
    if re.match(r"\s*(when|what date|on what day)\b", q):
        return 0.06 if _DATE_WORDS.search(sentence) else -0.04
    if re.match(r"\s*(who|which group|which groups|name)\b", q):
        return 0.03 if _NAME.search(sentence) else 0.0
    return 0.0


def _is_statement(sentence: str) -> bool:
    """Headlines and captions are not answers: a statement ends like a sentence or is long."""
    return sentence.rstrip()[-1:] in '.!?"”’\'' or len(sentence.split()) >= 12


def score_sentences(question: str, q_vec: np.ndarray, passages: Sequence[Passage], embedder: Embedder,
                    max_candidates: int = 14) -> list[Candidate]:
    """Source sentences of the passages, scored by meaning (cosine), shared words and answer type. Only the
    `max_candidates` most promising by words and rank are embedded: embedding is the expensive step."""
    pool = []
    for n, p in enumerate(passages, start=1):
        for s, e in sentence_spans(p.text):
            sentence = p.text[s:e]
            if len(content_words(sentence)) >= 3 and _is_statement(sentence):
                lexical = overlap(question, sentence)
                pool.append((lexical + 0.15 / n, lexical, n, sentence))
    pool = sorted(pool, key=lambda t: -t[0])[:max_candidates]
    if not pool:
        return []
    vectors = _embed_cached(embedder, [t[3] for t in pool])
    out = []
    for (_, lexical, n, text), v in zip(pool, vectors):
        rank_prior = 0.02 / n  # a slight preference for the passages retrieval ranked first
        score = 0.6 * float(v @ q_vec) + 0.4 * lexical + _type_bonus(question, text) + rank_prior
        out.append(Candidate(n, text, score, v))
    return sorted(out, key=lambda c: -c.score)


_SENTENCE_VECTORS: dict[tuple[str, str], np.ndarray] = {}


def _embed_cached(embedder: Embedder, texts: list[str]) -> list[np.ndarray]:
    """Sentence vectors, remembered per process: follow-up questions mostly meet the same passages."""
    missing = [t for t in dict.fromkeys(texts) if (embedder.name, t) not in _SENTENCE_VECTORS]
    if missing:
        if len(_SENTENCE_VECTORS) > 50_000:
            _SENTENCE_VECTORS.clear()
        for t, v in zip(missing, embedder.embed_documents(missing)):
            _SENTENCE_VECTORS[(embedder.name, t)] = v
    return [_SENTENCE_VECTORS[(embedder.name, t)] for t in texts]


def select_sentences(candidates: Sequence[Candidate], max_sentences: int, min_relevance: float,
                     margin: float = 0.1, redundancy: float = 0.8) -> list[Candidate]:
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
                      settings: AnswerSettings) -> str:
    chosen = select_sentences(score_sentences(question, q_vec, passages, embedder), settings.max_sentences,
                              settings.min_relevance)
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
            return extractive_answer(question, q_vec, passages, self.retriever.embedder, self.settings)
        llm = self.model | StrOutputParser()
        if on_token is None:
            return str(llm.invoke(self.messages(question, passages)))
        parts = []
        for token in llm.stream(self.messages(question, passages)):
            parts.append(token)
            on_token(token)
        return "".join(parts)

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
