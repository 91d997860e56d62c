"""MCP server benchmark: how long `rag mcp` takes from launch to a ready session (models and indexes load before
serving), then the latency of each tool as an MCP client sees it, on the seed corpus. Prints figures; asserts
nothing.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/mcp_latency.py [--questions 8] [--home DIR] [--backend extractive]

Without --home the seed corpus is ingested into a temporary store first (not timed). The server is launched by the
MCP SDK's own stdio client, as a desktop client would launch it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import TextResourceContents
from seeds import GOLD, gold_questions

ROOT = Path(__file__).resolve().parent.parent
RAG = Path(sys.executable).parent / "rag"


async def timed(client: Client, tool: str, arguments: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    result = await client.call_tool(tool, arguments)
    if result.is_error:
        sys.exit(f"a tool call failed: {result.content}")
    return time.perf_counter() - t0


async def measure(home: Path, questions: list[str], backend: str | None) -> dict[str, list[float]]:
    args = ["--home", str(home), "mcp", *(["--backend", backend] if backend else [])]
    server = StdioServerParameters(command=str(RAG), args=args, env=dict(os.environ))
    t0 = time.perf_counter()
    async with Client(server, read_timeout_seconds=600) as client:
        figures: dict[str, list[float]] = {"ready": [time.perf_counter() - t0], "ask": [], "search": [],
                                           "get_document": []}
        (listing,) = (await client.read_resource("rag://documents")).contents
        assert isinstance(listing, TextResourceContents)
        doc = json.loads(listing.text)[0]["id"]
        for q in questions:
            figures["ask"].append(await timed(client, "ask", {"question": q}))
            figures["search"].append(await timed(client, "search", {"query": q}))
            figures["get_document"].append(await timed(client, "get_document", {"id": doc}))
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--home", type=Path, help="an ingested store (default: the seed corpus in a temporary one)")
    ap.add_argument("--backend", help="passed to rag mcp --backend")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    questions = gold_questions(args.questions)
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home
        if home is None:
            home = Path(tmp) / "home"
            subprocess.run([str(RAG), "--home", str(home), "ingest", str(ROOT / "corpus")], check=True,
                           capture_output=True)
        figures = anyio.run(measure, home, questions, args.backend)
    print(f"rag mcp on {home if args.home else 'the seed corpus'}, {len(questions)} questions from {GOLD.name}")
    print(f"  launch to ready session (imports, model and index load, warm-up)   {figures['ready'][0]:6.2f} s")
    for tool in ("ask", "search", "get_document"):
        times = figures[tool]
        print(f"  {tool:<13} first {times[0] * 1000:7.0f} ms, median {statistics.median(times) * 1000:7.0f} ms, "
              f"max {max(times) * 1000:7.0f} ms   (n={len(times)})")


if __name__ == "__main__":
    main()
