"""Metric functions and gold-set validation as pure functions on hand-built cases."""

import json
import re
from pathlib import Path

import pytest

from rag import evals
from rag.evals import GoldItem, Span, aggregate, check_against, score_item, str_em, token_f1
from rag.types import Answer, Citation, Passage

SOURCE = ("The ministry said it shot down 26 drones over seven regions. Schools in Kursk moved online. "
          "The governor said the larger incursion was stopped.")
DOC = "004.txt"


def span_of(quote: str) -> Span:
    start = SOURCE.index(quote)
    return Span(DOC, start, start + len(quote))


def cite(n: int, quote: str) -> Citation:
    s = span_of(quote)
    return Citation(n, DOC, f"{DOC}#x", s.start, s.end, quote)


PASSAGE = Passage(f"{DOC}#x", DOC, 0, len(SOURCE), SOURCE)
DRONES = GoldItem("q1", "How many drones were shot down?", ("26", "26 drones"),
                  (span_of("The ministry said it shot down 26 drones over seven regions."),), True)
UNANSWERABLE = GoldItem("q2", "Who won the election?", (), (), False)


def answer(text: str, *citations: Citation, abstained: bool = False) -> Answer:
    return Answer("q", text, abstained, tuple(citations), (PASSAGE,), "test")


def test_squad_normalisation_and_str_em():
    assert evals.normalize_answer("The  Drones, [2] shot!") == "drones shot"
    assert str_em("They downed 26 drones [1].", ["26"])
    assert not str_em("They downed 260 drones.", ["26"])  # whole tokens only
    assert not str_em("anything", [])


def test_token_f1_takes_best_alias():
    assert token_f1("26 drones", ["26 drones", "twenty-six"]) == 1.0
    assert 0 < token_f1("it shot down 26 drones over seven regions", ["26 drones"]) < 0.5
    assert token_f1("nothing relevant", ["26"]) == 0.0


def test_correct_answer_with_supporting_citation():
    r = score_item(DRONES, answer("The ministry said it shot down 26 drones over seven regions [1].",
                                  cite(1, "The ministry said it shot down 26 drones over seven regions.")))
    assert r.correct and r.evidence_hit and r.passed
    assert (r.cited_ok, r.cited_total) == (1, 1)
    assert r.attributed_sentences == r.sentences == 1


def test_a_marker_after_a_closing_quotation_attributes_the_sentence_before_it():
    quoted = answer('The ministry said: "26 drones over seven regions." [1]',
                    cite(1, "The ministry said it shot down 26 drones over seven regions."))
    r = score_item(DRONES, quoted)
    assert r.sentences == r.attributed_sentences == 1  # one sentence, not a quotation and a lone "[1]"


def test_answer_that_copies_the_top_passage_scores_high_on_citations_low_on_correctness():
    """Citing the right passage does not make a wrong answer right: both metrics must show it."""
    copied = answer("Schools in Kursk moved online [1]. The ministry said it shot down drones over seven regions [2].",
                    cite(1, "Schools in Kursk moved online."),
                    cite(2, "The ministry said it shot down 26 drones over seven regions."))
    r = score_item(DRONES, copied)
    m = aggregate([r])
    assert m["evidence_recall"] == 1.0  # a citation overlaps the gold evidence
    assert m["citation_precision"] == 0.5
    assert m["answer_str_em"] == 0.0 and m["attributed_accuracy"] == 0.0
    assert not r.passed


def test_citation_elsewhere_in_the_source_does_not_count():
    r = score_item(DRONES, answer("26 drones were downed [1].", cite(1, "Schools in Kursk moved online.")))
    assert r.correct and not r.evidence_hit and not r.passed
    assert r.attributed_sentences == 0


def test_attribution_needs_the_stated_answer_in_the_cited_quote():
    # The sentence states "26", the cited span overlaps the gold evidence but stops before the number.
    partial = Citation(1, DOC, f"{DOC}#x", 0, 20, SOURCE[0:20])
    r = score_item(DRONES, answer("It shot down 26 drones [1].", partial))
    assert r.evidence_hit and r.attributed_sentences == 0


def test_abstention_metrics():
    abstained = score_item(UNANSWERABLE, answer("Not in the sources.", abstained=True))
    answered = score_item(UNANSWERABLE, answer("Putin won [1].", cite(1, "Schools in Kursk moved online.")))
    false_abstain = score_item(DRONES, answer("Not in the sources.", abstained=True))
    m = aggregate([abstained, answered, false_abstain])
    assert m["abstention_accuracy"] == 0.5
    assert m["false_abstention_rate"] == 1.0
    assert m["n_items"] == 3


def test_invalid_and_uncited_rates():
    a = Answer("q", "26 drones [1]. Also cats.", False,
               (cite(1, "The ministry said it shot down 26 drones over seven regions."),), (PASSAGE,), "test",
               unsupported=("Also cats.",), dropped_markers=("[9]",))
    m = aggregate([score_item(DRONES, a)])
    assert m["invalid_citation_rate"] == 0.5
    assert m["uncited_sentence_rate"] > 0


def test_regression_gate():
    baseline = {"evidence_recall": 0.9, "false_abstention_rate": 0.1, "n_items": 10}
    assert check_against({"evidence_recall": 0.89, "false_abstention_rate": 0.1}, baseline, 0.02) == []
    failures = check_against({"evidence_recall": 0.8, "false_abstention_rate": 0.2}, baseline, 0.02)
    assert len(failures) == 2 and failures[0].startswith("evidence_recall")


def test_a_rate_accepted_at_zero_must_stay_zero_whatever_the_tolerance():
    baseline = {"invalid_citation_rate": 0.0, "schema_failure_rate": 0.0, "uncited_sentence_rate": 0.0,
                "false_abstention_rate": 0.1, "evidence_recall": 0.0}
    same = {"invalid_citation_rate": 0.0, "schema_failure_rate": 0.0, "uncited_sentence_rate": 0.0,
            "false_abstention_rate": 0.12, "evidence_recall": 0.0}
    assert check_against(same, baseline, 0.05) == []
    risen = {**same, "invalid_citation_rate": 0.001, "schema_failure_rate": 0.01}
    failures = check_against(risen, baseline, 0.05)
    assert [f.split(":")[0] for f in failures] == ["invalid_citation_rate", "schema_failure_rate"]
    assert all("must stay 0" in f for f in failures)
    # a rate accepted above 0 keeps the tolerance; n/a on either side is still not compared
    assert check_against({**same, "false_abstention_rate": 0.14}, baseline, 0.05) == []
    assert check_against({**same, "uncited_sentence_rate": None}, baseline, 0.05) == []


def test_repeat_reports_mean_and_spread():
    r1 = evals.EvalReport({"evidence_recall": 1.0}, [])
    r2 = evals.EvalReport({"evidence_recall": 0.5}, [])
    combined = evals.combine([r1, r2])
    assert combined.metrics["evidence_recall"] == 0.75 and combined.spread["evidence_recall"] == 0.25


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def texts(doc: str) -> str | None:
    return SOURCE if doc == DOC else None


def test_gold_validation_reports_every_bad_line(tmp_path):
    good = {"id": "a", "question": "How many?", "answers": ["26"],
            "evidence": [{"doc": DOC, "quote": "shot down 26 drones"}], "answerable": True}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "id": "b", "evidence": [{"doc": DOC, "quote": "shot down 27 drones"}]}),
        json.dumps({**good, "id": "c", "evidence": [{"doc": "missing.txt", "quote": "x"}]}),
        json.dumps({**good, "id": "a"}),
        json.dumps({**good, "id": "d", "answerable": False}),
        json.dumps({"id": "e"}),
    ]
    with pytest.raises(evals.GoldError) as e:
        evals.load_gold(write(tmp_path, lines), texts)
    message = str(e.value)
    for number, reason in [(2, "not JSON"), (3, "not an exact substring"), (4, "not in the store"),
                           (5, "duplicate id"), (6, "unanswerable item must have empty"), (7, "missing")]:
        assert f"gold.jsonl:{number}: " in message and reason in message, (number, reason, message)
    assert "gold.jsonl:1:" not in message


def test_gold_loads_spans_from_quotes(tmp_path):
    item = {"id": "a", "question": "How many?", "answers": ["26"],
            "evidence": [{"doc": DOC, "quote": "shot down 26 drones"}], "answerable": True}
    [gold] = evals.load_gold(write(tmp_path, [json.dumps(item)]), texts)
    assert SOURCE[gold.evidence[0].start:gold.evidence[0].end] == "shot down 26 drones"


def test_junit_xml_lists_failures():
    ok = score_item(UNANSWERABLE, answer("Not in the sources.", abstained=True))
    bad = score_item(DRONES, answer("Not in the sources.", abstained=True))
    xml = evals.junit_xml(evals.EvalReport(aggregate([ok, bad]), [ok, bad]), "suite")
    assert 'tests="2" failures="1"' in xml and "<failure" in xml


def test_a_metric_with_nothing_to_measure_is_not_applicable_and_not_compared():
    m = aggregate([score_item(DRONES, answer("Not in the sources.", abstained=True))])
    assert m["abstention_accuracy"] is None  # no unanswerable item: nothing to measure, not 0
    assert m["citation_precision"] is None and m["evidence_recall"] == 0.0
    assert check_against(m, {"abstention_accuracy": 1.0, "evidence_recall": 0.0}, 0.02) == []
    combined = evals.combine([evals.EvalReport(m, []), evals.EvalReport({**m, "abstention_accuracy": 0.5}, [])])
    assert combined.metrics["abstention_accuracy"] == 0.5 and "citation_precision" not in combined.spread
    assert 'name="abstention_accuracy" value="n/a"' in evals.junit_xml(evals.EvalReport(m, []), "suite")


def test_gold_lines_end_at_newlines_only_and_a_bom_is_read(tmp_path):
    item = {"id": "a", "question": "How many\u2028drones?", "answers": ["26"],
            "evidence": [{"doc": DOC, "quote": "shot down 26 drones"}], "answerable": True}
    path = tmp_path / "gold.jsonl"
    path.write_text("\ufeff" + json.dumps(item, ensure_ascii=False) + "\r\n"
                    + json.dumps({**item, "id": "b"}, ensure_ascii=False) + "\n\n", encoding="utf-8")
    assert [g.question for g in evals.load_gold(path, texts)] == ["How many\u2028drones?"] * 2


@pytest.mark.parametrize(("baseline", "reason"), [
    ({"tolerance": None, "backends": {}}, "'tolerance' must be a number >= 0, not None"),
    ({"tolerance": -0.1, "backends": {}}, "'tolerance' must be a number >= 0"),
    ({"backends": {"extractive": [1]}}, "backend 'extractive': expected"),
    ({"backends": {"extractive": {"evidence_recall": "high"}}}, "evidence_recall must be a number or null"),
    ({"backends": {"extractive": {"evidence_recall": True}}}, "evidence_recall must be a number or null"),
])
def test_a_malformed_baseline_is_one_line_naming_the_value(tmp_path, baseline, reason):
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    with pytest.raises(evals.GoldError, match=re.escape(reason)):
        evals.load_baseline(path)
    path.write_text(json.dumps({"tolerance": 0.03, "backends": {"extractive": {"evidence_recall": None}}}))
    assert evals.load_baseline(path)["tolerance"] == 0.03


def test_junit_xml_is_well_formed_whatever_the_question_holds():
    from xml.etree import ElementTree

    odd = GoldItem("q\x01", "Drones\x0c <shot> & \"down\"?", ("26",), DRONES.evidence, True)
    r = score_item(odd, answer("Not in the sources.", abstained=True))
    root = ElementTree.fromstring(evals.junit_xml(evals.EvalReport(aggregate([r]), [r]), "suite"))
    assert root.find("testcase").get("name") == "q\ufffd: Drones\ufffd <shot> & \"down\"?"
