"""Briefing quality over several corpora: for each corpus with a topic, ingest it into a scratch store (once), make
the extractive briefing and report the share of its cited sentences that are on the topic (cosine between the
sentence's and the topic's embeddings at least --on-topic, default 0.3: the bar a reader's judgement of a sample
agreed with) and every heading that holds a word none of its section's cited sentences holds.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/brief_quality.py [--corpus NAME ...] [--show]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TOPICS = {
    "seeds": "cross-border incursions into Russia",
    "news": "the Marrowford boil-water notice",
    "history": "the history of Debian releases",
    "techdocs": "sorting lists in Python",
    "finance": "Norland Precision trading results",
    "legal": "patent licences granted by contributors",
    "transcript": "the town council meeting",
    "manpages": "compressing files with gzip",
}


def corpus_dir(name: str) -> Path:
    return ROOT / "corpus" if name == "seeds" and not (ROOT / "evals/gold/seeds/corpus").exists() \
        else ROOT / "evals/gold" / name / "corpus"


def briefing(name: str, topic: str):  # type: ignore[no-untyped-def]
    from rag.brief import make_briefing
    from rag.cli import load_chain
    from rag.config import Settings

    home = Path(f"/tmp/brief-{name}")
    if not home.exists():
        subprocess.run([str(ROOT / ".venv/bin/rag"), "--home", str(home), "ingest", str(corpus_dir(name))],
                       check=True, capture_output=True)
    chain = load_chain(Settings(home=home, chroma_url=None))
    return chain, make_briefing(chain, topic)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", nargs="*", default=list(TOPICS))
    parser.add_argument("--on-topic", type=float, default=0.3)
    parser.add_argument("--show", action="store_true", help="print each cited sentence with its cosine")
    args = parser.parse_args()
    from rag.brief import words_missing
    from rag.embed import embed_cached

    print(f"{'corpus':11} {'cited':>5} {'on-topic':>8} {'share':>6} {'sections':>8} {'disagree':>8} bad headings")
    for name in args.corpus:
        if not corpus_dir(name).exists():
            continue
        topic = TOPICS[name]
        chain, b = briefing(name, topic)
        texts = [p.text for p in b.points()]
        vectors = embed_cached(chain.retriever.embedder, [topic, *texts]) if texts else []
        cosines = [float(np.asarray(v) @ np.asarray(vectors[0])) for v in vectors[1:]]
        on = sum(c >= args.on_topic for c in cosines)
        bad = [s.heading for s in b.sections if words_missing(s.heading, [p.text for p in s.points])]
        share = on / len(texts) if texts else 1.0
        print(f"{name:11} {len(texts):5d} {on:8d} {share:6.2f} {len(b.sections):8d} {len(b.disagreements):8d} "
              f"{bad or ''}  headings: {[s.heading for s in b.sections]}")
        if args.show:
            for c, t in sorted(zip(cosines, texts, strict=True)):
                print(f"    {c:.2f} {t[:140]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
