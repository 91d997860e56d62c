"""Fit the briefing's bars on the dev halves of every gold set, and write rag/brief/bars.json.

    HF_HUB_OFFLINE=1 .venv/bin/python evals/fit_brief.py [--gold evals/gold] [--dry-run]

Each dev question stands for a topic. Every set counts the same: a bar is the value on a grid that maximises the
mean over sets of that set's F-score (printed per set; which F for which bar is said below).

1. Sentence relevance (`min_relevance`): the claim sentences (`is_claim_sentence`) that hold a question's gold
   evidence, and the claim sentences next to them in the same document, are on the topic. Off it, in two halves
   of equal weight: every claim sentence of the OTHER sets' corpora (another domain), and the evidence sentences
   of the same set's other dev questions that are not next to this question's evidence (the same domain, another
   matter: what a retriever brings along). Together the off-topic sentences weigh as much as the on-topic ones
   for each question. Other sentences of the question's own corpus are left out: nobody judged them.
2. Document relevance (`min_doc_relevance`): a document's score is its best sentence's relevance; the documents
   holding the evidence are on the topic, the other sets' documents off it (weighted as in 1).
3. Grouping (`group_likeness`): the evidence sentences of a set's dev questions, clustered by average link over
   embedding cosine (as `rag.brief.compose.cluster` does) and cut at the bar; B-cubed F1 against the questions
   (sentences that answer the same question belong together). Only questions with evidence in two or more
   sentences count as groups; the others are singletons that must stay apart from them.
4. Same thing (`same_thing`, the likeness above which two sentences of different documents that share a noun or
   a name speak of the same thing, for the disagreement test): two evidence sentences of one question from two
   documents speak of the same thing; evidence sentences of different questions in different documents do not.
   F2 here (see SAME_BETA), F0.5 for the relevance bars (see BETA), F1 for grouping.
Nothing here reads the test halves."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.brief.disagree import share_something  # noqa: E402
from rag.brief.gather import BARS_FILE, W_MEANING, W_WORDS, is_claim_sentence  # noqa: E402
from rag.chunk import as_prose, sentence_spans  # noqa: E402
from rag.cite import overlap  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.embed import embed_cached, make_embedder  # noqa: E402
from rag.ingest import load_file  # noqa: E402
from rag.sentences import annotate  # noqa: E402

GRID = np.round(np.arange(0.05, 0.90, 0.01), 2)
# A briefing cites a few sentences out of hundreds it could: a reader sees every off-topic one it cites and never
# the on-topic ones it leaves out, so the relevance bars weigh precision twice as much as recall (F-beta, 0.5).
BETA = 0.5
# The same-thing bar is the first of two tests in a row (the second: different figures, a negation, opposite
# sources), and the second rules out most pairs by itself: the bar weighs recall twice as much as precision (F2).
SAME_BETA = 2.0


@dataclass
class Corpus:
    name: str
    texts: list[str] = field(default_factory=list)  # claim sentences, as prose
    docs: list[str] = field(default_factory=list)  # the document of each
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    items: list[tuple[str, list[int], list[int]]] = field(default_factory=list)  # (question, evidence, neighbours)


def load_set(folder: Path) -> Corpus:
    c = Corpus(folder.name)
    where: dict[str, list[tuple[int, int, int]]] = {}  # doc -> (start, end, index into texts or -1)
    texts: dict[str, str] = {}
    for path in sorted((folder / "corpus").rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        doc_id = str(path.relative_to(folder / "corpus"))
        try:
            text = load_file(path, doc_id, 20 << 20).text
        except Exception:  # noqa: BLE001  a file ingest would skip
            continue
        texts[doc_id] = text
        where[doc_id] = []
        for s, e in sentence_spans(text):
            prose = as_prose(text[s:e])
            index = -1
            if is_claim_sentence(prose):
                index = len(c.texts)
                c.texts.append(prose)
                c.docs.append(doc_id)
            where[doc_id].append((s, e, index))
    for line in (folder / "gold.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line) if line.strip() else None
        if not item or item.get("split") != "dev" or not item.get("evidence"):
            continue
        evidence: list[int] = []
        near: list[int] = []
        for ev in item["evidence"]:
            text, spans = texts.get(ev["doc"]), where.get(ev["doc"], [])
            at = text.find(ev["quote"]) if text else -1
            if at < 0:
                continue
            hit = [i for i, (s, e, _) in enumerate(spans) if s < at + len(ev["quote"]) and at < e]
            evidence += [spans[i][2] for i in hit if spans[i][2] >= 0]
            near += [spans[j][2] for i in hit for j in (i - 1, i + 1) if 0 <= j < len(spans) and spans[j][2] >= 0]
        evidence = list(dict.fromkeys(evidence))
        near = [j for j in dict.fromkeys(near) if j not in evidence]
        if evidence:
            c.items.append((item["question"], evidence, near))
    return c


def f1(tp: float, fp: float, fn: float, beta: float = 1.0) -> float:
    """F-beta: beta < 1 weighs precision more than recall."""
    b2 = beta * beta
    return (1 + b2) * tp / ((1 + b2) * tp + fp + b2 * fn) if tp else 0.0


def best(per_set: dict[str, np.ndarray]) -> tuple[float, dict[str, float]]:
    """The grid value with the highest mean F1 over sets (the lowest among equals), and each set's F1 there."""
    mean = np.mean(np.stack(list(per_set.values())), axis=0)
    i = int(np.argmax(mean))
    return float(GRID[i]), {name: float(v[i]) for name, v in per_set.items()}


def relevance_curves(sets: list[Corpus], embedder: object, beta: float = BETA
                     ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per set: F1 of the sentence bar and of the document bar at each grid value."""
    sentence_f1, doc_f1 = {}, {}
    for c in sets:
        others = [o for o in sets if o is not c]
        other_texts = [t for o in others for t in o.texts]
        other_docs = [f"{o.name}/{d}" for o in others for d in o.docs]
        other_vectors = np.concatenate([o.vectors for o in others])
        s_counts = np.zeros((3, len(GRID)))  # tp, fp, fn
        d_counts = np.zeros((3, len(GRID)))
        for qi, (question, evidence, near) in enumerate(c.items):
            q = np.asarray(embed_cached(embedder, [question])[0], dtype=np.float32)  # type: ignore[arg-type]
            own = evidence + near
            rel_pos = W_MEANING * (c.vectors[own] @ q) + W_WORDS * np.array([overlap(question, c.texts[i])
                                                                             for i in own])
            rel_neg = W_MEANING * (other_vectors @ q) + W_WORDS * np.array([overlap(question, t) for t in other_texts])
            mine = set(own) | {j for i in evidence for j in (i - 1, i + 1)}
            same = sorted({i for qj, (_, ev, _) in enumerate(c.items) if qj != qi for i in ev} - mine)
            rel_same = W_MEANING * (c.vectors[same] @ q) + W_WORDS * np.array([overlap(question, c.texts[i])
                                                                               for i in same])
            s_counts[0] += (rel_pos[:, None] >= GRID).sum(0)
            s_counts[2] += (rel_pos[:, None] < GRID).sum(0)
            halves = [r for r in (rel_neg, rel_same) if len(r)]
            for r in halves:
                s_counts[1] += len(own) / len(halves) / len(r) * (r[:, None] >= GRID).sum(0)
            # documents: the best sentence of each
            rel_all = W_MEANING * (c.vectors @ q) + W_WORDS * np.array([overlap(question, t) for t in c.texts])
            pos_docs = {c.docs[i] for i in evidence}
            doc_best = defaultdict(float)
            for d, r in zip(c.docs, rel_all, strict=True):
                if d in pos_docs:
                    doc_best[d] = max(doc_best[d], float(r))
            neg_best: dict[str, float] = defaultdict(float)
            for d, r in zip(other_docs, rel_neg, strict=True):
                neg_best[d] = max(neg_best[d], float(r))
            pos = np.array(list(doc_best.values()))
            neg = np.array(list(neg_best.values()))
            wd = len(pos) / len(neg)
            d_counts[0] += (pos[:, None] >= GRID).sum(0)
            d_counts[2] += (pos[:, None] < GRID).sum(0)
            d_counts[1] += wd * (neg[:, None] >= GRID).sum(0)
        sentence_f1[c.name] = np.array([f1(*s_counts[:, i], beta=beta) for i in range(len(GRID))])
        doc_f1[c.name] = np.array([f1(*d_counts[:, i], beta=beta) for i in range(len(GRID))])
    return sentence_f1, doc_f1


def bcubed(labels: np.ndarray, truth: np.ndarray) -> float:
    precision = recall = 0.0
    for i in range(len(labels)):
        same_c, same_t = labels == labels[i], truth == truth[i]
        both = float((same_c & same_t).sum())
        precision += both / same_c.sum()
        recall += both / same_t.sum()
    precision, recall = precision / len(labels), recall / len(labels)
    return 2 * precision * recall / (precision + recall)


def grouping_curves(sets: list[Corpus]) -> dict[str, np.ndarray]:
    out = {}
    for c in sets:
        owner: dict[int, int] = {}
        for qi, (_, evidence, _) in enumerate(c.items):
            for i in evidence:
                owner.setdefault(i, qi)
        sizes = defaultdict(int)
        for qi in owner.values():
            sizes[qi] += 1
        if not any(n > 1 for n in sizes.values()):
            continue
        index = sorted(owner)
        truth = np.array([owner[i] if sizes[owner[i]] > 1 else -1 - i for i in index])
        distance = np.clip(1.0 - c.vectors[index] @ c.vectors[index].T, 0.0, 2.0)
        tree = linkage(distance[np.triu_indices(len(index), 1)], method="average")
        out[c.name] = np.array([bcubed(fcluster(tree, 1.0 - t, criterion="distance"), truth) for t in GRID])
    return out


def same_thing_curves(sets: list[Corpus]) -> dict[str, np.ndarray]:
    out = {}
    for c in sets:
        owner: dict[int, set[int]] = defaultdict(set)
        for qi, (_, evidence, _) in enumerate(c.items):
            for i in evidence:
                owner[i].add(qi)
        index = sorted(owner)
        notes = dict(zip(index, annotate([c.texts[i] for i in index]), strict=True))
        pos, neg = [], []
        for x, i in enumerate(index):
            for j in index[x + 1:]:
                if c.docs[i] == c.docs[j] or not share_something(notes[i], notes[j]):
                    continue
                (pos if owner[i] & owner[j] else neg).append(float(c.vectors[i] @ c.vectors[j]))
        if not pos:
            continue
        p, n = np.array(pos), np.array(neg)
        out[c.name] = np.array([f1((p >= t).sum(), (n >= t).sum(), (p < t).sum(), beta=SAME_BETA) for t in GRID])
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gold", type=Path, default=ROOT / "evals/gold")
    parser.add_argument("--beta", type=float, default=BETA, help="F-beta of the relevance bars")
    parser.add_argument("--dry-run", action="store_true", help="print the bars without writing them")
    args = parser.parse_args()
    sets = [load_set(p) for p in sorted(args.gold.iterdir()) if (p / "gold.jsonl").is_file()]
    embedder = make_embedder(Settings(home=Path("/tmp/fit-brief-unused"), chroma_url=None).embed)
    for c in sets:
        c.vectors = np.asarray(embed_cached(embedder, c.texts), dtype=np.float32)
        print(f"{c.name:11} {len(c.texts):5d} claim sentences, {len(c.items):3d} dev questions with evidence")
    sentence_f1, doc_f1 = relevance_curves(sets, embedder, args.beta)
    fitted = {}
    for key, curves in (("min_relevance", sentence_f1), ("min_doc_relevance", doc_f1),
                        ("group_likeness", grouping_curves(sets)), ("same_thing", same_thing_curves(sets))):
        value, per_set = best(curves)
        fitted[key] = value
        print(f"{key:18} = {value:.2f}   mean F {np.mean(list(per_set.values())):.3f}   "
              + "  ".join(f"{n} {v:.2f}" for n, v in per_set.items()))
    bars = {"_fitted_by": "evals/fit_brief.py on the dev halves of evals/gold/*", **fitted}
    if not args.dry_run:
        BARS_FILE.write_text(json.dumps(bars, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {BARS_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
