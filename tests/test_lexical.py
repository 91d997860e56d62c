"""The BM25 index: stemmed words, and an index saved by another tokenizer is not searched."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

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
    meta = folder / (folder / "current").read_text()
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


def _corpus(n: int = 300) -> tuple[list[str], list[str]]:
    rng = random.Random(7)
    vocab = ("alpha beta tank tanks fight fought city cities report governor election river bridge "
             "the of and").split()
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 25))) for _ in range(n)]
    return [f"doc{i % 29}.txt#{i}" for i in range(n)], texts


def test_scores_are_bm25s_lucene_scores() -> None:
    """Term counts scored at query time give the scores bm25s precomputes (its Lucene variant, k1 1.5, b 0.75)."""
    import bm25s

    ids, texts = _corpus()
    reference = bm25s.BM25()
    reference.index([tokenize(t) or ["\u2205"] for t in texts], show_progress=False)
    index = LexicalIndex.build(ids, texts)
    for query in ["tank governor", "fought the cities", "election river bridge alpha", "tanks tanks"]:
        terms = [t for t in tokenize(query) if t in reference.vocab_dict]
        docs, scores = reference.retrieve([terms], k=len(ids), show_progress=False)
        expected = {ids[int(i)]: float(s) for i, s in zip(docs[0], scores[0], strict=True) if s > 0}
        got = dict(index.search(query, k=len(ids)))
        assert got.keys() == expected.keys()
        assert max(abs(got[i] - expected[i]) for i in got) < 1e-4


def test_an_update_equals_a_build_of_the_corpus_as_it_now_is() -> None:
    ids, texts = _corpus()
    before = LexicalIndex.build(ids[:200], texts[:200])
    # doc3 is edited (its chunks dropped and written anew, one of them with other words), the rest is added
    edited = [i for i in range(200) if ids[i].startswith("doc3.txt#")]
    texts[edited[0]] = "a new sentence about the governor of the city"
    dropped = [ids[i] for i in edited]
    after = before.updated(dropped, [ids[i] for i in edited] + ids[200:],
                           [texts[i] for i in edited] + texts[200:], "new")
    full = LexicalIndex.build(ids, texts)
    assert sorted(after.ids) == sorted(full.ids)
    for query in ["tank governor", "new sentence city", "fought"]:
        got, expected = dict(after.search(query, k=len(ids))), dict(full.search(query, k=len(ids)))
        assert got.keys() == expected.keys() and got == pytest.approx(expected)
    for word in ["tanks", "governor", "sentence", "zeppelin"]:
        assert after.idf(word) == pytest.approx(full.idf(word))
    # a document removed leaves nothing of itself: not its words, not its rows
    gone = after.updated([i for i in after.ids if i.startswith("doc3.txt#")], [], [], "gone")
    assert not any(i.startswith("doc3.txt#") for i in gone.ids)
    assert not gone.knows("sentence") and gone.idf("sentence") == gone.idf("zeppelin")
    assert [i for i, _ in gone.search("new sentence", k=5)] == []


def test_a_saved_update_loads_as_it_was(tmp_path: Path) -> None:
    ids, texts = _corpus(50)
    index = LexicalIndex.build(ids[:40], texts[:40], "one", {"doc1.txt": 1})
    index.updated([], ids[40:], texts[40:], "two", {"doc1.txt": 2}).save(tmp_path)
    loaded = LexicalIndex.load(tmp_path)
    assert loaded is not None and loaded.fingerprint == "two" and loaded.generations == {"doc1.txt": 2}
    assert loaded.search("governor city", k=50) == LexicalIndex.build(ids, texts).search("governor city", k=50)


def test_an_update_writes_a_segment_of_its_own_and_leaves_the_others_as_they_were(tmp_path: Path) -> None:
    ids, texts = _corpus(300)
    LexicalIndex.build(ids, texts, "one").save(tmp_path)
    [first] = [p for p in tmp_path.iterdir() if p.name.startswith("seg-")]
    written = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    loaded = LexicalIndex.load(tmp_path)
    assert loaded is not None
    edited = [i for i in ids if i.startswith("doc5.txt#")][:3]
    update = loaded.updated(edited, edited, ["the governor of the new city"] * 3, "two")
    update.save(tmp_path)
    assert len(update.segments) == 2  # three rows masked in the first, three added in a second
    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir()} == written
    again = LexicalIndex.load(tmp_path)
    assert again is not None and sorted(again.ids) == sorted(ids)
    texts = [("the governor of the new city" if i in edited else t) for i, t in zip(ids, texts, strict=True)]
    full = LexicalIndex.build(ids, texts)
    got, expected = dict(again.search("governor new city", k=300)), dict(full.search("governor new city", k=300))
    assert got.keys() == expected.keys() and got == pytest.approx(expected)


def test_many_small_updates_are_merged_and_still_equal_a_build(monkeypatch: pytest.MonkeyPatch) -> None:
    import rag.lexical

    monkeypatch.setattr(rag.lexical, "MAX_SEGMENTS", 3)
    ids, texts = _corpus(400)
    index = LexicalIndex.build(ids, texts)
    for n in range(6):  # six one-chunk edits: the small segments after the first are merged past three
        chunk = ids[n * 7]
        texts[n * 7] = f"edit number {n} of the river report"
        index = index.updated([chunk], [chunk], [texts[n * 7]], f"edit-{n}")
        assert len(index.segments) <= 3
    full = LexicalIndex.build(ids, texts)
    for query in ["river report edit", "tank governor"]:
        got, expected = dict(index.search(query, k=400)), dict(full.search(query, k=400))
        assert got.keys() == expected.keys() and got == pytest.approx(expected)
    allowed = set(ids[:50])
    assert dict(index.search("river report", k=400, allowed=allowed)) == pytest.approx(
        dict(full.search("river report", k=400, allowed=allowed)))
