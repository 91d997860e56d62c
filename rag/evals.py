"""Eval harness: a gold set anchored to quotes -> deterministic metrics -> report -> regression gate.

No LLM judge: a citation counts when its character span overlaps a gold evidence span in the same document;
an answer is correct when a gold alias appears in it (ALCE's STR-EM) and scored by SQuAD token F1."""

from __future__ import annotations

import json
import re
import statistics
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rag.cite import MARKER, parse_claims
from rag.config import UnreadableFile, read_named_file
from rag.types import Answer


class GoldError(Exception):
    """A gold file that cannot be used; the message lists every bad line with its number and reason."""


@dataclass(frozen=True)
class Span:
    doc: str
    start: int
    end: int

    def overlaps(self, doc: str, start: int, end: int) -> bool:
        return doc == self.doc and start < self.end and self.start < end


@dataclass(frozen=True)
class GoldItem:
    id: str
    question: str
    answers: tuple[str, ...]
    evidence: tuple[Span, ...]
    answerable: bool
    quotes: tuple[str, ...] = ()
    split: str | None = None  # "dev" or "test" when the gold file fixes it (rag.evalsets)


# -- gold set ----------------------------------------------------------------------------------------------
SHOWN_PROBLEMS = 20  # lines of a bad gold file named one by one


def load_gold(path: Path, doc_texts: Callable[[str], str | None]) -> list[GoldItem]:
    """Parse and validate a JSONL gold set; `doc_texts(doc)` gives a document's normalised text (None: unknown).
    Every problem is collected, so one run names every bad line."""
    problems: list[str] = []
    items: list[GoldItem] = []
    seen: set[str] = set()
    try:
        # JSONL lines end at "\n" only: splitlines() would also break inside strings at U+2028, U+0085, ...
        lines = read_named_file(path, "gold file").split("\n")
    except UnreadableFile as e:
        raise GoldError(str(e)) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{where}: not JSON ({e.msg.removesuffix(' at')}, column {e.colno})")
            continue
        item, errors = _parse_item(raw, doc_texts)
        if item and item.id in seen:
            errors.append(f"duplicate id {item.id!r}")
        problems.extend(f"{where}: {e}" for e in errors)
        if item and not errors:
            seen.add(item.id)
            items.append(item)
    if problems:  # the first ones name the trouble; a file that is not JSONL at all would print a line per line
        more = len(problems) - SHOWN_PROBLEMS
        tail = f"\n... and {more:,} more problems in {path} ({len(problems):,} in all)" if more > 0 else ""
        raise GoldError("\n".join(problems[:SHOWN_PROBLEMS]) + tail)
    if not items:
        raise GoldError(f"{path}: no items")
    return items


def _parse_item(raw: Any, doc_texts: Callable[[str], str | None]) -> tuple[GoldItem | None, list[str]]:
    if not isinstance(raw, dict):
        return None, ["an item must be a JSON object"]
    errors = []
    for key, kind in (("id", str), ("question", str), ("answers", list), ("evidence", list), ("answerable", bool)):
        if not isinstance(raw.get(key), kind):
            errors.append(f"{key!r} missing or not a {kind.__name__}")
    if errors:
        return None, errors
    if not raw["question"].strip():
        errors.append("empty question")
    if not all(isinstance(a, str) and a.strip() for a in raw["answers"]):
        errors.append("'answers' must be non-empty strings")
    if raw["answerable"] and (not raw["answers"] or not raw["evidence"]):
        errors.append("an answerable item needs at least one answer and one evidence quote")
    if not raw["answerable"] and (raw["answers"] or raw["evidence"]):
        errors.append("an unanswerable item must have empty 'answers' and 'evidence'")
    spans, quotes = [], []
    for i, ev in enumerate(raw["evidence"], start=1):
        if not isinstance(ev, dict) or not isinstance(ev.get("doc"), str) or not isinstance(ev.get("quote"), str):
            errors.append(f"evidence {i}: needs 'doc' and 'quote' strings")
            continue
        text = doc_texts(ev["doc"])
        if text is None:
            errors.append(f"evidence {i}: document {ev['doc']!r} is not in the store")
            continue
        at = text.find(ev["quote"]) if ev["quote"] else -1
        if at < 0:
            errors.append(f"evidence {i}: quote is not an exact substring of {ev['doc']}: "
                          + _first_difference(text, ev["quote"]))
            continue
        spans.append(Span(ev["doc"], at, at + len(ev["quote"])))
        quotes.append(ev["quote"])
    split = raw.get("split")
    if split is not None and split not in ("dev", "test"):
        errors.append(f"'split' must be \"dev\" or \"test\", not {split!r}")
    item = GoldItem(raw["id"], raw["question"], tuple(raw["answers"]), tuple(spans), raw["answerable"],
                    tuple(quotes), split)
    return item, errors


def _first_difference(text: str, quote: str) -> str:
    """Where a quote stops matching its document: the longest opening of it that the text holds, and what follows."""
    low, high = 0, len(quote)  # an opening the text holds stays held when shortened: binary search its length
    while low < high:
        mid = (low + high + 1) // 2
        if quote[:mid] in text:
            low = mid
        else:
            high = mid - 1
    if low == 0:
        return f"no part of it is in the document: {quote[:60]!r}"
    return f"{quote[max(0, low - 40):low]!r} matches, then {quote[low:low + 40]!r} does not"


def store_texts(store: Any) -> Callable[[str], str | None]:
    """doc id -> normalised text, read from each stored document's source file (gold quotes anchor to it); None
    for a document the store does not hold. GoldError when the file is gone or differs from what was ingested:
    citations point into the stored text, so quotes checked against another text would score wrongly."""
    from rag.ingest import BadFile, load_file

    records = store.documents()
    cache: dict[str, str | None] = {}

    def text(doc: str) -> str | None:
        if doc not in cache:
            record = records.get(doc)
            cache[doc] = None
            if record:
                source = Path(record["source"])
                try:
                    loaded = load_file(source, doc, 10**10)
                except BadFile as e:
                    raise GoldError(f"{doc}: cannot read its source file {source} ({e}); "
                                    "run `rag ingest` on the corpus again") from None
                if loaded.content_hash != record.get("hash"):
                    raise GoldError(f"{doc}: {source} changed since it was ingested; "
                                    "run `rag ingest` on the corpus again") from None
                cache[doc] = loaded.text
        return cache[doc]

    return text


# -- answer normalisation (SQuAD) ------------------------------------------------------------------------
def normalize_answer(text: str) -> str:
    text = MARKER.sub(" ", text.lower())
    text = "".join(" " if ch in string.punctuation or ch in "“”‘’—–" else ch for ch in text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def str_em(prediction: str, aliases: Sequence[str]) -> bool:
    """ALCE STR-EM with aliases: some alias appears, normalised, in the prediction."""
    pred = f" {normalize_answer(prediction)} "
    return any(f" {normalize_answer(a)} " in pred for a in aliases if normalize_answer(a))


def token_f1(prediction: str, aliases: Sequence[str]) -> float:
    pred = normalize_answer(prediction).split()
    best = 0.0
    for alias in aliases:
        gold = normalize_answer(alias).split()
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            precision, recall = common / len(pred), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


# -- per-item scoring -------------------------------------------------------------------------------------
@dataclass
class ItemResult:
    id: str
    question: str
    answerable: bool
    answer: str
    abstained: bool
    citations: list[dict[str, Any]]
    expected_answers: list[str]
    expected_quotes: list[str]
    evidence_hit: bool = False
    correct: bool = False
    f1: float = 0.0
    cited_ok: int = 0
    cited_total: int = 0
    sentences: int = 0
    attributed_sentences: int = 0
    uncited_sentences: int = 0
    invalid_markers: int = 0
    retrieval_hit: bool = False
    timings_ms: dict[str, float] = field(default_factory=dict)
    reader: str = ""  # how the reader read (rag.read.Reading.mode)
    unparsed: bool = False  # the model's reply was not of the shape asked for

    @property
    def passed(self) -> bool:
        if not self.answerable:
            return self.abstained
        return self.correct and self.evidence_hit

    def failure(self) -> str:
        if not self.answerable:
            return "answered a question the sources cannot answer" if not self.passed else ""
        reasons = []
        if self.abstained:
            reasons.append("abstained")
        else:
            if not self.correct:
                reasons.append("answer string missing")
            if not self.evidence_hit:
                reasons.append("no citation overlaps the gold evidence")
        if not self.retrieval_hit:
            reasons.append("evidence not retrieved")
        return ", ".join(reasons)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "question": self.question, "answerable": self.answerable, "passed": self.passed,
                "failure": self.failure(), "answer": self.answer, "abstained": self.abstained,
                "citations": self.citations, "expected_answers": self.expected_answers,
                "expected_quotes": self.expected_quotes, "evidence_hit": self.evidence_hit,
                "correct": self.correct, "f1": round(self.f1, 4), "retrieval_hit": self.retrieval_hit,
                "reader": self.reader, "unparsed": self.unparsed,
                "seconds": round(self.timings_ms.get("total", 0.0) / 1000, 3)}


def score_item(item: GoldItem, answer: Answer) -> ItemResult:
    r = ItemResult(item.id, item.question, item.answerable, answer.text, answer.abstained,
                   [{"n": c.n, "doc": c.doc, "start": c.start, "end": c.end, "quote": c.quote}
                    for c in answer.citations],
                   list(item.answers), list(item.quotes), timings_ms=dict(answer.timings_ms))
    r.invalid_markers = len(answer.dropped_markers)
    r.reader, r.unparsed = answer.reader, answer.unparsed_reply
    r.uncited_sentences = len(answer.unsupported)
    if not item.answerable or answer.abstained:
        r.retrieval_hit = any(e.overlaps(p.doc, p.start, p.end) for p in answer.passages for e in item.evidence)
        return r

    def supports(doc: str, start: int, end: int) -> bool:
        return any(e.overlaps(doc, start, end) for e in item.evidence)

    r.cited_total = len(answer.citations)
    r.cited_ok = sum(supports(c.doc, c.start, c.end) for c in answer.citations)
    r.evidence_hit = r.cited_ok > 0
    r.correct = str_em(answer.text, item.answers)
    r.f1 = token_f1(answer.text, item.answers)
    r.retrieval_hit = any(supports(p.doc, p.start, p.end) for p in answer.passages)
    by_n = {c.n: c for c in answer.citations}
    claims, _ = parse_claims(answer.text, len(answer.citations))  # read the markers as `verify` wrote them
    for claim in claims:
        r.sentences += 1
        cited = [by_n[n] for n in claim.markers if n in by_n]
        stated = [a for a in item.answers if str_em(claim.text, [a])]
        # Attributed: a cited span overlaps gold evidence and contains the answer string the sentence states.
        if any(supports(c.doc, c.start, c.end) and (not stated or str_em(c.quote, stated)) for c in cited):
            r.attributed_sentences += 1
    return r


# -- the run ---------------------------------------------------------------------------------------------
class Answerer(Protocol):
    def ask(self, question: str) -> Answer: ...


METRICS = ("evidence_recall", "citation_precision", "statement_attribution", "answer_str_em", "answer_f1",
           "attributed_accuracy", "retrieval_recall_at_k", "abstention_accuracy", "false_abstention_rate",
           "invalid_citation_rate", "uncited_sentence_rate", "schema_failure_rate")


@dataclass
class EvalReport:
    metrics: dict[str, float | None]
    items: list[ItemResult]
    spread: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metrics": self.metrics, "items": [i.to_json() for i in self.items]}
        if self.spread:
            out["spread"] = self.spread
        return out


def aggregate(results: Sequence[ItemResult]) -> dict[str, float | None]:
    """Each metric over the items it measures; None (n/a) when there are none: a gold set without unanswerable
    items says nothing about abstention, and must not read as 0."""
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]

    def ratio(part: float, whole: float) -> float | None:
        return round(part / whole, 4) if whole else None

    def mean(values: Iterable[float]) -> float | None:
        values = list(values)
        return ratio(sum(values), len(values))

    cited = sum(r.cited_total for r in answerable)
    sentences = sum(r.sentences for r in answerable)
    all_markers = sum(r.invalid_markers + len(r.citations) for r in results)
    all_sentences = sum(r.sentences + r.uncited_sentences for r in answerable)
    schema_read = [r for r in results if r.reader in ("sentences", "json")]  # replies asked for in a JSON shape
    return {
        "evidence_recall": mean(r.evidence_hit for r in answerable),
        "citation_precision": ratio(sum(r.cited_ok for r in answerable), cited),
        "statement_attribution": ratio(sum(r.attributed_sentences for r in answerable), sentences),
        "answer_str_em": mean(r.correct for r in answerable),
        "answer_f1": mean(r.f1 for r in answerable),
        "attributed_accuracy": mean(r.correct and r.evidence_hit for r in answerable),
        "retrieval_recall_at_k": mean(r.retrieval_hit for r in answerable),
        "abstention_accuracy": mean(r.abstained for r in unanswerable),
        "false_abstention_rate": mean(r.abstained for r in answerable),
        "invalid_citation_rate": ratio(sum(r.invalid_markers for r in results), all_markers),
        "uncited_sentence_rate": ratio(sum(r.uncited_sentences for r in answerable), all_sentences),
        "schema_failure_rate": mean(r.unparsed for r in schema_read),
        "n_items": float(len(results)),
    }


def evaluate(chain: Answerer, gold: Sequence[GoldItem],
             progress: Callable[[int, int], None] | None = None) -> EvalReport:
    """Run every gold item through the chain and score it; usable from a user's own pytest suite."""
    results = []
    for i, item in enumerate(gold, start=1):
        results.append(score_item(item, chain.ask(item.question)))
        if progress:
            progress(i, len(gold))
    return EvalReport(aggregate(results), results)


def combine(reports: Sequence[EvalReport]) -> EvalReport:
    """Mean of each metric over the repeated runs that measured it, with the spread (population standard
    deviation)."""
    metrics: dict[str, float | None] = {}
    spread: dict[str, float] = {}
    for k in reports[0].metrics:
        values = [v for r in reports if (v := r.metrics[k]) is not None]
        metrics[k] = round(statistics.fmean(values), 4) if values else None
        if values:
            spread[k] = round(statistics.pstdev(values), 4)
    return EvalReport(metrics, reports[-1].items, spread)


# -- regression gate -------------------------------------------------------------------------------------
LOWER_IS_BETTER = {"false_abstention_rate", "invalid_citation_rate", "uncited_sentence_rate", "schema_failure_rate"}


def check_against(metrics: dict[str, float | None], baseline: dict[str, float | None], tolerance: float
                  ) -> list[str]:
    """Metrics that got worse than baseline by more than the tolerance, one line each. A lower-is-better rate
    accepted at 0 (no invalid citation, no unparsed reply) must stay 0: any rise fails, whatever the tolerance.
    A metric that either side could not measure (n/a) is not compared."""
    failures = []
    for name, accepted in baseline.items():
        now = metrics.get(name)
        if name == "n_items" or now is None or accepted is None:
            continue
        if name in LOWER_IS_BETTER and accepted == 0:
            if now > 0:
                failures.append(f"{name}: {now:.4f} vs baseline 0 (must stay 0, no tolerance)")
            continue
        worse = now > accepted + tolerance if name in LOWER_IS_BETTER else now < accepted - tolerance
        if worse:
            failures.append(f"{name}: {now:.4f} vs baseline {accepted:.4f} (tolerance {tolerance})")
    return failures


def load_baseline(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"tolerance": 0.02, "backends": {}}
    try:
        data = json.loads(read_named_file(path, "baseline file"))
    except UnreadableFile as e:
        raise GoldError(str(e)) from None
    except json.JSONDecodeError as e:
        raise GoldError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    shape = "expected {'tolerance': number, 'backends': {backend: {metric: number or null}}}"
    if not isinstance(data, dict) or not isinstance(data.get("backends", {}), dict):
        raise GoldError(f"{path}: {shape}")
    tolerance = data.get("tolerance", 0.0)
    if not _is_number(tolerance) or tolerance < 0:
        raise GoldError(f"{path}: 'tolerance' must be a number >= 0, not {tolerance!r}")
    for backend, metrics in data.get("backends", {}).items():
        if not isinstance(metrics, dict):
            raise GoldError(f"{path}: backend {backend!r}: {shape}")
        for name, value in metrics.items():
            if value is not None and not _is_number(value):
                raise GoldError(f"{path}: backend {backend!r}: {name} must be a number or null, not {value!r}")
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # characters XML 1.0 cannot hold


def junit_xml(report: EvalReport, suite: str) -> str:
    from xml.sax.saxutils import escape as escape_xml
    from xml.sax.saxutils import quoteattr as quote_xml

    def escape(text: str) -> str:  # a control character in a question would make the file unreadable
        return escape_xml(_NOT_XML.sub("\ufffd", text))

    def quoteattr(text: str) -> str:
        return quote_xml(_NOT_XML.sub("\ufffd", text))

    failed = [r for r in report.items if not r.passed]
    cases = []
    for r in report.items:
        body = ""
        if not r.passed:
            detail = (f"expected {r.expected_answers} from {r.expected_quotes}\n"
                      f"answer: {r.answer}\ncited: {[c['quote'] for c in r.citations]}")
            body = f"<failure message={quoteattr(r.failure())}>{escape(detail)}</failure>"
        cases.append(f'  <testcase classname={quoteattr(suite)} name={quoteattr(r.id + ": " + r.question)}>'
                     f"{body}</testcase>")
    props = "".join(f'<property name="{k}" value="{"n/a" if v is None else v}"/>' for k, v in report.metrics.items())
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name={quoteattr(suite)} '
            f'tests="{len(report.items)}" failures="{len(failed)}">\n  <properties>{props}</properties>\n'
            + "\n".join(cases) + "\n</testsuite>\n")
