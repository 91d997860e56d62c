"""Sync semantics with the REAL Chroma (embedded and `chroma run` server) and the REAL local embedding model.

Most tests drive the real `rag` CLI in-process (typer's CliRunner), so the model is loaded once per session;
the concurrency tests run the installed `rag` executable in other processes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from rag.chunk import chunk_text
from rag.cli import app
from rag.config import Settings
from rag.ingest import load_file, scan
from rag.store import Store, StoreError, file_hashes, sync
from rag.testing import FakeEmbedder, free_port
from rag.testing import chroma_server as real_chroma_server

pytestmark = pytest.mark.integration

VENV_BIN = Path(sys.executable).parent
RAG = str(VENV_BIN / "rag")
CHROMA = str(VENV_BIN / "chroma")
LOCAL = "local:all-MiniLM-L6-v2"
SEEDS = sorted(p.name for p in (Path(__file__).resolve().parent.parent / "corpus").glob("*.txt"))
EDITED = "004_d30e4aad0120d6ab.txt"  # the file the edit tests change
runner = CliRunner()


# -- helpers ---------------------------------------------------------------------------------------------------


def rag(home: Path, *args: str, **env: str | None) -> Result:
    """Run `rag --home HOME ARGS...` in-process; RAG_CHROMA_URL unset unless given."""
    env.setdefault("RAG_CHROMA_URL", None)
    return runner.invoke(app, ["--home", str(home), *args], env=env)


def ingest(home: Path, *paths: Path | str, flags: tuple[str, ...] = (), expect_exit: int = 0,
           **env: str | None) -> dict[str, Any]:
    result = rag(home, "ingest", "--json", *flags, *map(str, paths), **env)
    assert result.exit_code == expect_exit, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout)


def stored(home: Path, **settings: Any) -> dict[str, dict[str, Any]]:
    """chunk id -> {"text": ..., **metadata} for every chunk in the store under `home`."""
    store = Store(Settings(home=home, chroma_url=None, **settings))
    return {i: {"text": t, **m} for i, t, m in store.all_chunks()}


def ids_by_doc(chunks: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for chunk_id, record in chunks.items():
        out[record["doc"]].add(chunk_id)
    return dict(out)


def assert_store_matches_folder(home: Path, folder: Path, docs: list[str], size: int = 200, overlap: int = 40) -> None:
    """The store holds exactly the chunks `chunk_text` makes of each doc now, with true offsets and metadata."""
    chunks = stored(home)
    by_doc = ids_by_doc(chunks)
    assert sorted(by_doc) == sorted(docs)
    for doc_id in docs:
        doc = load_file(folder / doc_id, doc_id, 20_000_000)
        expected = chunk_text(doc_id, doc.text, size, overlap)
        assert by_doc[doc_id] == {c.id for c in expected}, doc_id
        for c in expected:
            record = chunks[c.id]
            assert record["text"] == c.text == doc.text[record["start"]:record["end"]]
            assert (record["start"], record["end"], record["index"]) == (c.start, c.end, c.index)
            assert record["doc_hash"] == doc.content_hash and record["title"] == doc.title
            assert record["source"] == str((folder / doc_id).resolve())


# -- first ingest, re-ingest, edit, delete ---------------------------------------------------------------------


def test_first_ingest_adds_every_seed_article(seed_corpus: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    summary = ingest(home, seed_corpus)
    assert set(summary) >= {"added", "updated", "unchanged", "removed", "skipped", "chunks", "embedded"}
    assert sorted(summary["added"]) == SEEDS and len(summary["added"]) == 5
    assert summary["updated"] == summary["unchanged"] == summary["removed"] == summary["skipped"] == []
    assert summary["chunks"] > 5 and summary["embedded"] == summary["chunks"]
    assert_store_matches_folder(home, seed_corpus, SEEDS)
    store = Store(Settings(home=home, chroma_url=None))
    assert store.embedder_name() == LOCAL
    assert store.count() == summary["chunks"]
    records = store.documents()
    assert sorted(records) == SEEDS
    assert records["003_aa75b43cd0448e09.txt"]["date"] == "2023-05-23"
    # The lexical index was built beside the store and lines up with it.
    assert sorted(store.lexical_index().ids) == sorted(stored(home))


def test_text_summary_without_json(seed_corpus: Path, tmp_path: Path) -> None:
    result = rag(tmp_path / "home", "ingest", str(seed_corpus))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("added 5, updated 0, unchanged 0, removed 0, skipped 0; embedded ")
    (seed_corpus / "notes.docx").write_bytes(b"PK\x03\x04")
    (seed_corpus / "old.docx").write_bytes(b"PK\x03\x04")
    (seed_corpus / "LICENSE").write_text("MIT")
    result = rag(tmp_path / "home", "ingest", str(seed_corpus))
    # which types were not read, so the user knows what to convert
    assert result.stdout.startswith("added 0, updated 0, unchanged 5, removed 0, skipped 0, ignored 3 of other types "
                                    "(2 .docx, no extension);")
    assert str(tmp_path / "home") in result.stdout


def test_reingest_unchanged_corpus_embeds_nothing_and_changes_nothing(seed_corpus: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ingest(home, seed_corpus)
    before = stored(home)
    store = Store(Settings(home=home, chroma_url=None))
    vectors_before = store.embeddings(sorted(before))
    second = ingest(home, seed_corpus)
    assert second["embedded"] == 0
    assert sorted(second["unchanged"]) == SEEDS
    assert second["added"] == second["updated"] == second["removed"] == []
    assert second["chunks"] == first["chunks"]
    assert stored(home) == before
    vectors_after = Store(Settings(home=home, chroma_url=None)).embeddings(sorted(before))
    assert all((vectors_before[i] == vectors_after[i]).all() for i in before)


def test_reingest_passes_over_unchanged_files_without_parsing_them(seed_corpus: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    ingest(home, seed_corpus)
    s = Settings(home=home, chroma_url=None)
    known = file_hashes(Store(s).documents(), s)
    assert len(known) == len(SEEDS)
    found = scan([seed_corpus], 1_000_000, known=known)
    assert sorted(found.unchanged) == SEEDS and found.documents == []
    # Same text from other bytes (CRLF line ends): parsed once, found unchanged, then recognised by its new bytes.
    path = seed_corpus / EDITED
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    found = scan([seed_corpus], 1_000_000, known=file_hashes(Store(s).documents(), s))
    assert [d.id for d in found.documents] == [EDITED]
    report = ingest(home, seed_corpus)
    assert report["embedded"] == 0 and EDITED in report["unchanged"]
    assert EDITED in scan([seed_corpus], 1_000_000, known=file_hashes(Store(s).documents(), s)).unchanged
    # Other chunk settings: every file is parsed and chunked again.
    other = Settings(home=home, chroma_url=None, chunk={"size": 120, "overlap": 20})
    known = file_hashes(Store(other).documents(), other)
    assert len(scan([seed_corpus], 1_000_000, known=known).documents) == len(SEEDS)


def test_appending_a_paragraph_updates_only_that_document(seed_corpus: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    ingest(home, seed_corpus)
    before = ids_by_doc(stored(home))
    with (seed_corpus / EDITED).open("a", encoding="utf-8") as f:
        f.write("\n\nA new closing paragraph was added by the editor on a later day. It names no new groups.\n")
    summary = ingest(home, seed_corpus)
    assert summary["updated"] == [EDITED]
    assert sorted(summary["unchanged"]) == sorted(set(SEEDS) - {EDITED})
    assert summary["added"] == summary["removed"] == []
    after = ids_by_doc(stored(home))
    for doc in set(SEEDS) - {EDITED}:
        assert after[doc] == before[doc], f"{doc} was not edited, its chunks must not change"
    new_ids = after[EDITED] - before[EDITED]
    # Only the chunk that absorbs the new paragraph is re-embedded; every earlier chunk keeps its id.
    assert 1 <= summary["embedded"] == len(new_ids) <= 2
    assert len(before[EDITED] - after[EDITED]) <= 1
    assert_store_matches_folder(home, seed_corpus, SEEDS)


def test_changing_a_sentence_replaces_that_documents_chunks(seed_corpus: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ingest(home, seed_corpus)
    before = ids_by_doc(stored(home))
    path = seed_corpus / EDITED
    text = path.read_text(encoding="utf-8")
    assert "26 drones" in text
    path.write_text(text.replace("26 drones", "thirty-one unmanned aerial drones"), encoding="utf-8")
    summary = ingest(home, seed_corpus)
    assert summary["updated"] == [EDITED] and len(summary["unchanged"]) == 4
    after = ids_by_doc(stored(home))
    assert all(after[d] == before[d] for d in set(SEEDS) - {EDITED})
    assert after[EDITED] != before[EDITED]
    assert summary["embedded"] == len(after[EDITED] - before[EDITED]) < len(after[EDITED]) + 1
    assert summary["embedded"] < first["embedded"] / 2
    chunks = stored(home)
    assert not any("26 drones" in c["text"] for c in chunks.values())
    assert any("thirty-one unmanned aerial drones" in c["text"] for c in chunks.values())
    assert_store_matches_folder(home, seed_corpus, SEEDS)


def test_a_folder_emptied_of_its_articles_is_pruned_to_an_empty_store(seed_corpus: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    ingest(home, seed_corpus)
    for name in SEEDS[1:]:
        (seed_corpus / name).unlink()
    (seed_corpus / SEEDS[0]).write_bytes(b"\x00\x01")  # the one file left is bad: no run of bad input prunes
    result = rag(home, "ingest", str(seed_corpus))
    assert result.exit_code == 2 and "every file was skipped" in result.stderr
    assert len(Store(Settings(home=home, chroma_url=None)).documents()) == 5
    (seed_corpus / SEEDS[0]).unlink()
    summary = ingest(home, seed_corpus)
    assert sorted(summary["removed"]) == SEEDS and summary["chunks"] == 0
    assert Store(Settings(home=home, chroma_url=None)).lexical_index().ids == []
    # with nothing left to prune, an empty folder is a mistake again
    result = rag(home, "ingest", str(seed_corpus))
    assert result.exit_code == 2 and "nothing to ingest: no supported files" in result.stderr


def test_deleted_file_is_pruned(seed_corpus: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ingest(home, seed_corpus)
    gone = "001_1f5acdca6a39af28.txt"
    n_gone = len(ids_by_doc(stored(home))[gone])
    (seed_corpus / gone).unlink()
    summary = ingest(home, seed_corpus)
    assert summary["removed"] == [gone]
    assert summary["embedded"] == 0 and len(summary["unchanged"]) == 4
    assert summary["chunks"] == first["chunks"] - n_gone
    assert gone not in Store(Settings(home=home, chroma_url=None)).documents()
    assert_store_matches_folder(home, seed_corpus, [d for d in SEEDS if d != gone])
    assert sorted(Store(Settings(home=home, chroma_url=None)).lexical_index().ids) == sorted(stored(home))


def test_a_moved_corpus_is_followed_and_its_deleted_files_pruned(seed_corpus: Path, tmp_path: Path) -> None:
    home, moved = tmp_path / "home", tmp_path / "moved"
    ingest(home, seed_corpus)
    seed_corpus.rename(moved)
    summary = ingest(home, moved)
    assert summary["embedded"] == 0 and len(summary["unchanged"]) == 5 and summary["removed"] == []
    assert {r["source"] for r in Store(Settings(home=home, chroma_url=None)).documents().values()} == {
        str(moved.resolve() / d) for d in SEEDS}
    gone = "001_1f5acdca6a39af28.txt"
    (moved / gone).unlink()
    assert ingest(home, moved)["removed"] == [gone]  # the store knows where its files are now


def test_a_corpus_ingested_again_through_its_parent_folder_is_the_same_documents(seed_corpus: Path,
                                                                                tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ingest(home, seed_corpus)
    parent = seed_corpus.parent
    (parent / "harbour.txt").write_text("The harbour master counted 14 trawlers in port on Friday.\n")
    summary = ingest(home, parent)  # ids relative to the parent would be "<corpus>/001_....txt": second copies
    assert sorted(summary["unchanged"]) == SEEDS and summary["added"] == ["harbour.txt"]
    assert summary["embedded"] == 1 and summary["chunks"] == first["chunks"] + 1
    assert sorted(Store(Settings(home=home, chroma_url=None)).documents()) == sorted([*SEEDS, "harbour.txt"])
    gone = "001_1f5acdca6a39af28.txt"
    (seed_corpus / gone).unlink()
    assert ingest(home, parent)["removed"] == [gone]  # the parent's ingest covers the folder ingested alone
    assert sorted(ingest(home, seed_corpus)["unchanged"]) == [d for d in SEEDS if d != gone]
    # a subfolder ingested alone, then emptied of its articles, is pruned by the parent's ingest too; the parent
    # also holds the first store ("home"), whose files are no articles
    (parent / "harbour.txt").unlink()
    alone = tmp_path / "alone"
    ingest(alone, seed_corpus)
    for name in SEEDS:
        (seed_corpus / name).unlink(missing_ok=True)
    summary = ingest(alone, parent)
    assert sorted(summary["removed"]) == [d for d in SEEDS if d != gone]
    assert summary["added"] == [] and summary["ignored"] == 0


def test_a_file_of_the_same_name_in_another_folder_never_replaces_a_stored_one(tmp_path: Path) -> None:
    home, first, second = tmp_path / "home", tmp_path / "a", tmp_path / "b"
    for folder, text in ((first, "The Alpha bakery sells 300 loaves of rye bread each day."),
                         (second, "The Beta brewery produces 12,000 litres of stout each week.")):
        folder.mkdir()
        (folder / "article.txt").write_text(text + "\n", encoding="utf-8")
    ingest(home, first)
    result = rag(home, "ingest", "--json", str(second))
    summary = json.loads(result.stdout)
    assert summary["updated"] == [] and summary["added"] == []
    assert summary["skipped"] == [{"path": str((second / "article.txt").resolve()),
                                   "reason": f"document id 'article.txt' already taken by "
                                             f"{(first / 'article.txt').resolve()}"}]
    assert "already taken" in result.stderr
    assert [c["text"] for c in stored(home).values()] == ["The Alpha bakery sells 300 loaves of rye bread each day."]


def test_deleted_file_is_kept_with_keep_removed(seed_corpus: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ingest(home, seed_corpus)
    before = stored(home)
    gone = "001_1f5acdca6a39af28.txt"
    (seed_corpus / gone).unlink()
    summary = ingest(home, seed_corpus, flags=("--keep-removed",))
    assert summary["removed"] == [] and summary["chunks"] == first["chunks"]
    assert stored(home) == before
    # ...until a normal ingest prunes it.
    assert ingest(home, seed_corpus)["removed"] == [gone]


def test_ingesting_one_file_directly_never_prunes_the_rest(seed_corpus: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ingest(home, seed_corpus)
    summary = ingest(home, seed_corpus / EDITED)
    assert summary["unchanged"] == [EDITED] and summary["removed"] == []
    assert summary["chunks"] == first["chunks"]


def test_a_deleted_file_named_again_is_pruned_and_nothing_else(seed_corpus: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # A file ingested on its own has no folder whose ingest would prune it: naming it again after deleting it does
    home = tmp_path / "home"
    alone = tmp_path / "note.txt"
    alone.write_text("The harbour master counted 14 trawlers in port on Friday.\n")
    ingest(home, seed_corpus)
    ingest(home, alone)
    alone.unlink()
    monkeypatch.chdir(tmp_path)  # named as typed, relative to the current folder
    kept = rag(home, "ingest", "--keep-removed", "note.txt")
    assert kept.exit_code == 2 and "skipped note.txt: no such file or folder; the version ingested before stays in " \
        "the store" in kept.stderr, kept.output
    assert "note.txt" in Store(Settings(home=home, chroma_url=None)).documents()
    summary = ingest(home, "note.txt", tmp_path / "never-was.txt", expect_exit=2)
    assert summary["removed"] == ["note.txt"] and summary["chunks"] == sum(
        len(v) for v in ids_by_doc(stored(home)).values())
    assert [s["path"] for s in summary["skipped"]] == [str(tmp_path / "never-was.txt")]  # the other one is a mistake
    assert sorted(Store(Settings(home=home, chroma_url=None)).documents()) == SEEDS
    again = rag(home, "ingest", "note.txt")
    assert again.exit_code == 2 and "nothing to ingest" in again.stderr


def test_changed_chunk_settings_rechunk_every_document(seed_corpus: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    ingest(home, seed_corpus)
    summary = ingest(home, seed_corpus, RAG_CHUNK__SIZE="100", RAG_CHUNK__OVERLAP="10")
    assert sorted(summary["updated"]) == SEEDS
    assert_store_matches_folder(home, seed_corpus, SEEDS, size=100, overlap=10)
    assert ingest(home, seed_corpus, RAG_CHUNK__SIZE="100", RAG_CHUNK__OVERLAP="10")["embedded"] == 0


# -- bad input -------------------------------------------------------------------------------------------------


def test_bad_files_are_reported_and_the_others_stay(seed_corpus: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ingest(home, seed_corpus)
    (seed_corpus / "binary.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00\x00")
    (seed_corpus / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me".encode("latin-1"))
    (seed_corpus / "empty.md").write_bytes(b"")
    (seed_corpus / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"A Latin-1 file name.\n")
    result = rag(home, "ingest", "--json", str(seed_corpus))
    # bad input exits 2, after storing what was good and printing the summary
    assert result.exit_code == 2, result.output
    assert "error: 4 files skipped (named above); every other file is stored" in result.stderr
    summary = json.loads(result.stdout)
    skipped = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert skipped == {
        str(seed_corpus / "binary.txt"): "binary content (NUL bytes) in a text file",
        str(seed_corpus / "latin1.txt"): "not valid UTF-8 (byte 0xe9 at offset 3)",
        str(seed_corpus / "empty.md"): "empty file",
        str(seed_corpus / "caf\\xe9.txt"): "the file name is not valid UTF-8: rename the file",
    }
    for path in skipped:
        assert f"skipped {path}:" in result.stderr
    assert sorted(summary["unchanged"]) == SEEDS and summary["chunks"] == first["chunks"]
    assert_store_matches_folder(home, seed_corpus, SEEDS)


def test_bad_new_file_beside_good_new_files_on_first_ingest(seed_corpus: Path, tmp_path: Path) -> None:
    (seed_corpus / "big.txt").write_text("Too big. " * 20_000)  # 180 kB, over a 0.1 MB limit
    result = rag(tmp_path / "home", "ingest", str(seed_corpus), RAG_INGEST__MAX_FILE_MB="0.1")
    assert result.exit_code == 2 and result.stdout.startswith("added 5, updated 0, unchanged 0, removed 0, skipped 1;")
    assert "error: 1 file skipped (named above)" in result.stderr
    summary = ingest(tmp_path / "home", seed_corpus, RAG_INGEST__MAX_FILE_MB="0.1", expect_exit=2)
    assert summary["unchanged"] == SEEDS and summary["added"] == []
    (skip,) = summary["skipped"]
    assert skip["path"] == str(seed_corpus / "big.txt") and "over the 0.1 MB limit" in skip["reason"]


@pytest.mark.parametrize("damage", [b"\xff\xfe\x00\x00broken", b"caf\xe9", b""], ids=["binary", "latin1", "empty"])
def test_stored_file_that_becomes_unreadable_keeps_its_chunks(seed_corpus: Path, tmp_path: Path,
                                                              damage: bytes) -> None:
    home = tmp_path / "home"
    first = ingest(home, seed_corpus)
    before = stored(home)
    victim = seed_corpus / "002_02ef5c51c639ed40.txt"
    original = victim.read_bytes()
    victim.write_bytes(damage)
    result = rag(home, "ingest", "--json", str(seed_corpus))
    summary = json.loads(result.stdout)
    assert result.exit_code == 2 and [s["path"] for s in summary["skipped"]] == [str(victim)]
    assert "the version ingested before stays in the store" in result.stderr
    assert summary["removed"] == [] and summary["updated"] == []
    assert summary["chunks"] == first["chunks"]
    assert stored(home) == before, "bad input must never delete what is stored"
    victim.write_bytes(original)
    assert ingest(home, seed_corpus)["embedded"] == 0


def test_mistyped_path_fails_without_creating_a_store(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = rag(home, "ingest", str(tmp_path / "nope"))
    assert result.exit_code == 2 and "no such file or folder" in result.stderr
    assert not home.exists()


def test_nothing_ingestable_exits_2_and_keeps_the_store(seed_corpus: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ingest(home, seed_corpus)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.txt").write_bytes(b"\x00\x01\x02")
    (bad / "b.md").write_bytes(b"\xff\xff")
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    cases = {
        "all bad": ([str(bad)], ["every file was skipped", f"skipped {bad / 'a.txt'}", f"skipped {bad / 'b.md'}"]),
        "empty folder": ([str(empty)], ["no supported files"]),
        "missing": ([str(tmp_path / "nope")], ["no such file or folder", str(tmp_path / "nope")]),
        "unsupported": ([str(tmp_path / "x.docx")], ["unsupported file type .docx"]),
    }
    (tmp_path / "x.docx").write_bytes(b"PK")
    for name, (args, messages) in cases.items():
        result = rag(home, "ingest", *args)
        assert result.exit_code == 2, (name, result.output)
        for message in messages:
            assert message in result.stderr, (name, result.stderr)
        assert result.stdout == ""
    assert stored(home) and Store(Settings(home=home, chroma_url=None)).count() == first["chunks"]


# -- one writer at a time --------------------------------------------------------------------------------------


def test_second_writer_gets_store_is_busy_quickly(seed_corpus: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ingest(home, seed_corpus)
    (seed_corpus / "new.txt").write_text("A new article that must not be written while the store is busy.\n")
    holder = Store(Settings(home=home, chroma_url=None))
    with holder.write_lock():
        # Another process: the installed `rag` executable.
        t0 = time.monotonic()
        proc = subprocess.run([RAG, "--home", str(home), "ingest", str(seed_corpus)], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "RAG_CHROMA_URL": ""})
        elapsed = time.monotonic() - t0
        assert proc.returncode == 2, (proc.stdout, proc.stderr)
        assert "store is busy" in proc.stderr and str(home / "write.lock") in proc.stderr
        assert elapsed < 60, f"the second writer took {elapsed:.1f}s to give up"
        # The same in-process: the lock wait is bounded (2 s), not a hang.
        t0 = time.monotonic()
        result = rag(home, "ingest", str(seed_corpus))
        assert result.exit_code == 2 and "store is busy" in result.stderr
        assert time.monotonic() - t0 < 15
    assert "new.txt" not in Store(Settings(home=home, chroma_url=None)).documents()
    assert Store(Settings(home=home, chroma_url=None)).count() == first["chunks"]
    # Once the lock is free, the same command succeeds.
    assert ingest(home, seed_corpus)["added"] == ["new.txt"]


def test_two_concurrent_ingest_processes_take_turns(seed_corpus: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "RAG_CHROMA_URL": ""}
    cmd = [RAG, "--home", str(home), "ingest", "--json", str(seed_corpus)]
    # The first to take the lock writes; the other waits 2 s for it and is told the store is busy, or, when the
    # first was done by then (a fast embedder), finds every chunk written and embeds nothing.
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 2], [0, 0]), outs
    summaries = [json.loads(o[0]) for p, o in zip(procs, outs, strict=True) if p.returncode == 0]
    assert all("store is busy" in o[1] for p, o in zip(procs, outs, strict=True) if p.returncode == 2)
    winner = max(summaries, key=lambda s: s["embedded"])  # the one that wrote (processes end in either order)
    assert sum(s["embedded"] for s in summaries) == winner["embedded"] == winner["chunks"]  # each chunk once
    assert sorted(winner["added"]) == SEEDS
    # The store is whole: a re-ingest finds every document unchanged.
    again = ingest(home, seed_corpus)
    assert again["embedded"] == 0 and sorted(again["unchanged"]) == SEEDS
    assert_store_matches_folder(home, seed_corpus, SEEDS)


# -- embedder mismatch -----------------------------------------------------------------------------------------


def test_other_embedder_on_the_collection_is_a_clear_error(ingested_home: Settings, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(ingested_home.home, home)
    s = Settings(home=home, chroma_url=None)
    store = Store(s)
    assert store.chunks_collection(LOCAL) is not None  # the right embedder is fine
    with pytest.raises(StoreError, match="built with local:all-MiniLM-L6-v2, not openai:text-embedding-3-small"):
        Store(s).chunks_collection("openai:text-embedding-3-small")
    before = stored(home)
    fake = FakeEmbedder(name="fake:hashing-384")
    from rag.ingest import scan

    with pytest.raises(StoreError, match="built with local:all-MiniLM-L6-v2, not fake:hashing-384"):
        sync(Store(s), scan([tmp_path / "nowhere"], 1_000_000), s, fake)
    assert fake.calls == [] and stored(home) == before


def test_cli_with_another_embedder_exits_2_with_the_reason(ingested_home: Settings, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(ingested_home.home, home)
    corpus = Path(next(iter(Store(ingested_home).documents().values()))["root"])
    result = rag(home, "ingest", str(corpus), RAG_EMBED__PROVIDER="openai", OPENAI_API_KEY="sk-test-not-used",
                 OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    assert result.exit_code == 2, result.output
    assert "built with local:all-MiniLM-L6-v2, not openai:text-embedding-3-small" in result.stderr


# -- batches ---------------------------------------------------------------------------------------------------


def test_writes_are_batched_under_the_servers_max_batch_size(seed_corpus: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.embed import LocalEmbedder
    from rag.ingest import scan

    s = Settings(home=tmp_path / "home", chroma_url=None)
    store = Store(s)
    monkeypatch.setattr(store.client, "get_max_batch_size", lambda: 3)
    collection = store.chunks_collection(LOCAL, create=True)
    sizes: list[int] = []
    real_upsert = collection.upsert

    def upsert(**kwargs: Any) -> None:
        sizes.append(len(kwargs["ids"]))
        real_upsert(**kwargs)

    monkeypatch.setattr(collection, "upsert", upsert)
    report = sync(store, scan([seed_corpus], 1_000_000), s, LocalEmbedder())
    assert sizes and max(sizes) <= 3 and sum(sizes) == report.embedded == report.chunks


class InterruptedEmbedder:
    """The local model, interrupted as Ctrl-C interrupts it after `batches` batches; counts what it embeds."""

    name = LOCAL

    def __init__(self, batches: int | None = None) -> None:
        from rag.embed import LocalEmbedder

        self.model, self.batches, self.embedded = LocalEmbedder(), batches, 0

    def embed_documents(self, texts: list[str]) -> Any:
        if self.batches is not None and self.batches <= 0:
            raise KeyboardInterrupt
        if self.batches is not None:
            self.batches -= 1
        self.embedded += len(texts)
        return self.model.embed_documents(texts)

    def embed_query(self, text: str) -> Any:
        return self.model.embed_query(text)


def test_an_interrupted_ingest_is_finished_by_the_next_without_embedding_again(
        seed_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(home=tmp_path / "home", chroma_url=None)
    store = Store(s)
    monkeypatch.setattr(store.client, "get_max_batch_size", lambda: 5)
    first = InterruptedEmbedder(batches=2)
    with pytest.raises(KeyboardInterrupt):
        sync(store, scan([seed_corpus], 1_000_000), s, first)
    assert first.embedded == 10 and not store.documents()  # chunks written, records not yet
    second = InterruptedEmbedder()
    report = sync(store, scan([seed_corpus], 1_000_000), s, second)
    assert second.embedded == report.chunks - 10  # the ten chunks written before are not embedded again
    assert sorted(report.added) == SEEDS
    assert_store_matches_folder(s.home, seed_corpus, SEEDS)


def test_ctrl_c_during_ingest_says_what_the_store_holds(seed_corpus: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("rag.store.sync", interrupted)
    result = rag(tmp_path / "home", "ingest", str(seed_corpus))
    assert result.exit_code == 130
    assert "interrupted: the store still holds every document it held before" in result.stderr


# -- a real Chroma server --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`chroma run` on a free port of 127.0.0.1, shared by the module's tests."""
    with real_chroma_server(tmp_path_factory.mktemp("chroma-server")) as url:
        yield url


def test_ingest_into_a_chroma_server(chroma_server: str, seed_corpus: Path, tmp_path: Path) -> None:
    import chromadb

    home = tmp_path / "home"
    first = ingest(home, seed_corpus, RAG_CHROMA_URL=chroma_server)
    assert sorted(first["added"]) == SEEDS and first["chunks"] > 5 and first["embedded"] == first["chunks"]
    assert not (home / "chroma").exists(), "with RAG_CHROMA_URL nothing is written to the embedded store"
    port = int(chroma_server.rsplit(":", 1)[1])
    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    collection = client.get_collection("articles")
    assert collection.count() == first["chunks"]
    assert collection.metadata["embedder"] == LOCAL
    got = collection.get(include=["documents", "metadatas"])
    for text, meta in zip(got["documents"], got["metadatas"], strict=True):
        source = load_file(seed_corpus / meta["doc"], meta["doc"], 20_000_000).text
        assert source[meta["start"]:meta["end"]] == text
    second = ingest(home, seed_corpus, RAG_CHROMA_URL=chroma_server)
    assert second["embedded"] == 0 and sorted(second["unchanged"]) == SEEDS
    assert second["chunks"] == first["chunks"] == collection.count()


def test_unreachable_chroma_server_is_a_clear_error(seed_corpus: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = rag(tmp_path / "home", "ingest", str(seed_corpus), RAG_CHROMA_URL=url)
    assert result.exit_code == 2
    assert f"cannot reach the Chroma server at {url}" in result.stderr


def test_processes_opening_a_fresh_store_at_once_do_not_crash(tmp_path: Path) -> None:
    # Regression: Chroma creates its tables on first open; concurrent first opens used to crash with
    # "table collections already exists" / "database is locked" tracebacks instead of waiting their turn.
    home, go = tmp_path / "home", tmp_path / "go"
    script = (
        "import sys, time, pathlib; from rag.config import Settings; from rag.store import Store\n"
        "pathlib.Path(sys.argv[2] + '.' + sys.argv[3]).touch()\n"
        "while not pathlib.Path(sys.argv[2]).exists(): time.sleep(0.005)\n"  # start together, imports done
        "print(Store(Settings(home=sys.argv[1], chroma_url=None)).count())\n"
    )
    n = 4
    procs = [subprocess.Popen([sys.executable, "-c", script, str(home), str(go), str(i)], cwd=tmp_path,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(n)]
    try:
        deadline = time.monotonic() + 120
        while not all(Path(f"{go}.{i}").exists() for i in range(n)) and time.monotonic() < deadline:
            time.sleep(0.05)
        go.touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * n, [o[1][-800:] for o in outs]
    assert [o[0].strip() for o in outs] == ["0"] * n


def test_an_unreachable_embedding_server_is_one_line_and_binds_nothing(seed_corpus: Path, tmp_path: Path) -> None:
    # The first ingest with the OpenAI embedder fails at its first batch: the store must not stay bound to an
    # embedder that never wrote a vector, or every later ingest with the local one would be refused.
    home = tmp_path / "home"
    server = {"RAG_EMBED__PROVIDER": "openai", "OPENAI_API_KEY": "sk-test",
              "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"}
    result = rag(home, "ingest", str(seed_corpus), **server)
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.strip().splitlines() == [
        f"error: embedding with openai:text-embedding-3-small failed: cannot reach the model server at "
        f"{server['OPENAI_BASE_URL']}"]
    assert Store(Settings(home=home, chroma_url=None)).embedder_name() is None
    no_key = rag(home, "ingest", str(seed_corpus), RAG_EMBED__PROVIDER="openai", OPENAI_API_KEY=None,
                 OPENAI_BASE_URL=None)
    assert no_key.exit_code == 2 and no_key.stderr.startswith(
        "error: the openai:text-embedding-3-small embedder needs OPENAI_API_KEY"), no_key.output
    assert ingest(home, seed_corpus, RAG_EMBED__PROVIDER="local")["added"] == SEEDS
    assert Store(Settings(home=home, chroma_url=None)).embedder_name() == LOCAL


def test_a_store_folder_that_is_a_file_or_an_empty_name_is_refused(seed_corpus: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a store")
    for args in (["ingest", str(seed_corpus)], ["ask", "Who?"]):
        result = rag(a_file, *args)
        assert result.exit_code == 2 and result.stderr.strip() == (
            f"error: the store folder {a_file} (--home, RAG_HOME) is a file"), result.output
    assert a_file.read_text() == "not a store"
    empty = runner.invoke(app, ["--home", "", "ingest", str(seed_corpus)])  # "--home $UNSET_VARIABLE"
    assert empty.exit_code == 2 and empty.stderr.strip() == "error: --home is empty: name the store folder"
    monkeypatch.setenv("RAG_HOME", "")  # unset, as for any empty RAG_ variable: the default, not the current folder
    assert Settings.load().home == Path(".rag")


def test_a_store_inside_the_corpus_is_not_ingested_as_articles(seed_corpus: Path) -> None:
    home = seed_corpus / "store"  # its lexical index holds tokenizer.txt, a supported type
    first = ingest(home, seed_corpus)
    assert (home / "bm25").is_dir() and sorted(first["added"]) == SEEDS
    again = ingest(home, seed_corpus)
    assert again["added"] == [] and sorted(again["unchanged"]) == SEEDS


def test_ingest_into_a_log_says_how_far_it_got(seed_corpus: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a terminal there is no bar; a long ingest in CI still shows it is alive, a line at a time.
    from rag import cli

    monkeypatch.setattr(cli, "LOG_PROGRESS_EVERY_S", 0.0)
    result = rag(tmp_path / "home", "ingest", str(seed_corpus))
    assert result.exit_code == 0, result.output
    total = int(re.search(r"embedded (\d+) chunks", result.stdout).group(1))
    assert total > 0 and f"embedding chunks: {total}/{total}" in result.stderr.splitlines()


def test_an_edit_updates_the_lexical_index_with_that_document_alone(seed_corpus: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.chunk import doc_of
    from rag.lexical import LexicalIndex

    home = tmp_path / "home"
    ingest(home, seed_corpus)
    updates: list[tuple[list[str], list[str]]] = []
    update = LexicalIndex.updated

    def recorded(self: LexicalIndex, dropped: Any, ids: Any, texts: Any, *args: Any) -> LexicalIndex:
        updates.append((list(dropped), list(ids)))
        return update(self, dropped, ids, texts, *args)

    monkeypatch.setattr(LexicalIndex, "updated", recorded)
    monkeypatch.setattr(LexicalIndex, "build", None)  # a rebuild from every chunk would fail here
    path = seed_corpus / EDITED
    path.write_text(path.read_text() + "\n\nA closing sentence about a riverboat regatta.\n")
    ingest(home, seed_corpus)
    [(dropped, added)] = updates
    assert {doc_of(i) for i in dropped} == {doc_of(i) for i in added} == {EDITED}
    index = Store(Settings(home=home, chroma_url=None)).lexical_index()
    assert sorted(index.ids) == sorted(stored(home))
    assert [doc_of(i) for i, _ in index.search("riverboat regatta", k=3)] == [EDITED]
