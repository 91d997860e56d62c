"""The BM25 index: stemmed words, and an index saved by another tokenizer is not searched."""

from __future__ import annotations

import json
from pathlib import Path

from rag.lexical import LexicalIndex, tokenize

TEXTS = ["The assailants had been repelled in the region of Belgorod.",
         "Six tanks and a self-propelled gun were destroyed.",
         "The governor spoke to reporters about the shelling."]


def test_words_are_stemmed() -> None:
    assert tokenize("Repelling the attackers") == tokenize("repelled the attacker")


def test_irregular_verbs_meet_their_past_forms() -> None:
    assert tokenize("Who drew the plans?") == tokenize("who draws the plan")
    assert tokenize("fought, shot, brought, won") == tokenize("fighting, shoots, bring, wins")
    # a form that is more often another word keeps its own stem: "the left bank" is no leaving
    assert tokenize("left") != tokenize("leave")


def test_a_question_finds_other_forms_of_its_words() -> None:
    index = LexicalIndex.build(["a", "b", "c"], TEXTS)
    assert [i for i, _ in index.search("Did Russia succeed in repelling them?", k=3)] == ["a"]
    assert [i for i, _ in index.search("which tank", k=3)] == ["b"]


def test_idf_is_of_the_word_as_written() -> None:
    index = LexicalIndex.build(["a", "b", "c"], TEXTS)
    # "tanks" is in one chunk; "tank" as written is in none, so it weighs as much as a word never seen
    assert index.idf("tanks") < index.idf("tank") == index.idf("zeppelin")


def test_an_index_saved_by_another_tokenizer_is_not_loaded(tmp_path: Path) -> None:
    folder = tmp_path / "bm25"
    LexicalIndex.build(["a", "b", "c"], TEXTS).save(folder)
    assert LexicalIndex.load(folder) is not None
    meta = folder / (folder / "current").read_text() / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "tokenizer": "some-older-tokenizer"}))
    assert LexicalIndex.load(folder) is None  # the store rebuilds it rather than search with the wrong words


def test_concurrent_saves_never_share_a_folder_and_the_last_one_is_whole(tmp_path: Path) -> None:
    # Regression: rebuilds in two processes raced on one shared ".tmp" folder (FileNotFoundError .../df.json).
    import multiprocessing

    folder = tmp_path / "bm25"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_save_many, args=(folder, n)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    loaded = LexicalIndex.load(folder)
    assert loaded is not None and loaded.ids == ["a", "b", "c"] and loaded.fingerprint.startswith("writer-")


def _save_many(folder: Path, n: int) -> None:
    for i in range(15):
        LexicalIndex.build(["a", "b", "c"], TEXTS, f"writer-{n}-{i}").save(folder)
        assert LexicalIndex.load(folder) is not None
