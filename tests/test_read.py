"""The reader seam: the extractive reader's features, its fitted weights, exact spans, abstention; the fitting
script's ranker on data where the answer is known."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.language import Entity
from rag.read.extractive import ANSWER_FEATURES, ExtractiveReader, Weights, fitted_weights
from rag.read.features import FEATURES, Question, answer_labels, featurize, question_names, sentences
from rag.testing import FakeEmbedder, passages_from_text

ROOT = Path(__file__).resolve().parent.parent
TEXT = ("The bridge opened in 1932 after four years of work. It carries six lanes of traffic.\n\n"
        "The council voted to repaint it. Repainting will cost £2.4 million, the treasurer said.")


@pytest.mark.parametrize(("question", "label"), [
    ("How many lanes does the bridge carry?", "CARDINAL"),
    ("How much will the repainting cost?", "MONEY"),
    ("When did the bridge open?", "DATE"),
    ("In which year did the bridge open?", "DATE"),
    ("Who said what the repainting will cost?", "PERSON"),
    ("Where is the bridge?", "GPE"),
    ("How long did the work take?", "DATE"),
])
def test_a_question_form_asks_for_a_kind_of_entity(question: str, label: str) -> None:
    assert label in answer_labels(question)


def test_a_why_or_what_is_question_asks_for_no_kind() -> None:
    assert answer_labels("Why did the council vote to repaint the bridge?") == frozenset()
    assert answer_labels("What is a bridge?") == frozenset()


def test_question_names_are_entities_and_proper_nouns_not_bare_numbers() -> None:
    found = (Entity(0, 4, "GPE", "Oslo"), Entity(10, 13, "CARDINAL", "two"))
    assert question_names(found, ["Oslo", "Harbour"]) == ("oslo", "harbour")


def features_of(question: Question, text: str, entities_per_sentence: list[list[Entity]]) -> np.ndarray:
    passages = passages_from_text("a.txt", text, "A")
    found = sentences(passages)
    return featurize(question, found, np.linspace(0.5, 0.1, len(found)), passages, lambda _: 1.0,
                     entities_per_sentence[: len(found)])


def test_a_sentence_with_the_asked_kind_of_entity_scores_on_answer_type() -> None:
    q = Question("How much will the repainting cost?", ("repainting", "cost"), frozenset({"MONEY"}), ())
    money = Entity(0, 12, "MONEY", "£2.4 million")
    rows = features_of(q, TEXT, [[], [], [], [money]])
    col = FEATURES.index("answer_type")
    assert rows[3, col] == 1.0 and rows[0, col] == -1.0
    assert rows[3, FEATURES.index("lexical")] == 1.0  # both question words, by stem
    assert rows[0, FEATURES.index("dense_gap")] == 0.0 and rows[1, FEATURES.index("dense_gap")] < 0


def test_an_entity_the_question_states_is_no_answer() -> None:
    q = Question("When in 1932 did the bridge open?", ("1932", "bridge", "open"), frozenset({"DATE"}), ("1932",))
    rows = features_of(q, TEXT, [[Entity(20, 24, "DATE", "1932")], [], [], []])
    assert rows[0, FEATURES.index("answer_type")] == -1.0


def weights(**ranker: float) -> Weights:
    w = np.zeros(len(FEATURES))
    for name, value in ranker.items():
        w[FEATURES.index(name)] = value
    return Weights(np.zeros(len(FEATURES)), np.ones(len(FEATURES)), w, np.zeros(len(ANSWER_FEATURES)), 0.0,
                   0.5, 1e9)


def test_the_reader_picks_exact_sentences_and_abstains_below_its_bar() -> None:
    passages = passages_from_text("a.txt", TEXT, "A")
    embedder = FakeEmbedder()
    question = "How much will repainting the bridge cost?"
    reader = ExtractiveReader(embedder, lambda _: 1.0, weights=weights(lexical=5.0), min_confidence=0.0)
    reading = reader.read(question, embedder.embed_query(question), passages)
    assert not reading.abstained
    pick = reading.statements[0].evidence[0]
    picked = passages[pick.passage - 1].text[pick.start:pick.end]
    assert picked == "Repainting will cost £2.4 million, the treasurer said."
    refusing = ExtractiveReader(embedder, lambda _: 1.0, weights=weights(lexical=5.0), min_confidence=0.99)
    assert refusing.read(question, embedder.embed_query(question), passages).abstained


def test_the_shipped_weights_are_fitted_for_these_features() -> None:
    data = json.loads((ROOT / "rag" / "read" / "weights.json").read_text())
    assert tuple(data["features"]) == FEATURES and "dev" in data["fitted_on"]
    assert 0 < fitted_weights().min_confidence < 1


def test_weights_for_other_features_are_refused(tmp_path: Path) -> None:
    data = json.loads((ROOT / "rag" / "read" / "weights.json").read_text())
    data["features"] = data["features"][:-1]
    (tmp_path / "w.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="fit_reader"):
        Weights.load(tmp_path / "w.json")


def test_the_fitting_script_learns_a_ranker_that_puts_the_gold_sentence_first() -> None:
    sys.path.insert(0, str(ROOT / "evals"))
    import fit_reader

    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        x = rng.normal(size=(12, len(FEATURES)))
        gold = int(rng.integers(12))
        answerable = i % 4 != 0
        if answerable:
            x[gold, FEATURES.index("lexical")] += 3.0  # the gold sentence shares the question's words
        rows.append({"set": f"s{i % 2}", "answerable": answerable, "x": x,
                     "y": np.arange(12) == gold if answerable else np.zeros(12, dtype=bool)})
    w, per_set = fit_reader.fit(rows)
    assert int(np.argmax(w.ranker)) == FEATURES.index("lexical")
    assert all(m["evidence_recall"] + m["abstention_accuracy"] > 1.0 for m in per_set.values())
