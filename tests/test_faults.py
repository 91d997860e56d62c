"""Consistency under faults, with the REAL Chroma (embedded and a `chroma run` server): an interrupted ingest is
never read half-written, the BM25 index follows the committed state, and writers take turns on a shared server.
Vectors come from the deterministic FakeEmbedder: what is under test is the store, not the model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from rag.chunk import chunk_text
from rag.config import Settings
from rag.ingest import load_file, scan
from rag.retrieve import Retriever
from rag.store import Store, StoreBusy, StoreError, sync
from rag.testing import FakeEmbedder, free_port, running_server
from rag.testing import chroma_server as real_chroma_server

pytestmark = pytest.mark.integration

CHROMA = str(Path(sys.executable).parent / "chroma")
OLD = ("The old bridge over the Varna river was closed in spring for repairs to its northern span. "
       "Engineers found cracks in three of the steel girders. ")
NEW = ("A new ferry now crosses the Varna river every twenty minutes from the harbour. "
       "The ferry company says the boats carry four hundred passengers a day. ")


class Interrupted(FakeEmbedder):
    """The fake embedder, interrupted as Ctrl-C interrupts it after `batches` batches."""

    def __init__(self, batches: int | None = None) -> None:
        super().__init__()
        self.batches = batches

    def embed_documents(self, texts: Any) -> Any:
        if self.batches is not None:
            if self.batches <= 0:
                raise KeyboardInterrupt
            self.batches -= 1
        return super().embed_documents(texts)


def corpus(folder: Path, **docs: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / f"{name}.txt").write_text(text)
    return folder


def settings_for(home: Path, url: str | None = None) -> Settings:
    return Settings(home=home, chroma_url=url, chunk={"size": 24, "overlap": 0})


def small_batches(store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setattr(store.client, "get_max_batch_size", lambda: 2)
    return store


def seen(store: Store, s: Settings, query: str) -> set[str]:
    """Every chunk a reader can reach: dense and BM25 search, documents' passages and the BM25 index."""
    retriever = Retriever(store, FakeEmbedder(), s.retrieve)
    found = {p.chunk_id for p in retriever.search(query, k=50)}
    found |= {p.chunk_id for p in store.doc_passages(sorted(store.documents()))}
    found |= set(store.passages(retriever.lexical.ids))
    return found


def chunk_ids(doc: str, text: str, s: Settings) -> set[str]:
    return {c.id for c in chunk_text(doc, text, s.chunk.size, s.chunk.overlap)}


def stored_ids(store: Store) -> set[str]:
    return {i for i, _, _ in store.all_chunks()}


def test_an_interrupted_first_ingest_is_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = corpus(tmp_path / "corpus", bridge=OLD * 3, ferry=NEW * 3)
    s = settings_for(tmp_path / "home")
    store = small_batches(Store(s), monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        sync(store, scan([folder], 1_000_000), s, Interrupted(batches=2))
    assert store.count() == 4  # chunks written, no record commits them
    with pytest.raises(StoreError, match="no finished documents: an ingest was interrupted; run `rag ingest PATH`"):
        Retriever(store, FakeEmbedder(), s.retrieve)
    assert store.passages(sorted(stored_ids(store))) == {}
    finish = Interrupted()
    report = sync(store, scan([folder], 1_000_000), s, finish)
    assert sum(map(len, finish.calls)) == report.chunks - 4  # what the interrupted run wrote is not embedded again
    assert seen(store, s, "Varna river") == chunk_ids("bridge.txt", OLD * 3, s) | chunk_ids(
        "ferry.txt", NEW * 3, s)


def test_asking_while_a_first_ingest_writes_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = corpus(tmp_path / "corpus", bridge=OLD * 3)
    s = settings_for(tmp_path / "home")
    store = small_batches(Store(s), monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        sync(store, scan([folder], 1_000_000), s, Interrupted(batches=1))
    with store.write_lock():  # the ingest goes on writing
        with pytest.raises(StoreError, match="has no finished documents yet: an ingest is writing to it; ask again"):
            Retriever(Store(s), FakeEmbedder(), s.retrieve)


@pytest.mark.parametrize("stop", ["embedding", "deleting"])
def test_an_interrupted_update_shows_the_old_text_alone_until_the_new_commits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: str) -> None:
    folder = corpus(tmp_path / "corpus", bridge=OLD * 3)
    s = settings_for(tmp_path / "home")
    store = small_batches(Store(s), monkeypatch)
    sync(store, scan([folder], 1_000_000), s, FakeEmbedder())
    old = chunk_ids("bridge.txt", OLD * 3, s)
    assert seen(store, s, "bridge") == old
    corpus(folder, bridge=OLD + NEW * 3)  # the first sentences stay, the rest is new
    new = chunk_ids("bridge.txt", OLD + NEW * 3, s)
    assert old & new and new - old
    if stop == "embedding":
        with pytest.raises(KeyboardInterrupt):
            sync(store, scan([folder], 1_000_000), s, Interrupted(batches=1))
        assert seen(store, s, "ferry Varna") == old  # the record still names the old generation
    else:  # killed after the commit, before the old chunks are deleted
        collection = store.chunks_collection()
        real_delete = type(collection).delete

        def killed(self: Any, *args: Any, **kwargs: Any) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(type(collection), "delete", killed)
        with pytest.raises(KeyboardInterrupt):
            sync(store, scan([folder], 1_000_000), s, FakeEmbedder())
        monkeypatch.setattr(type(collection), "delete", real_delete)
        assert stored_ids(store) == old | new  # both are stored ...
        assert seen(store, s, "ferry Varna bridge") == new  # ... only the committed generation is read
    missing = new - stored_ids(store)
    assert len(missing) == (len(new - old) - 2 if stop == "embedding" else 0)
    finish = FakeEmbedder()
    sync(store, scan([folder], 1_000_000), s, finish)
    assert sum(map(len, finish.calls)) == len(missing)  # only what the interrupted run did not write
    assert stored_ids(store) == new == seen(store, s, "ferry Varna bridge")


def test_a_pruning_cut_short_hides_the_whole_document_and_is_finished(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    folder = corpus(tmp_path / "corpus", bridge=OLD * 3, ferry=NEW * 3)
    s = settings_for(tmp_path / "home")
    store = small_batches(Store(s), monkeypatch)
    sync(store, scan([folder], 1_000_000), s, FakeEmbedder())
    (folder / "bridge.txt").unlink()
    collection = store.chunks_collection()
    real_delete = type(collection).delete
    monkeypatch.setattr(type(collection), "delete", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        sync(store, scan([folder], 1_000_000), s, FakeEmbedder())
    monkeypatch.setattr(type(collection), "delete", real_delete)
    assert seen(store, s, "bridge Varna") == chunk_ids("ferry.txt", NEW * 3, s)
    report = sync(store, scan([folder], 1_000_000), s, FakeEmbedder())
    assert report.removed == ["bridge.txt"] and sorted(store.documents()) == ["ferry.txt"]
    assert stored_ids(store) == chunk_ids("ferry.txt", NEW * 3, s)


# -- a real Chroma server shared by two homes -----------------------------------------------------------------


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with real_chroma_server(tmp_path_factory.mktemp("chroma-server")) as url:
        yield url


def test_another_clients_same_size_edit_makes_the_bm25_index_stale(chroma_server: str, tmp_path: Path) -> None:
    s1 = settings_for(tmp_path / "one", chroma_server).model_copy(update={"collection": "samesize"})
    s2 = settings_for(tmp_path / "two", chroma_server).model_copy(update={"collection": "samesize"})
    folder = corpus(tmp_path / "corpus", bridge=OLD * 2)
    one = Store(s1)
    sync(one, scan([folder], 1_000_000), s1, FakeEmbedder())
    before = set(one.lexical_index().ids)
    corpus(folder, bridge=(OLD * 2).replace("spring", "autumn"))  # same number of chunks, other text
    sync(Store(s2), scan([folder], 1_000_000), s2, FakeEmbedder())
    after = set(Store(s1).lexical_index().ids)
    assert len(after) == len(before) and after != before
    assert after == {i for i, _, _ in Store(s1).all_chunks()}


def test_writers_with_different_homes_on_one_server_take_turns(chroma_server: str, tmp_path: Path) -> None:
    s1 = settings_for(tmp_path / "one", chroma_server).model_copy(update={"collection": "turns"})
    s2 = settings_for(tmp_path / "two", chroma_server).model_copy(update={"collection": "turns"})
    folder = corpus(tmp_path / "corpus", bridge=OLD)
    one, two = Store(s1), Store(s2)
    with one.write_lock():
        with pytest.raises(StoreBusy, match=rf"another process \(.*store folder {tmp_path / 'one'}\) is writing to "):
            sync(two, scan([folder], 1_000_000), s2, FakeEmbedder())
        assert two.writer_active()
    assert sync(two, scan([folder], 1_000_000), s2, FakeEmbedder()).added == ["bridge.txt"]
    # A writer killed on this machine leaves its lock behind; the next writer sees its process is gone.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    two.client.create_collection("turns__writer", metadata={
        "owner": f"{os.uname().nodename}:{dead.pid}:x", "home": "elsewhere", "renewed": 1e12})
    assert sync(one, scan([folder], 1_000_000), s1, FakeEmbedder()).unchanged == ["bridge.txt"]


# -- a Chroma server that dies mid-way -------------------------------------------------------------------------


@pytest.fixture
def dying_server(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A `chroma run` of this test's own, and a function that kills it (kill -9)."""
    import signal

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [CHROMA, "run", "--path", str(tmp_path / "db"), "--host", "127.0.0.1", "--port", str(port)]
    with running_server(command, f"{url}/api/v2/heartbeat", tmp_path / "server.log", 60):
        pids = subprocess.run(["pgrep", "-f", "--", f"--port {port}$"], capture_output=True, text=True).stdout.split()
        assert len(pids) == 1, pids
        yield url, lambda: [os.kill(int(pid), signal.SIGKILL) for pid in pids]


def test_the_chroma_server_dying_mid_ingest_is_one_line(dying_server: tuple[str, Any], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from rag import embed
    from rag.cli import app

    url, kill = dying_server
    folder = corpus(tmp_path / "corpus", bridge=OLD * 3, ferry=NEW * 3)
    batches = []

    def embed_then_die(self: Any, texts: Any) -> Any:
        batches.append(len(texts))
        if len(batches) == 1:  # killed while the first batch is embedded: its write finds no server
            kill()
        return FakeEmbedder().embed_documents(texts)

    monkeypatch.setattr(embed.LocalEmbedder, "embed_documents", embed_then_die)
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "home"), "ingest", str(folder)],
                                env={"RAG_CHROMA_URL": url, "RAG_CHUNK__SIZE": "24", "RAG_CHUNK__OVERLAP": "0"})
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: lost the Chroma server at {url}"), lines


def test_the_chroma_server_dying_mid_ask_is_not_blamed_on_the_model(dying_server: tuple[str, Any], tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from rag import embed
    from rag.cli import app

    url, kill = dying_server
    folder = corpus(tmp_path / "corpus", bridge=OLD * 3, ferry=NEW * 3)
    monkeypatch.setattr(embed.LocalEmbedder, "embed_documents", lambda _, texts: FakeEmbedder().embed_documents(texts))
    env = {"RAG_CHROMA_URL": url, "OPENAI_API_KEY": None, "OPENAI_BASE_URL": None}
    runner = CliRunner()
    assert runner.invoke(app, ["--home", str(tmp_path / "home"), "ingest", str(folder)], env=env).exit_code == 0

    def query_then_die(self: Any, text: str) -> Any:
        kill()
        return FakeEmbedder().embed_query(text)

    monkeypatch.setattr(embed.LocalEmbedder, "embed_query", query_then_die)
    result = runner.invoke(app, ["--home", str(tmp_path / "home"), "ask", "Who runs the ferry?"], env=env)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: lost the Chroma server at {url}"), lines
    assert not any("model server" in line or "--backend" in line for line in lines), lines


# -- model and embedding servers that misbehave ----------------------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[Any]:
    """A real HTTP server on 127.0.0.1 whose reply to POST is set by the test; a reply of None never answers."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state: dict[str, Any] = {"reply": b"{}", "hang": threading.Event()}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802  the name http.server calls
            self.rfile.read(int(self.headers.get("content-length", 0)))
            if state["reply"] is None:
                state["hang"].wait(60)
                return
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(state["reply"])))
            self.end_headers()
            self.wfile.write(state["reply"])

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        state["hang"].set()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("reply", [
    b"<html>Bad gateway</html>",
    b'{"data": [{"embedding": "not a vector"}]}',
    b'{"object": "list"}',
    b'{"data": [{"embedding": [0.1, 0.2]}]}',  # one vector for two texts
], ids=["not-json", "not-a-vector", "no-data", "too-few"])
def test_a_malformed_embedding_reply_is_one_line(http_server: Any, monkeypatch: pytest.MonkeyPatch,
                                                 reply: bytes) -> None:
    from rag.embed import OpenAIEmbedder
    from rag.llm import ModelError

    monkeypatch.setenv("OPENAI_BASE_URL", http_server["url"])
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    http_server["reply"] = reply
    with pytest.raises(ModelError) as caught:
        OpenAIEmbedder("text-embedding-3-small", timeout_s=5).embed_documents(["one text", "another text"])
    assert str(caught.value).startswith("embedding with openai:text-embedding-3-small failed: the server at "
                                        f"{http_server['url']} sent a malformed reply")
    assert "\n" not in str(caught.value)


def test_a_hung_embedding_server_fails_within_its_timeout_setting(http_server: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from rag.embed import make_embedder
    from rag.llm import ModelError

    monkeypatch.setenv("OPENAI_BASE_URL", http_server["url"])
    monkeypatch.setenv("RAG_EMBED__PROVIDER", "openai")
    monkeypatch.setenv("RAG_EMBED__TIMEOUT_S", "3")
    http_server["reply"] = None
    embedder = make_embedder(Settings.load().embed)
    started = time.monotonic()
    with pytest.raises(ModelError, match="did not answer in time"):
        embedder.embed_documents(["a text"])
    assert time.monotonic() - started < 3.5  # retries included: not 3 attempts of 3 s (nor of a fixed 30 s)


def test_a_hung_model_server_fails_within_the_answer_timeout(http_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from rag.llm import client_failure, openai_chat_model

    monkeypatch.setenv("OPENAI_BASE_URL", http_server["url"])
    monkeypatch.setenv("RAG_ANSWER__TIMEOUT_S", "3")
    monkeypatch.setenv("RAG_ANSWER__MAX_RETRIES", "2")
    http_server["reply"] = None
    model = openai_chat_model(Settings.load().answer, streaming=False)
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        model.invoke("Who runs the ferry?")
    elapsed = time.monotonic() - started
    assert "did not answer in time" in (client_failure(caught.value) or "") and elapsed < 3.5, (caught.value, elapsed)


# -- files that are not what their names say -------------------------------------------------------------------

SCAN_IN_A_BOUNDED_PROCESS = (
    "import json, resource, sys; from pathlib import Path; from rag.ingest import scan\n"
    "resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))\n"  # reading /dev/zero ends here
    "found = scan([Path(p) for p in sys.argv[1:]], 1_000_000)\n"
    "print(json.dumps({'docs': [d.id for d in found.documents], 'skipped': [[s.path, s.reason] "
    "for s in found.skipped]}))\n"
)


def scan_bounded(*paths: Path) -> dict[str, Any]:
    """`scan` in a process of its own, with 1.5 GB of memory and 60 seconds: a file read without end fails it."""
    import json

    done = subprocess.run([sys.executable, "-c", SCAN_IN_A_BOUNDED_PROCESS, *map(str, paths)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_devices_fifos_and_sockets_behind_text_names_are_skipped_with_the_reason(tmp_path: Path) -> None:
    import socket

    folder = corpus(tmp_path / "corpus", bridge=OLD)
    (folder / "zero.txt").symlink_to("/dev/zero")
    os.mkfifo(folder / "pipe.md")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(folder / "sock.txt"))
        found = scan_bounded(folder, folder / "pipe.md", folder / "sock.txt")
    assert found["docs"] == ["bridge.txt"]
    reasons = {Path(p).name: r for p, r in found["skipped"]}
    assert reasons == {"zero.txt": "not a regular file but a character device: only files are read",
                       "pipe.md": "not a regular file but a FIFO: only files are read",
                       "sock.txt": "not a regular file but a socket: only files are read"}


def test_a_file_is_read_up_to_the_limit_and_no_further(tmp_path: Path) -> None:
    from rag.ingest import BadFile, read_file

    limit = tmp_path / "limit.txt"
    limit.write_bytes(b"word " * 200)
    assert len(read_file(limit, 1000)) == 1000
    with pytest.raises(BadFile, match=r"over the 0\.0 MB limit"):
        read_file(limit, 999)


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_byte_order_mark_is_read_as_text(tmp_path: Path, codec: str) -> None:
    from rag.ingest import load_file

    path = tmp_path / "notes.txt"
    path.write_bytes((OLD + "Café, naïve — «quoted».\n").encode(codec))
    assert load_file(path, "notes.txt", 1_000_000).text == (OLD + "Café, naïve — «quoted».").strip()


def test_binary_with_nul_bytes_is_still_binary(tmp_path: Path) -> None:
    from rag.ingest import BadFile, load_file

    path = tmp_path / "image.txt"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(BadFile, match="binary content"):
        load_file(path, "image.txt", 1_000_000)


def test_a_pdf_without_a_text_layer_says_it_needs_ocr(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    from rag.ingest import BadFile, load_file

    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.add_blank_page(width=595, height=842)
    path = tmp_path / "scan.pdf"
    with open(path, "wb") as f:
        writer.write(f)
    with pytest.raises(BadFile, match=r"^no text layer in its 2 pages \(a scan\?\): it needs OCR first"):
        load_file(path, "scan.pdf", 1_000_000)


# -- a state machine over ingest: every step, interrupted or not, keeps the invariants ----------------------------

SENTENCES = [OLD.split(". ")[0] + ".", "Engineers found cracks in three of the steel girders.",
             NEW.split(". ")[0] + ".",
             "The ferry company says the boats carry four hundred passengers a day.",
             "Council members voted to rebuild the span by the end of next year.",
             "Residents of the eastern bank complained about the detour through the hills."]


class IngestMachine(RuleBasedStateMachine):
    """Add, edit, rename and delete files, change the chunk settings, and sync, sometimes interrupted at a random
    batch. After every step: a reader sees exactly one committed version of each document, and never a chunk that
    is not that version's text; after a sync that ran to the end the store equals the corpus, with no duplicate or
    orphan chunk, and the BM25 index holds the vectors' ids."""

    def __init__(self) -> None:
        super().__init__()
        self.work = Path(tempfile.mkdtemp(prefix="rag-machine-"))
        self.folder = self.work / "corpus"
        self.folder.mkdir()
        self.size = 24
        self.versions: dict[str, str] = {}  # content hash -> text, of every version ever written
        self.complete = True

    def settings(self) -> Settings:
        return Settings(home=self.work / "home", chroma_url=None, chunk={"size": self.size, "overlap": 0})

    def write(self, name: str, sentences: list[int]) -> None:
        (self.folder / name).write_text(" ".join(SENTENCES[i] for i in sentences) + "\n")
        doc = load_file(self.folder / name, name, 1_000_000)
        self.versions[doc.content_hash] = doc.text
        self.complete = False

    @rule(n=st.integers(0, 4), sentences=st.lists(st.integers(0, len(SENTENCES) - 1), min_size=2, max_size=8))
    def add_or_edit(self, n: int, sentences: list[int]) -> None:
        self.write(f"doc{n}.txt", sentences)

    @rule(data=st.data())
    def rename_or_delete(self, data: st.DataObject) -> None:
        files = sorted(self.folder.glob("*.txt"))
        if files:
            victim = data.draw(st.sampled_from(files))
            if data.draw(st.booleans()):
                victim.rename(self.folder / f"renamed_{victim.name}")
            else:
                victim.unlink()
            self.complete = False

    @rule(size=st.sampled_from([24, 40]))
    def change_chunk_size(self, size: int) -> None:
        self.complete = self.complete and size == self.size
        self.size = size

    @rule(interrupt_after=st.none() | st.integers(0, 3))
    def ingest(self, interrupt_after: int | None) -> None:
        s = self.settings()
        store = Store(s)
        store.client.get_max_batch_size = lambda: 1  # type: ignore[method-assign]  a batch a chunk: many stops
        found = scan([self.folder], 1_000_000)
        if not found.documents and not found.unchanged and not store.documents():
            return
        try:
            sync(store, found, s, Interrupted(interrupt_after))
            self.complete = True
        except KeyboardInterrupt:
            self.complete = False

    @invariant()
    def readers_see_one_committed_version(self) -> None:
        store = Store(self.settings())
        records = store.documents()
        seen: dict[str, set[str]] = {}
        for chunk_id, text, meta in store.all_chunks(committed=True):
            assert meta["doc"] in records, f"{chunk_id} is in view, but no record commits its document"
            source = self.versions[records[meta["doc"]]["hash"]]
            assert source[meta["start"]:meta["end"]] == text, chunk_id
            seen.setdefault(meta["doc"], set()).add(chunk_id)
        for doc_id, record in records.items():
            size = json.loads(record["chunking"])["size"]
            expected = {c.id for c in chunk_text(doc_id, self.versions[record["hash"]], size, 0)}
            assert seen.get(doc_id, set()) == expected, doc_id

    @invariant()
    def a_finished_ingest_makes_the_store_the_corpus(self) -> None:
        if not self.complete:
            return
        store = Store(self.settings())
        stored: dict[str, set[str]] = {}
        for chunk_id, _, meta in store.all_chunks():
            stored.setdefault(meta["doc"], set()).add(chunk_id)
        files = sorted(p.name for p in self.folder.glob("*.txt"))
        assert sorted(store.documents()) == files and sorted(stored) == files
        for name in files:
            text = load_file(self.folder / name, name, 1_000_000).text
            assert stored[name] == {c.id for c in chunk_text(name, text, self.size, 0)}, name
        if files:
            assert set(store.lexical_index().ids) == {i for ids in stored.values() for i in ids}

    def teardown(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


TestIngestMachine = IngestMachine.TestCase
TestIngestMachine.settings = hypothesis_settings(max_examples=15, stateful_step_count=12, deadline=None,
                                                 suppress_health_check=[HealthCheck.too_slow])
