"""Text for a terminal, shown as it is: no text from an article, a file name or a model can move the cursor, clear
the screen, colour a line, turn into rich markup (`[red]`) or into an emoji (`:fire:`).

`LiteralConsole` is a rich Console with markup, emoji and highlighting off whose output passes through `literal`:
every control character but newline and tab is shown as a visible stand-in (ESC as ␛), and so are the marks that
reorder text on screen (bidirectional overrides). Styles are given with `rich.text.Text` objects, never markup."""

from __future__ import annotations

from typing import Any

from rich.console import Console, ConsoleOptions, RenderHook, RenderResult
from rich.measure import Measurement
from rich.segment import Segment

# C0 controls (but tab and newline) as the Control Pictures block shows them, DEL as ␡, C1 controls and the
# bidirectional embeddings, overrides and isolates as U+FFFD: one character for one, so styles stay in place.
_STAND_INS = {code: chr(0x2400 + code) for code in range(0x20) if code not in (0x09, 0x0A)}
_STAND_INS |= {0x7F: "\u2421"} | {code: "\ufffd" for code in [*range(0x80, 0xA0), *range(0x202A, 0x202F),
                                                                   *range(0x2066, 0x206A)]}
_ONE_LINE = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


def literal(text: str) -> str:
    """The text with every control character (but newline and tab) replaced by a visible stand-in."""
    return text.translate(_STAND_INS)


def one_line(text: str) -> str:
    """A name (a file, a document id, a title) on one line: a newline, return or tab in it shown as \\n, \\r, \\t."""
    return literal(text.translate(_ONE_LINE))


def plural(n: int, word: str, many: str | None = None) -> str:
    """"1 chunk", "2 chunks", "1 passage was"... the count with its noun."""
    return f"{n} {word if n == 1 else many or word + 's'}"


class _Literal:
    """A renderable whose text segments (not rich's own cursor controls) pass through `literal`."""

    def __init__(self, renderable: Any) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for segment in console.render(self.renderable, options):
            yield segment if segment.control else Segment(literal(segment.text), segment.style)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.renderable)


class _LiteralHook(RenderHook):
    def process_renderables(self, renderables: list[Any]) -> list[Any]:
        return [_Literal(r) for r in renderables]


class LiteralConsole(Console):
    """A Console that prints every string literally (see the module's docstring). A live display (a progress bar,
    a spinner) is drawn after this hook: give it text that went through `literal`."""

    def __init__(self, **kwargs: Any) -> None:
        for option in ("markup", "emoji", "highlight"):
            kwargs.setdefault(option, False)
        super().__init__(**kwargs)
        self.push_render_hook(_LiteralHook())
