"""What each hand-written part of the extractive reader buys, per gold set, on the dev and the test halves.

    .venv/bin/python evals/ablate_reader.py [--home .rag-eval] [--rows-dir DIR]

For each group of features that rests on a hand-written recogniser (the wh-phrase table that names the entity
labels an answer carries, the question's names, the sentence-end pattern), the reader is fitted again on the dev
halves without that group (its columns held at zero), exactly as evals/fit_reader.py fits it, and both readers are
scored on the dev and the test halves of every set: evidence recall, citation precision, abstention accuracy of the
best sentence at the fitted bar. A group whose removal costs nothing on sets it was not written for is a rule to
drop. Prints a table; writes nothing in the package."""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "evals"))

import fit_reader  # noqa: E402

from rag.read.features import FEATURES  # noqa: E402

GROUPS = {
    "wh-phrase table (answer_type, typed_question)": ("answer_type", "typed_question"),
    "question names (names, names_passage)": ("names", "names_passage"),
    "sentence-end pattern (statement)": ("statement",),
}
METRICS = ("evidence_recall", "citation_precision", "abstention_accuracy")


def rows_for(split: str, home: Path, cache: Path | None) -> list[dict]:
    path = cache / f"rows-{split}.pkl" if cache else None
    if path and path.exists():
        with path.open("rb") as f:
            return pickle.load(f)
    rows = fit_reader.collect(ROOT / "evals" / "gold", home, split)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            pickle.dump(rows, f)
    return rows


def without(rows: list[dict], names: tuple[str, ...]) -> list[dict]:
    cols = [FEATURES.index(n) for n in names]
    out = []
    for r in rows:
        x = r["x"].copy()
        x[:, cols] = 0.0
        out.append({**r, "x": x})
    return out


def scored(rows: list[dict], weights: fit_reader.Weights) -> dict[str, dict[str, float]]:
    return fit_reader.outcomes(rows, weights, weights.min_confidence, weights.second_share)


def line(label: str, per_set: dict[str, dict[str, float]]) -> str:
    cells = [" / ".join(f"{per_set[s][m]:.2f}" for m in METRICS) for s in sorted(per_set)]
    macro = " / ".join(f"{np.mean([v[m] for v in per_set.values()]):.3f}" for m in METRICS)
    return f"| {label} | " + " | ".join(cells) + f" | {macro} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=ROOT / ".rag-eval")
    parser.add_argument("--rows-dir", type=Path, help="keep the collected features here and reuse them")
    args = parser.parse_args()
    dev, test = (rows_for(split, args.home, args.rows_dir) for split in ("dev", "test"))
    sets = sorted({r["set"] for r in dev})
    print("cells: evidence recall / citation precision / abstention accuracy of the best sentence\n")
    print("| reader | half | " + " | ".join(sets) + " | macro |")
    print("|---" * (len(sets) + 3) + "|")
    full, _ = fit_reader.fit(dev)
    for half, rows in (("dev", dev), ("test", test)):
        print(line(f"all features | {half}", scored(rows, full)))
    for label, names in GROUPS.items():
        ablated, _ = fit_reader.fit(without(dev, names))
        for half, rows in (("dev", dev), ("test", test)):
            print(line(f"without {label} | {half}", scored(without(rows, names), ablated)))


if __name__ == "__main__":
    main()
