"""Terminal rendering of answers and passages (rich), shared by `rag ask` and the REPL. Everything from a source,
a file name or a model is printed as Text: never read as markup or emoji, and names kept on one line."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from rag.chunk import as_prose
from rag.terminal import literal, one_line, plural
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


class TokenEcho:
    """Prints a streaming model's tokens to the console as they come; remembers whether any came."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.printed = False

    def __call__(self, token: str) -> None:
        self.console.print(token, end="", markup=False, style="dim")
        self.printed = True


def print_answer_and_summary(out: Console, err: Console, answer: Answer, show_passages: bool,
                             echo: TokenEcho | None = None) -> None:
    """`rag ask`'s output: the answer (and passages) on `out`; who answered, from how much and how fast on `err`."""
    if echo and echo.printed:
        err.print()
    print_answer(out, answer)
    if show_passages:
        print_passages(out, answer)
    # stdout stays the answer; who answered, from how much, and how fast goes to stderr
    seconds = answer.timings_ms.get("total", 0.0) / 1000
    read = f", {answer.reader} reader" if answer.reader and answer.reader != answer.backend else ""
    if answer.abstained and answer.passages and not show_passages:  # let the user judge what was searched
        searched = plural(len(answer.passages), "passage was", "passages were")
        err.print(Text(f"{searched} searched ({answer.backend} backend{read}, {seconds:.1f} s) and none answers well "
                       "enough to cite: --show-passages lists them", style="dim"))
    else:
        err.print(Text(f"{answer.backend} backend{read}, {plural(len(answer.passages), 'passage')}, {seconds:.1f} s",
                       style="dim"))
