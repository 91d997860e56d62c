"""Frozen data classes shared by every stage of the data flow."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    """A normalised source text with its metadata; `id` is its path relative to the ingested folder."""

    id: str
    text: str
    title: str
    source: str
    content_hash: str
    date: str | None = None
    file_hash: str = ""  # of the file's bytes: an unchanged file is recognised without parsing it again


@dataclass(frozen=True)
class Chunk:
    """A token-bounded, sentence-aligned slice of a document: `doc.text[start:end] == text`."""

    id: str
    doc: str
    start: int
    end: int
    text: str
    index: int


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with the metadata needed to cite it."""

    chunk_id: str
    doc: str
    start: int
    end: int
    text: str
    title: str = ""
    source: str = ""
    date: str | None = None
    score: float = 0.0


@dataclass(frozen=True)
class Pick:
    """A span a reader picked from the passages it was given: `passages[passage - 1].text[start:end]`."""

    passage: int  # 1-based, as the passages were numbered for the reader
    start: int
    end: int


@dataclass(frozen=True)
class Statement:
    """One sentence of an answer and the spans that back it (none: unsupported)."""

    text: str
    evidence: tuple[Pick, ...] = ()


@dataclass(frozen=True)
class Citation:
    """A verified pointer into a source: `quote == source_text[start:end]`."""

    n: int
    doc: str
    chunk_id: str
    start: int
    end: int
    quote: str
    title: str = ""


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    abstained: bool
    citations: tuple[Citation, ...]
    passages: tuple[Passage, ...]
    backend: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    unsupported: tuple[str, ...] = ()  # sentences that carried no valid citation
    dropped_markers: tuple[str, ...] = ()  # markers the model invented or mangled
    reader: str = ""  # how the reader read: "extractive", "sentences", "json", "markers"
    unparsed_reply: bool = False  # the model's reply was not of the shape asked for

    def to_json(self, with_passages: bool = False) -> dict[str, object]:
        """The `rag ask --json` object; `with_passages` adds the retrieved passages, numbered as the answer saw
        them."""
        out: dict[str, object] = {
            "question": self.question,
            "answer": self.text,
            "abstained": self.abstained,
            "citations": [
                {"n": c.n, "doc": c.doc, "chunk_id": c.chunk_id, "start": c.start, "end": c.end,
                 "quote": c.quote, "title": c.title}
                for c in self.citations
            ],
            "backend": self.backend,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "unsupported_sentences": list(self.unsupported),
            "dropped_markers": list(self.dropped_markers),
            "reader": self.reader,
            "unparsed_reply": self.unparsed_reply,
        }
        if with_passages:
            out["passages"] = [{"n": n, "doc": p.doc, "chunk_id": p.chunk_id, "start": p.start, "end": p.end,
                                "score": p.score, "title": p.title, "text": p.text}
                               for n, p in enumerate(self.passages, start=1)]
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Answer:
        """The Answer a `to_json` object describes (a server's reply, printed as a local answer is)."""
        citations = tuple(Citation(c["n"], c["doc"], c["chunk_id"], c["start"], c["end"], c["quote"],
                                   c.get("title", "")) for c in obj.get("citations", []))
        passages = tuple(Passage(p["chunk_id"], p["doc"], p["start"], p["end"], p["text"], p.get("title", ""),
                                 score=p.get("score", 0.0)) for p in obj.get("passages", []))
        return cls(obj["question"], obj["answer"], obj["abstained"], citations, passages, obj["backend"],
                   dict(obj.get("timings_ms", {})), tuple(obj.get("unsupported_sentences", [])),
                   tuple(obj.get("dropped_markers", [])), obj.get("reader", ""), bool(obj.get("unparsed_reply")))
