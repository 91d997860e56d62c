"""The only place that talks to a model server: ChatOpenAI for OpenAI or any OpenAI-compatible server."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from rag.config import AnswerSettings, UnreadableFile, read_named_file


class ModelError(Exception):
    """The model server could not be used; the message says which server and why."""


def openai_chat_model(settings: AnswerSettings, streaming: bool = True) -> Any:
    """ChatOpenAI with an explicit timeout and bounded retries, so a dead server fails in seconds, not minutes."""
    from langchain_openai import ChatOpenAI

    base_url, api_key = model_server("the openai backend", "use --backend extractive to answer offline")
    return ChatOpenAI(
        model=os.environ.get("RAG_ANSWER__OPENAI_MODEL", settings.openai_model),
        base_url=base_url,
        api_key=SecretStr(api_key),
        timeout=attempt_timeout(settings.timeout_s, settings.max_retries),
        max_retries=settings.max_retries,
        temperature=0.0,
        streaming=streaming,
        # Every call is bounded: a small model otherwise runs on until its context fills. OpenAI reads
        # max_completion_tokens; llama.cpp's and other local servers read max_tokens.
        max_tokens=settings.reply_tokens,
        extra_body={"max_tokens": settings.reply_tokens} if base_url else None,
    )


def attempt_timeout(total_s: float, retries: int) -> float:
    """Seconds one attempt may take so that every attempt, and the client's back-off between them (0.5 s, 1 s,
    2 s, ...), fits in `total_s`: a dead server fails within the timeout the user set, not (retries + 1) times it."""
    backoff = sum(min(0.5 * 2**n, 8.0) for n in range(retries))
    return max((total_s - backoff) / (retries + 1), total_s / (retries + 1) / 2)


def model_server(user: str, way_out: str) -> tuple[str | None, str]:
    """(base URL, API key) of the server the environment names, or ModelError saying what `user` needs."""
    base_url = os.environ.get("OPENAI_BASE_URL")
    api_key = os.environ.get("OPENAI_API_KEY")
    if not api_key and not base_url:
        raise ModelError(f"{user} needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local server); {way_out}")
    return base_url, api_key or "not-needed"  # local OpenAI-compatible servers accept any key


def client_failure(e: BaseException) -> str | None:
    """One line for a failure of the model client stack (openai, httpx and langchain raise many types); None for
    any other error, which is a bug and must show as one."""
    return describe_failure(e) if type(e).__module__.startswith(("openai", "httpx", "langchain")) else None


def describe_failure(e: BaseException) -> str:
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


class ResponseCache:
    """Model replies recorded to / replayed from a JSON file, keyed by model and prompt, so CI runs of an LLM
    backend are deterministic, free and offline."""

    def __init__(self, path: Path, mode: str) -> None:
        if mode not in ("record", "replay"):
            raise ValueError(f"cache mode must be record or replay, not {mode!r}")
        self.path, self.mode = path, mode
        self.entries: dict[str, str] = {}
        if path.exists() or mode == "replay":  # a recording starts a new file or adds to one
            try:
                entries = json.loads(read_named_file(path, "response cache"))
            except UnreadableFile as e:
                raise ModelError(f"{e}{' (make one with --record)' if not path.exists() else ''}") from None
            except json.JSONDecodeError as e:
                raise ModelError(f"{path}: not a response cache ({e.msg} at line {e.lineno})") from None
            if not isinstance(entries, dict) or not all(isinstance(r, str) for r in entries.values()):
                raise ModelError(f"{path}: not a response cache (expected a JSON object of recorded replies)")
            self.entries = entries

    @staticmethod
    def key(model: str, messages: list[Any]) -> str:
        payload = json.dumps([model] + [[type(m).__name__, m.content] for m in messages], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()

    def get(self, key: str) -> str | None:
        hit = self.entries.get(key)
        if hit is None and self.mode == "replay":
            raise ModelError(f"{self.path}: no recorded reply for this prompt; record again with --record")
        return hit

    def put(self, key: str, reply: str) -> None:
        self.entries[key] = reply

    def save(self) -> None:
        if self.mode == "record" and (self.entries or self.path.exists()):  # a run that failed at once leaves no file
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.entries, indent=1, ensure_ascii=False), encoding="utf-8")
