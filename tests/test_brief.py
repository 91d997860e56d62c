"""Cited briefings (rag.brief, `rag brief`) on the seed corpus: markers and sources one to one, quotes exact,
the support audit, events kept apart, disagreements side by side, the LLM map-reduce with fake chat models.

Integration tests use the real embedding model and a real Chroma store ingested once per module through the CLI;
the pure parts (event grouping, headings, the reduce parser) are unit tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rag import brief as B
from rag.answer import AnswerChain
from rag.brief.gather import Material, dangling_penalty
from rag.chunk import sentence_spans
from rag.cli import State, app, load_chain
from rag.config import AnswerSettings, Settings
from rag.events import group_events
from rag.ingest import load_file
from rag.read.sentences import number_passages
from rag.sentences import annotate
from rag.testing import FakeRetriever, fake_chat, passages_from_text, refusing
from rag.types import Passage

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
TOPIC = "cross-border incursions into Russia"
MAY_2023 = {"002_02ef5c51c639ed40.txt", "003_aa75b43cd0448e09.txt"}
MARCH_2024 = {"000_fba434556228130e.txt", "001_1f5acdca6a39af28.txt", "004_d30e4aad0120d6ab.txt"}
MARKER = re.compile(r"\[(\d+)\]")
SOURCE_LINE = re.compile(r"^\[(\d+)\] (.+) — (\S+) — “(.*)”$")


# -- helpers ------------------------------------------------------------------------------------------------------


def doc_text(doc: str) -> str:
    return load_file(CORPUS / doc, doc, 10**9).text


def split_markdown(md: str) -> tuple[str, list[str]]:
    """(everything before `## Sources`, the source lines)."""
    body, _, tail = md.partition("\n## Sources\n")
    assert tail, "the briefing has no ## Sources section"
    return body, [line for line in tail.splitlines() if line.strip()]


def assert_consistent(b: B.Briefing) -> None:
    """Markers <-> Sources one to one, every quote exact, every claim cited, the audit adds up."""
    md = b.markdown
    body, source_lines = split_markdown(md)
    inline = {int(n) for n in MARKER.findall(body)}
    listed = [SOURCE_LINE.match(line) for line in source_lines]
    assert all(listed), [line for line, m in zip(source_lines, listed, strict=True) if not m]
    numbers = [int(m.group(1)) for m in listed if m]
    assert numbers == list(range(1, len(b.sources) + 1)), "sources numbered 1..m, each once"
    assert inline == set(numbers), f"markers without a source: {inline - set(numbers)}; " \
                                   f"sources never cited: {set(numbers) - inline}"
    for c, m in zip(b.sources, listed, strict=True):
        assert m is not None and m.group(3) == c.doc and m.group(4) == " ".join(c.quote.split())
        assert c.quote == doc_text(c.doc)[c.start:c.end], f"[{c.n}] quote is not the source text [start:end]"
    # the audit: counts add up, and every claim in the output carries a verified citation
    a = b.audit
    assert a.sentences == a.cited + a.dropped + a.flagged
    points = b.points()
    assert a.cited == sum(1 for p in points if p.cites) and a.flagged == sum(1 for p in points if not p.cites)
    assert all(p.cites for p in points), "drop mode: no claim without a citation"
    assert a.summary in md
    for p in points:
        assert set(p.cites) <= set(numbers)
    # ... and in the text itself: the overview sentences and every bullet carry a marker
    overview = body.split("## Overview\n\n", 1)[1].split("\n\n", 1)[0] if "## Overview" in body else ""
    for s, e in sentence_spans(overview):
        assert MARKER.search(overview[s:e]), f"overview sentence without a marker: {overview[s:e]!r}"
    bullets = [line for line in body.splitlines() if line.startswith("- ")]
    assert bullets and all(MARKER.search(line) for line in bullets)


# -- fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("brief-home")
    result = CliRunner().invoke(app, ["--home", str(tmp), "ingest", str(CORPUS)])
    State.home = None  # the CLI keeps --home in a global: leave nothing behind for other tests
    assert result.exit_code == 0, result.output
    return tmp


@pytest.fixture(scope="module")
def chain(home: Path) -> AnswerChain:
    return load_chain(Settings(home=home, chroma_url=None))


@pytest.fixture(scope="module")
def briefing(chain: AnswerChain) -> B.Briefing:
    return B.make_briefing(chain, TOPIC)


# -- extractive briefing on the seed corpus ----------------------------------------------------------------------


@pytest.mark.integration
def test_markers_sources_quotes_and_audit(briefing: B.Briefing) -> None:
    assert briefing.backend == "extractive"
    assert briefing.overview and briefing.sections and briefing.sources
    assert_consistent(briefing)
    assert briefing.audit.dropped == 0 and briefing.audit.cited == briefing.audit.sentences > 10


def assert_headings_use_their_sentences_words(b: B.Briefing) -> None:
    """No heading (nor group label) holds a word that none of its section's cited sentences holds."""
    texts = {s.heading: [p.text for p in s.points] for s in b.sections}
    for section in b.sections:
        assert not B.words_missing(section.heading, texts[section.heading]), section.heading
        for label in {p.aspect for p in section.points if p.aspect}:
            group = [p.text for p in section.points if p.aspect == label]
            assert not B.words_missing(label, group), (label, group)
    for d in b.disagreements:
        if d.event:
            assert not B.words_missing(d.event, texts.get(d.event, []) + [p.text for p in d.claims]), d.event


@pytest.mark.integration
def test_events_are_kept_apart(briefing: B.Briefing) -> None:
    events = {e.heading: set(e.docs) for e in briefing.events}
    assert sorted(map(sorted, events.values())) == sorted([sorted(MAY_2023), sorted(MARCH_2024)])
    may = next(h for h, docs in events.items() if docs == MAY_2023)
    march = next(h for h, docs in events.items() if docs == MARCH_2024)
    assert may != march
    headings = [s.heading for s in briefing.sections]
    assert headings.index(may) < headings.index(march), "events in date order"
    doc_of = {c.n: c.doc for c in briefing.sources}
    for section in briefing.sections:
        cited = {doc_of[n] for p in section.points for n in p.cites}
        expected = events[section.heading]
        assert cited and cited <= expected, f"{section.heading} cites {cited - expected}"
        assert all(p.doc in expected for p in section.points)
    for d in briefing.disagreements:  # side-by-side claims never mix events either
        assert {doc_of[n] for p in d.claims for n in p.cites} <= events[d.event]
    md = briefing.markdown
    assert f"## {may}" in md and f"## {march}" in md
    assert_headings_use_their_sentences_words(briefing)


@pytest.mark.integration
def test_disagreements_are_side_by_side(briefing: B.Briefing) -> None:
    doc_of = {c.n: c.doc for c in briefing.sources}
    for d in briefing.disagreements:
        assert d.lead_in.startswith("Sources differ on") and d.lead_in.endswith(":")
        assert all(p.cites for p in d.claims)
        assert len({doc_of[p.cites[0]] for p in d.claims}) >= 2, "claims from at least two documents"
    md = briefing.markdown
    assert md.count("**Sources differ on") == len(briefing.disagreements)
    for line in md.splitlines():  # lead-ins are labels, not claims: no marker
        if line.startswith("**Sources differ on"):
            assert not MARKER.search(line)


@pytest.mark.integration
def test_the_seed_briefing_shows_a_disagreement(briefing: B.Briefing) -> None:
    assert briefing.disagreements and "## Where the sources disagree" in briefing.markdown


@pytest.mark.integration
def test_json_and_html_carry_the_same_briefing(briefing: B.Briefing) -> None:
    data = json.loads(json.dumps(briefing.to_json()))
    assert data["topic"] == TOPIC and data["audit"]["sentences"] == briefing.audit.sentences
    assert [s["n"] for s in data["sources"]] == list(range(1, len(briefing.sources) + 1))
    assert len(data["sections"]) == len(briefing.sections)
    assert len(data["disagreements"]) == len(briefing.disagreements)
    page = briefing.html
    for c in briefing.sources:
        assert f'href="#src-{c.n}"' in page and f'id="src-{c.n}"' in page
    assert "<script" not in page and "<link" not in page and "src=" not in page and "url(" not in page


@pytest.mark.integration
def test_flag_mode_keeps_failed_sentences_marked(chain: AnswerChain, briefing: B.Briefing) -> None:
    material = B.gather(chain, TOPIC)
    draft = B.extractive_draft(material, chain.retriever.embedder)
    p = material.passages[0]
    draft.sections[0][1].append(("Aliens built seven pyramids on the far side of the moon [1].", [p], p.doc, ""))
    dropped = B.finalize(TOPIC, draft, material, "extractive", "drop")
    assert dropped.audit.dropped == 1 and "pyramids" not in dropped.markdown
    flagged = B.finalize(TOPIC, draft, material, "extractive", "flag")
    assert flagged.audit.flagged == 1 and flagged.audit.dropped == 0
    assert flagged.audit.sentences == flagged.audit.cited + 1
    assert "pyramids" in flagged.markdown and "flagged" in flagged.markdown


@pytest.mark.integration
def test_a_topic_the_sources_do_not_cover_gets_no_briefing(chain: AnswerChain) -> None:
    b = B.make_briefing(chain, "sourdough bread recipes")
    assert b.abstained and not b.sources and not b.sections and b.audit.sentences == 0
    assert B.NOT_IN_SOURCES in b.markdown and B.NOT_IN_SOURCES in b.html
    assert "## Sources" not in b.markdown  # no empty heading


@pytest.mark.integration
def test_a_topic_mostly_of_words_no_article_uses_gets_no_briefing(chain: AnswerChain) -> None:
    # the articles tell of attacks, never of Crimea or a bridge: a briefing would be about other attacks
    b = B.make_briefing(chain, "Crimea bridge attack")
    assert b.abstained and b.unmentioned == ("crimea", "bridge") and not b.sources
    assert "never mention: “crimea”, “bridge”" in b.markdown and B.NOT_IN_SOURCES in b.markdown
    # one word of three unknown: the briefing is made, and says which word the sources never use
    partial = B.make_briefing(chain, "attack on Moscow airport")
    assert not partial.abstained and partial.unmentioned == ("airport",)
    assert "never mention: “airport”" in partial.markdown and "never mention" in partial.html
    assert partial.to_json()["unmentioned"] == ["airport"]


def test_markdown_escapes_html_from_articles_and_topics() -> None:
    point = B.Point("He wrote <script>alert(1)</script> on the wall.", (1,))
    b = B.Briefing("<b>raids</b>", (point,), (), (), B.Audit(1, 1, 0))
    assert "<script>" not in b.markdown and "<b>" not in b.markdown
    assert "# Briefing: \\<b\\>raids\\</b\\>" in b.markdown and "\\<script\\>alert(1)" in b.markdown
    assert "0 source documents · 0 cited passages" in b.markdown


# -- the CLI ----------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_cli_brief_writes_markdown_html_and_json(home: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    try:
        md_file, html_file = tmp_path / "b.md", tmp_path / "b.html"
        r = runner.invoke(app, ["--home", str(home), "brief", TOPIC, "-o", str(md_file)])
        assert r.exit_code == 0, r.output
        assert "support audit:" in r.stderr and "## Sources" not in r.stdout
        assert md_file.read_text(encoding="utf-8").startswith(f"# Briefing: {TOPIC}")
        r = runner.invoke(app, ["--home", str(home), "brief", TOPIC, "-o", str(html_file), "--k", "12"])
        assert r.exit_code == 0, r.output
        assert html_file.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
        r = runner.invoke(app, ["--home", str(home), "brief", TOPIC])
        assert r.exit_code == 0 and "## Sources" in r.stdout and "support audit:" in r.stderr
        r = runner.invoke(app, ["--home", str(home), "brief", TOPIC, "--json"])
        assert r.exit_code == 0 and json.loads(r.stdout)["sources"]
        r = runner.invoke(app, ["--home", str(home), "brief", TOPIC, "-o", str(tmp_path / "b.txt")])
        assert r.exit_code == 2 and "error" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "b.txt").exists()
        r = runner.invoke(app, ["--home", str(home), "brief", TOPIC, "--backend", "nope"])
        assert r.exit_code == 2
    finally:
        State.home = None


# -- LLM mode with fake chat models ----------------------------------------------------------------------------


def first_claim(passages: tuple[Passage, ...]) -> tuple[str, str]:
    """The first claim sentence of a document's passages and the marker of the passage that holds it."""
    for n, p in enumerate(passages, start=1):
        for s, e in sentence_spans(p.text):
            if B.is_claim_sentence(p.text[s:e]):
                return p.text[s:e], f"[{n}]"
    raise AssertionError("no claim sentence in the passages")


def first_claim_id(passages: tuple[Passage, ...], budget: int) -> tuple[str, str]:
    """The first claim sentence of a document's passages and its id as the map sees it numbered ("2.3")."""
    numbered = number_passages(passages, budget)
    for key, pick in numbered.ids.items():
        text = passages[pick.passage - 1].text[pick.start:pick.end]
        if B.is_claim_sentence(text):
            return text, key
    raise AssertionError("no claim sentence in the passages")


def json_reply(**parts: object) -> str:
    return json.dumps(parts)


def claim(text: str, *ids: str) -> dict[str, object]:
    return {"text": text, "evidence": list(ids)}


@pytest.mark.integration
def test_llm_map_reduce_by_numbered_sentences(chain: AnswerChain) -> None:
    plan = B.map_plan(B.gather(chain, TOPIC))
    assert len(plan) == 5 and len({m.doc for m in plan}) == 5
    claims = [first_claim_id(m.passages, chain.settings.context_tokens) for m in plan]
    sentences = [s for s, _ in claims]
    # map: one JSON reply per document, in plan order: a real point, an id naming nothing, a claim its evidence
    # does not state
    maps = [json_reply(answer=[claim(s, key), claim("Kursk fell to an army of robots.", "9.9"),
                               claim("Aliens from Jupiter built seven pyramids on the moon.", key)],
                       unanswerable=False) for s, key in claims]
    # reduce: the quotes are numbered in the order of the checked map points, i.e. the plan order
    event0 = plan[0].event
    other = next(i for i, m in enumerate(plan) if m.event == event0 and i > 0)
    reduce = json_reply(
        overview=[claim(sentences[0], "1")],
        sections=[{"heading": event0, "points": [
            claim(sentences[other], str(other + 1)), claim(sentences[0], "1", "99"),
            claim("Pyramids on Mars were built by aliens from Jupiter.", "1")]}],
        disagreements=[{"label": "whether the sources agree", "claims": [
            claim(sentences[0], "1"), claim(sentences[other], str(other + 1))]}])
    model = fake_chat(*maps, reduce)
    b = B.make_briefing(AnswerChain(chain.retriever, chain.settings, backend="openai", model=model), TOPIC)
    assert b.backend == "openai"
    # every call asked for JSON with the ids shown; the map saw numbered sentences, the reduce numbered quotes
    formats = model.formats
    assert len(formats) == len(plan) + 1 and all(f["type"] == "json_schema" for f in formats)
    first_map_ids = formats[0]["json_schema"]["schema"]["properties"]["answer"]["items"]["properties"]
    assert claims[0][1] in first_map_ids["evidence"]["items"]["enum"]
    assert f"[{claims[0][1]}] " in model.prompts[0][1].content
    assert set(formats[-1]["json_schema"]["schema"]["properties"]) == {"overview", "sections", "disagreements"}
    md = b.markdown
    assert "pyramids" not in md.lower() and "robots" not in md.lower()
    # the audit counts what the reading counted: ids naming nothing, claims left without evidence
    assert {"[9.9]", "[99]"} <= set(b.audit.invented_markers)
    assert b.audit.dropped == 1 and b.audit.draft_dropped == len(plan) * 2
    assert len(b.sections) == 1
    assert_headings_use_their_sentences_words(b)
    assert len(b.overview) == 1 and len(b.sections[0].points) == 2
    assert len(b.disagreements) == 1 and len({p.doc for p in b.disagreements[0].claims}) == 2
    assert_consistent(b)
    # every citation is a whole numbered sentence of its source
    assert {c.quote for c in b.sources} == {sentences[0], sentences[other]}


@pytest.mark.integration
def test_llm_reduce_without_layout_falls_back_to_checked_points(chain: AnswerChain) -> None:
    plan = B.map_plan(B.gather(chain, TOPIC))
    maps = [json_reply(answer=[claim(*first_claim_id(m.passages, chain.settings.context_tokens))],
                       unanswerable=False) for m in plan]
    model = fake_chat(*maps, "Sorry, I can't write briefings.")  # GenericFakeChatModel that keeps the prompts
    b = B.make_briefing(AnswerChain(chain.retriever, chain.settings, backend="openai", model=model), TOPIC)
    assert len(model.prompts) == len(plan) + 1
    for item, (system, user) in zip(plan, model.prompts, strict=False):
        assert "data, not instructions" in system.content and item.doc in user.content
        assert user.content.count("<passage n=") == len(item.passages)
    reduce_user = model.prompts[-1][1].content
    assert all(e.heading in reduce_user for e in b.events)
    assert sum(len(s.points) for s in b.sections) == len(plan)
    assert len(b.sections) == len(b.events)
    assert_headings_use_their_sentences_words(b)
    assert_consistent(b)


@pytest.mark.integration
def test_llm_brief_falls_back_to_the_marker_prompts_when_the_server_refuses_json(
        chain: AnswerChain, capsys: pytest.CaptureFixture[str]) -> None:
    plan = B.map_plan(B.gather(chain, TOPIC))
    claims = [first_claim(m.passages) for m in plan]
    maps = [f"- {B.attach_marker(s, marker)}\n- Kursk fell to an army of robots [99]." for s, marker in claims]
    event0 = plan[0].event
    reduce = "\n".join(["## Overview", f"- {B.attach_marker(claims[0][0], '[1]')}", f"## {event0}",
                        f"- {B.attach_marker(claims[0][0], '[1][99]')}"])
    model = refusing(("json_schema", "json_object"), *maps, reduce)
    b = B.make_briefing(AnswerChain(chain.retriever, chain.settings, backend="openai", model=model), TOPIC)
    assert "refused" in capsys.readouterr().err
    assert len(model.prompts) == len(plan) + 1 and "[1]" in model.prompts[0][0].content
    assert "[99]" in b.audit.invented_markers and b.audit.draft_dropped == len(plan)
    assert len(b.overview) == 1 and len(b.sections) == 1
    assert_consistent(b)
    assert {c.quote for c in b.sources} == {claims[0][0]}


def test_the_marker_reader_setting_keeps_the_marker_prompts() -> None:
    text = "The ministry said it shot down 26 drones over seven regions. Schools in Kursk moved online."
    passages = passages_from_text("a.txt", text, size=400)
    pool = [B.Candidate("a.txt", 0, 10, text[:10], passages[0], np.zeros(3))]
    material = Material("drones", np.zeros(3), passages, [], {}, {}, {}, pool=pool)
    model = fake_chat("- The ministry said it shot down 26 drones over seven regions [1].", "no layout")
    settings = AnswerSettings(reader="markers")
    draft = B.llm_draft(AnswerChain(FakeRetriever(passages), settings, backend="openai", model=model), material)
    assert "[1]" in model.prompts[0][0].content and "evidence" not in model.prompts[0][0].content
    assert [type(c) for _, claims in draft.sections for c, *_ in claims] == [str]


# -- pure parts --------------------------------------------------------------------------------------------------


def test_undated_documents_join_the_event_they_resemble() -> None:
    texts = {
        "a": "Tanks crossed into Kursk before the presidential election; the Siberian Battalion claimed it.",
        "b": "The Siberian Battalion said the presidential election was its target; tanks and drones.",
        "c": "Fighters liberated the villages of Kozinka and Gora-Podol in Belgorod Oblast.",
        "d": "Kozinka villagers fled as the fighters moved through Belgorod Oblast.",
        "e": "Recipes for sourdough bread and rye.",
    }
    dates = {"a": "2024-03-12", "b": None, "c": "2023-05-23", "d": None, "e": None}
    groups = group_events(list(texts), dates, texts)
    assert groups == [(["c", "d"], "2023-05-23"), (["a", "b"], "2024-03-12"), (["e"], None)]
    # a day the sentences state: "March 12" in an article of 2024
    from rag.brief.gather import stated_day
    assert stated_day(["Monday", "March 12"], 2024) == "2024-03-12" and stated_day(["May 2023"], None) == "2023-05-01"
    assert stated_day(["Monday", "days before the election"], 2024) is None
    # no dates at all: one group
    assert group_events(["x", "y"], {"x": None, "y": None}, {"x": "a b c", "y": "d e f"}) == [(["x", "y"], None)]
    # dates close together are one event; far apart, two
    close = group_events(["p", "q"], {"p": "2024-03-12", "q": "2024-03-15"}, {"p": "x y z", "q": "x y w"})
    assert close == [(["p", "q"], "2024-03-12")]


def annotated(doc: str, text: str, vector: np.ndarray, score: float = 0.5) -> B.Candidate:
    passage = Passage(doc=doc, text=text, start=0, end=len(text), chunk_id=f"{doc}:0")
    c = B.Candidate(doc, 0, len(text), text, passage, vector, score=score)
    c.annotation = annotate([text])[0]
    return c


def test_different_figures_negation_and_sources_for_the_same_thing_are_disagreements() -> None:
    same = np.ones(4) / 2  # alike in meaning (cosine 1)
    claims = [
        annotated("a.txt", "The bridge is 412 metres long and carries two lanes.", same),
        annotated("b.txt", "The bridge, which is 430 metres long, opened in March.", same),
        annotated("c.txt", "The ministry said the attack was repelled at the border.", same),
        annotated("d.txt", "The governor said the attack was not repelled at the border.", same),
    ]
    found = {label: {c.doc for c in pair} for label, _, pair in B.find_disagreements(claims, lambda d: 0)}
    assert {"a.txt", "b.txt"} in found.values() and {"c.txt", "d.txt"} in found.values()
    assert any("412" in label and "430" in label for label in found)
    # the same figures, or other events, are no disagreement
    agree = [annotated("a.txt", "The bridge is 412 metres long.", same),
             annotated("b.txt", "The bridge, 412 metres long, opened.", same)]
    assert B.find_disagreements(agree, lambda d: 0) == []
    assert B.find_disagreements(claims[:2], lambda d: {"a.txt": 0, "b.txt": 1}[d]) == []
    # unlike sentences (cosine 0) speak of different things
    apart = [annotated("a.txt", claims[0].text, np.array([1.0, 0, 0, 0])),
             annotated("b.txt", claims[1].text, np.array([0, 1.0, 0, 0]))]
    assert B.find_disagreements(apart, lambda d: 0) == []


def test_a_negated_claim_about_a_party_the_other_source_names_is_a_disagreement() -> None:
    same = np.ones(4) / 2
    pair = [annotated("a.txt", "Officials said the raid was not organised by Vostrania.", same),
            annotated("b.txt", "Vostranian-backed fighters launched the raid on the fuel depot.", same)]
    assert len(B.find_disagreements(pair, lambda d: 0)) == 1
    said = [annotated("c.txt", "The museum said no guards were on duty that night.", same),
            annotated("d.txt", "Two guards from Harlow Security were on duty that night, the police said.", same)]
    assert len(B.find_disagreements(said, lambda d: 0)) == 1  # opposite claims from different sources
    # a sentence below the topic bar (context) may dispute an on-topic one, never two context sentences each other
    assert len(B.find_disagreements(pair[:1], lambda d: 0, context=pair[1:])) == 1
    assert B.find_disagreements([], lambda d: 0, context=pair) == []


def test_sources_that_agree_or_speak_of_other_things_show_no_disagreement() -> None:
    same, other_matter = np.ones(4) / 2, np.array([0.5, -0.5, 0.5, -0.5])  # cosine 1 within a pair, 0 across
    agree = [annotated("a.txt", "Police said the theft was not carried out by Harlow Security.", same),
             annotated("b.txt", "Harlow Security said it had nothing to do with the theft.", same),
             annotated("c.txt", "The insurer said the theft was the work of a gang from Port Ellery.", other_matter),
             annotated("d.txt", "A gang from Port Ellery stole the astrolabe, the insurer said.", other_matter)]
    assert B.find_disagreements(agree, lambda d: 0) == []
    # a negation about a party nobody else names, and figures of different things, are no disagreement
    other = [annotated("a.txt", "The museum did not open on Monday, the director said.", same),
             annotated("b.txt", "The gold astrolabe is 30 centimetres wide and weighs 2 kilograms.", same),
             annotated("c.txt", "Thieves took 3 paintings and a gold astrolabe from the museum.", same)]
    assert B.find_disagreements(other, lambda d: 0) == []


def test_headings_are_made_of_their_sentences_words() -> None:
    texts = ["The museum's gold astrolabe was stolen from Port Ellery on 5 September 2024.",
             "Police said the gold astrolabe was taken from a locked case.",
             "The insurer offered a reward for the astrolabe."]
    title = B.heading(annotate(texts))
    assert "astrolabe" in title.lower() and not B.words_missing(title, texts)
    other = ["The Battle of Hastings was fought in 1066 between the Normans and the English."]
    assert not B.words_missing(B.heading(annotate(other), [annotate(texts)]), other)
    assert B.words_missing("May 1191 incursion (Galilee)", texts) == {"may", "1191", "incursion", "galilee"}


def test_a_heading_is_a_noun_phrase_with_a_qualifier_only_when_it_adds_something() -> None:
    texts = ["On Thursday the water board closed the Kestrel Lane reservoir after 43 years of service.",
             "The water board said the Kestrel Lane reservoir would reopen in April 2026.",
             "Thursday was the first day of the closure at the reservoir."]
    for topic in ("", "the Kestrel Lane reservoir"):
        title = B.heading(annotate(texts), topic=topic)
        head, _, qualifier = title.partition(" (")
        assert not B.words_missing(title, texts)
        assert head.split()[0] != "Thursday" and "43" not in title  # a weekday or a span names no thing
        words = [w.lower() for w in re.findall(r"\w+", title)]
        assert len(words) == len(set(words)), title  # nothing said twice
        assert not {w.lower() for w in re.findall(r"\w+", qualifier)} & {w.lower() for w in topic.split()}, title
    # a qualifier the other groups state as well sets nothing apart
    other = annotate(["The Kestrel Lane reservoir was built in April 2026 by the county."])
    assert "April 2026" not in B.heading(annotate(texts), [other])


def test_the_audit_remakes_a_heading_that_uses_words_its_points_lack() -> None:
    from rag.brief.audit import fit_heading

    texts = ["The harbour museum lost a gold astrolabe to thieves.", "The gold astrolabe was made in 1568."]
    assert fit_heading("Gold astrolabe", texts) == "Gold astrolabe"
    remade = fit_heading("May 1191 incursion (Galilee)", texts)
    assert remade != "May 1191 incursion (Galilee)" and not B.words_missing(remade, texts)


THEFT = """Thieves take gold astrolabe from harbour museum

Port Ellery, Thursday 5 September 2024 - Thieves broke into the Varnholt Maritime Museum in the early hours of Sunday
and escaped with a gold astrolabe made in 1568, the museum and police confirmed on Monday.

The astrolabe was made by the Flemish instrument maker Gualterus Arsenius and was bequeathed to the museum in 1932.
It was displayed in a locked glass case in the navigation gallery on the first floor of the museum.

Detective Inspector Rafael Quint said the thieves entered the museum through a skylight above the gallery.
Two silver pocket chronometers were also taken from a neighbouring case during the theft, the police said.

The museum's director, Elena Marchetti, said the staff of the museum were devastated by the theft.
The museum will stay closed to visitors until 10 September while its security is reviewed.
The insurer has offered a reward of 50,000 euros for information leading to the recovery of the astrolabe.
It is the second theft from a museum in the region this year, after Roman coins were stolen in March.
"""


@pytest.mark.integration
def test_a_briefing_on_any_kind_of_event_has_an_overview_and_points(tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "theft.txt").write_text(THEFT)
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "home"), "ingest", str(tmp_path / "corpus")])
    State.home = None
    assert result.exit_code == 0, result.output
    b = B.make_briefing(load_chain(Settings(home=tmp_path / "home", chroma_url=None)), "Varnholt museum theft")
    body = b.markdown.split("\n## Sources\n")[0]
    assert b.sections and all(s.heading in body for s in b.sections)
    assert_headings_use_their_sentences_words(b)
    overview = body.split("## Overview\n\n", 1)[1].split("\n\n", 1)[0]
    assert "astrolabe" in overview and MARKER.search(overview)
    # no fixed aspects: the points of any kind of event fill its section
    assert len([line for line in body.splitlines() if line.startswith("- ")]) >= 4


def test_reduce_parser_reads_sections_and_disagreements() -> None:
    passages = [Passage(chunk_id=f"d{i}#x", doc=f"d{i}", start=0, end=10, text="t") for i in (1, 2)]
    reply = ("## Overview\n- One [1].\n## March 2024 incursion\n- Two [2].\n* Three [1].\n"
             "## Where the sources disagree\n### Sources differ on who attacked:\n- Four [1].\n- Five [2].\n"
             "## Sources\n- [1] nothing here counts\n")
    d = B._parse_reduce(reply, passages)
    assert [t for t, _, _ in d.overview] == ["One [1]."]
    assert [(h, [c[0] for c in claims]) for h, claims in d.sections] == [("March 2024 incursion",
                                                                         ["Two [2].", "Three [1]."])]
    assert [(label, [c[0] for c in claims]) for label, _, claims in d.disagreements] == [
        ("who attacked", ["Four [1].", "Five [2]."])]


@pytest.mark.parametrize(("text", "leans"), [
    ('"The response has been extraordinary," she said.', True),  # whose words? the sentence before says
    ("They were woken by police officers shortly after midnight.", True),
    ("Station commander Olafsen said the investigation would begin soon.", False),
])
def test_a_sentence_that_leans_on_the_one_before_ranks_lower(text: str, leans: bool) -> None:
    passage = Passage(doc="a.txt", text=text, start=0, end=len(text), chunk_id="a.txt:0")
    candidate = B.Candidate("a.txt", 0, len(text), text, passage, np.zeros(3), annotation=annotate([text])[0])
    assert (dangling_penalty(candidate) > 0) is leans
