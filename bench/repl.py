"""REPL benchmark: time from `rag repl` start to the first answer, and for the answers after it, on the seed corpus.
Prints figures; asserts nothing.

    .venv/bin/python bench/repl.py [--questions 8]

The seed corpus is ingested into a temporary store first (not timed). The REPL runs as a user would start it, a
fresh process reading questions from its standard input; a question counts as answered when its first cited line
([1] or "Not in the sources") appears on the output.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from seeds import GOLD, gold_questions

ROOT = Path(__file__).resolve().parent.parent
RAG = Path(sys.executable).parent / "rag"


def answered(line: str) -> bool:
    return "[1]" in line or "Not in the sources" in line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--questions", type=int, default=8)
    args = ap.parse_args()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        subprocess.run([str(RAG), "--home", str(home), "ingest", str(ROOT / "corpus")], env=env, check=True,
                       capture_output=True)
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(RAG), "--home", str(home), "repl"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
        assert proc.stdin is not None and proc.stdout is not None
        seen: list[tuple[float, str]] = []
        stdout = proc.stdout

        def read() -> None:
            seen.extend((time.perf_counter() - t0, ln) for ln in stdout)

        threading.Thread(target=read, daemon=True).start()
        latencies: list[float] = []
        for q in gold_questions(args.questions):
            before, sent = len(seen), time.perf_counter() - t0
            proc.stdin.write(q + "\n")
            proc.stdin.flush()
            while not any(answered(ln) for _, ln in seen[before:]):
                if proc.poll() is not None or time.perf_counter() - t0 > 300:
                    sys.exit("the REPL stopped or hung: " + "".join(ln for _, ln in seen[-20:]))
                time.sleep(0.005)
            latencies.append(next(t for t, ln in seen[before:] if answered(ln)) - sent)
            time.sleep(0.2)  # let the sources list print before the next question
        proc.stdin.close()
        proc.wait(timeout=30)
    first, later = latencies[0], latencies[1:]
    print(f"rag repl on the seed corpus, {len(latencies)} questions from {GOLD.name}")
    print(f"  start to first answer (cold: imports, model and index load)   {first:6.2f} s")
    if later:
        print(f"  later answers: median {statistics.median(later) * 1000:6.0f} ms, "
              f"max {max(later) * 1000:6.0f} ms   (n={len(later)})")


if __name__ == "__main__":
    main()
