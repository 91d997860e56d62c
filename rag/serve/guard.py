"""What stands between the network and the corpus: the bearer token, the Host header of a loopback server, the
request body's size and the number of requests in flight. Each refusal is a JSON `{"error": ...}` with a status
that says why; no connection is dropped."""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import Request

from rag.service import ServiceError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = ("localhost",)
TOKEN_VARIABLE = "RAG_SERVE__TOKEN"
RETRY_AFTER_S = 1
# Sent with every reply: no sniffing a JSON reply into a page, no framing by another site, no referrer leaking a
# question that sits in a URL (/?q=...).
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer")]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: the only addresses `rag serve` binds without a token."""
    host = host.strip().strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bearer_checker(token: str | None) -> Callable[[Request], None]:
    """A dependency for the /v1/ routes: with a token set, `Authorization: Bearer <token>` or 401."""

    def check(request: Request) -> None:
        if token is None:
            return
        scheme, _, sent = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), token.encode()):
            why = "wrong bearer token" if sent else "this server needs `Authorization: Bearer <token>`"
            raise Unauthorized(why)

    return check


def ingest_checker(token: str | None) -> Callable[[], None]:
    """Ingest reads the server's own files: never open to whoever reaches the port, even on loopback."""

    def check() -> None:
        if token is None:
            raise ServiceError(f"ingest over HTTP is off: set {TOKEN_VARIABLE} to allow it (with the bearer token)",
                               status=403)

    return check


class Unauthorized(ServiceError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=401)


class Guard:
    """ASGI middleware: security headers on every reply; for a loopback server without a token, only loopback
    Host headers (a page on another site cannot reach it through DNS rebinding); request bodies of at most
    `max_body` bytes (413); at most `max_concurrent` /v1/ requests in flight (503 with Retry-After beyond)."""

    def __init__(self, app: ASGIApp, max_body: int, max_concurrent: int, loopback_hosts_only: bool) -> None:
        self.app = app
        self.max_body = max_body
        self.max_concurrent = max_concurrent
        self.loopback_hosts_only = loopback_hosts_only
        self.in_flight = 0  # one event loop: a plain counter cannot race

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        if self.loopback_hosts_only and not is_loopback(_host_name(scope)):
            await _refuse(send, 421, "this server answers only requests addressed to localhost; set "
                          f"{TOKEN_VARIABLE} to serve other names")
            return
        counted = scope["path"].startswith("/v1/")
        if counted and self.in_flight >= self.max_concurrent:
            await _refuse(send, 503, f"busy: {self.max_concurrent} requests in flight; retry in a moment",
                          [(b"retry-after", str(RETRY_AFTER_S).encode())])
            return
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        self.in_flight += counted
        try:
            await self.app(scope, _replay(body, receive), send)
        finally:
            self.in_flight -= counted

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body (it is small by the limit), or None once a 413 has been sent."""
        too_large = f"the request body is larger than {self.max_body // 1024} KiB"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _refuse(send, 413, too_large)
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                await _refuse(send, 413, too_large)
                return None
            if not message.get("more_body"):
                return b"".join(chunks)


def _host_name(scope: Scope) -> str:
    host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
    if host.startswith("["):  # [::1]:8765
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # after the body: wait for the disconnect, as the server would say it
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
        await send(message)

    return sending


async def _refuse(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
