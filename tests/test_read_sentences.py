"""The sentence reader: numbered sentences in, JSON evidence ids out, every citation a whole source sentence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from rag.answer import AnswerChain
from rag.chunk import count_tokens, sentence_spans
from rag.config import AnswerSettings
from rag.evals import GoldItem, aggregate, score_item
from rag.llm import ResponseCache, openai_chat_model
from rag.read.sentences import MIN_SHARED, ClaimStream, SentenceReader, backed, number_passages, parse_reply, schema_for
from rag.testing import FakeRetriever, RecordingChatModel, fake_chat, passages_from_text, refusing
from rag.types import Passage

DOC_A = ("Drones hit the border town overnight. The defence ministry said it shot down 26 drones over seven "
         "regions. Officials reported no casualties.")
DOC_B = ("The regional governor announced new shelters. About 10 billion rubles went to the region's defences "
         "since the invasion began.")


@pytest.fixture
def passages() -> list[Passage]:
    return passages_from_text("a.txt", DOC_A, "Drones") + passages_from_text("b.txt", DOC_B, "Defences")


def chain(passages: list[Passage], model: Any, **settings: Any) -> AnswerChain:
    return AnswerChain(FakeRetriever(passages), AnswerSettings(**settings), backend="openai", model=model)


def reply(*claims: tuple[str, list[str]], unanswerable: bool = False) -> str:
    return json.dumps({"answer": [{"text": t, "evidence": e} for t, e in claims], "unanswerable": unanswerable})


def test_sentences_are_numbered_with_the_chunkers_splitter(passages: list[Passage]) -> None:
    numbered = number_passages(passages, 3000)
    assert "[1.2] The defence ministry said it shot down 26 drones" in numbered.text
    assert "[2.2] About 10 billion rubles" in numbered.text
    spans = sentence_spans(passages[0].text)
    assert [k for k in numbered.ids if k.startswith("1.")] == [f"1.{i}" for i in range(1, len(spans) + 1)]
    pick = numbered.ids["1.2"]
    assert (pick.start, pick.end) == spans[1]


def test_the_numbered_prompt_stays_within_the_token_budget() -> None:
    long = [Passage(f"d{i}#0", f"d{i}", 0, 0, " ".join(f"Sentence {j} of passage {i} says a thing." for j in range(30)),
                    f"T{i}") for i in range(6)]
    whole = count_tokens(number_passages(long, 10**6).text)
    budget = whole // 3
    numbered = number_passages(long, budget)
    assert count_tokens(numbered.text) <= budget
    assert 1 <= len(numbered.passages) < len(long)
    tiny = number_passages(long, 40)  # not even the first passage fits: its leading sentences do
    assert len(tiny.passages) == 1 and count_tokens(tiny.text) <= 40 and tiny.ids


def test_the_schema_limits_evidence_to_the_ids_shown() -> None:
    schema = schema_for(["1.1", "1.2"], max_claims=2)
    answer = schema["properties"]["answer"]
    assert answer["items"]["properties"]["evidence"]["items"]["enum"] == ["1.1", "1.2"]
    assert answer["maxItems"] == 2


def test_citations_are_the_numbered_sentences_and_exact(passages: list[Passage]) -> None:
    model = fake_chat(reply(("The ministry shot down 26 drones.", ["1.2"]),
                            ("About 10 billion rubles went to defences.", ["2.2"])))
    answer = chain(passages, model).ask("What happened?")
    assert not answer.abstained and answer.reader == "sentences"
    assert [c.quote for c in answer.citations] == [
        "The defence ministry said it shot down 26 drones over seven regions.",
        "About 10 billion rubles went to the region's defences since the invasion began."]
    texts = {"a.txt": DOC_A, "b.txt": DOC_B}
    assert all(texts[c.doc][c.start:c.end] == c.quote for c in answer.citations)
    assert answer.text == "The ministry shot down 26 drones [1]. About 10 billion rubles went to defences [2]."
    assert answer.to_json()["reader"] == "sentences"
    assert "[1.2] The defence ministry" in model.prompts[0][1].content


def test_an_id_that_names_nothing_is_dropped_and_counted(passages: list[Passage]) -> None:
    model = fake_chat(reply(("The ministry shot down 26 drones.", ["1.2", "9.1", "[1.7]"])))
    answer = chain(passages, model).ask("How many drones?")
    assert len(answer.citations) == 1 and answer.dropped_markers == ("[9.1]", "[[1.7]]")
    item = GoldItem("q", "How many drones?", ("26",), (), True)
    assert aggregate([score_item(item, answer)])["invalid_citation_rate"] == pytest.approx(2 / 3, abs=1e-4)


@pytest.mark.parametrize("unsupported", ["flag", "drop"])
def test_a_claim_with_no_evidence_is_flagged_or_dropped(passages: list[Passage], unsupported: str) -> None:
    model = fake_chat(reply(("The ministry shot down 26 drones.", ["1.2"]), ("Nobody was hurt at all.", [])))
    answer = chain(passages, model, unsupported=unsupported).ask("What happened?")
    assert answer.unsupported == ("Nobody was hurt at all.",)
    assert ("Nobody was hurt" in answer.text) == (unsupported == "flag")


def test_the_claim_check_keeps_a_claim_its_evidence_states_and_flags_one_it_does_not() -> None:
    evidence = ["The defence ministry said it shot down 26 drones over seven regions."]
    # 1 of 5 content words (drones) shared: 0.2, on the bar, kept; 1 of 6: below it, flagged.
    kept = "Drones filled skies above towns."
    flagged = "Drones filled skies above towns today."
    assert MIN_SHARED == 0.2
    assert backed(kept, evidence)
    assert not backed(flagged, evidence)
    assert not backed("The library extended its opening hours.", evidence)


def test_a_claim_its_evidence_does_not_state_loses_the_citation(passages: list[Passage]) -> None:
    model = fake_chat(reply(("The ministry shot down 26 drones.", ["1.2"]),
                            ("The library extended its opening hours.", ["1.1"])))
    answer = chain(passages, model).ask("What happened?")
    assert len(answer.citations) == 1 and answer.unsupported == ("The library extended its opening hours.",)
    alone = chain(passages, fake_chat(reply(("The library extended its opening hours.", ["1.1"])))).ask("What?")
    assert alone.abstained and not alone.citations


def test_an_unparsed_reply_is_counted_and_abstains(passages: list[Passage]) -> None:
    answer = chain(passages, fake_chat('{"answer": [{"text": "26 drones", "evid')).ask("How many drones?")
    assert answer.abstained and answer.unparsed_reply and answer.reader == "sentences"
    item = GoldItem("q", "How many drones?", ("26",), (), True)
    metrics = aggregate([score_item(item, answer)])
    assert metrics["schema_failure_rate"] == 1.0


def test_unanswerable_abstains(passages: list[Passage]) -> None:
    answer = chain(passages, fake_chat(reply(unanswerable=True))).ask("Who won the cup?")
    assert answer.abstained and not answer.unparsed_reply


def test_parse_reply_takes_a_fenced_object_and_refuses_other_shapes() -> None:
    assert parse_reply('```json\n{"answer": [{"text": "x", "evidence": ["1.1"]}], "unanswerable": false}\n```') == (
        [("x", ["1.1"])], False)
    assert parse_reply("It shot down 26 drones [1].") is None
    assert parse_reply('{"answer": "26 drones"}') is None
    assert parse_reply('[{"text": "x"}]') is None


def test_a_server_without_json_schema_is_asked_for_a_json_object(passages: list[Passage],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    model = refusing(("json_schema",), reply(("It shot down 26 drones.", ["1.2"])),
                     reply(("About 10 billion rubles went to defences.", ["2.2"])))
    c = chain(passages, model)
    first, second = c.ask("How many drones?"), c.ask("How much money?")
    assert first.reader == second.reader == "json" and len(first.citations) == len(second.citations) == 1
    assert capsys.readouterr().err.count("refused the sentences reply format") == 1  # said once, then kept


def test_a_server_without_json_replies_gets_the_marker_prompt(passages: list[Passage]) -> None:
    model = refusing(("json_schema", "json_object"), "It shot down 26 drones [1].")
    answer = chain(passages, model).ask("How many drones?")
    assert answer.reader == "markers" and len(answer.citations) == 1
    assert "[1.1]" not in model.prompts[-1][1].content  # the marker prompt: passages without sentence ids


def test_other_server_failures_are_not_taken_for_a_refusal(passages: list[Passage]) -> None:
    class Down(RecordingChatModel):
        def _generate(self, *args: Any, **kwargs: Any) -> Any:
            raise openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1/v1"))

    with pytest.raises(openai.APIConnectionError):
        chain(passages, Down(messages=iter([]))).ask("How many drones?")


def test_streaming_shows_the_claims_text_not_the_json(passages: list[Passage]) -> None:
    tokens: list[str] = []
    model = fake_chat(reply(("The ministry shot down 26 drones.", ["1.2"]),
                            ("Officials reported no casualties.", ["1.3"])))
    answer = chain(passages, model).ask("What happened?", on_token=tokens.append)
    assert len(tokens) > 1
    assert "".join(tokens) == "The ministry shot down 26 drones. Officials reported no casualties."
    assert len(answer.citations) == 2


def test_claim_stream_waits_for_an_escape_cut_in_half() -> None:
    shown: list[str] = []
    stream = ClaimStream(shown.append)
    for token in ['{"answer": [{"text": "He said \\', '"no\\"', '", "evidence": []}]}']:
        stream(token)
    assert "".join(shown) == 'He said "no"'


def test_a_replayed_run_answers_in_the_recorded_mode_without_a_server(passages: list[Passage],
                                                                       tmp_path: Path) -> None:
    recorded = tmp_path / "replies.json"
    model = refusing(("json_schema",), reply(("It shot down 26 drones.", ["1.2"])))
    c = chain(passages, model)
    c.cache = ResponseCache(recorded, "record")
    c.ask("How many drones?")
    c.cache.save()
    again = chain(passages, refusing(("json_schema", "json_object", "text")))
    again.cache = ResponseCache(recorded, "replay")
    answer = again.ask("How many drones?")
    assert answer.reader == "json" and len(answer.citations) == 1


def test_every_model_call_is_bounded_by_max_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    model = openai_chat_model(AnswerSettings(max_sentences=3))
    assert model.max_tokens == 3 * 80 + 60 == AnswerSettings(max_sentences=3).reply_tokens
    assert model.extra_body == {"max_tokens": 300}  # llama.cpp's server reads max_tokens, not max_completion_tokens
    assert openai_chat_model(AnswerSettings(max_tokens=64)).max_tokens == 64
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert openai_chat_model(AnswerSettings()).extra_body is None


def test_the_marker_reader_stays_selectable(passages: list[Passage]) -> None:
    answer = chain(passages, fake_chat("It shot down 26 drones [1]."), reader="markers").ask("How many drones?")
    assert answer.reader == "markers" and len(answer.citations) == 1
    assert isinstance(chain(passages, fake_chat("x")).reader, SentenceReader)


def test_callers_other_than_the_reader_get_a_longer_bound(passages: list[Passage],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.answer import LONG_REPLY_TOKENS

    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    c = AnswerChain(FakeRetriever(passages), AnswerSettings(), backend="openai")
    assert c.reader.model.max_tokens == AnswerSettings().reply_tokens  # answers: sized from max_sentences
    assert c.model.kwargs == {"max_tokens": LONG_REPLY_TOKENS, "extra_body": {"max_tokens": LONG_REPLY_TOKENS}}
