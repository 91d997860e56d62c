"""Fault injection: `sync` killed with SIGKILL at random points, with the store's invariants checked after every kill
and after the ingest that follows. Prints how many faults the store survived; asserts nothing, exits 1 on a breach.

    .venv/bin/python bench/faults.py [--rounds 20] [--seed 1] [--server]

Each round changes the corpus (edits a file, deletes one, adds one), starts an ingest in another process (the real
Chroma, embedded or a `chroma run` server with --server; the deterministic FakeEmbedder, slowed so that a kill can
land anywhere) and kills it with SIGKILL after a random delay. Then:
  1. what a reader can see is, for every document, exactly the chunks of one version of its text that some ingest
     committed (the record's hash), and nothing of a document without a record;
  2. an ingest run to the end makes the store equal to the corpus: each file's chunks, no duplicate or orphan;
  3. that ingest embeds only the chunks the killed one did not write;
  4. the BM25 index and the vectors hold the same ids.
"""

from __future__ import annotations

import os

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import argparse  # noqa: E402  (telemetry must be off before chromadb loads)
import random  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from contextlib import nullcontext  # noqa: E402
from pathlib import Path  # noqa: E402

from rag.chunk import chunk_text  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.ingest import load_file, scan  # noqa: E402
from rag.store import Store, sync  # noqa: E402
from rag.testing import FakeEmbedder, free_port, running_server  # noqa: E402

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
CHUNK = {"size": 48, "overlap": 8}
CHILD = """
import sys, time
from pathlib import Path
from rag.config import Settings
from rag.ingest import scan
from rag.store import Store, sync
from rag.testing import FakeEmbedder

class Slow(FakeEmbedder):
    def embed_documents(self, texts):
        time.sleep(0.03)
        return super().embed_documents(texts)

s = Settings(home=Path(sys.argv[1]), chroma_url=sys.argv[3] or None, chunk={"size": 48, "overlap": 8})
store = Store(s)
store.client.get_max_batch_size = lambda: 4
found = scan([Path(sys.argv[2])], 1_000_000)
print("ready", flush=True)
sync(store, found, s, Slow())
print("done", flush=True)
"""


def settings(home: Path, url: str | None) -> Settings:
    return Settings(home=home, chroma_url=url, chunk=CHUNK)


def change(folder: Path, rng: random.Random, round_no: int) -> None:
    files = sorted(folder.glob("*.txt"))
    edited = rng.choice(files)
    lines = edited.read_text().splitlines()
    said = f"In round {round_no} the council met again and voted {rng.random():.3f}."
    lines.insert(rng.randrange(1, len(lines) + 1), said)
    edited.write_text("\n".join(lines) + "\n")
    if len(files) > 4 and rng.random() < 0.5:
        rng.choice([f for f in files if f != edited]).unlink()
    if rng.random() < 0.5:
        source = rng.choice(sorted(CORPUS.glob("*.txt")))
        (folder / f"added_{round_no}.txt").write_text(source.read_text() + f"\nAdded in round {round_no}.\n")


def chunks_of(folder: Path, doc_id: str) -> set[str]:
    doc = load_file(folder / doc_id, doc_id, 1_000_000)
    return {c.id for c in chunk_text(doc_id, doc.text, CHUNK["size"], CHUNK["overlap"])}


def visible_ok(store: Store, versions: dict[str, set[str]]) -> list[str]:
    """Invariant 1: each document's visible chunks are exactly one committed version's."""
    breaches = []
    seen: dict[str, set[str]] = {}
    for chunk_id, _, meta in store.all_chunks(committed=True):
        seen.setdefault(meta["doc"], set()).add(chunk_id)
    records = store.documents()
    for doc_id in set(seen) - set(records):
        breaches.append(f"{doc_id}: chunks in view without a record")
    for doc_id, record in records.items():
        expected = versions.get(record["hash"])
        if expected is None or seen.get(doc_id, set()) != expected:
            breaches.append(f"{doc_id}: {len(seen.get(doc_id, set()))} chunks in view, not its committed version")
    return breaches


def finished_ok(store: Store, folder: Path, missing: int, embedded: int) -> list[str]:
    """Invariants 2-4 after an ingest that ran to the end."""
    breaches = []
    stored: dict[str, set[str]] = {}
    for chunk_id, _, meta in store.all_chunks():
        stored.setdefault(meta["doc"], set()).add(chunk_id)
    files = sorted(p.name for p in folder.glob("*.txt"))
    if sorted(store.documents()) != files or sorted(stored) != files:
        breaches.append(f"documents {sorted(store.documents())} / chunks of {sorted(stored)} != files {files}")
    for name in files:
        if stored.get(name) != chunks_of(folder, name):
            breaches.append(f"{name}: stored chunks differ from its file's (orphans or gaps)")
    if embedded != missing:
        breaches.append(f"embedded {embedded} chunks, {missing} were missing")
    vectors = {i for ids in stored.values() for i in ids}
    if set(store.lexical_index().ids) != vectors:
        breaches.append("BM25 index and vectors hold different ids")
    return breaches


def start_child(home: Path, folder: Path, url: str | None) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(home), str(folder), url or ""],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None
    child.stdout.readline()  # "ready": imports done, store open
    return child


def uncut_seconds(home: Path, folder: Path, url: str | None, rng: random.Random) -> float:
    """How long one round's ingest takes when nothing kills it (after a first ingest of the whole corpus): the
    kills are spread over that time."""
    start_child(home, folder, url).wait(timeout=600)
    change(folder, rng, 0)
    child = start_child(home, folder, url)
    t0 = time.monotonic()
    child.wait(timeout=600)
    return time.monotonic() - t0


def one_round(home: Path, folder: Path, url: str | None, rng: random.Random, versions: dict[str, set[str]],
              round_no: int, window_s: float) -> tuple[list[str], str]:
    change(folder, rng, round_no)
    for path in folder.glob("*.txt"):
        doc = load_file(path, path.name, 1_000_000)
        versions[doc.content_hash] = chunks_of(folder, path.name)
    child = start_child(home, folder, url)
    delay = rng.uniform(0.0, window_s)
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    finished = "done" in child.stdout.read()
    s = settings(home, url)
    store = Store(s)
    breaches = visible_ok(store, versions)
    wanted = {i for p in folder.glob("*.txt") for i in chunks_of(folder, p.name)}
    missing = len(wanted - {i for i, _, _ in store.all_chunks()})
    embedder = FakeEmbedder()
    sync(store, scan([folder], 1_000_000), s, embedder)
    breaches += finished_ok(Store(s), folder, missing, sum(map(len, embedder.calls)))
    when = "after it finished" if finished else f"mid-way, {missing} of {len(wanted)} chunks not yet written"
    return breaches, f"killed after {delay:.2f} s, {when}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--server", action="store_true", help="a `chroma run` server instead of the embedded store")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="rag-faults-"))
    folder, home = work / "corpus", work / "home"
    shutil.copytree(CORPUS, folder)
    url = f"http://127.0.0.1:{free_port()}" if args.server else None
    server = (running_server([str(Path(sys.executable).parent / "chroma"), "run", "--path", str(work / "db"),
                              "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1]],
                             f"{url}/api/v2/heartbeat", work / "server.log", 60) if url else nullcontext())
    survived = 0
    try:
        with server:
            versions: dict[str, set[str]] = {}
            window_s = uncut_seconds(home, folder, url, rng)
            print(f"an uncut ingest round took {window_s:.2f} s: each kill lands within that time", flush=True)
            for n in range(1, args.rounds + 1):
                breaches, what = one_round(home, folder, url, rng, versions, n, window_s)
                survived += not breaches
                print(f"round {n:3d}: {what}: " + ("ok" if not breaches else "; ".join(breaches)), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{survived} of {args.rounds} faults survived ({'embedded' if not url else 'server'} store)")
    return 0 if survived == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
