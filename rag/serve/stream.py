"""`POST /v1/ask` as server-sent events: `event: token` for each token the model streams, then one `event: answer`
with the `rag ask --json` object, or one `event: error` with `{"error", "status"}`. The extractive reader does
not stream: its stream is the answer event alone."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from rag.service import Service, ServiceError

log = logging.getLogger("rag.serve")


def wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def sse(event: str, data: Any) -> str:
    """One event; its data is JSON on one line, so a token holding a newline cannot end the event early."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def streamed_ask(service: Service, question: str, args: dict[str, Any]) -> StreamingResponse:
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(event: str, data: Any) -> None:  # from the worker thread
        loop.call_soon_threadsafe(events.put_nowait, (event, data))

    def work() -> None:
        try:
            put("answer", service.ask(question, on_token=lambda token: put("token", token), **args))
        except ServiceError as e:
            put("error", {"error": str(e), "status": e.status})
        except Exception as e:  # noqa: BLE001  the stream has begun: the error is an event, the trace goes to the log
            log.exception("rag serve: a streamed answer failed")
            put("error", {"error": f"internal error ({type(e).__name__}); the server log has the details",
                          "status": 500})

    async def stream() -> AsyncIterator[str]:
        worker = asyncio.ensure_future(run_in_threadpool(work))
        while True:
            event, data = await events.get()
            yield sse(event, data)
            if event != "token":
                break
        await worker

    # no-cache and no proxy buffering: each token reaches the page as it comes
    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
