"""Query benchmark: retrieval (dense, BM25, hybrid) and extractive-answer latency, warm, at ~10k and ~100k chunks,
plus the cold `rag ask` wall time. Prints figures next to the targets; asserts nothing.

    .venv/bin/python bench/query.py [--sizes 10000,100000] [--questions 50] [--cold-runs 3] [--keep DIR]

Embedding 100k real chunks with all-MiniLM-L6-v2 takes far too long on 2 CPU cores, so the large stores are
synthesised (explained in the printed header, see `synthesise`): article-like chunk texts recombine real sentences
of the seed corpus with generated sentences, and their vectors mix the real embeddings of those seed sentences with
random unit vectors. They are written straight into a Chroma collection exactly as `rag ingest` writes one (same
collection configuration and metadata, chunk ids "<doc>#<hash>"), and the BM25 index is built by
Store.rebuild_lexical_index(). Queries use the real query embedding, the real Retriever and the real AnswerChain.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from seeds import gold_questions  # noqa: E402

from rag import embed as embed_mod  # noqa: E402
from rag import language  # noqa: E402
from rag.answer import AnswerChain  # noqa: E402
from rag.chunk import chunk_text, count_tokens, sentence_spans  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.embed import LocalEmbedder  # noqa: E402
from rag.ingest import scan  # noqa: E402
from rag.retrieve import Retriever  # noqa: E402
from rag.store import Store  # noqa: E402

CORPUS = ROOT / "corpus"
EMBEDDER_NAME = LocalEmbedder.name  # "local:all-MiniLM-L6-v2": what `rag ingest` records on the collection
DIM = 384
CHUNKS_PER_DOC = 10

EXTRA_QUESTIONS = [
    "What did the Russian Defense Ministry announce about drones?",
    "Which Belgorod villages were said to be liberated?",
    "What has Russia spent on the Belgorod border defenses?",
    "Where was the earlier attack by the Freedom of Russia Legion?",
    "What did the Legion post on social media before the vote?",
    "Who governs the Kursk region?",
    "What is the capital of Australia?",
    "Who won the football World Cup?",
    "What name did the Kremlin give the fighters?",
    "Which militias crossed the border in March 2024?",
]

TARGETS = {
    ("hybrid", 100_000): 50.0,  # hybrid retrieval p95 <= 50 ms at 100k chunks
    ("answer", 10_000): 200.0,  # extractive answer p95 <= 200 ms at 10k chunks
}


# -- helpers ------------------------------------------------------------------------------------------------
def pct(values: list[float]) -> tuple[float, float]:
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def questions(n: int) -> list[str]:
    qs = gold_questions() + EXTRA_QUESTIONS
    return list(dict.fromkeys(qs))[:n]


def line(label: str, values: list[float], target: float | None = None) -> str:
    p50, p95 = pct(values)
    verdict = ""
    if target is not None:
        verdict = f"   target p95 <= {target:.0f} ms: {'MET' if p95 <= target else 'MISSED'}"
    return f"  {label:<44} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms   (n={len(values)}){verdict}"


# -- synthesis ----------------------------------------------------------------------------------------------
class Synth:
    """Generates article-like chunks with vectors from the seed corpus: see the module docstring."""

    def __init__(self, embedder: LocalEmbedder, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.nprng = np.random.default_rng(seed)
        found = scan([CORPUS], 20_000_000)
        self.docs = found.documents
        self.sentences = [d.text[s:e] for d in self.docs for s, e in sentence_spans(d.text)
                          if len(d.text[s:e].split()) >= 5]
        t0 = time.perf_counter()
        self.sentence_vectors = embedder.embed_documents(self.sentences)
        self.embed_ms = (time.perf_counter() - t0) * 1000
        words = sorted({w.strip(".,;:\"'()—“”’").lower() for s in self.sentences for w in s.split()} - {""})
        # Real corpora have large vocabularies: add pseudo-words so BM25 posting lists look like a big corpus's.
        syllables = ["ka", "lo", "mi", "ne", "ru", "sta", "vor", "tel", "gra", "ber", "zin", "pol", "dan", "ski",
                     "mar", "ov", "ino", "ek", "ast", "ur"]
        pseudo = {"".join(self.rng.choice(syllables) for _ in range(self.rng.randint(2, 4))) for _ in range(30_000)}
        self.vocab = words + sorted(pseudo)
        self.seed_chunks = [c for d in self.docs for c in chunk_text(d.id, d.text)]
        self.seed_chunk_vectors = embedder.embed_documents([c.text for c in self.seed_chunks])

    def sentence(self) -> tuple[str, np.ndarray]:
        """A real seed sentence with its real embedding (40%), or a generated one with a random unit vector."""
        if self.rng.random() < 0.4:
            i = self.rng.randrange(len(self.sentences))
            return self.sentences[i], self.sentence_vectors[i]
        n = self.rng.randint(8, 26)
        words = [self.rng.choice(self.vocab) for _ in range(n)]
        text = " ".join(words).capitalize() + "."
        v = self.nprng.standard_normal(DIM).astype(np.float32)
        return text, v / np.linalg.norm(v)

    def document(self, doc_id: str) -> tuple[list[str], list[str], list[list[float]], list[dict]]:
        """CHUNKS_PER_DOC chunks of one synthetic article: ids, texts, unit vectors, metadata like rag.store's."""
        title = " ".join(self.rng.choice(self.vocab) for _ in range(6)).title()
        ids, texts, vectors, metas = [], [], [], []
        offset = len(title) + 2
        doc_hash = hashlib.sha256(doc_id.encode()).hexdigest()
        for index in range(CHUNKS_PER_DOC):
            parts = [self.sentence() for _ in range(self.rng.randint(3, 6))]
            text = " ".join(p[0] for p in parts)
            v = np.sum([p[1] for p in parts], axis=0) + 0.3 * self.nprng.standard_normal(DIM)
            v = (v / np.linalg.norm(v)).astype(np.float32)
            digest = hashlib.sha256(f"{doc_id}\x00{text}".encode()).hexdigest()[:16]
            ids.append(f"{doc_id}#{digest}")
            texts.append(text)
            vectors.append(v.tolist())
            metas.append({"doc": doc_id, "start": offset, "end": offset + len(text), "index": index,
                          "title": title, "source": f"/synthetic/{doc_id}", "doc_hash": doc_hash})
            offset += len(text) + 1
        return ids, texts, vectors, metas


def write_seed(store: Store, synth: Synth) -> int:
    col = store.chunks_collection(EMBEDDER_NAME, create=True)
    by_doc = {d.id: d for d in synth.docs}
    metas = []
    for c in synth.seed_chunks:
        d = by_doc[c.doc]
        m = {"doc": d.id, "start": c.start, "end": c.end, "index": c.index, "title": d.title, "source": d.source,
             "doc_hash": d.content_hash}
        if d.date:
            m["date"] = d.date
        metas.append(m)
    col.upsert(ids=[c.id for c in synth.seed_chunks], embeddings=synth.seed_chunk_vectors.tolist(),
               documents=[c.text for c in synth.seed_chunks], metadatas=metas)
    store.docs_collection().upsert(
        ids=[d.id for d in synth.docs], embeddings=[[0.0]] * len(synth.docs),
        metadatas=[{"hash": d.content_hash, "title": d.title, "source": d.source, "root": str(CORPUS),
                    "chunking": json.dumps({"size": 200, "overlap": 40})} for d in synth.docs])
    return len(synth.seed_chunks)


def grow(store: Store, synth: Synth, target: int, first_doc: int) -> tuple[int, float]:
    """Add synthetic documents until the collection holds `target` chunks; returns (next doc number, ms)."""
    col = store.chunks_collection(EMBEDDER_NAME, create=True)
    batch_limit = min(store.client.get_max_batch_size(), 5000)
    t0 = time.perf_counter()
    n_doc = first_doc
    have = col.count()
    while have < target:
        ids, texts, vectors, metas, docs = [], [], [], [], []
        while len(ids) + CHUNKS_PER_DOC <= batch_limit and have + len(ids) < target:
            doc_id = f"synthetic/{n_doc:06d}.txt"
            i, t, v, m = synth.document(doc_id)
            ids += i
            texts += t
            vectors += v
            metas += m
            docs.append((doc_id, m[0]))
            n_doc += 1
        col.add(ids=ids, embeddings=vectors, documents=texts, metadatas=metas)
        store.docs_collection().upsert(
            ids=[d for d, _ in docs], embeddings=[[0.0]] * len(docs),
            metadatas=[{"hash": m["doc_hash"], "title": m["title"], "source": m["source"], "root": "/synthetic",
                        "chunking": json.dumps({"size": 200, "overlap": 40})} for _, m in docs])
        have += len(ids)
        print(f"    ... {have:,} chunks written ({(time.perf_counter() - t0):.0f} s)", flush=True)
    return n_doc, (time.perf_counter() - t0) * 1000


# -- measurements -----------------------------------------------------------------------------------------------
def measure(home: Path, qs: list[str], full: bool = True) -> dict[str, list[float]]:
    """Warm latencies. Each kind of call runs as its own loop over the questions, so that one measurement does not
    pay for the CPU threads another leaves spinning (torch keeps its workers busy for a while after a forward)."""
    import torch

    settings = Settings(home=home)
    store = Store(settings)
    embedder = LocalEmbedder()
    retriever = Retriever(store, embedder, settings.retrieve)
    chain = AnswerChain(retriever, settings.answer, backend="extractive")
    n = max(settings.retrieve.candidates, settings.retrieve.k)
    t_load = timed(lambda: retriever.lexical)  # load the saved BM25 index once, as a long-lived process would
    for q in qs[:5]:  # warm: model, HNSW segment, BM25 arrays, the code paths
        chain.ask(q)
    vectors = {q: embedder.embed_query(q) for q in qs}
    out: dict[str, list[float]] = {}
    out["dense"] = [timed(lambda q=q: retriever.dense(vectors[q], n)) for q in qs]
    out["bm25"] = [timed(lambda q=q: retriever.bm25(q, n)) for q in qs]
    out["hybrid"] = [timed(lambda q=q: retriever.search(q, query_vector=vectors[q])) for q in qs]
    out["embed"] = [timed(lambda q=q: embedder.embed_query(q)) for q in qs]
    out["hybrid+embed"] = [timed(lambda q=q: retriever.search(q)) for q in qs]

    def answers(clear_each: bool) -> tuple[list[float], int]:
        times, abstained = [], 0
        embed_mod._SENTENCE_VECTORS.clear()
        language.entities.cache_clear()
        for q in qs:
            if clear_each:  # no help from sentences embedded or annotated for earlier questions
                embed_mod._SENTENCE_VECTORS.clear()
                language.entities.cache_clear()
            t0 = time.perf_counter()
            a = chain.ask(q)
            times.append((time.perf_counter() - t0) * 1000)
            abstained += a.abstained
        return times, abstained

    out["answer"], abstained = answers(clear_each=True)
    threads = torch.get_num_threads()
    out["torch_threads"] = [float(threads)]
    if not full:  # the large store: answer latency barely depends on store size beyond retrieval
        print(f"  (BM25 index load {t_load:.0f} ms; {abstained}/{len(qs)} questions abstained; "
              f"load average now {os.getloadavg()[0]:.2f})", flush=True)
        return out
    out["answer_cached"], _ = answers(clear_each=False)  # cache kept across questions, as in a REPL session
    torch.set_num_threads(1)  # an experiment, not the product default: see the note in the report
    try:
        out["embed_1t"] = [timed(lambda q=q: embedder.embed_query(q)) for q in qs]
        out["answer_1t"], _ = answers(clear_each=True)
    finally:
        torch.set_num_threads(threads)
    print(f"  (BM25 index load {t_load:.0f} ms; store holds {store.count():,} chunks; "
          f"{abstained}/{len(qs)} questions abstained; load average now {os.getloadavg()[0]:.2f})", flush=True)
    return out


def report(size_label: str, n: int, m: dict[str, list[float]]) -> None:
    threads = int(m["torch_threads"][0])
    print(f"\n== {size_label}: {n:,} chunks ==")
    print(line("query embedding (all-MiniLM-L6-v2)", m["embed"]))
    print(line("dense (Chroma HNSW, 30 candidates)", m["dense"]))
    print(line("BM25 (bm25s, 30 candidates)", m["bm25"]))
    target = TARGETS[("hybrid", 100_000)] if n >= 90_000 else None
    print(line("hybrid (dense+BM25+RRF+fetch), vector given", m["hybrid"], target))
    print(line("hybrid including the query embedding", m["hybrid+embed"]))
    target = TARGETS[("answer", 10_000)] if n < 20_000 else None
    print(line("extractive answer, sentence cache cleared", m["answer"], target))
    if "answer_cached" not in m:
        return
    print(line("extractive answer, sentence cache kept", m["answer_cached"]))
    print(f"  with torch.set_num_threads(1) instead of torch's default {threads} (experiment, not the default):")
    print(line("  query embedding", m["embed_1t"]))
    print(line("  extractive answer, sentence cache cleared", m["answer_1t"], target))


def cold_ask(runs: int, workdir: Path) -> None:
    rag = Path(sys.executable).with_name("rag")
    cmd = [str(rag)] if rag.exists() else [sys.executable, "-m", "rag.cli"]
    home = workdir / "seed-home"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    subprocess.run(cmd + ["--home", str(home), "ingest", str(CORPUS)], check=True, env=env, capture_output=True)
    ingest_s = time.perf_counter() - t0
    q = "How many drones did the Russian Defense Ministry say it shot down?"
    walls, inner = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(cmd + ["--home", str(home), "ask", "--json", q], env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        if done.returncode != 0:
            print(f"  cold ask failed ({done.returncode}): {done.stderr.strip()[-500:]}")
            return
        inner.append(json.loads(done.stdout)["timings_ms"].get("total", float("nan")))
    print(f"\n== cold `rag ask` (fresh process each time, seed store of {len(list(CORPUS.iterdir()))} articles; "
          f"ingest took {ingest_s:.1f} s) ==")
    print(f"  wall time per run: {', '.join(f'{w:.2f} s' for w in walls)}   median {statistics.median(walls):.2f} s")
    print(f"  of which inside chain.ask (timings_ms.total): {', '.join(f'{t / 1000:.2f} s' for t in inner)}"
          "   (the rest: Python start, imports, torch/model load, Chroma open)")


def prompt_cost(synth: Synth, embedder: LocalEmbedder, qs: list[str], k: int = 8, timed_questions: int = 5
                ) -> None:
    """What numbering the sentences costs over the marker prompt: prompt tokens (cl100k_base) per question on the
    seed chunks nearest each question, and, when OPENAI_API_KEY or OPENAI_BASE_URL names a model server, the
    seconds each reader takes on the first questions."""
    from rag.read.markers import MarkerReader
    from rag.read.sentences import SentenceReader, number_passages
    from rag.types import Passage

    settings = Settings.load().answer  # RAG_ANSWER__TIMEOUT_S and the rest, as rag ask reads them
    sentences, markers = SentenceReader(settings), MarkerReader(settings)
    tokens: dict[str, list[float]] = {"sentences": [], "markers": []}
    seconds: dict[str, list[float]] = {"sentences": [], "markers": []}
    live = bool(os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"))
    for i, q in enumerate(qs):
        q_vec = embedder.embed_query(q)
        near = np.argsort(-(synth.seed_chunk_vectors @ q_vec))[:k]
        passages = [Passage(c.id, c.doc, c.start, c.end, c.text, c.doc) for c in (synth.seed_chunks[j] for j in near)]
        numbered = number_passages(passages, settings.context_tokens)
        shown = {"sentences": sentences.messages(q, numbered), "markers": markers.messages(q, numbered.passages)}
        for name, messages in shown.items():
            tokens[name].append(sum(count_tokens(str(m.content)) for m in messages))
        if live and i < timed_questions:
            for name, reader in (("sentences", sentences), ("markers", markers)):
                t0 = time.perf_counter()
                reader.read(q, q_vec, numbered.passages)
                seconds[name].append(time.perf_counter() - t0)
    print(f"\n-- prompt cost per question ({len(qs)} questions, {k} seed passages each, within "
          f"{settings.context_tokens} tokens) --")
    for name in ("sentences", "markers"):
        print(f"  {name:9s} prompt tokens: mean {statistics.mean(tokens[name]):.0f}, max {max(tokens[name]):.0f}"
              + (f"; {statistics.mean(seconds[name]):.2f} s per question over {len(seconds[name])}"
                 if seconds[name] else ""))
    extra = statistics.mean(a / b - 1 for a, b in zip(tokens["sentences"], tokens["markers"], strict=True))
    print(f"  the sentence prompt costs {extra:+.0%} tokens over the marker prompt"
          + ("" if live else " (no model server named: latency not measured)"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="store sizes in chunks, ascending, comma separated")
    ap.add_argument("--questions", type=int, default=50)
    ap.add_argument("--cold-runs", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="build the stores here and keep them (default: a temp dir, removed)")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    qs = questions(args.questions)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="rag-bench-query-"))
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    print("rag query benchmark")
    print(f"  machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average at start {os.getloadavg()[0]:.2f} (other processes share these cores)")
    print(f"  {len(qs)} distinct questions (the gold set's, then a few more); every figure is warm: the embedding "
          "model, Chroma and the BM25 index are loaded and 5 questions were asked first.")
    try:
        embedder = LocalEmbedder()
        synth = Synth(embedder)
        print("  How the store is synthesised (embedding 100k real chunks would take hours on 2 cores):")
        print(f"   - the {len(synth.docs)} seed articles are chunked as `rag ingest` does: their "
              f"{len(synth.seed_chunks)} real chunks go in with real all-MiniLM-L6-v2 vectors and real metadata;")
        print(f"   - synthetic articles of {CHUNKS_PER_DOC} chunks each; a chunk joins 3-6 sentences: 40% are real "
              f"seed sentences ({len(synth.sentences)} available, embedded for real in {synth.embed_ms:.0f} ms),")
        print(f"     60% are generated from a {len(synth.vocab):,}-word vocabulary (seed words + pseudo-words) so "
              "BM25 sees a large, realistic vocabulary;")
        print("   - a chunk's vector = normalise(sum of its sentences' vectors + 0.3 * Gaussian noise): real "
              "embeddings for seed sentences, random unit vectors for generated ones (384-d);")
        print("   - written with Chroma's API into the collection `rag ingest` creates (cosine HNSW, metadata "
              f"embedder={EMBEDDER_NAME!r}), chunk ids '<doc>#<sha256[:16]>', chunk metadata doc/start/end/index/"
              "title/source/doc_hash,")
        print("     in batches under client.get_max_batch_size(); the BM25 index by Store.rebuild_lexical_index().")
        avg_tokens = statistics.mean(count_tokens(synth.document("probe/x.txt")[1][0]) for _ in range(20))
        print(f"   - synthetic chunks average ~{avg_tokens:.0f} tokens (real chunks: <= 200).")

        home = workdir / "store"
        shutil.rmtree(home, ignore_errors=True)
        settings = Settings(home=home)
        store = Store(settings)
        write_seed(store, synth)
        next_doc = 0
        for i, size in enumerate(sizes):
            print(f"\n-- building {size:,} chunks --", flush=True)
            next_doc, write_ms = grow(store, synth, size, next_doc)
            t_bm25 = timed(store.rebuild_lexical_index)
            print(f"  wrote chunks in {write_ms / 1000:.1f} s; BM25 index rebuilt in {t_bm25 / 1000:.1f} s", flush=True)
            m = measure(home, qs, full=i == 0)
            report(f"~{size // 1000}k store", store.count(), m)
        cold_ask(args.cold_runs, workdir)
        prompt_cost(synth, embedder, qs)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\nTargets: hybrid retrieval p95 <= 50 ms at 100k chunks; extractive answer p95 <= 200 ms at 10k chunks.")
    print(f"Benchmark took {time.perf_counter() - t_start:.0f} s; load average at the end "
          f"{os.getloadavg()[0]:.2f}.")


if __name__ == "__main__":
    main()
