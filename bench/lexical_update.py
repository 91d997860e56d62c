"""BM25 index: what a one-file change costs (the rows of one document replaced) against a rebuild from every chunk,
and against embedding that one file's chunks, at large sizes. Prints figures; asserts nothing.

    .venv/bin/python bench/lexical_update.py [--sizes 100000,1000000] [--doc-chunks 12]

The index is measured on its own (rag.lexical.LexicalIndex, saved and loaded as the store does), so a million chunks
need no Chroma store: chunk texts recombine the seed corpus's real sentences with words drawn from a large
vocabulary of pseudo-words, about 130 words a chunk (a 200-token chunk). The rebuild figure leaves out reading every
chunk back from Chroma, which a real rebuild also pays; the update figure includes its save.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.lexical import LexicalIndex  # noqa: E402


def seed_sentences() -> list[str]:
    text = " ".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "corpus").glob("*.txt")))
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) > 4]


def synthesise(n: int, doc_chunks: int, rng: random.Random) -> tuple[list[str], list[str]]:
    sentences = seed_sentences()
    syllables = ["ka", "lo", "mi", "ter", "an", "vus", "pri", "del", "or", "set", "ul", "bra", "nix", "qua"]
    vocab = ["".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(60_000)]
    ids, texts = [], []
    for i in range(n):
        words = " ".join(rng.choices(vocab, k=70))
        texts.append(" ".join(rng.sample(sentences, 3)) + " " + words)
        ids.append(f"doc{i // doc_chunks:07d}.txt#{i:08d}")
    return ids, texts


def timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def embed_seconds(texts: list[str]) -> float:
    from rag.config import EmbedSettings
    from rag.embed import make_embedder

    embedder = make_embedder(EmbedSettings())
    embedder.embed_documents(texts[:2])  # the model loads before the clock starts
    return timed(lambda: embedder.embed_documents(texts))[1]


def measure(size: int, doc_chunks: int, rng: random.Random) -> None:
    ids, texts = synthesise(size, doc_chunks, rng)
    index, build_s = timed(lambda: LexicalIndex.build(ids, texts, "before"))
    changed = ids[-doc_chunks:]
    new_texts = [t + " An added closing sentence." for t in texts[-doc_chunks:]]
    with tempfile.TemporaryDirectory() as folder:
        index.save(Path(folder))
        loaded, load_s = timed(lambda: LexicalIndex.load(Path(folder)))
        assert loaded is not None

        def update() -> LexicalIndex:
            fresh = loaded.updated(changed, changed, new_texts, "after")
            fresh.save(Path(folder))
            return fresh

        updated, update_s = timed(update)
    _, query_s = timed(lambda: updated.search("Which groups took part in the incursion?", k=50))
    embed_s = embed_seconds(new_texts)
    print(f"\n{size:,} chunks (after the update: {len(updated.segments)} segments)")
    print(f"  rebuild from every chunk (tokenize + index, no save): {build_s:8.2f} s")
    print(f"  update after a one-file change ({doc_chunks} chunks), with its save: {update_s:8.2f} s "
          f"= {update_s / build_s:.3f} of a rebuild")
    print(f"  embedding that file's {doc_chunks} chunks (all-MiniLM-L6-v2, CPU):  {embed_s:8.2f} s "
          f"-> the update costs {update_s / embed_s:.1f}x the embedding it follows")
    print(f"  load the saved index: {load_s:.2f} s; one query: {query_s * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000", help="comma-separated chunk counts (default 100000)")
    parser.add_argument("--doc-chunks", type=int, default=12, help="chunks of the one document that changes")
    args = parser.parse_args()
    rng = random.Random(11)
    print(f"BM25 index update vs rebuild; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for size in (int(s) for s in args.sizes.split(",")):
        measure(size, args.doc_chunks, rng)


if __name__ == "__main__":
    main()
