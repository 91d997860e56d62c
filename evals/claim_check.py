"""Measure the sentence reader's claim check (rag.read.sentences.MIN_SHARED): how much of a claim's content words
its evidence holds, for a claim and its true evidence against a claim and a sentence it does not rest on.

A claim is an item's question with its first gold answer (what an answer restates); its true evidence is the gold
quote, its false evidence the gold quote of another item of the same set. Over the dev halves of every gold set,
for each threshold: the share of true pairs kept and of false pairs let through.

    .venv/bin/python evals/claim_check.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from rag.cite import overlap
from rag.evals import GoldItem
from rag.evalsets import discover, split_of
from rag.read.sentences import MIN_SHARED

GOLD = Path(__file__).resolve().parent / "gold"


def pairs(seed: int = 0) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    true, false = [], []
    for gold_set in discover(GOLD):
        raw = [json.loads(line) for line in gold_set.gold.read_text(encoding="utf-8").splitlines() if line.strip()]
        dev = [r for r in raw if r["answerable"] and split_of(gold_set.name, GoldItem(
            r["id"], r["question"], (), (), True, (), r.get("split"))) == "dev"]
        for r in dev:
            claim = f"{r['question']} {r['answers'][0]}"
            true.append(overlap(claim, r["evidence"][0]["quote"]))
            other = rng.choice([o for o in dev if o["id"] != r["id"]])
            false.append(overlap(claim, other["evidence"][0]["quote"]))
    return true, false


def main() -> None:
    true, false = pairs()
    print(f"{len(true)} claims; threshold: true pairs kept, false pairs let through")
    for t in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4):
        kept = sum(v >= t for v in true) / len(true)
        through = sum(v >= t for v in false) / len(false)
        mark = "  <- MIN_SHARED" if abs(t - MIN_SHARED) < 1e-9 else ""
        print(f"  {t:.2f}: {kept:.3f} kept, {through:.3f} let through{mark}")


if __name__ == "__main__":
    main()
