"""`rag serve`'s process: bind first (a taken port fails at once), load the corpus, then uvicorn with one worker
on the bound socket until Ctrl-C."""

from __future__ import annotations

import socket
from collections.abc import Callable

from rag.config import Settings
from rag.serve.guard import TOKEN_VARIABLE, is_loopback


class CannotServe(Exception):
    """A one-line reason `rag serve` will not start (exit 2)."""


def check_bind(host: str, token_set: bool) -> None:
    if not is_loopback(host) and not token_set:
        raise CannotServe(f"serving on {host} (not loopback) needs a token: set {TOKEN_VARIABLE}, and clients "
                          "send it as `Authorization: Bearer <token>`")


def bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        raise CannotServe(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(settings: Settings, host: str, port: int, backend: str | None, say: Callable[[str], None]) -> None:
    """Serve until Ctrl-C (returns) or SIGTERM. CannotServe for a bind refused, a taken port or a store that
    cannot load."""
    import uvicorn

    from rag.serve.app import create_app
    from rag.service import Service, ServiceError

    token = settings.serve.bearer()
    check_bind(host, token is not None)
    sock = bind(host, port)
    say(f"loading the store in {settings.chroma_url or settings.home} and the models…")
    service = Service(settings, backend)
    try:
        service.load()  # here, not at the first request: a broken store stops the start with its reason
    except ServiceError as e:
        sock.close()
        raise CannotServe(str(e)) from None
    app = create_app(service, settings, loopback_hosts_only=is_loopback(host) and token is None)
    config = uvicorn.Config(app, workers=1, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    say(f"listening on {url_of(sock)} (Ctrl-C stops)" + ("; bearer token required" if token else ""))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shut down gracefully, then raised the Ctrl-C again
        pass
    say("stopped")
