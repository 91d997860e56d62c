"""The only place that talks to a model server: ChatOpenAI for OpenAI or any OpenAI-compatible server."""

from __future__ import annotations

import os
from typing import Any

from rag.config import AnswerSettings


class ModelError(Exception):
    """The model server could not be used; the message says which server and why."""


def openai_chat_model(settings: AnswerSettings, streaming: bool = True) -> Any:
    """ChatOpenAI with an explicit timeout and bounded retries, so a dead server fails in seconds, not minutes."""
    from langchain_openai import ChatOpenAI

    base_url = os.environ.get("OPENAI_BASE_URL")
    api_key = os.environ.get("OPENAI_API_KEY")
    if not api_key and not base_url:
        raise ModelError("the openai backend needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local server); "
                         "use --backend extractive to answer offline")
    return ChatOpenAI(
        model=os.environ.get("RAG_ANSWER__OPENAI_MODEL", settings.openai_model),
        base_url=base_url,
        api_key=api_key or "not-needed",  # local OpenAI-compatible servers accept any key
        timeout=settings.timeout_s,
        max_retries=settings.max_retries,
        temperature=0.0,
        streaming=streaming,
    )


def describe_failure(e: Exception) -> str:
    import openai

    where = os.environ.get("OPENAI_BASE_URL", "api.openai.com")
    if isinstance(e, openai.APITimeoutError):
        return f"the model server at {where} did not answer in time"
    if isinstance(e, openai.APIConnectionError):
        return f"cannot reach the model server at {where}"
    if isinstance(e, openai.AuthenticationError):
        return f"the model server at {where} rejected the API key (OPENAI_API_KEY)"
    if isinstance(e, openai.APIStatusError):
        return f"the model server at {where} answered {e.status_code}: {e.message}"
    return f"model call failed: {e}"
