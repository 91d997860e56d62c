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
GOLD = ROOT / "evals" / "gold" / "seeds.jsonl"
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
