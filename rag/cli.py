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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
