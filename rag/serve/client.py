"""The client `rag ask` uses when RAG_SERVER_URL names a running `rag serve`: the standard library only, so a
question through the server costs no model, store or index load (nothing heavy is imported on this path)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

TIMEOUT_S = 300.0  # a briefing-sized model reply on a slow local server; the server bounds its own model calls


class ServerError(Exception):
    """The server could not be reached or refused the request: one line naming the URL."""


def ask(url: str, body: dict[str, Any], token: str | None = None,
        on_token: Callable[[str], None] | None = None, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """POST /v1/ask: the `rag ask --json` object. With `on_token`, the answer streams (server-sent events) and
    each model token is handed to it as it comes."""
    stream = on_token is not None
    request = _request(url, "/v1/ask", {**body, "stream": stream}, token, stream)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            if not stream:
                return _json_of(reply.read(), url)
            for event, data in _events(reply):
                if event == "token" and on_token is not None:
                    on_token(data)
                elif event == "answer":
                    return dict(data)
                elif event == "error":
                    raise ServerError(f"the server at {url} failed: {data.get('error', data)}")
    except urllib.error.HTTPError as e:
        hint = "; RAG_SERVE__TOKEN is the token it is sent" if e.code == 401 else ""
        raise ServerError(f"the server at {url} answered {e.code}: {_error_of(e)}{hint}") from None
    except (urllib.error.URLError, OSError) as e:
        why = getattr(e, "reason", None) or e
        raise ServerError(f"cannot reach the server at {url} (RAG_SERVER_URL): {why}") from None
    raise ServerError(f"the server at {url} ended the stream without an answer")


def _request(url: str, path: str, body: dict[str, Any], token: str | None, stream: bool) -> urllib.request.Request:
    headers = {"content-type": "application/json", "accept": "text/event-stream" if stream else "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return urllib.request.Request(url.rstrip("/") + path, data=json.dumps(body).encode(), headers=headers,
                                  method="POST")


def _events(reply: Any) -> Iterator[tuple[str, Any]]:
    """(event, decoded data) of a server-sent event stream."""
    event, data = "message", list[str]()
    for raw in reply:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", list[str]()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def _json_of(raw: bytes, url: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except ValueError:
        raise ServerError(f"the server at {url} sent a reply that is not JSON") from None
    if not isinstance(obj, dict):
        raise ServerError(f"the server at {url} sent an unexpected reply")
    return obj


def _error_of(e: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(e.read())["error"])
    except (ValueError, KeyError, TypeError, OSError):
        return str(e.reason)
