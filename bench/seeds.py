"""The seed gold set's questions, asked by the benchmarks (each script runs from bench/, so `import seeds` finds
this file)."""

from __future__ import annotations

import json
from pathlib import Path

GOLD = Path(__file__).resolve().parent.parent / "evals" / "gold" / "seeds" / "gold.jsonl"


def gold_questions(n: int | None = None) -> list[str]:
    """The first n questions of the seed gold set (all of them when n is None), in file order."""
    items = [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [item["question"] for item in items][:n]
