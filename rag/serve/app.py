"""The HTTP JSON API and the web page of `rag serve`: a FastAPI app over one loaded `rag.service.Service`.

Every reply object is the CLI's `--json` object (the service makes them); every error is `{"error": "one line"}`
with a status that says why. The corpus loads once, at startup; the blocking chain runs in worker threads."""

from __future__ import annotations

import html
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from rag.config import ServeSettings, Settings
from rag.serve.guard import Guard, bearer_checker, ingest_checker
from rag.serve.stream import streamed_ask, wants_stream
from rag.service import Service, ServiceError

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("rag.serve")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422 naming it, not a silent default


class AskRequest(_Body):
    question: str
    k: int | None = None
    docs: list[str] | None = None
    backend: str | None = None
    stream: bool = False
    with_passages: bool = False


class SearchRequest(_Body):
    query: str
    k: int | None = None
    docs: list[str] | None = None


class BriefRequest(_Body):
    topic: str
    k: int | None = None
    backend: str | None = None
    flag_unsupported: bool = False


class IngestRequest(_Body):
    paths: list[str]
    keep_removed: bool = False


class Limits:
    """The per-request limits of ServeSettings, each a ServiceError with its status."""

    def __init__(self, serve: ServeSettings) -> None:
        self.serve = serve

    def text(self, what: str, value: str) -> str:
        if len(value) > self.serve.max_text_chars:
            raise ServiceError(f"the {what} is {len(value)} characters long; at most {self.serve.max_text_chars}",
                               status=413)
        return value

    def k(self, k: int | None) -> int | None:
        if k is not None and not 1 <= k <= self.serve.max_k:
            raise ServiceError(f"k must be from 1 to {self.serve.max_k}, not {k}", status=422)
        return k


def create_app(service: Service, settings: Settings | None = None, loopback_hosts_only: bool = False) -> FastAPI:
    """The app over `service` (loaded in the lifespan hook). `loopback_hosts_only`: refuse Host headers other
    than loopback names, for a server bound to loopback without a token."""
    settings = settings or service.settings
    serve = settings.serve
    token = serve.bearer()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await run_in_threadpool(service.load)  # the store, the model and the indexes: once
            app.state.load_error = None
        except ServiceError as e:  # answered as 503 by /healthz and by each request until the store is there
            app.state.load_error = str(e)
            log.error("rag serve: %s", e)
        yield

    app = FastAPI(title="rag-cite", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.load_error = None
    app.include_router(_api(service, Limits(serve)), dependencies=[Depends(bearer_checker(token))])
    app.include_router(_admin(service, Limits(serve), token), dependencies=[Depends(bearer_checker(token))])
    _page_routes(app)
    _error_handlers(app)
    app.add_middleware(Guard, max_body=serve.max_body_kb * 1024, max_concurrent=serve.max_concurrent,
                       loopback_hosts_only=loopback_hosts_only)
    return app


def _api(service: Service, limits: Limits) -> APIRouter:
    api = APIRouter(prefix="/v1")

    @api.post("/ask")
    async def ask(body: AskRequest, request: Request) -> Response:
        question = limits.text("question", body.question)
        args: dict[str, Any] = dict(k=limits.k(body.k), docs=body.docs, backend=body.backend,
                                    with_passages=body.with_passages)
        if body.stream or wants_stream(request):
            return streamed_ask(service, question, args)
        return JSONResponse(await run_in_threadpool(lambda: service.ask(question, **args)))

    @api.post("/search")
    def search(body: SearchRequest) -> dict[str, Any]:
        return service.search(limits.text("query", body.query), k=limits.k(body.k), docs=body.docs)

    @api.post("/brief")
    def brief(body: BriefRequest) -> dict[str, Any]:
        return service.brief(limits.text("topic", body.topic), k=limits.k(body.k), backend=body.backend,
                             flag_unsupported=body.flag_unsupported)

    @api.get("/documents")
    def documents() -> dict[str, Any]:
        return {"documents": service.documents()}

    @api.get("/documents/{doc_id:path}")
    def document(doc_id: str, start: int | None = Query(None, ge=0), end: int | None = Query(None, ge=0)
                 ) -> dict[str, Any]:
        return service.document(doc_id, start, end)

    return api


def _admin(service: Service, limits: Limits, token: str | None) -> APIRouter:
    admin = APIRouter(prefix="/v1")

    @admin.post("/ingest", dependencies=[Depends(ingest_checker(token))])
    def ingest(body: IngestRequest, request: Request) -> dict[str, Any]:
        if not body.paths:
            raise ServiceError("no paths to ingest", status=422)
        report = service.ingest(body.paths, keep_removed=body.keep_removed)
        request.app.state.load_error = None  # a server started on an empty home has a store now
        return report

    return admin


def _page_routes(app: FastAPI) -> None:
    @app.get("/healthz")
    def healthz(request: Request) -> JSONResponse:
        error = request.app.state.load_error
        if error:
            return JSONResponse({"status": "unavailable", "error": error}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/", include_in_schema=False)
    def page() -> Response:  # /?q=... too: the page reads q itself
        index = STATIC / "index.html"
        if not index.is_file():
            return _html_error(503, "The web page is not installed", "The API under /v1/ still answers.")
        return FileResponse(index, media_type="text/html; charset=utf-8", headers={"cache-control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        icon = STATIC / "favicon.svg"
        if not icon.is_file():
            raise HTTPException(404)
        return FileResponse(icon, media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, e: ServiceError) -> Response:
        headers = {"www-authenticate": "Bearer"} if e.status == 401 else None
        return JSONResponse({"error": str(e)}, status_code=e.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> Response:
        return JSONResponse({"error": _validation_message(e)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> Response:
        message = e.detail if isinstance(e.detail, str) else str(e.detail)
        if _is_api(request):
            if e.status_code == 404:
                message = f"no such endpoint: {request.method} {request.url.path}"
            elif e.status_code == 405:
                message = f"{request.method} is not allowed on {request.url.path}"
            return JSONResponse({"error": message}, status_code=e.status_code, headers=e.headers)
        if e.status_code == 404:
            return _html_error(404, f"No page at {request.url.path}",
                               "The page that asks your articles is at /, and the JSON API under /v1/.")
        return _html_error(e.status_code, message, "")

    @app.exception_handler(Exception)
    async def internal(request: Request, e: Exception) -> Response:
        log.exception("rag serve: %s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"internal error ({type(e).__name__}); the server log has the details"},
                            status_code=500)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/v1/") or request.url.path in ("/v1", "/healthz")


def _validation_message(e: RequestValidationError) -> str:
    """The first problem, on one line: `question: Field required`, `the body is not valid JSON`."""
    first = e.errors()[0]
    if first.get("type") == "json_invalid":
        return "the body is not valid JSON"
    if tuple(first.get("loc", ())) == ("body",):  # a list, a string, or a body sent as another content type
        return "the body must be a JSON object sent as Content-Type: application/json"
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    return f"{where}: {first.get('msg', 'invalid')}"


def _html_error(status: int, title: str, detail: str) -> HTMLResponse:
    page = (f"<!doctype html><html lang=en><meta charset=utf-8><title>{status} {html.escape(title)}</title>"
            f"<body style='font:16px system-ui;margin:3em auto;max-width:40em'><h1>{html.escape(title)}</h1>"
            f"<p>{html.escape(detail)}</p><p><a href='/'>Ask your articles</a></p></body></html>")
    return HTMLResponse(page, status_code=status)
