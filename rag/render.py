"""Terminal rendering of answers and passages (rich), shared by `rag ask` and the REPL."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from rag.chunk import as_prose
from rag.types import Answer, Citation


def print_answer(console: Console, answer: Answer) -> None:
    style = "yellow" if answer.abstained else ""
    console.print(Text(answer.text, style=style))
    if answer.unsupported:
        console.print(Text("Not supported by any cited source (flagged):", style="bold red"))
        for sentence in answer.unsupported:
            console.print(Text(f"  ! {sentence}", style="red"))
    if answer.citations:
        console.print()
        console.print("[bold]Sources[/]")
        for c in answer.citations:
            print_citation(console, c)


def print_citation(console: Console, c: Citation, where: str = "") -> None:
    """`[n] Title — doc (start-end)[, where]` over the quote as prose; `where` says which passage holds it."""
    console.print(f"[bold cyan]\\[{c.n}][/] {escape(c.title or c.doc)} — [dim]{escape(c.doc)} ({c.start}-{c.end})"
                  f"{escape(', ' + where) if where else ''}[/]")
    console.print(Text(f"    “{as_prose(c.quote)}”", style="italic"))


def print_passages(console: Console, answer: Answer) -> None:
    console.print()
    console.print("[bold]Retrieved passages[/]")
    for n, p in enumerate(answer.passages, start=1):
        console.print(f"[bold]{n}.[/] {escape(p.title or p.doc)} — [dim]{escape(p.doc)} {p.start}-{p.end} "
                      f"score {p.score:.4f}[/]")
        console.print(Text(p.text, style="dim"))
