"""The interactive REPL behind `rag repl`: questions in, cited answers out, plus `:commands`.

The chain (embedding model, Chroma collection, BM25 index) is loaded once when the REPL starts, so every answer
after that costs only retrieval and answering. `Repl.handle(line)` does one line of input and writes to a rich
Console; `Repl.run(session)` is the read loop over any object with `.prompt(message) -> str` (a prompt_toolkit
PromptSession, or `LineSession` when stdin is not a terminal). Nothing the user types ends the session with a
traceback: bad commands get a one-line hint, failures of the model server a one-line error, Ctrl-C cancels the
answer in progress and Ctrl-D (or :quit) leaves with exit code 0.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from rag.cite import content_stems
from rag.config import BACKENDS, BACKENDS_HELP, resolve_backend
from rag.render import print_answer, print_citation, print_passages
from rag.terminal import literal, one_line, plural
from rag.types import Answer, Citation, Passage

HISTORY_TURNS = 3  # conversation turns given to the model when condensing a follow-up question
FOCUS_STYLE = "bold black on yellow"  # the cited span asked for with :show N
OTHER_STYLE = "black on bright_yellow"  # other cited spans in the same passage

COMMANDS: dict[str, tuple[str, str]] = {
    ":help": ("", "this list"),
    ":sources": ("", "citations and retrieved passages behind the last answer"),
    ":show": ("N | pN", "passage behind citation [N] (or retrieved passage N), cited spans highlighted"),
    ":k": ("[N]", "passages to retrieve per question"),
    ":backend": ("[auto|extractive|openai]", "show or switch the answer backend"),
    ":filter": ("[DOC... | off]", "only search these documents (ids or globs); off: search all"),
    ":docs": ("", "list the ingested documents"),
    ":brief": ("TOPIC", "a cited briefing on a topic"),
    ":json": ("", "the last answer as JSON"),
    ":new": ("", "start a new conversation (follow-ups forget earlier questions)"),
    ":quit": ("", "leave (also :q, Ctrl-D)"),
}
ALIASES = {":q": ":quit", ":exit": ":quit", ":h": ":help", ":?": ":help", ":reset": ":new"}


class Hint(Exception):
    """Bad input from the user: printed as one line, the session goes on."""


def highlight(passage: Passage, citations: Iterable[Citation], focus: int | None = None) -> Text:
    """The passage text with the span of every citation into it styled (the `focus` citation strongest).
    Citation offsets are into the document, passage offsets too: the span is `c.start - p.start` onwards."""
    text = Text(literal(passage.text))  # one character for one: the cited spans stay in place
    for c in citations:
        if c.chunk_id != passage.chunk_id:
            continue
        a, b = c.start - passage.start, c.end - passage.start
        if not (0 <= a < b <= len(passage.text)) or passage.text[a:b] != c.quote:
            found = passage.text.find(c.quote)  # offsets from another version of the chunk: fall back to the quote
            if found < 0 or not c.quote:
                continue
            a, b = found, found + len(c.quote)
        text.stylize(FOCUS_STYLE if focus is None or c.n == focus else OTHER_STYLE, a, b)
    return text


_MARKERS = re.compile(r"\s*\[\d+\]")


def clean_condensed(reply: str, question: str, previous: str | None = None) -> str:
    """The standalone question from a model reply. A reply that is unusable (empty, rambling, or dropping the
    follow-up's own words, as weak models do when they answer or copy the prompt's example) falls back to the
    follow-up with the previous question in front, so retrieval still sees what the conversation is about."""
    fallback = f"{previous} {question}" if previous else question
    line = next((ln.strip() for ln in reply.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^(standalone question|rewritten question|question)\s*:\s*", "", line.strip("`* "), flags=re.I)
    line = line.strip().strip('"“”\'`').strip()
    if not line or len(line) > max(300, 4 * len(question)):
        return fallback
    wanted = content_stems(question)
    kept = wanted & content_stems(line)
    if wanted and len(kept) < len(wanted) / 2:
        return fallback
    return line


def describe_error(e: BaseException) -> str:
    """One line for any failure of a question or command."""
    from rag.llm import ModelError, client_failure
    from rag.prompts import PromptError
    from rag.store import StoreError

    def first_line(message: str) -> str:
        return message.strip().splitlines()[0] if message.strip() else ""

    if isinstance(e, ModelError | ValueError | StoreError | PromptError) and first_line(str(e)):
        return first_line(str(e))
    if (why := client_failure(e)) is not None:
        return first_line(why)
    detail = first_line(str(e))
    return f"{type(e).__name__}: {detail}" if detail else type(e).__name__


class Repl:
    def __init__(self, chain: Any, console: Console, k: int | None = None, stream: bool | None = None,
                 markdown_as_text: bool = False) -> None:
        self.chain = chain
        self.console = console
        self.k = k
        # Piped output gets a briefing's Markdown as written: rendered bullets would be cut at the console's width.
        self.markdown_as_text = markdown_as_text
        self.docs: list[str] | None = None  # active :filter, as resolved document ids
        self.last: Answer | None = None
        self.history: list[tuple[str, str]] = []  # (question as answered, answer text) for follow-ups
        self.stream = console.is_terminal if stream is None else stream  # live draft while an LLM writes

    # -- what the user sees around the answers --------------------------------------------------------
    @property
    def where(self) -> str:
        store = getattr(self.chain.retriever, "store", None)
        if store is None:
            return "store"
        if getattr(store, "url", None):
            return str(store.url)
        home = Path(store.home)
        try:
            return str(home.resolve().relative_to(Path.cwd())) if home.is_absolute() else str(home)
        except ValueError:
            return str(home)

    def prompt_text(self) -> str:
        active = f"|{len(self.docs)} doc{'s' if len(self.docs) != 1 else ''}" if self.docs else ""
        return f"rag[{self.where}|{self.chain.backend}{active}]> "

    def check_backend(self) -> str | None:
        """Why the current backend cannot be used (no key, no server configured), or None."""
        if self.chain.backend == "extractive":
            return None
        try:
            self.chain.model  # noqa: B018  builds the client; raises ModelError without a key or server
        except Exception as e:  # noqa: BLE001  every failure becomes one line
            return describe_error(e)
        return None

    def warm_up(self) -> float:
        """Load the embedding model and the indexes now, so the first answer is as fast as the later ones."""
        t0 = time.perf_counter()
        retrieve = getattr(self.chain, "retrieve", None)
        if retrieve is not None:
            with self._busy("loading the embedding model and indexes…"):
                retrieve("warm-up")
        return time.perf_counter() - t0

    def _busy(self, message: str) -> AbstractContextManager[Any]:
        """A spinner with `message` on a terminal; nothing when output goes to a pipe or file."""
        return self.console.status(message) if self.console.is_terminal else nullcontext()

    def banner(self, load_s: float | None = None) -> None:
        retriever = self.chain.retriever
        parts = []
        try:
            parts.append(plural(len(retriever.doc_ids()), "document"))
            parts.append(f"{plural(retriever.store.count(), 'chunk')} in {one_line(self.where)}")
        except Exception:  # noqa: BLE001  a fake or remote store: the banner is only a courtesy
            parts.append(self.where)
        parts.append(f"backend {self.chain.backend}")
        if load_s is not None:
            parts.append(f"ready in {load_s:.1f} s")
        self.console.print(Text(" · ".join(parts), style="dim"))
        self.console.print(Text("Ask a question; :help lists the commands; Ctrl-C cancels an answer, Ctrl-D leaves.",
                                style="dim"))

    def hint(self, message: str) -> None:
        self.console.print(Text(literal(message), style="yellow"))

    def error(self, message: str) -> None:
        self.console.print(Text.assemble(("error: ", "bold red"), literal(message)))

    # -- the loop -------------------------------------------------------------------------------------
    def run(self, session: Any) -> int:
        """Read lines until Ctrl-D or :quit; Ctrl-C at the prompt just gives a new prompt. Returns the exit code."""
        while True:
            try:
                line = session.prompt(self.prompt_text())
            except KeyboardInterrupt:
                continue
            except EOFError:
                return 0
            if not self.handle(line):
                return 0

    def handle(self, line: str) -> bool:
        """Do one line of input; False when the user asked to leave."""
        line = line.strip()
        if not line:
            return True
        try:
            if line.startswith(":"):
                return self.command(line)
            self.ask(line)
        except Hint as h:
            self.hint(str(h))
        except KeyboardInterrupt:
            self.console.print(Text("cancelled", style="yellow"))
        except Exception as e:  # noqa: BLE001  never a traceback in the REPL
            self.error(describe_error(e))
        return True

    def command(self, line: str) -> bool:
        name, _, arg = line.partition(" ")
        name = ALIASES.get(name.lower(), name.lower())
        arg = arg.strip()
        if name == ":quit":
            return False
        handler: Callable[[str], None] | None = getattr(self, "cmd_" + name[1:], None) if name in COMMANDS else None
        if handler is None:
            close = difflib.get_close_matches(name, list(COMMANDS) + list(ALIASES), n=1)
            suggestion = f" (did you mean {close[0]}?)" if close else ""
            raise Hint(f"unknown command {name}{suggestion}: :help lists the commands")
        handler(arg)
        return True

    # -- questions ------------------------------------------------------------------------------------
    def ask(self, question: str) -> None:
        standalone = question
        if self.chain.backend != "extractive" and self.history:
            standalone = self.condense(question)
            if standalone != question:
                self.console.print(Text(f"→ {literal(standalone)}", style="dim italic"))
        answer = self._answer(standalone)
        self.last = answer
        self.history.append((standalone, _MARKERS.sub("", answer.text)))
        del self.history[:-HISTORY_TURNS]
        print_answer(self.console, answer)
        total = answer.timings_ms.get("total")
        n = len(answer.citations)
        facts = [plural(n, "citation"), plural(len(answer.passages), "passage"), answer.backend]
        if total is not None:
            facts.append(f"{total / 1000:.2f} s")
        self.console.print(Text(" · ".join(facts) + " — :sources, :show N, :json", style="dim"))

    def _answer(self, question: str) -> Answer:
        streaming = self.stream and self.chain.backend != "extractive"
        if not streaming:
            with self._busy("answering…"):
                return self.chain.ask(question, k=self.k, docs=self.docs)  # type: ignore[no-any-return]
        from rich.live import Live

        draft: list[str] = []
        live = Live(Text("…", style="dim"), console=self.console, transient=True, refresh_per_second=12)

        def on_token(token: str) -> None:
            draft.append(token)
            live.update(Text(literal("".join(draft)), style="dim"))  # drawn past the console's own hook

        # The draft streams in place and is replaced by the verified answer (renumbered, checked citations).
        with live:
            return self.chain.ask(question, k=self.k, docs=self.docs, on_token=on_token)  # type: ignore[no-any-return]

    def condense(self, question: str) -> str:
        """The follow-up rewritten as a standalone question, using the recent conversation (LLM backends)."""
        from langchain_core.messages import HumanMessage, SystemMessage
        from langchain_core.output_parsers import StrOutputParser

        from rag.prompts import load_prompt

        history = "\n".join(f"User: {q}\nAssistant: {a}" for q, a in self.history[-HISTORY_TURNS:])
        system, user = load_prompt("condense").render(history=history, question=question)
        reply = (self.chain.model | StrOutputParser()).invoke([SystemMessage(system), HumanMessage(user)])
        return clean_condensed(str(reply), question, self.history[-1][0] if self.history else None)

    # -- commands -------------------------------------------------------------------------------------
    def _need_answer(self) -> Answer:
        if self.last is None:
            raise Hint("no answer yet: ask a question first")
        return self.last

    def cmd_help(self, arg: str) -> None:
        table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
        for name, (args, what) in COMMANDS.items():
            table.add_row(Text(f"{name} {args}".strip(), style="bold cyan"), what)
        self.console.print(Text("Type a question to get an answer with [n] citations. Commands:"))
        self.console.print(table)

    def cmd_sources(self, arg: str) -> None:
        answer = self._need_answer()
        if answer.citations:
            self.console.print(Text("Citations", style="bold"))
            index = {p.chunk_id: i for i, p in enumerate(answer.passages, start=1)}
            for c in answer.citations:
                print_citation(self.console, c, f"passage {index[c.chunk_id]}" if c.chunk_id in index else c.chunk_id)
        else:
            self.console.print(Text("The last answer cites no passage.", style="yellow"))
        if answer.passages:
            print_passages(self.console, answer)
        self.console.print(Text(":show N shows the passage behind citation [N]; :show pN retrieved passage N",
                                style="dim"))

    def cmd_show(self, arg: str) -> None:
        answer = self._need_answer()
        m = re.fullmatch(r"\[?(\d+)\]?|p(\d+)", arg.strip().lower())
        if not m:
            raise Hint("usage: :show N (the passage behind citation [N]) or :show pN (retrieved passage N)")
        if m.group(1) is not None:
            n = int(m.group(1))
            if not answer.citations:
                raise Hint(f"the last answer cites no passage: :show p1…p{len(answer.passages)} shows a retrieved one"
                           if answer.passages else "the last answer has no passages")
            if not 1 <= n <= len(answer.citations):
                raise Hint(f"no citation [{n}]: the last answer has [1]–[{len(answer.citations)}] "
                           f"(:show pN for retrieved passage N)")
            citation = answer.citations[n - 1]
            found = [i for i, p in enumerate(answer.passages) if p.chunk_id == citation.chunk_id]
            if not found:
                raise Hint(f"citation [{n}] points at {citation.chunk_id}, which is not among the passages")
            index, focus = found[0], n
        else:
            index, focus = int(m.group(2)) - 1, None
            if not 0 <= index < len(answer.passages):
                raise Hint(f"no retrieved passage {index + 1}: the last answer has passages 1–{len(answer.passages)}")
        passage = answer.passages[index]
        cited = [c for c in answer.citations if c.chunk_id == passage.chunk_id]
        self.console.print(Text.assemble((one_line(passage.title or passage.doc), "bold"), " — ", (
            f"{one_line(passage.doc)} {passage.start}-{passage.end}, passage {index + 1} of {len(answer.passages)}",
            "dim")))
        self.console.print(highlight(passage, cited, focus))
        if cited:
            spans = ", ".join(f"[{c.n}] {c.start}-{c.end}" for c in cited)
            self.console.print(Text(f"highlighted: {spans}", style="dim"))
        else:
            self.console.print(Text("no citation of the last answer points into this passage", style="dim"))

    def cmd_k(self, arg: str) -> None:
        if not arg:
            current = self.k or self.chain.retriever.settings.k
            self.console.print(Text(f"k = {current} passages per question"))
            return
        try:
            k = int(arg)
        except ValueError:
            raise Hint(f"usage: :k N with N a whole number ≥ 1, not {arg!r}") from None
        if k < 1:
            raise Hint("usage: :k N with N ≥ 1")
        self.k = k
        self.console.print(Text(f"k = {k} passages per question"))

    def cmd_backend(self, arg: str) -> None:
        if not arg:
            self.console.print(f"backend: {self.chain.backend} (choose from {', '.join(BACKENDS)})")
            return
        if arg.lower() not in BACKENDS:
            raise Hint(f"unknown backend {arg!r}: {BACKENDS_HELP}")
        name = resolve_backend(arg.lower(), os.environ)
        if name == self.chain.backend:
            self.console.print(f"backend: {name} (unchanged)")
            return
        old = self.chain.backend
        self.chain.backend = name
        problem = self.check_backend()
        if problem:
            self.chain.backend = old
            self.error(f"{problem} (still using {old})")
            return
        self.console.print(f"backend: {name}")

    def cmd_filter(self, arg: str) -> None:
        if not arg:
            self._show_filter()
            return
        if arg.lower() == "off":
            self.docs = None
            self._show_filter()
            return
        try:
            patterns = shlex.split(arg)
        except ValueError as e:
            raise Hint(f"usage: :filter DOC... (quote ids with spaces): {e}") from None
        try:
            docs = self.chain.retriever.resolve_docs(patterns)
        except ValueError as e:
            raise Hint(f"{e}; filter unchanged (:docs lists the documents)") from None
        self.docs = docs
        self._show_filter()

    def _show_filter(self) -> None:
        if not self.docs:
            self.console.print("filter: off (searching all documents)")
            return
        shown = ", ".join(self.docs[:8]) + (f" and {len(self.docs) - 8} more" if len(self.docs) > 8 else "")
        self.console.print(Text(f"filter: only {plural(len(self.docs), 'document')}: {one_line(shown)} "
                                "(:filter off to search all)"))

    def cmd_docs(self, arg: str) -> None:
        records = self.chain.retriever.store.documents()
        for doc in sorted(records):
            mark = "*" if self.docs and doc in self.docs else " "
            title = records[doc].get("title", "") if isinstance(records[doc], dict) else ""
            self.console.print(Text.assemble(f"{mark} ", (one_line(doc), "bold"), f"  {one_line(str(title))}"))
        self.console.print(Text(plural(len(records), "document") + (" (* = in the filter)" if self.docs else ""),
                                style="dim"))

    def cmd_brief(self, arg: str) -> None:
        if not arg:
            raise Hint("usage: :brief TOPIC")
        from rag import brief

        if self.docs:
            self.console.print(Text("note: the :filter does not apply to briefings", style="dim"))
        # :k is not passed on: a briefing's k counts passages per sub-query, and it picks its own default.
        with self._busy(f"writing a briefing on {arg}…"):
            briefing = brief.make_briefing(self.chain, arg)
        if self.markdown_as_text:
            self.console.print(Text(literal(briefing.markdown)), end="")
        else:
            self.console.print(Markdown(briefing.markdown))

    def cmd_json(self, arg: str) -> None:
        self.console.print_json(json.dumps(self._need_answer().to_json(), ensure_ascii=False))

    def cmd_new(self, arg: str) -> None:
        self.history.clear()
        self.console.print("new conversation: the next question stands on its own")


# -- sessions -----------------------------------------------------------------------------------------
class LineSession:
    """A plain line reader for when stdin is not a terminal (`printf 'q\\n:json\\n' | rag repl`): echoes each
    line after its prompt so the transcript reads like an interactive one."""

    def __init__(self, stream: IO[str], console: Console) -> None:
        self.stream, self.console = stream, console

    def prompt(self, message: str) -> str:
        line = self.stream.readline()
        if not line:
            raise EOFError
        line = line.rstrip("\r\n")
        if line == "\x04":
            raise EOFError
        self.console.print(Text(message, style="bold") + Text(literal(line)))
        return line


def make_completer(repl: Repl) -> Any:
    from prompt_toolkit.completion import Completer, Completion

    class ReplCompleter(Completer):
        def get_completions(self, document, complete_event):  # type: ignore[no-untyped-def]
            text = document.text_before_cursor
            if not text.startswith(":"):
                return
            if " " not in text:
                for name in COMMANDS:
                    if name.startswith(text):
                        yield Completion(name, start_position=-len(text), display_meta=COMMANDS[name][1])
                return
            name, _, rest = text.partition(" ")
            word = rest.split(" ")[-1]
            options: Sequence[str] = ()
            if name == ":backend":
                options = BACKENDS
            elif name == ":filter":
                try:
                    options = ["off", *repl.chain.retriever.doc_ids()]
                except Exception:  # noqa: BLE001
                    options = ["off"]
            for option in options:
                if option.startswith(word):
                    yield Completion(option, start_position=-len(word))

    return ReplCompleter()


def make_session(history_file: Path | None, repl: Repl, **kwargs: Any) -> Any:
    """A prompt_toolkit PromptSession with persistent history, history suggestions and command completion.
    kwargs go to PromptSession (tests pass input= and output=)."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    if history_file is not None:
        history_file.parent.mkdir(parents=True, exist_ok=True)
        history: Any = FileHistory(str(history_file))
    else:
        history = InMemoryHistory()
    return PromptSession(history=history, auto_suggest=AutoSuggestFromHistory(), completer=make_completer(repl),
                         complete_while_typing=False, **kwargs)


def interactive() -> bool:
    """Use prompt_toolkit only when a person types: piped input goes through LineSession."""
    return sys.stdin.isatty()
