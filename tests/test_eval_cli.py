"""`rag eval` end to end on the seed corpus with the real model and Chroma; record / replay of model replies."""

import json
import shutil
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from typer.testing import CliRunner

from rag import evals
from rag.answer import AnswerChain
from rag.cli import app
from rag.config import Settings
from rag.embed import LocalEmbedder
from rag.llm import ModelError, ResponseCache
from rag.retrieve import Retriever
from rag.store import Store

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "evals" / "gold" / "seeds" / "gold.jsonl"
pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("eval-home")
    corpus = tmp_path_factory.mktemp("corpus")
    for f in (ROOT / "corpus").glob("*.txt"):
        shutil.copy(f, corpus / f.name)
    result = runner.invoke(app, ["--home", str(home), "ingest", str(corpus)])
    assert result.exit_code == 0, result.output
    return home


def test_eval_json_contract_and_junit(home, tmp_path):
    junit = tmp_path / "eval.xml"
    result = runner.invoke(app, ["--home", str(home), "eval", "--gold", str(GOLD), "--json",
                                 "--junit-xml", str(junit)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in ["evidence_recall", "citation_precision", "answer_str_em", "answer_f1", "attributed_accuracy",
                "abstention_accuracy", "retrieval_recall_at_k", "n_items"]:
        assert 0.0 <= report["metrics"][key] <= (1.0 if key != "n_items" else 1000)
    assert report["metrics"]["n_items"] == len(report["items"]) >= 40
    failed = [i for i in report["items"] if not i["passed"]]
    assert f'failures="{len(failed)}"' in junit.read_text()


def test_check_fails_and_names_the_metric_when_below_baseline(home, tmp_path):
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"tolerance": 0.0, "backends": {"extractive": {"evidence_recall": 1.01}}}))
    result = runner.invoke(app, ["--home", str(home), "eval", "--gold", str(GOLD), "--check",
                                 "--baseline", str(baseline)])
    assert result.exit_code == 1
    assert "regression: evidence_recall" in result.stderr


def test_update_baseline_then_check_passes(home, tmp_path):
    baseline = tmp_path / "baseline.json"
    assert runner.invoke(app, ["--home", str(home), "eval", "--gold", str(GOLD), "--update-baseline",
                               "--baseline", str(baseline)]).exit_code == 0
    assert "extractive" in json.loads(baseline.read_text())["backends"]
    result = runner.invoke(app, ["--home", str(home), "eval", "--gold", str(GOLD), "--check",
                                 "--baseline", str(baseline)])
    assert result.exit_code == 0, result.stderr


def test_bad_gold_file_exit_2_with_line_numbers(home, tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = GOLD.read_text(encoding="utf-8").splitlines()[0]
    bad.write_text(good + "\n{oops\n" + good.replace("Russian Defense Ministry", "Russian Navy") + "\n")
    result = runner.invoke(app, ["--home", str(home), "eval", "--gold", str(bad)])
    assert result.exit_code == 2
    assert "bad.jsonl:2: not JSON" in result.stderr
    assert "bad.jsonl:3:" in result.stderr and "not an exact substring" in result.stderr


def test_unknown_backend_exits_2_before_any_work(home):
    result = runner.invoke(app, ["--home", str(home), "eval", "--gold", str(GOLD), "--backend", "gpt9"])
    assert result.exit_code == 2
    assert "unknown backend 'gpt9'" in result.stderr
    assert result.stdout == ""


def test_record_then_replay_gives_the_same_answers_offline(home, tmp_path):
    s = Settings(home=home)
    retriever = Retriever(Store(s), LocalEmbedder(), s.retrieve)
    gold = evals.load_gold(GOLD, evals.store_texts(retriever.store))[:4]
    cache_file = tmp_path / "replies.json"

    recording = AnswerChain(retriever, s.answer, backend="openai",
                            model=FakeListChatModel(responses=["Kursk schools went online [1]."] * 4))
    recording.cache = ResponseCache(cache_file, "record")
    first = evals.evaluate(recording, gold)
    recording.cache.save()

    class Unreachable(FakeListChatModel):
        def _call(self, *args, **kwargs):
            raise AssertionError("replay must not call the model")

    replaying = AnswerChain(retriever, s.answer, backend="openai", model=Unreachable(responses=[""]))
    replaying.cache = ResponseCache(cache_file, "replay")
    second = evals.evaluate(replaying, gold)
    assert [i.answer for i in first.items] == [i.answer for i in second.items]
    assert first.metrics == second.metrics

    other = AnswerChain(retriever, s.answer, backend="openai", model=Unreachable(responses=[""]))
    other.cache = ResponseCache(cache_file, "replay")
    with pytest.raises(ModelError, match="no recorded reply"):
        other.ask("A question that was never recorded?")


def test_check_and_update_baseline_together_are_refused_and_the_baseline_kept(home, tmp_path):
    baseline = tmp_path / "baseline.json"
    accepted = json.dumps({"tolerance": 0.0, "backends": {"extractive": {"evidence_recall": 1.0}}})
    baseline.write_text(accepted)
    result = runner.invoke(app, ["--home", str(home), "eval", "--gold", str(GOLD), "--check", "--update-baseline",
                                 "--baseline", str(baseline)])
    assert result.exit_code == 2 and "exclude each other" in result.stderr
    assert baseline.read_text() == accepted and result.stdout == ""


@pytest.mark.parametrize("tolerance", ["nan", "-1", "1.5"])
def test_a_tolerance_that_could_never_or_always_fail_is_refused(home, tolerance):
    result = runner.invoke(app, ["--home", str(home), "eval", "--gold", str(GOLD), "--check", "--tolerance", tolerance])
    assert result.exit_code == 2 and "--tolerance must be a number from 0 to 1" in result.stderr


def test_outputs_are_checked_before_the_run_and_their_folders_made(home, tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text("\n".join(GOLD.read_text(encoding="utf-8").splitlines()[:2]) + "\n", encoding="utf-8")
    (tmp_path / "a-folder.xml").mkdir()
    refused = runner.invoke(app, ["--home", str(home), "eval", "--gold", str(gold),
                                  "--junit-xml", str(tmp_path / "a-folder.xml")])
    assert refused.exit_code == 2 and "it is a folder" in refused.stderr and refused.stdout == ""
    junit, baseline = tmp_path / "reports" / "eval.xml", tmp_path / "new" / "baseline.json"
    result = runner.invoke(app, ["--home", str(home), "eval", "--gold", str(gold), "--junit-xml", str(junit),
                                 "--update-baseline", "--baseline", str(baseline)])
    assert result.exit_code == 0, result.output
    assert 'tests="2"' in junit.read_text()
    # two answerable items: abstention was not measured, so the baseline holds null, and --check passes on it
    assert json.loads(baseline.read_text())["backends"]["extractive"]["abstention_accuracy"] is None
    checked = runner.invoke(app, ["--home", str(home), "eval", "--gold", str(gold), "--check",
                                  "--baseline", str(baseline)])
    assert checked.exit_code == 0, checked.output
    assert "abstention_accuracy" in checked.stdout and "n/a" in checked.stdout


def test_an_error_shows_the_quote_as_written(home, tmp_path):
    q10 = next(line for line in GOLD.read_text(encoding="utf-8").splitlines() if '"q10"' in line)
    assert "[and]" in q10
    bad = tmp_path / "bad.jsonl"
    bad.write_text(q10.replace("20 armored", "21 armored") + "\n", encoding="utf-8")
    result = runner.invoke(app, ["--home", str(home), "eval", "--gold", str(bad)])
    assert result.exit_code == 2 and "gun, [and] 2' matches, then '1 armored" in result.stderr  # no markup eaten


def test_record_with_the_extractive_backend_says_it_has_nothing_to_do(home, tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text(GOLD.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    result = runner.invoke(app, ["--home", str(home), "eval", "--gold", str(gold),
                                 "--record", str(tmp_path / "replies.json")])
    assert result.exit_code == 0 and "the extractive backend calls no model" in result.stderr
    assert not (tmp_path / "replies.json").exists()


def test_a_source_changed_since_ingest_stops_the_eval_with_one_line(tmp_path):
    corpus, home = tmp_path / "corpus", tmp_path / "home"
    corpus.mkdir()
    article = next((ROOT / "corpus").glob("004_*.txt"))
    shutil.copy(article, corpus / article.name)
    assert runner.invoke(app, ["--home", str(home), "ingest", str(corpus)]).exit_code == 0
    gold = tmp_path / "gold.jsonl"
    gold.write_text(next(line for line in GOLD.read_text(encoding="utf-8").splitlines() if article.name in line)
                    + "\n", encoding="utf-8")
    assert runner.invoke(app, ["--home", str(home), "eval", "--gold", str(gold)]).exit_code == 0
    # offsets of citations point into the stored text: quotes found in another text would score wrongly
    (corpus / article.name).write_text("A new first line.\n" + article.read_text(encoding="utf-8"), encoding="utf-8")
    result = runner.invoke(app, ["--home", str(home), "eval", "--gold", str(gold)])
    assert result.exit_code == 2 and "changed since it was ingested" in result.stderr, result.output
    (corpus / article.name).unlink()
    result = runner.invoke(app, ["--home", str(home), "eval", "--gold", str(gold)])
    assert result.exit_code == 2 and "cannot read its source file" in result.stderr, result.output


def test_files_named_by_options_that_cannot_be_read_are_one_line_errors(home, tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    (tmp_path / "binary.json").write_bytes(b"\x7fELF\x02\x01\x01\x00\xd0\xff")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "null-reply.json").write_text('{"key": null}')
    server = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}  # never called: each case fails before the first question
    cases = [
        (["--gold", str(folder)], {}, "a-folder: no gold sets"),
        (["--baseline", str(folder)], {}, "a-folder: a folder, not a baseline file"),
        (["--backend", "openai", "--record", str(folder)], server, "cannot write the response cache"),
        (["--backend", "openai", "--replay", str(folder)], server, "a-folder: a folder, not a response cache"),
        (["--backend", "openai", "--replay", str(tmp_path / "binary.json")], server, "binary.json: not valid UTF-8"),
        (["--backend", "openai", "--replay", str(tmp_path / "list.json")], server,
         "list.json: not a response cache (expected a JSON object of recorded replies)"),
        (["--backend", "openai", "--replay", str(tmp_path / "null-reply.json")], server,
         "null-reply.json: not a response cache"),
        (["--backend", "openai", "--replay", str(tmp_path / "none.json")], server,
         "none.json: no such response cache (make one with --record)"),
    ]
    for args, env, message in cases:
        result = runner.invoke(app, ["--home", str(home), "eval", *args], env=env)
        assert result.exit_code == 2, (args, result.output, result.exception)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, result.stderr)
        assert result.stdout == ""
