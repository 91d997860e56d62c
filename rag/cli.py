"""The `rag` command: ingest, ask, repl, brief, eval. Exit 0 on success, 1 on a failed check, 2 on bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from rag.config import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Cited answers, briefings and citation evals over your own articles.")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class State:
    home: Path | None = None


def settings() -> Settings:
    s = Settings()
    if State.home is not None:
        s = s.model_copy(update={"home": State.home})
    return s


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code)


@app.callback()
def main_options(
    home: Annotated[Optional[Path], typer.Option("--home", help="store folder (env RAG_HOME, default ./.rag)",
                                                 show_default=False)] = None,
) -> None:
    State.home = home


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="folders or files (.txt .md .html .pdf)", show_default=False)],
    keep_removed: Annotated[bool, typer.Option("--keep-removed", help="keep documents whose files were deleted")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as one JSON object")] = False,
) -> None:
    """Load, chunk, embed and store articles. Unchanged files are skipped, changed ones replaced, removed pruned."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from rag.embed import make_embedder
    from rag.ingest import scan
    from rag.store import Store, StoreError, sync

    s = settings()
    found = scan(paths, int(s.ingest.max_file_mb * 1_000_000))
    for skip in found.skipped:
        err.print(f"skipped {skip.path}: {skip.reason}")
    if not found.documents:
        raise fail("nothing to ingest: " + ("every file was skipped" if found.skipped else "no supported files"))
    try:
        store = Store(s)
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=err, transient=True) as bar:
            task = bar.add_task("embedding chunks", total=None)
            report = sync(store, found, s, make_embedder(s.embed), prune=s.ingest.prune and not keep_removed,
                          progress=lambda done, total: bar.update(task, completed=done, total=total))
    except StoreError as e:
        raise fail(str(e)) from None
    if as_json:
        out.print_json(json.dumps(report.to_json()))
        return
    out.print(f"added {len(report.added)}, updated {len(report.updated)}, unchanged {len(report.unchanged)}, "
              f"removed {len(report.removed)}, skipped {len(report.skipped)}; "
              f"embedded {report.embedded} chunks; store holds {report.chunks} chunks in {store.where}")


def load_chain(s: Settings, backend: str | None = None):  # type: ignore[no-untyped-def]
    """Store + embedder + retriever + answer chain, or a one-line error for an empty or mismatched store."""
    from rag.answer import AnswerChain
    from rag.embed import make_embedder
    from rag.retrieve import Retriever
    from rag.store import Store, StoreError

    try:
        store = Store(s)
        embedder = make_embedder(s.embed)
        return AnswerChain(Retriever(store, embedder, s.retrieve), s.answer, backend=backend)
    except StoreError as e:
        raise fail(str(e)) from None


BACKEND_HELP = "extractive (offline, default) or openai (OPENAI_API_KEY / OPENAI_BASE_URL)"


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object (answer, citations, timings)")] = False,
    backend: Annotated[Optional[str], typer.Option(help=BACKEND_HELP, show_default=False)] = None,
    k: Annotated[Optional[int], typer.Option("--k", min=1, help="passages to retrieve (default 6)",
                                             show_default=False)] = None,
    doc: Annotated[Optional[list[str]], typer.Option("--doc", help="only these documents (id or glob); repeatable",
                                                     show_default=False)] = None,
    show_passages: Annotated[bool, typer.Option("--show-passages", help="also print the retrieved passages")] = False,
) -> None:
    """Answer a question from the ingested articles; every sentence cites the source passage behind it."""
    from rag.llm import ModelError, describe_failure
    from rag.render import print_answer, print_passages

    if backend not in (None, "extractive", "openai"):
        raise fail(f"unknown backend {backend!r}: {BACKEND_HELP}")
    if not question.strip():
        raise fail("the question is empty")
    s = settings()
    chain = load_chain(s, backend)
    stream = None if as_json or chain.backend == "extractive" or not out.is_terminal else _stream_to(err)
    try:
        answer = chain.ask(question, k=k, docs=doc, on_token=stream)
    except ModelError as e:
        raise fail(str(e)) from None
    except ValueError as e:
        raise fail(str(e)) from None
    except Exception as e:  # noqa: BLE001  model client errors come in many types; all get one line
        if type(e).__module__.startswith(("openai", "httpx", "langchain")):
            raise fail(describe_failure(e)) from None
        raise
    if as_json:
        out.print_json(json.dumps(answer.to_json()))
        return
    if stream:
        err.print()
    print_answer(out, answer)
    if show_passages:
        print_passages(out, answer)


def _stream_to(console: Console):  # type: ignore[no-untyped-def]
    def on_token(token: str) -> None:
        console.print(token, end="", markup=False, style="dim")

    return on_token


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
