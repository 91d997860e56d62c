"""The REPL driven as a user drives it: keys typed into prompt_toolkit's pipe input, the screen read back from a
rich Console. Unit tests use the fake chat model and retriever of rag.testing; integration tests use the real
embedding model over a real store ingested from corpus/, and the real `rag repl` command in a pty and a pipe."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_core.runnables import RunnableLambda
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console
from rich.style import Style
from typer.testing import CliRunner

import rag.brief as brief_module
from rag.answer import AnswerChain
from rag.cli import app, load_chain
from rag.config import AnswerSettings, Settings
from rag.repl import FOCUS_STYLE, Repl, clean_condensed, highlight, make_session
from rag.testing import FakeRetriever, fake_chat, free_port, passages_from_text
from rag.types import Answer, Citation

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
RAG = Path(sys.executable).parent / "rag"
QUESTION = "Which groups took part in the March 2024 incursion into Russia?"
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")

DOC = (
    "Russia Faces Alleged Counter-Invasion\n\n"
    "On March 12, the groups claimed to have launched incursions into Russia with armored vehicles and tanks. "
    "They reportedly crossed into the Belgorod and Kursk regions.\n\n"
    "Kursk Governor Roman Starovoyt told reporters there was a battle in his region that led to a shootout. "
    "But he said the larger incursion was stopped."
)


# -- helpers --------------------------------------------------------------------------------------------------
def screen(width: int = 10_000) -> Console:
    """What the user sees, as plain text in .file; styles stay in the record (export_text(styles=True))."""
    return Console(file=StringIO(), width=width, record=True, highlight=False)


def text_of(console: Console) -> str:
    return console.file.getvalue()  # type: ignore[attr-defined]


def drive(repl: Repl, keys: str) -> tuple[int, str]:
    """Type `keys` into a real PromptSession (pipe input) and run the REPL until it exits."""
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        session = make_session(None, repl, input=pipe, output=DummyOutput())
        code = repl.run(session)
    return code, text_of(repl.console)


def json_blocks(out: str) -> list[dict[str, Any]]:
    """Every pretty-printed JSON object in the output (from :json)."""
    return [json.loads(m.group(0)) for m in re.finditer(r"(?ms)^\{\n.*?^\}$", out)]


def fake_chain(*replies: str, model: Any = None) -> AnswerChain:
    passages = passages_from_text("004.txt", DOC, "Counter-Invasion", size=40, overlap=0)
    return AnswerChain(FakeRetriever(passages), AnswerSettings(reader="markers"), backend="openai",
                       model=model if model is not None else fake_chat(*replies))


class InterruptOnce:
    """The chain, except that the first ask is interrupted as Ctrl-C interrupts it (KeyboardInterrupt)."""

    def __init__(self, chain: Any) -> None:
        self._chain = chain
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chain, name)

    def ask(self, *args: Any, **kwargs: Any) -> Answer:
        self.calls += 1
        if self.calls == 1:
            raise KeyboardInterrupt
        return self._chain.ask(*args, **kwargs)  # type: ignore[no-any-return]


# -- unit: no model weights ------------------------------------------------------------------------------------
def test_ctrl_d_at_the_prompt_exits_0() -> None:
    repl = Repl(fake_chain(), screen())
    assert drive(repl, "\x04") == (0, "")


def test_quit_commands_exit_0() -> None:
    for keys in (":quit\r", ":q\r", ":exit\r"):
        code, _ = drive(Repl(fake_chain(), screen()), keys + "never read\r")
        assert code == 0


def test_bad_commands_get_one_line_hints_never_a_traceback() -> None:
    repl = Repl(fake_chain(), screen())
    keys = [":foo", ":sourc", ":k abc", ":k 0", ":show", ":show 1", ":sources", ":json", ":backend nope", ":brief",
            ":show x"]
    code, out = drive(repl, "".join(k + "\r" for k in keys) + "\x04")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == len(keys), out  # exactly one line per bad command
    assert "Traceback" not in out
    assert lines[0] == "unknown command :foo: :help lists the commands"
    assert "did you mean :sources?" in lines[1]
    assert lines[2] == "usage: :k N with N a whole number ≥ 1, not 'abc'"
    assert lines[3] == "usage: :k N with N ≥ 1"
    assert lines[4].startswith("no answer yet")  # :show before any answer
    assert all(line.startswith("no answer yet") for line in lines[5:8])
    assert lines[8].startswith("unknown backend 'nope'")
    assert lines[9] == "usage: :brief TOPIC"
    assert lines[10].startswith("no answer yet")


def test_ctrl_c_at_the_prompt_gives_a_new_prompt() -> None:
    chain = fake_chain("On March 12, the groups claimed to have launched incursions into Russia [1].")
    repl = Repl(chain, screen())
    code, out = drive(repl, "half a quest\x03" + "Who launched incursions into Russia?\r\x04")
    assert code == 0
    assert chain.retriever.queries == ["Who launched incursions into Russia?"]  # the interrupted line is dropped
    assert "[1]" in out


def test_ctrl_c_during_an_answer_cancels_only_that_answer() -> None:
    chain = InterruptOnce(fake_chain("On March 12, the groups claimed to have launched incursions into Russia [1]."))
    repl = Repl(chain, screen())
    code, out = drive(repl, "first question\rWho launched incursions into Russia?\r\x04")
    assert code == 0
    first, second = out.split("cancelled\n")
    assert first == ""
    assert "incursions into Russia [1]." in second and "Sources" in second
    assert repl.history and repl.history[0][0] == "Who launched incursions into Russia?"  # cancelled: not history


def test_model_server_failure_is_one_line_and_the_session_goes_on() -> None:
    def down(messages: Any) -> str:
        raise openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions"))

    chain = fake_chain(model=RunnableLambda(down))
    repl = Repl(chain, screen())
    code, out = drive(repl, "Who launched incursions?\r:k 2\r\x04")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("error: cannot reach the model server at")
    assert lines[1] == "k = 2 passages per question"


def test_follow_up_is_condensed_with_the_history_before_retrieval() -> None:
    model = fake_chat(
        "On March 12, the groups claimed to have launched incursions into Russia with armored vehicles and tanks [1].",
        "Standalone question: Who said the larger incursion into Russia was stopped?",
        "Kursk Governor Roman Starovoyt said the larger incursion was stopped [3].",
    )
    chain = fake_chain(model=model)
    repl = Repl(chain, screen())
    code, out = drive(repl, "What did the groups launch on March 12?\rand who said it was stopped?\r:json\r\x04")
    assert code == 0
    assert chain.retriever.queries == ["What did the groups launch on March 12?",  # type: ignore[attr-defined]
                                       "Who said the larger incursion into Russia was stopped?"]
    condense_prompt = model.prompts[1]
    system, user = condense_prompt[0].content, condense_prompt[1].content
    assert "standalone question" in system.lower()
    assert "User: What did the groups launch on March 12?" in user
    assert "Assistant: On March 12, the groups claimed" in user and "[1]" not in user  # markers stripped
    assert "Follow-up: and who said it was stopped?" in user
    assert "→ Who said the larger incursion into Russia was stopped?" in out
    assert json_blocks(out)[-1]["question"] == "Who said the larger incursion into Russia was stopped?"
    assert "Starovoyt" in json_blocks(out)[-1]["answer"]


def test_new_conversation_and_extractive_backend_do_not_condense() -> None:
    model = fake_chat("The groups launched incursions into Russia [1].", "Kursk Governor Roman Starovoyt said it [3].")
    chain = fake_chain(model=model)
    repl = Repl(chain, screen())
    drive(repl, "What did the groups launch?\r:new\rwho said the larger incursion was stopped?\r\x04")
    assert len(model.prompts) == 2  # two answers, no condense call after :new
    assert chain.retriever.queries[-1] == "who said the larger incursion was stopped?"  # type: ignore[attr-defined]


def test_streaming_backend_passes_tokens_while_answering() -> None:
    seen: list[str] = []

    class Spy(InterruptOnce):
        def ask(self, *args: Any, **kwargs: Any) -> Answer:
            on_token = kwargs["on_token"]

            def record(token: str) -> None:
                seen.append(token)
                on_token(token)

            return self._chain.ask(*args, **{**kwargs, "on_token": record})  # type: ignore[no-any-return]

    chain = Spy(fake_chain("On March 12, the groups claimed to have launched incursions into Russia [1]."))
    repl = Repl(chain, screen(), stream=True)
    code, out = drive(repl, "Who launched incursions into Russia?\r\x04")
    assert code == 0
    assert len(seen) > 3 and "".join(seen).startswith("On March 12,")  # streamed word by word
    assert "incursions into Russia [1]." in out and "Sources" in out  # then the verified answer


def test_backend_openai_without_key_is_one_line_and_keeps_the_old_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    passages = passages_from_text("004.txt", DOC, "Counter-Invasion", size=40, overlap=0)
    chain = AnswerChain(FakeRetriever(passages), AnswerSettings(), backend="extractive")
    repl = Repl(chain, screen())
    code, out = drive(repl, ":backend openai\r:backend\r\x04")
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("error: the openai backend needs OPENAI_API_KEY")
    assert lines[0].endswith("(still using extractive)")
    assert lines[1].startswith("backend: extractive")
    assert chain.backend == "extractive" and repl.prompt_text().endswith("|extractive]> ")


def test_backend_auto_picks_what_the_environment_configures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")  # configured; nothing is called yet
    passages = passages_from_text("004.txt", DOC, "Counter-Invasion", size=40, overlap=0)
    chain = AnswerChain(FakeRetriever(passages), AnswerSettings(), backend="extractive")
    code, out = drive(Repl(chain, screen()), ":backend auto\r\x04")
    assert out.splitlines() == ["backend: openai"]
    assert chain.backend == "openai"


def test_brief_prints_the_briefing_markdown(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, str]] = []

    class Briefing:
        markdown = "# Incursions into Russia\n\n- Armed groups crossed the border [1].\n"

    def make_briefing(chain: Any, topic: str, k: int | None = None) -> Briefing:
        calls.append((chain, topic))
        return Briefing()

    monkeypatch.setattr(brief_module, "make_briefing", make_briefing)
    chain = fake_chain()
    code, out = drive(Repl(chain, screen()), ":brief incursions into Russia\r\x04")
    assert code == 0 and calls == [(chain, "incursions into Russia")]
    assert "Incursions into Russia" in out and "Armed groups crossed the border [1]." in out and "#" not in out


def test_highlight_styles_exactly_the_cited_span() -> None:
    passages = passages_from_text("004.txt", DOC, "Counter-Invasion", size=400, overlap=0)
    p = passages[0]
    quote = "They reportedly crossed into the Belgorod and Kursk regions."
    start = DOC.index(quote)
    text = highlight(p, [Citation(1, "004.txt", p.chunk_id, start, start + len(quote), quote)])
    [span] = text.spans
    assert text.plain[span.start:span.end] == quote and span.style == FOCUS_STYLE


def test_clean_condensed_takes_the_question_or_falls_back_to_the_conversation() -> None:
    previous = "Who claimed the drone attack on the refinery?"
    assert clean_condensed('Standalone question: "Who denied the attack?"\nmore', "and who denied it?",
                           previous) == "Who denied the attack?"
    # Empty, rambling, or not about the follow-up (a weak model copying the example): previous question + follow-up
    for reply in ("   \n", "x " * 400, "The agency claimed it was the agency."):
        assert clean_condensed(reply, "and who denied it?", previous) == previous + " and who denied it?"
    assert clean_condensed("", "and who denied it?") == "and who denied it?"


def test_empty_store_exits_2_and_says_run_rag_ingest(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "empty"), "repl"], input="")
    assert result.exit_code == 2
    assert "rag ingest" in result.output


# -- integration: the real embedding model over a store ingested from corpus/ ----------------------------------
@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("repl") / "store"
    result = CliRunner().invoke(app, ["--home", str(home), "ingest", str(CORPUS)])
    assert result.exit_code == 0, result.output
    return home


@pytest.fixture(scope="module")
def chain(home: Path) -> AnswerChain:
    chain = load_chain(Settings(home=home))
    Repl(chain, screen()).warm_up()
    return chain  # type: ignore[no-any-return]


@pytest.fixture
def repl(chain: AnswerChain) -> Iterator[Repl]:
    chain.backend = "extractive"
    yield Repl(chain, screen())
    chain.backend = "extractive"


@pytest.mark.integration
def test_question_gets_a_cited_answer_with_sources(repl: Repl) -> None:
    code, out = drive(repl, QUESTION + "\r\x04")
    assert code == 0
    assert "[1]" in out and "\nSources\n" in out
    assert repl.last is not None and repl.last.citations
    assert f"“{repl.last.citations[0].quote}”" in out


@pytest.mark.integration
def test_sources_and_show_highlight_the_cited_span_in_its_passage(repl: Repl) -> None:
    code, out = drive(repl, QUESTION + "\r:sources\r:show 1\r:show p2\r:show 99\r\x04")
    answer = repl.last
    assert code == 0 and answer is not None
    c = answer.citations[0]
    sources = out[out.index("Citations\n"):out.index(":show N shows")]
    assert f"[1] {c.title}" in sources and f"“{c.quote}”" in sources
    assert "Retrieved passages" in sources and all(p.text in sources for p in answer.passages)
    passage = next(p for p in answer.passages if p.chunk_id == c.chunk_id)
    shown = out[out.index(":show N shows"):]
    assert passage.text in shown and f"highlighted: [1] {c.start}-{c.end}" in shown
    # The cited quote is painted with the highlight style, inside the full passage text.
    styled = repl.console.export_text(styles=True, clear=False)
    assert Style.parse(FOCUS_STYLE).render(c.quote) in styled
    assert passage.text[: c.start - passage.start] in styled
    assert out.rstrip().splitlines()[-1].startswith("no citation [99]: the last answer has [1]")


@pytest.mark.integration
def test_k_and_filter_change_what_is_retrieved(repl: Repl) -> None:
    doc = "004_d30e4aad0120d6ab.txt"
    keys = [":k 3", QUESTION, f":filter {doc}", ":filter nope", ":filter", QUESTION, ":json", ":filter off"]
    code, out = drive(repl, "".join(k + "\r" for k in keys) + "\x04")
    assert code == 0
    assert "k = 3 passages per question" in out
    assert "3 passages · extractive" in out
    assert f"filter: only 1 document: {doc}" in out
    bad = next(line for line in out.splitlines() if "nope" in line)
    assert bad.startswith("no document matches 'nope'") and bad.endswith("filter unchanged (:docs lists the documents)")
    assert "…" not in bad  # the five seed articles are all listed: nothing left out
    assert out.count(f"filter: only 1 document: {doc}") == 2  # the bad filter left the good one active
    answer = json_blocks(out)[-1]
    assert answer["citations"] and {c["doc"] for c in answer["citations"]} == {doc}
    assert repl.last is not None and {p.doc for p in repl.last.passages} == {doc}
    assert out.rstrip().endswith("filter: off (searching all documents)") and repl.docs is None


@pytest.mark.integration
def test_json_is_the_last_answer(repl: Repl) -> None:
    code, out = drive(repl, QUESTION + "\r:json\r\x04")
    [data] = json_blocks(out)
    assert repl.last is not None and data == json.loads(json.dumps(repl.last.to_json()))
    assert data["question"] == QUESTION and data["answer"] in out.split("{")[0]
    assert data["backend"] == "extractive" and data["citations"][0]["n"] == 1


@pytest.mark.integration
def test_backend_openai_without_key_keeps_extractive(repl: Repl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    code, out = drive(repl, ":backend openai\r" + QUESTION + "\r\x04")
    assert out.splitlines()[0].startswith("error: the openai backend needs OPENAI_API_KEY")
    assert "1 citation · 8 passages · extractive" in out


@pytest.mark.integration
def test_ctrl_c_during_a_real_answer_then_the_next_answer_works(chain: AnswerChain) -> None:
    repl = Repl(InterruptOnce(chain), screen())
    code, out = drive(repl, QUESTION + "\r" + "partly typed\x03" + QUESTION + "\r\x04")
    assert code == 0
    assert out.startswith("cancelled\n")
    assert out.count("\nSources\n") == 1 and "[1]" in out


@pytest.mark.integration
def test_brief_with_the_real_chain(repl: Repl) -> None:
    code, out = drive(repl, ":brief cross-border incursions into Russia\r\x04")
    assert code == 0 and "Traceback" not in out and not out.startswith("error")
    assert "Support audit" in out and "Sources" in out


# -- integration: the real `rag repl` command ------------------------------------------------------------------
def rag_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm",
               COLUMNS="200", LINES="50", **extra)
    return env


@pytest.mark.integration
def test_real_command_with_piped_stdin(home: Path) -> None:
    keys = f"{QUESTION}\n:k abc\n:json\n:brief Kursk\n:quit\n"
    env = {k: v for k, v in rag_env().items() if k != "COLUMNS"}  # a pipe has no width: rich would take 80
    done = subprocess.run([str(RAG), "--home", str(home), "repl"], input=keys, capture_output=True, text=True,
                          timeout=300, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "backend extractive · ready in" in out
    assert f"rag[{home}|extractive]> {QUESTION}" in out
    assert "[1]" in out and "Sources" in out
    assert "usage: :k N with N a whole number ≥ 1, not 'abc'" in out
    assert '"question": "' + QUESTION in out
    assert "Traceback" not in out + done.stderr
    answer = json.loads(out[out.index('{\n  "question"'):out.rindex("}") + 1])["answer"]
    assert answer in out  # piped, an answer is one line however long, not cut at 80 columns
    briefing = out[out.index("# Briefing: Kursk"):]  # piped, a briefing is its Markdown: bullets whole, not cut
    bullets = [line for line in briefing.splitlines() if line.startswith("- ")]
    assert "\n## " in briefing and bullets and max(map(len, bullets)) > 80
    assert all(re.search(r"\[\d+\]\.?$", b) for b in bullets), bullets


class Pty:
    """`rag repl` in a pseudo-terminal: prompt_toolkit and Ctrl-C behave as they do for a person."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT,
                                     start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.master = master
        self.seen = ""

    def read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.seen += ANSI.sub("", os.read(self.master, 65536).decode("utf-8", "replace"))
            except OSError as e:  # EIO: the child closed the terminal
                if e.errno != errno.EIO:
                    raise

    def expect(self, pattern: str, timeout: float = 120.0, after: int = 0) -> int:
        """Wait until `pattern` (regex) appears in the screen text after offset `after`; its end offset."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.seen[after:])
            if m:
                return after + m.end()
            if self.proc.poll() is not None:
                self.read(0.2)
                m = re.search(pattern, self.seen[after:])
                if m:
                    return after + m.end()
                break
            self.read(0.2)
        raise AssertionError(f"{pattern!r} not on screen; screen was:\n{self.seen[after:][-3000:]}")

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.master)


@pytest.fixture
def hanging_model_server() -> Iterator[str]:
    """An 'OpenAI server' on 127.0.0.1 that accepts connections and never answers: a stuck model."""
    server = socket.socket()
    server.bind(("127.0.0.1", free_port()))
    server.listen(8)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/v1"
    stop.set()
    thread.join()
    for c in conns:
        c.close()
    server.close()


@pytest.mark.integration
def test_real_command_in_a_terminal_ctrl_c_cancels_a_stuck_answer(home: Path, hanging_model_server: str) -> None:
    term = Pty([str(RAG), "--home", str(home), "repl", "--backend", "openai"],
               rag_env(OPENAI_BASE_URL=hanging_model_server, OPENAI_API_KEY="test"))
    try:
        at = term.expect(r"rag\[[^\]\r\n]*\|openai\]>", timeout=180)
        term.send(QUESTION + "\r")
        time.sleep(2.0)  # the model server never answers: the answer is in progress
        term.send("\x03")
        at = term.expect(r"cancelled", timeout=30, after=at)
        at = term.expect(r"rag\[[^\]\r\n]*\|openai\]>", timeout=30, after=at)
        term.send("\x03")  # Ctrl-C at the empty prompt: just a new prompt
        at = term.expect(r"rag\[[^\]\r\n]*\|openai\]>", timeout=30, after=at)
        term.send(":backend extractive\r")
        at = term.expect(r"rag\[[^\]\r\n]*\|extractive\]>", timeout=30, after=at)
        term.send(QUESTION + "\r")
        at = term.expect(r"Sources", timeout=120, after=at)
        term.expect(r"1 citation · 8 passages · extractive", timeout=30, after=at)
        at = term.expect(r"rag\[[^\]\r\n]*\|extractive\]>", timeout=30, after=at)
        term.send("\x04")
        assert term.proc.wait(timeout=30) == 0
        assert "Traceback" not in term.seen
        history = (home / "repl_history").read_text(encoding="utf-8")  # persistent prompt history under RAG_HOME
        assert f"+{QUESTION}" in history and "+:backend extractive" in history
    finally:
        term.close()
