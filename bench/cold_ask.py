"""Cold `rag ask`: the median wall time of fresh `rag ask` processes (extractive backend, seed corpus), and beside it
the same against a warm `rag serve` (RAG_SERVER_URL). Prints figures; asserts nothing.

    .venv/bin/python bench/cold_ask.py [--home DIR] [--runs 5] [--question Q] [--breakdown] [--no-serve]
                                       [--throughput [--throughput-dir DIR]]

Without --home the seed corpus is ingested into a temporary home first. --breakdown also prints where one cold ask
spends its time (each stage of the first question, timed in a fresh process) and what importing each heavy
package costs on its own. --throughput compares the embedding throughput of the two runtimes of the local model
(torch, and the ONNX export that ingest also uses once it exists) on the chunks of the seed corpus or of the text
and HTML files of a folder. Timings on a shared machine are rough: re-run on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
QUESTION = "Which groups took part in the March 2024 incursion into Russia?"
TARGET_S = 2.0  # cold `rag ask` on the seed corpus
SERVER_TARGET_S = 0.3  # `rag ask` through a running server
HEAVY_PACKAGES = ("typer", "pydantic_settings", "numpy", "chromadb", "bm25s", "tiktoken", "langchain_core.runnables",
                  "spacy", "torch", "sentence_transformers", "onnxruntime", "tokenizers")


def rag_command() -> list[str]:
    rag = Path(sys.executable).with_name("rag")
    return [str(rag)] if rag.exists() else [sys.executable, "-m", "rag.cli"]


def environment(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.pop("RAG_SERVER_URL", None)  # a cold ask is timed on its own; the warm runs set it themselves
    return {**env, **extra}


def timed_asks(home: Path, question: str, runs: int, env: dict[str, str]) -> list[float]:
    """Wall seconds of `runs` fresh `rag ask` processes, each to its exit."""
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(rag_command() + ["--home", str(home), "ask", "--backend", "extractive", question],
                              env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"rag ask failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return walls


def say(label: str, walls: list[float], target_s: float) -> None:
    runs = ", ".join(f"{w:.2f}" for w in walls)
    print(f"  {label:<34} median {statistics.median(walls):5.2f} s   (runs: {runs} s; target <= {target_s} s)")


# -- the same question through a warm `rag serve` ----------------------------------------------------------
def warm_serve(home: Path, question: str, runs: int, env: dict[str, str]) -> None:
    from rag.testing import free_port, running_server

    port = free_port()
    command = rag_command() + ["--home", str(home), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryDirectory() as logs:
        try:
            with running_server(command, f"http://127.0.0.1:{port}/healthz", Path(logs) / "serve.log", 300, env):
                client_env = {**env, "RAG_SERVER_URL": f"http://127.0.0.1:{port}"}
                timed_asks(home, question, 1, client_env)  # the first request pays for connecting: not timed
                say("warm `rag serve` (RAG_SERVER_URL)", timed_asks(home, question, runs, client_env), SERVER_TARGET_S)
        except RuntimeError as e:
            print(f"  warm `rag serve`: the server did not start ({str(e).splitlines()[0]}); not measured")


# -- where a cold ask spends its time -------------------------------------------------------------------------
# Runs in a fresh interpreter: the steps the first `rag ask` takes, each forced on its own and timed, in the order
# the ask meets them. What is left for "the question itself" is the work a warm process would do too. The extractive
# reader starts loading spaCy on a thread when the chain is made, so part of that load shows in the stages between.
STAGES = r'''
import json, sys, time
stages = []
def stage(name, fn):
    t0 = time.perf_counter(); value = fn(); stages.append((name, time.perf_counter() - t0)); return value
home, question = sys.argv[1], sys.argv[2]
stage("import rag.cli (typer, rich, settings)", lambda: __import__("rag.cli"))
from rag import cli
def ask_imports():
    import rag.answer, rag.embed, rag.retrieve, rag.store, rag.render
stage("imports of `ask` (answer, retrieve, store)", ask_imports)
cli.State.home = __import__("pathlib").Path(home)
s = stage("settings", cli.settings)
chain = stage("open store + chain (chromadb client)", lambda: cli.load_chain(s, "extractive"))
embedder = chain.retriever.embedder
stage("embedder load + first query vector", lambda: embedder.embed_query("warm up"))
stage("BM25 index load", lambda: chain.retriever.lexical)
from rag import chunk
stage("tiktoken encoding", chunk.encoding)
from rag import language
stage("spaCy import + pipeline load", language.pipeline)
answer = stage("the question itself (retrieve + read)", lambda: chain.ask(question))
from rag.render import print_answer
import io
from rich.console import Console
stage("print the answer", lambda: print_answer(Console(file=io.StringIO()), answer))
print(json.dumps(stages))
'''


def breakdown(home: Path, question: str, env: dict[str, str]) -> None:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", STAGES, str(home), question], env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        print(f"  breakdown failed: {done.stderr.strip()[-500:]}")
        return
    stages = json.loads(done.stdout.strip().splitlines()[-1])
    print("  stages of one cold ask (fresh process, each stage forced in the order the ask meets it):")
    for name, seconds in stages:
        print(f"    {name:<44} {seconds:6.2f} s")
    inside = sum(s for _, s in stages)
    print(f"    {'(sum of stages)':<44} {inside:6.2f} s; process wall {wall:.2f} s "
          f"(the rest: interpreter start and exit)")
    print("  importing each package alone (fresh process each):")
    for package in HEAVY_PACKAGES:
        code = f"import time; t = time.perf_counter(); import {package}; print(time.perf_counter() - t)"
        got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        figure = f"{float(got.stdout):6.2f} s" if got.returncode == 0 else "not installed"
        print(f"    {package:<44} {figure}")


THROUGHPUT = r'''
import json, sys, time
from pathlib import Path
from rag import embed
from rag.chunk import chunk_text
from rag.config import Settings
from rag.ingest import scan
settings = Settings(home=Path("unused"))
found = scan([Path(sys.argv[1])], int(settings.ingest.max_file_mb * 1_000_000))
texts = [c.text for d in found.documents for c in chunk_text(d.id, d.text, settings.chunk.size, settings.chunk.overlap)]
repeat = -(-200 // max(len(texts), 1))  # a small corpus is embedded several times over: 200 chunks at least
texts = (texts * repeat)[:max(200, int(sys.argv[2]))]
onnx, torch = embed.LocalEmbedder(settings.embed.batch_size), embed.LocalEmbedder(settings.embed.batch_size, onnx=False)
torch.embed_query("warm up")  # exports the ONNX copy when there is none yet
embed._load_onnx.cache_clear()
onnx.embed_query("warm up")
rates = {"torch": [], onnx.runtime: []}
for _ in range(int(sys.argv[3])):  # interleaved: a burst of load elsewhere hits both
    for name, embedder in (("torch", torch), (onnx.runtime, onnx)):
        t0 = time.perf_counter()
        embedder.embed_documents(texts)
        rates[name].append(len(texts) / (time.perf_counter() - t0))
print(json.dumps({"chunks": len(texts), "rates": rates}))
'''


def throughput(folder: Path, max_chunks: int, rounds: int, env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-c", THROUGHPUT, str(folder), str(max_chunks), str(rounds)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  throughput failed: {done.stderr.strip()[-500:]}")
        return
    got = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"== embedding throughput, {got['chunks']} chunks of {folder}, batch as ingest uses, {rounds} rounds ==")
    for name, rates in got["rates"].items():
        print(f"  {name:<6} median {statistics.median(rates):7.1f} chunks/s   (rounds: "
              f"{', '.join(f'{r:.1f}' for r in rates)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, help="an ingested store (default: the seed corpus in a temp home)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--breakdown", action="store_true", help="also print where one cold ask spends its time")
    parser.add_argument("--no-serve", action="store_true", help="skip the warm `rag serve` runs")
    parser.add_argument("--throughput", action="store_true", help="compare torch and ONNX embedding throughput")
    parser.add_argument("--throughput-dir", type=Path, default=CORPUS, help="a folder of articles for --throughput")
    parser.add_argument("--throughput-chunks", type=int, default=1000, help="most chunks embedded per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --throughput")
    args = parser.parse_args()
    env = environment()
    if args.throughput:
        throughput(args.throughput_dir, args.throughput_chunks, args.rounds, env)
    workdir = None
    home = args.home
    if home is None:
        workdir = Path(tempfile.mkdtemp(prefix="cold-ask-"))
        home = workdir / "home"
        t0 = time.perf_counter()
        subprocess.run(rag_command() + ["--home", str(home), "ingest", str(CORPUS)], check=True, env=env,
                       capture_output=True)
        print(f"ingested {CORPUS} into {home} in {time.perf_counter() - t0:.1f} s")
    try:
        print(f"== cold `rag ask` ({args.runs} fresh processes, extractive backend, {home}) ==")
        print(f"  question: {args.question}")
        say("cold `rag ask`", timed_asks(home, args.question, args.runs, env), TARGET_S)
        if not args.no_serve:
            warm_serve(home, args.question, args.runs, env)
        if args.breakdown:
            breakdown(home, args.question, env)
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
