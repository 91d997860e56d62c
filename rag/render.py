"""Terminal rendering of answers and passages (rich), shared by `rag ask` and the REPL. Everything from a source,
a file name or a model is printed as Text: never read as markup or emoji, and names kept on one line."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from rag.chunk import as_prose
from rag.terminal import literal, one_line
from rag.types import Answer, Citation


def print_answer(console: Console, answer: Answer) -> None:
    style = "yellow" if answer.abstained else ""
    console.print(Text(literal(answer.text), style=style))
    if answer.unsupported:
        console.print(Text("Not supported by any cited source (flagged):", style="bold red"))
        for sentence in answer.unsupported:
            console.print(Text(f"  ! {literal(sentence)}", style="red"))
    if answer.citations:
        console.print()
        console.print(Text("Sources", style="bold"))
        for c in answer.citations:
            print_citation(console, c)


def print_citation(console: Console, c: Citation, where: str = "") -> None:
    """`[n] Title — doc (start-end)[, where]` over the quote as prose; `where` says which passage holds it."""
    console.print(Text.assemble((f"[{c.n}]", "bold cyan"), f" {one_line(c.title or c.doc)} — ",
                                (f"{one_line(c.doc)} ({c.start}-{c.end}){', ' + where if where else ''}", "dim")))
    console.print(Text(f"    “{literal(as_prose(c.quote))}”", style="italic"))


def print_passages(console: Console, answer: Answer) -> None:
    console.print()
    console.print(Text("Retrieved passages", style="bold"))
    for n, p in enumerate(answer.passages, start=1):
        console.print(Text.assemble((f"{n}.", "bold"), f" {one_line(p.title or p.doc)} — ",
                                    (f"{one_line(p.doc)} {p.start}-{p.end} score {p.score:.4f}", "dim")))
        console.print(Text(literal(p.text), style="dim"))
