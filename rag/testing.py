"""Fakes and helpers for tests: no network, no model weights, fully deterministic.

- `FakeEmbedder`: a hashing embedder (words and word pairs hashed into a fixed number of signed buckets), unit
  length, so texts that share words have a positive cosine. It satisfies the `rag.embed.Embedder` protocol.
- `FakeRetriever`: a stand-in for `rag.retrieve.Retriever` over a fixed list of passages (ranked by the fake
  embedding), enough for `rag.answer.AnswerChain`.
- `RecordingChatModel`: LangChain's `GenericFakeChatModel` that also keeps every prompt it was sent.
- `running_server`: start a real server process (llama.cpp, `chroma run`) on 127.0.0.1, wait until it answers,
  always stop it.
- `passages_from_text` / `ingest_folder` / `chroma_documents`: build passages with true offsets, sync a folder
  into a real (embedded) Chroma store with any embedder, and read back what the store holds.
"""

from __future__ import annotations

import hashlib
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import Field

from rag.chunk import chunk_text
from rag.types import Passage

_WORD = re.compile(r"[a-z0-9]+")


class FakeEmbedder:
    """Deterministic bag-of-words hashing embedding: same text, same vector, on every machine and run."""

    def __init__(self, dim: int = 384, name: str = "fake:hashing-384") -> None:
        self.dim = dim
        self.name = name
        self.calls: list[list[str]] = []  # every embed_documents batch, for tests that count embedding work

    def _vector(self, text: str) -> np.ndarray:
        words = _WORD.findall(text.lower())
        features = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
        v = np.zeros(self.dim, dtype=np.float32)
        for f in features:
            digest = hashlib.blake2b(f.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dim
            v[bucket] += 1.0 if digest[4] & 1 else -1.0
        norm = float(np.linalg.norm(v))
        if norm == 0.0:  # no words at all: a fixed unit vector keeps cosine defined
            v[0] = 1.0
            return v
        return v / norm

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vector(t) for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)


class FakeRetriever:
    """Duck-types `rag.retrieve.Retriever` for the answer chain: `embedder`, `lexical` and `search(...)`."""

    def __init__(self, passages: Sequence[Passage], embedder: FakeEmbedder | None = None,
                 rank: bool = False) -> None:
        self.passages = list(passages)
        self.embedder = embedder or FakeEmbedder()
        self.rank = rank  # False: return the passages in the given order (what most chain tests want)
        self.queries: list[str] = []
        self._lexical: Any = None

    @property
    def lexical(self) -> Any:
        """A real BM25 index over the passages (the extractive backend reads word rarity from it)."""
        if self._lexical is None:
            from rag.lexical import LexicalIndex

            texts = [p.text for p in self.passages] or [""]
            self._lexical = LexicalIndex.build([p.chunk_id for p in self.passages] or ["empty#0"], texts)
        return self._lexical

    def search(self, query: str, k: int | None = None, docs: Sequence[str] | None = None,
               use_mmr: bool | None = None, query_vector: np.ndarray | None = None,
               answer_words: Sequence[str] = ()) -> list[Passage]:
        self.queries.append(query)
        found = [p for p in self.passages if not docs or p.doc in docs]
        if self.rank and found:
            q = self.embedder.embed_query(query) if query_vector is None else query_vector
            scores = self.embedder.embed_documents([p.text for p in found]) @ q
            found = [found[i] for i in np.argsort(-scores, kind="stable")]
        return found[: k or 6]


class RecordingChatModel(GenericFakeChatModel):
    """GenericFakeChatModel (streams its reply word by word) that records the messages of every call."""

    prompts: list[list[BaseMessage]] = Field(default_factory=list)
    formats: list[dict[str, Any]] = Field(default_factory=list)  # the response_format of each call that sent one

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.prompts.append(list(messages))
        if reply_format := (kwargs.get("extra_body") or {}).get("response_format"):
            self.formats.append(reply_format)
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def fake_chat(*replies: str) -> RecordingChatModel:
    """A fake chat model that answers each call with the next reply."""
    return RecordingChatModel(messages=iter([AIMessage(content=r) for r in replies]))


class RefusingModel(RecordingChatModel):
    """Refuses the reply formats named in `refuse` ("json_schema", "json_object", "text") the way a server does:
    HTTP 400."""

    refuse: tuple[str, ...] = ()

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        import httpx
        import openai

        kind = (kwargs.get("extra_body") or {}).get("response_format", {}).get("type", "text")
        if kind in self.refuse:
            request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
            response = httpx.Response(400, request=request)
            raise openai.BadRequestError(f"{kind} not supported", response=response,  # type: ignore[arg-type]
                                         body=None)
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def refusing(refuse: tuple[str, ...], *replies: str) -> RefusingModel:
    """A fake chat model that refuses the reply formats in `refuse` and answers the other calls in turn."""
    return RefusingModel(messages=iter([AIMessage(content=r) for r in replies]), refuse=refuse)


def passages_from_text(doc: str, text: str, title: str = "", size: int = 200, overlap: int = 40) -> list[Passage]:
    """The document's chunks as passages, with the same offsets the store would record."""
    return [Passage(chunk_id=c.id, doc=c.doc, start=c.start, end=c.end, text=c.text, title=title or doc,
                    source=doc) for c in chunk_text(doc, text, size, overlap)]


def ingest_folder(home: Path, folders: Iterable[Path], embedder: Any) -> Any:
    """Scan and sync folders into a store under `home` with `embedder` (no CLI, no model weights needed)."""
    from rag.config import Settings
    from rag.ingest import scan
    from rag.store import Store, sync

    settings = Settings(home=home)
    store = Store(settings)
    found = scan(list(folders), int(settings.ingest.max_file_mb * 1_000_000))
    sync(store, found, settings, embedder)
    return store


def chroma_documents(home: Path, collection: str = "articles") -> list[tuple[str, str, dict[str, Any]]]:
    """(id, text, metadata) of every chunk in the embedded Chroma store under `home`."""
    from rag.config import Settings
    from rag.store import Store

    return list(Store(Settings(home=home, collection=collection)).all_chunks())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200 and response.read())
    except OSError:
        return False


@contextmanager
def running_server(command: Sequence[str], ready_url: str, log_path: Path, wait_s: float,
                   env: dict[str, str] | None = None) -> Iterator[None]:
    """Run `command` with its output in `log_path` until `ready_url` answers 200 with a body; stop it on exit.
    Raises RuntimeError with the log's tail when the process dies or does not answer within `wait_s`."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env)
    try:
        deadline = time.monotonic() + wait_s
        while not _answers(ready_url):
            if proc.poll() is not None or time.monotonic() > deadline:
                state = f"exited with {proc.returncode}" if proc.poll() is not None else f"no answer in {wait_s:.0f} s"
                raise RuntimeError(f"{command[0]} did not come up ({state}):\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@contextmanager
def chroma_server(folder: Path, wait_s: float = 60) -> Iterator[str]:
    """A real `chroma run` (the one beside this Python) on a free port of 127.0.0.1, its data in `folder`; yields
    its URL once the heartbeat answers, and stops it on exit."""
    url = f"http://127.0.0.1:{free_port()}"
    command = [str(Path(sys.executable).parent / "chroma"), "run", "--path", str(folder / "db"), "--host",
               "127.0.0.1", "--port", url.rsplit(":", 1)[1]]
    with running_server(command, f"{url}/api/v2/heartbeat", folder / "server.log", wait_s):
        yield url


MARKER_RE = re.compile(r"\[(\d+)\]")


def markers_in(text: str) -> list[int]:
    """Every [n] marker in an answer text, in order."""
    return [int(m) for m in MARKER_RE.findall(text)]
