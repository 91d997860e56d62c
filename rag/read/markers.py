"""The marker reader: a chat model (any OpenAI-compatible server) answers in prose with [n] passage markers; each
marker is narrowed to the sentence of passage n that supports its statement (rag.cite.resolve_markers), and a
marker that names no shown passage is dropped."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser

from rag.cite import resolve_markers, strip_foreign_links
from rag.config import AnswerSettings
from rag.prompts import load_prompt
from rag.read import CANNOT_ANSWER, Reading
from rag.read.context import render_passages
from rag.types import Passage


class MarkerReader:
    name = "markers"

    def __init__(self, settings: AnswerSettings, model: Any = None) -> None:
        self.settings = settings
        self.prompt = load_prompt("answer")
        self._model = model  # a LangChain chat model; built from settings on first use when None
        self.cache: Any = None  # rag.llm.ResponseCache for recorded / replayed model replies

    @property
    def model(self) -> Any:
        if self._model is None:
            from rag.llm import openai_chat_model

            self._model = openai_chat_model(self.settings)
        return self._model

    def messages(self, question: str, passages: Sequence[Passage]) -> list[Any]:
        system, user = self.prompt.render(question=question, passages=render_passages(passages),
                                          cannot_answer=CANNOT_ANSWER, max_sentences=str(self.settings.max_sentences))
        return [SystemMessage(system), HumanMessage(user)]

    def reply(self, messages: list[Any], on_token: Callable[[str], None] | None = None) -> str:
        """The model's reply, from the recording when one is replayed; streamed to `on_token` when given."""
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

    def read(self, question: str, q_vec: np.ndarray, passages: Sequence[Passage],
             on_token: Callable[[str], None] | None = None) -> Reading:
        raw = strip_foreign_links(self.reply(self.messages(question, passages), on_token), list(passages))
        if CANNOT_ANSWER.lower().rstrip(".") in raw.lower():
            return Reading(mode=self.name)
        statements, dropped = resolve_markers(raw, passages)
        return Reading(tuple(statements), tuple(dropped), self.name)
