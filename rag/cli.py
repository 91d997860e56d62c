"""The `rag` command: ingest, ask, repl, brief, eval, mcp. Exit 0 on success, 1 on a failed check, 2 on bad input."""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.text import Text

from rag.config import BACKENDS, BACKENDS_HELP, AnswerSettings, RetrieveSettings, Settings
from rag.terminal import LiteralConsole, literal, one_line, plural

if TYPE_CHECKING:  # the commands import what they use when they run: `rag --help` stays fast
    from rag.ingest import Skip

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Cited answers, briefings and citation evals over your own articles.")


class _Stdout(LiteralConsole):
    def on_broken_pipe(self) -> None:  # Rich would exit 1; main() makes it the exit of any tool a pipe stopped
        raise BrokenPipeError


# Every string is printed literally: no markup, no emoji codes, control characters shown, never obeyed.
out = _Stdout(soft_wrap=True)
err = LiteralConsole(stderr=True, soft_wrap=True)


class State:
    home: Path | None = None
    # The command has said all it had to and holds nothing unsaved (an answer is read-only): main() ends the
    # process without Python's teardown of every loaded module, about a second of a cold `rag ask` on 2 cores.
    nothing_to_save: bool = False


def settings() -> Settings:
    try:
        s = Settings.load()
    except ValueError as e:
        raise fail(str(e)) from None
    if State.home is not None:
        s = s.model_copy(update={"home": State.home})
    if s.home.exists() and not s.home.is_dir():
        raise fail(f"the store folder {s.home} (--home, RAG_HOME) is a file")
    return s


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(Text.assemble(("error:", "bold red"), f" {message}"))  # "[and]" or ":fire:" in a quote stays
    return typer.Exit(code)


def output_file(path: Path, what: str) -> Path:
    """An output file checked before the long work that fills it: its folder is made (as pytest does for
    --junitxml) and must be writable, and it must not be a folder itself."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise fail(f"cannot write {what} {path}: {e.strerror or e}") from None
    if path.is_dir() or not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise fail(f"cannot write {what} {path}: " + ("it is a folder" if path.is_dir() else "permission denied"))
    return path


def write_output(path: Path, text: str, what: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise fail(f"cannot write {what} {path}: {e.strerror or e}") from None


LOG_PROGRESS_EVERY_S = 10.0


@contextmanager
def progress(what: str) -> Iterator[Callable[[int, int], None]]:
    """A (done, total) callback: a bar on a terminal; in a log (CI, a pipe) a line every LOG_PROGRESS_EVERY_S
    seconds, so long work shows it is alive and short work prints nothing."""
    if not err.is_terminal:
        last = time.monotonic()

        def log(done: int, total: int) -> None:
            nonlocal last
            if time.monotonic() - last >= LOG_PROGRESS_EVERY_S:
                last = time.monotonic()
                err.print(f"{what}: {done}/{total}")

        yield log
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task(escape(literal(what)), total=None)  # a live display is drawn past the console's hook
        yield lambda done, total: bar.update(task, completed=done, total=total)


@contextmanager
def model_errors() -> Iterator[None]:
    """A failing model server, a bad argument or a missing language model becomes one line and exit 2; anything
    else is a bug and shows."""
    from rag.language import LanguageModelMissing
    from rag.llm import ModelError, client_failure
    from rag.store import StoreError

    try:
        yield
    except (ModelError, ValueError, LanguageModelMissing, StoreError) as e:  # StoreError: the Chroma server died
        raise fail(str(e)) from None
    except Exception as e:  # noqa: BLE001  the client stack raises many types; each gets one line
        if (why := client_failure(e)) is None:
            raise
        # the backend may have been picked from the environment: name the way out
        raise fail(f"{why}; --backend extractive answers offline") from None


@app.callback()
def main_options(
    home: Annotated[str | None, typer.Option("--home", metavar="DIR",
                                             help="store folder (env RAG_HOME, default ./.rag)",
                                             show_default=False)] = None,
) -> None:
    if home is not None and not home.strip():  # an unset shell variable ("--home $STORE"): not the current folder
        raise fail("--home is empty: name the store folder")
    State.home = None if home is None else Path(home)
    State.nothing_to_save = False


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH",
                                                help="folders or files (.txt .md .html .pdf)", show_default=False)],
    keep_removed: Annotated[bool, typer.Option("--keep-removed",
                                               help="keep documents whose files were deleted")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as one JSON object")] = False,
) -> None:
    """Load, chunk, embed and store articles. Unchanged files are skipped, changed ones replaced, removed pruned."""
    from rag.ingest_run import NothingToIngest, ingest_paths
    from rag.llm import ModelError
    from rag.store import StoreError

    s = settings()
    try:
        with progress("embedding chunks") as advance:
            run = ingest_paths(s, paths, keep_removed, progress=advance, on_skipped=say_skipped)
    except (NothingToIngest, StoreError, ModelError) as e:  # a failed embedder stops before any record is written
        raise fail(str(e)) from None
    except KeyboardInterrupt:  # sync writes a document's record last: what the store held before is all there
        raise fail("interrupted: the store still holds every document it held before; run `rag ingest` again to "
                   "finish", 130) from None
    report = run.report
    say_skipped(run.skipped_after, set())  # found only when compared with the store
    if as_json:
        out.print_json(json.dumps(report.to_json()))
    else:
        n_ignored = len(report.ignored)
        ignored = f", ignored {n_ignored} of other types ({file_types(report.ignored)})" if n_ignored else ""
        out.print(f"added {len(report.added)}, updated {len(report.updated)}, unchanged {len(report.unchanged)}, "
                  f"removed {len(report.removed)}, skipped {len(report.skipped)}{ignored}; "
                  f"embedded {plural(report.embedded, 'chunk')}; store holds {plural(report.chunks, 'chunk')} in "
                  f"{one_line(run.where)}")
    if report.skipped:  # bad input: a script or CI job must notice, though the good files are stored
        n = len(report.skipped)
        raise fail(f"{n} file{'s' if n > 1 else ''} skipped (named above); every other file is stored")


def file_types(paths: Iterable[str]) -> str:
    """".docx, .rtf, no extension": what a user must convert to have those files read."""
    types = Counter(Path(p).suffix.lower() or "no extension" for p in paths)
    return ", ".join(f"{n} {t}" if n > 1 else t for t, n in sorted(types.items()))


def say_skipped(skips: Iterable[Skip], stored_sources: set[str]) -> None:
    for skip in skips:
        held = os.path.abspath(skip.path) in stored_sources
        kept = "; the version ingested before stays in the store" if held else ""
        err.print(f"skipped {one_line(skip.path)}: {skip.reason}{kept}")


def load_chain(s: Settings, backend: str | None = None):  # type: ignore[no-untyped-def]
    """Store + embedder + retriever + answer chain, or a one-line error for an empty or mismatched store."""
    from rag.answer import AnswerChain
    from rag.embed import make_embedder
    from rag.llm import ModelError
    from rag.retrieve import Retriever
    from rag.store import Store, StoreError

    require_store(s)
    try:
        store = Store(s)
        embedder = make_embedder(s.embed)
        return AnswerChain(Retriever(store, embedder, s.retrieve), s.answer, backend=backend)
    except (StoreError, ModelError) as e:
        raise fail(str(e)) from None


def no_store(s: Settings) -> str:
    return f"no store in {s.home}: run `rag ingest PATH` first, or point --home (RAG_HOME) at one"


def require_store(s: Settings) -> None:
    """A mistyped --home: say so, and make nothing there."""
    if not s.has_store():
        raise fail(no_store(s))


def _known_backend(value: str | None) -> str | None:
    if value is not None and value not in BACKENDS:
        raise fail(f"unknown backend {value!r}: {BACKENDS_HELP}")
    return value


BackendOption = Annotated[str | None, typer.Option(metavar="NAME",
                                                   help=BACKENDS_HELP, show_default=False, callback=_known_backend)]
_PASSAGES_HELP = (f"passages to retrieve (default {RetrieveSettings().k}); as many as fit the answer's token budget "
                  f"are read (RAG_ANSWER__CONTEXT_TOKENS, default {AnswerSettings().context_tokens})")
PassagesOption = Annotated[int | None, typer.Option("--k", min=1, show_default=False, metavar="N", help=_PASSAGES_HELP)]


@app.command()
def ask(
    question: Annotated[str, typer.Argument(metavar="QUESTION", help="the question", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object (answer, citations, timings)")] = False,
    backend: BackendOption = None,
    k: PassagesOption = None,
    doc: Annotated[list[str] | None, typer.Option("--doc", metavar="DOC",
                                                  help="only these documents (id or glob); repeatable",
                                                  show_default=False)] = None,
    show_passages: Annotated[bool, typer.Option("--show-passages", help="also print the retrieved passages")] = False,
) -> None:
    """Answer a question from the ingested articles; every sentence cites the source passage behind it."""
    from rag.render import TokenEcho, print_answer_and_summary

    if not question.strip():
        raise fail("the question is empty")
    s = settings()
    if s.server_url:  # a running `rag serve` answers: nothing heavy is loaded here
        _ask_server(s, question, as_json, backend, k, doc, show_passages)
        return
    chain = load_chain(s, backend)
    echo = TokenEcho(err) if not as_json and chain.backend != "extractive" and out.is_terminal else None
    with model_errors():
        answer = chain.ask(question, k=k, docs=doc, on_token=echo)
    State.nothing_to_save = True
    if as_json:
        out.print_json(json.dumps(answer.to_json(with_passages=show_passages)))
        return
    print_answer_and_summary(out, err, answer, show_passages, echo)


def _ask_server(s: Settings, question: str, as_json: bool, backend: str | None, k: int | None,
                doc: list[str] | None, show_passages: bool) -> None:
    """`rag ask` through the server at RAG_SERVER_URL, printed as a local answer is."""
    from rag.render import TokenEcho, print_answer_and_summary
    from rag.serve.client import ServerError
    from rag.serve.client import ask as ask_server
    from rag.types import Answer

    url = str(s.server_url)
    token = s.serve.bearer()
    echo = TokenEcho(err) if not as_json and out.is_terminal else None
    # the passages always come: the summary line counts them, as a local answer's does
    body = {"question": question, "k": k, "docs": doc, "backend": backend, "with_passages": True}
    try:
        obj = ask_server(url, body, token, on_token=echo)
    except ServerError as e:
        raise fail(str(e)) from None
    err.print(Text(f"answered by the server at {url}", style="dim"))
    if as_json:
        if not show_passages:
            obj.pop("passages", None)
        out.print_json(json.dumps(obj))
        return
    print_answer_and_summary(out, err, Answer.from_json(obj), show_passages, echo)


@app.command()
def repl(
    backend: BackendOption = None,
    k: PassagesOption = None,
) -> None:
    """Ask questions interactively: cited answers, follow-up questions, :help for commands, Ctrl-D to leave."""
    from rag.repl import LineSession, Repl, interactive, make_session

    s = settings()
    chain = load_chain(s, backend)  # exits 2 with "run `rag ingest PATH` first" on an empty store
    piped = not sys.stdout.isatty()
    console = LiteralConsole(soft_wrap=piped)  # piped: one line per line, no 80 columns
    shell = Repl(chain, console, k=k, markdown_as_text=piped)
    problem = shell.check_backend()
    if problem:
        raise fail(problem)
    shell.banner(shell.warm_up())  # model and indexes load once, before the first prompt
    session = make_session(s.home / "repl_history", shell) if interactive() else LineSession(sys.stdin, console)
    raise typer.Exit(shell.run(session))


@app.command()
def brief(
    topic: Annotated[str, typer.Argument(metavar="TOPIC", help="what the briefing is about", show_default=False)],
    output: Annotated[Path | None, typer.Option("-o", "--output", metavar="FILE",
                                                help="write to FILE.md (Markdown) or FILE.html "
                                                "(one self-contained page)", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the briefing as one JSON object")] = False,
    backend: BackendOption = None,
    k: Annotated[int | None, typer.Option("--k", min=1, metavar="N",
                                          help="passages per retrieval sub-query (default 24)",
                                          show_default=False)] = None,
    flag_unsupported: Annotated[bool, typer.Option("--flag-unsupported", help="keep sentences that fail the "
                                                   "support audit, flagged, instead of dropping them")] = False,
) -> None:
    """A cited briefing on a topic across all articles: overview, sections per event, where sources disagree,
    a support audit and the sources. Markdown on stdout unless -o is given."""
    from rag.brief import make_briefing

    if not topic.strip():
        raise fail("the topic is empty")
    suffix = output.suffix.lower() if output else ""
    if output and suffix not in (".md", ".markdown", ".html", ".htm"):
        named = "an empty name" if str(output) == "." else output  # typer reads -o "" as the path "."
        raise fail(f"cannot tell the format of {named}: use a .md or .html file name")
    if output:
        output_file(output, "the briefing")
    s = settings()
    chain = load_chain(s, backend)
    with model_errors():
        briefing = make_briefing(chain, topic, k=k, unsupported="flag" if flag_unsupported else "drop")
    if output:
        write_output(output, briefing.html if suffix in (".html", ".htm") else briefing.markdown, "the briefing")
    if as_json:
        out.print_json(json.dumps(briefing.to_json(), ensure_ascii=False))
    elif not output:
        typer.echo(literal(briefing.markdown), nl=False)  # a model's words too: no escape sequence is obeyed
    err.print(briefing.audit.summary + (f"; wrote {output}" if output else ""))


@app.command()
def serve(
    host: Annotated[str, typer.Option(metavar="HOST", help="address to listen on; anything but loopback needs "
                                      "RAG_SERVE__TOKEN")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, metavar="PORT", help="port (0: any free one)")] = 8765,
    backend: BackendOption = None,
) -> None:
    """Serve the HTTP JSON API (/v1/ask, /v1/search, /v1/brief, /v1/documents, /v1/ingest) and the web page; the
    store and the models load once. Ctrl-C stops it."""
    from rag.serve.run import CannotServe, check_bind, serve

    s = settings()
    try:
        check_bind(host, s.serve.token is not None)  # before the store is even looked at
        if not s.has_store():
            raise CannotServe(no_store(s))
        serve(s, host, port, backend, say=lambda line: err.print(Text(line, style="dim")))
    except CannotServe as e:
        raise fail(str(e)) from None


@app.command("eval")
def eval_(
    gold: Annotated[Path, typer.Option(metavar="PATH", help="a gold set (JSONL) scored against the store, or a folder "
                                       "of sets (each a folder with gold.jsonl and corpus/, ingested into a store of "
                                       "its own under --home)")] = Path("evals/gold/seeds/gold.jsonl"),
    split: Annotated[str, typer.Option(metavar="HALF", help="with a folder of sets: dev, test or all")] = "all",
    as_json: Annotated[bool, typer.Option("--json", help="print {metrics, items} as JSON")] = False,
    check: Annotated[bool, typer.Option("--check", help="exit 1 when a metric falls below the baseline")] = False,
    update_baseline: Annotated[bool, typer.Option("--update-baseline", help="accept these metrics as the baseline")
                               ] = False,
    baseline: Annotated[Path, typer.Option(metavar="FILE",
                                           help="accepted metrics per backend")] = Path("evals/baseline.json"),
    tolerance: Annotated[float | None, typer.Option(metavar="X",
                                                    help="allowed drop before --check fails (default: from the "
                                                    "baseline file, else 0.02)", show_default=False)] = None,
    backend: BackendOption = None,
    k: Annotated[int | None, typer.Option("--k", min=1, metavar="N",
                                          help="passages per question", show_default=False)] = None,
    repeat: Annotated[int, typer.Option(min=1, metavar="N", help="run N times; report mean and spread")] = 1,
    record: Annotated[Path | None, typer.Option(metavar="FILE",
                                                help="record model replies to this file", show_default=False)
                      ] = None,
    replay: Annotated[Path | None, typer.Option(metavar="FILE", help="answer from replies recorded with --record",
                                                show_default=False)] = None,
    junit_xml: Annotated[Path | None, typer.Option("--junit-xml", metavar="FILE", help="write a JUnit XML report",
                                                   show_default=False)] = None,
    limit: Annotated[int | None, typer.Option(min=1, metavar="N", help="with a folder of sets: the first N items of "
                                              "each set's half", show_default=False)] = None,
) -> None:
    """Score the answer chain against gold sets: evidence recall, citation precision, STR-EM, abstention..."""
    from rag import evals

    if record and replay:
        raise fail("--record and --replay exclude each other")
    if tolerance is not None and not 0 <= tolerance < 1:  # NaN fails this too: a check that could never fail
        raise fail(f"--tolerance must be a number from 0 to 1, not {tolerance}")
    if check and update_baseline:  # accepting new figures and testing them against the old ones contradict
        raise fail("--check and --update-baseline exclude each other: check first, then update deliberately")
    from rag.evalsets import SPLITS

    if split not in SPLITS:
        raise fail(f"--split must be dev, test or all, not {split!r}")
    for path, what in ((junit_xml, "the JUnit report"), (baseline if update_baseline else None, "the baseline"),
                       (record, "the response cache")):
        if path:
            output_file(path, what)
    try:
        base = evals.load_baseline(baseline)
    except evals.GoldError as e:
        raise fail(str(e)) from None
    from rag.cli_eval import eval_file, eval_folder

    if gold.is_dir():
        eval_folder(gold, split, as_json, check, update_baseline, baseline, base, tolerance, backend, k,
                    record=record, replay=replay, limit=limit)
        return
    eval_file(gold, as_json, check, update_baseline, baseline, base, tolerance, backend, k, repeat, record, replay,
               junit_xml)


@app.command()
def mcp(backend: BackendOption = None) -> None:
    """Serve the store to an MCP client over stdio: tools ask, search and get_document, resources
    rag://documents and rag://documents/{id}. The client starts this command itself and speaks JSON-RPC on its
    stdin and stdout; logs go to stderr. The store and models load once, before serving. A client's config:

    \b
    {"mcpServers": {"rag": {"command": "/path/to/.venv/bin/rag",
                            "args": ["--home", "/path/to/.rag", "mcp"]}}}
    """
    from rag.mcp_server import load_service, serve
    from rag.service import ServiceError

    s = settings()
    require_store(s)  # before serving: a client shows this line from stderr and the exit status 2
    try:
        with model_errors():
            service = load_service(s, backend)
    except ServiceError as e:
        raise fail(str(e)) from None
    err.print(f"rag mcp: serving {plural(len(service.documents()), 'document')} from {s.home} on stdio")
    serve(service)


def main() -> None:
    try:
        app()
    except SystemExit as e:
        if State.nothing_to_save:
            _exit_without_teardown(e.code)
        raise
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except BrokenPipeError:  # the reader stopped early (`rag ask ... | head -1`): quiet, as any Unix tool
        _detach_stdout()
        sys.exit(141)  # 128 + SIGPIPE, what the shell reports for a tool the pipe stopped
    except OSError as e:
        if not _stdout_failed(e):
            raise
        _detach_stdout()
        err.print(Text.assemble(("error:", "bold red"), f" cannot write the output: {e.strerror or e}"))
        sys.exit(2)


def _exit_without_teardown(code: object) -> None:
    """os._exit once stdout and stderr are flushed; when flushing fails, returns and the usual exit reports it."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def _stdout_failed(e: OSError) -> bool:
    """Is stdout what failed (a full disk), rather than a file the command used? Flushing it may fail again; if
    not, an error of writing that names no file is taken for it (errors on files the command opens name them)."""
    try:
        sys.stdout.flush()
    except OSError:
        return True
    return e.filename is None and e.errno in (errno.ENOSPC, errno.EIO, errno.EFBIG, errno.EDQUOT)


def _detach_stdout() -> None:
    # Python flushes stdout once more on exit; pointing it at /dev/null keeps that from a second error.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
