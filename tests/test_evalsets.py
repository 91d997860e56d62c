"""A folder of gold sets: discovery, the fixed dev/test split, macro average and spread, and `rag eval --gold
FOLDER` end to end (the real embedding model and Chroma store, one store per set)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag import evalsets
from rag.cli import app
from rag.evals import EvalReport, GoldError, GoldItem

runner = CliRunner()


def make_set(root: Path, name: str, items: list[dict], text: str) -> Path:
    folder = root / name
    (folder / "corpus").mkdir(parents=True)
    (folder / "corpus" / "a.txt").write_text(text, encoding="utf-8")
    (folder / "gold.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    return folder


BRIDGE = "The bridge opened in 1932 after four years of work. It carries six lanes of traffic."
ITEMS = [
    {"id": "a1", "question": "When did the bridge open?", "answers": ["1932"], "split": "dev",
     "evidence": [{"doc": "a.txt", "quote": "The bridge opened in 1932 after four years of work."}],
     "answerable": True},
    {"id": "a2", "question": "How many lanes does the bridge carry?", "answers": ["six"], "split": "test",
     "evidence": [{"doc": "a.txt", "quote": "It carries six lanes of traffic."}], "answerable": True},
    {"id": "u1", "question": "Who painted the bridge?", "answers": [], "evidence": [], "answerable": False,
     "split": "test"},
]


def test_discover_finds_each_set_folder(tmp_path: Path) -> None:
    make_set(tmp_path, "b", ITEMS, BRIDGE)
    make_set(tmp_path, "a", ITEMS, BRIDGE)
    (tmp_path / "notes").mkdir()
    assert [s.name for s in evalsets.discover(tmp_path)] == ["a", "b"]
    assert [s.name for s in evalsets.discover(tmp_path / "a")] == ["a"]  # a set folder is a folder of one set


def test_discover_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(GoldError, match="no gold sets"):
        evalsets.discover(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "gold.jsonl").write_text("")
    with pytest.raises(GoldError, match="no corpus/"):
        evalsets.discover(tmp_path)


def item(i: int, split: str | None = None) -> GoldItem:
    return GoldItem(f"q{i}", "?", (), (), False, (), split)


def test_the_split_is_fixed_by_the_item() -> None:
    assert evalsets.split_of("s", item(1, "test")) == "test"
    halves = [evalsets.split_of("s", item(i)) for i in range(200)]
    assert halves == [evalsets.split_of("s", item(i)) for i in range(200)]  # deterministic
    assert 70 < halves.count("dev") < 130
    picked = evalsets.select("s", [item(i) for i in range(20)], "dev")
    assert all(evalsets.split_of("s", i) == "dev" for i in picked)
    assert len(evalsets.select("s", [item(i) for i in range(20)], "all")) == 20


def test_macro_average_and_spread() -> None:
    def report(er: float, n: int) -> EvalReport:
        return EvalReport({"evidence_recall": er, "abstention_accuracy": None, "n_items": float(n)}, [])

    sets = evalsets.SetsReport({"a": report(0.9, 10), "b": report(0.6, 30)})
    assert sets.macro == {"evidence_recall": 0.75, "abstention_accuracy": None, "n_items": 40.0}
    assert sets.spread == {"evidence_recall": 0.3}


@pytest.mark.integration
def test_eval_over_a_folder_of_sets(tmp_path: Path) -> None:
    gold = tmp_path / "gold"
    make_set(gold, "bridge", ITEMS, BRIDGE)
    make_set(gold, "bridge2", ITEMS, BRIDGE)
    home, baseline = str(tmp_path / "home"), str(tmp_path / "baseline.json")
    common = ["--home", home, "eval", "--gold", str(gold), "--baseline", baseline, "--backend", "extractive"]

    early = runner.invoke(app, [*common, "--check"])  # no baseline: said before any set is ingested
    assert early.exit_code == 2 and "no all baseline" in early.stderr
    assert not (tmp_path / "home").exists()

    result = runner.invoke(app, [*common, "--split", "test", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["sets"]) == {"bridge", "bridge2"} and data["metrics"]["n_items"] == 4
    assert {i["id"] for i in data["items"]} == {"a2", "u1"} and {i["set"] for i in data["items"]} == {
        "bridge", "bridge2"}
    assert (tmp_path / "home" / "evalsets" / "bridge" / "chroma").exists()  # each set in a store of its own

    table = runner.invoke(app, [*common, "--split", "test", "--update-baseline"])
    assert table.exit_code == 0 and "macro" in table.stdout and "spread" in table.stdout
    assert runner.invoke(app, [*common, "--split", "test", "--check"]).exit_code == 0
    accepted = json.loads(Path(baseline).read_text())
    accepted["sets"]["bridge"]["test"]["extractive"]["abstention_accuracy"] = 2.0  # a bar no run can reach
    Path(baseline).write_text(json.dumps(accepted))
    failed = runner.invoke(app, [*common, "--split", "test", "--check"])
    assert failed.exit_code == 1 and "bridge: abstention_accuracy" in failed.stderr


def test_a_bad_split_is_bad_usage(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--home", str(tmp_path), "eval", "--gold", str(tmp_path), "--split", "train"])
    assert result.exit_code == 2 and "--split" in result.stderr


def test_a_citation_that_is_not_its_sources_span_stops_the_eval() -> None:
    from rag.evals import ItemResult

    def report(quote: str) -> EvalReport:
        cited = [{"n": 1, "doc": "a.txt", "start": 4, "end": 10, "quote": quote}]
        return EvalReport({}, [ItemResult("a1", "q", True, "a [1]", False, cited, [], [])])

    texts = {"a.txt": BRIDGE}.get
    evalsets.check_quotes(report("bridge"), texts)
    with pytest.raises(GoldError, match=r"a1: citation \[1\] is not the span 4-10 of a.txt"):
        evalsets.check_quotes(report("bridgE"), texts)
