"""rag.chunk: property tests (hypothesis generates articles) plus examples of sentence splitting."""

from __future__ import annotations

import re
import textwrap
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.chunk import as_prose, chunk_text, count_tokens, sentence_spans
from rag.types import Chunk

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(PROPS, max_examples=30)

# -- strategies: articles made of paragraphs of sentences ------------------------------------------------------

LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
UNICODE = ("éèüößñçøåæœłžščęąı" + "абвгдеёжзийклмнопрстуфхцчшщыэюя" + "αβγδεζηθλμπσω" + "中文字日本語한국어"
           + "😀🚀🇺🇦👍🏽" + "—–…«»")

word = st.one_of(
    st.text(alphabet=LETTERS, min_size=1, max_size=10),
    st.text(alphabet=LETTERS + UNICODE, min_size=1, max_size=8),
    st.integers(0, 10**6).map(str),
    st.sampled_from(["Dr.", "Mr.", "e.g.", "i.e.", "U.S.", "3.5", "J.", "etc.", "(see", "note)", "“quoted”", "1,000"]),
)
ending = st.sampled_from([".", ".", ".", "!", "?", "?!", "...", '."', ".)", ":", ";", ""])


@st.composite
def sentence(draw: st.DrawFn) -> str:
    words = draw(st.lists(word, min_size=1, max_size=25))
    return " ".join(words) + draw(ending)


# A long sentence without punctuation: longer than small chunk sizes, so it must be cut at token boundaries.
long_sentence = st.lists(word, min_size=40, max_size=100).map(" ".join)
# A single very long "word" (a URL, a hash, CJK without spaces): the cut must fall inside it.
long_word = st.text(alphabet=LETTERS + "中文字日本語/-_", min_size=100, max_size=300)


@st.composite
def paragraph(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.one_of(sentence(), sentence(), sentence(), long_sentence, long_word),
                          min_size=1, max_size=5))
    return draw(st.sampled_from([" ", " ", "  ", " \t"])).join(parts)


paragraph_sep = st.sampled_from(["\n\n", "\n\n", "\n", "\n\n\n", "\n \n", "\n\t\n"])


@st.composite
def article(draw: st.DrawFn) -> str:
    paras = draw(st.lists(paragraph(), min_size=1, max_size=6))
    text = paras[0]
    for p in paras[1:]:
        text += draw(paragraph_sep) + p
    lead = draw(st.sampled_from(["", "", "\n", "  "]))
    trail = draw(st.sampled_from(["", "", "\n", " \n\n"]))
    return lead + text + trail


@st.composite
def size_overlap(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(16, 120))
    overlap = draw(st.integers(0, size - 1))
    return size, overlap


# -- invariants -------------------------------------------------------------------------------------------------


def check_invariants(doc: str, text: str, chunks: list[Chunk], size: int, overlap: int) -> None:
    # Offsets: the chunk is exactly its slice of the source, trimmed, in order.
    for n, c in enumerate(chunks):
        assert c.doc == doc and c.index == n
        assert 0 <= c.start < c.end <= len(text)
        assert text[c.start:c.end] == c.text
        assert c.text == c.text.strip(), f"chunk {n} carries leading/trailing whitespace"
        assert count_tokens(c.text) <= size, f"chunk {n} has {count_tokens(c.text)} tokens > {size}"
    # Coverage: every non-whitespace character is in some chunk.
    covered = bytearray(len(text))
    for c in chunks:
        covered[c.start:c.end] = b"\x01" * (c.end - c.start)
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not missing, f"uncovered characters at {missing[:5]}: {[text[i] for i in missing[:5]]}"
    assert bool(chunks) == bool(text.strip())
    # Consecutive chunks: both ends move forward (no chunk is inside its predecessor), overlap is bounded.
    for prev, nxt in pairwise(chunks):
        assert nxt.start > prev.start and nxt.end > prev.end, (prev, nxt)
        if nxt.start < prev.end:
            shared = count_tokens(text[nxt.start:prev.end])
            assert shared <= overlap, f"consecutive chunks share {shared} tokens > overlap {overlap}"
    # Ids: unique, derived from the doc and the content.
    ids = [c.id for c in chunks]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(re.escape(doc) + r"#[0-9a-f]{16}(-\d+)?", i) for i in ids), ids


def check_sentence_aligned(text: str, chunks: list[Chunk], size: int) -> None:
    """Chunk boundaries fall on sentence boundaries, unless the sentence holding the boundary exceeds `size`."""
    spans = sentence_spans(text)
    starts = {s for s, _ in spans}
    ends = {e for _, e in spans}
    for c in chunks:
        if c.start not in starts:
            holder = [(s, e) for s, e in spans if s < c.start < e]
            assert holder, f"chunk start {c.start} is outside every sentence"
            s, e = holder[0]
            assert count_tokens(text[s:e]) > size, f"chunk starts inside a short sentence: {text[s:e]!r}"
        if c.end not in ends:
            holder = [(s, e) for s, e in spans if s < c.end < e]
            assert holder, f"chunk end {c.end} is outside every sentence"
            s, e = holder[0]
            assert count_tokens(text[s:e]) > size, f"chunk ends inside a short sentence: {text[s:e]!r}"


# -- properties -------------------------------------------------------------------------------------------------


@PROPS
@given(text=article(), so=size_overlap())
def test_chunks_of_articles_keep_every_invariant(text: str, so: tuple[int, int]) -> None:
    size, overlap = so
    chunks = chunk_text("dir/a.txt", text, size, overlap)
    check_invariants("dir/a.txt", text, chunks, size, overlap)
    check_sentence_aligned(text, chunks, size)


@PROPS
@given(text=st.text(max_size=1500), so=size_overlap())
def test_chunks_of_arbitrary_unicode_keep_offsets_coverage_and_bounds(text: str, so: tuple[int, int]) -> None:
    size, overlap = so
    check_invariants("x.md", text, chunk_text("x.md", text, size, overlap), size, overlap)


@FEWER
@given(text=article(), so=size_overlap())
def test_sentence_spans_are_trimmed_ordered_and_cover_the_text(text: str, so: tuple[int, int]) -> None:
    spans = sentence_spans(text)
    previous_end = 0
    covered = bytearray(len(text))
    for s, e in spans:
        assert previous_end <= s < e
        assert not text[s].isspace() and not text[e - 1].isspace()
        covered[s:e] = b"\x01" * (e - s)
        previous_end = e
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())


@FEWER
@given(text=article(), so=size_overlap())
def test_same_input_same_ids(text: str, so: tuple[int, int]) -> None:
    size, overlap = so
    first = chunk_text("a.txt", text, size, overlap)
    assert first == chunk_text("a.txt", text, size, overlap)
    # The id is derived from doc + content: another document with the same text gets other ids.
    other = chunk_text("b.txt", text, size, overlap)
    assert [(c.start, c.end) for c in other] == [(c.start, c.end) for c in first]
    assert not {c.id for c in other} & {c.id for c in first}


@FEWER
@given(paras=st.lists(paragraph(), min_size=1, max_size=6), extra=paragraph(), so=size_overlap())
def test_appending_a_paragraph_keeps_all_earlier_chunk_ids(paras: list[str], extra: str,
                                                            so: tuple[int, int]) -> None:
    size, overlap = so
    text = "\n\n".join(paras).strip()
    before = chunk_text("a.txt", text, size, overlap)
    after = chunk_text("a.txt", text + "\n\n" + extra, size, overlap)
    # Only the last chunk may absorb the new paragraph; every chunk before it is untouched.
    assert after[: len(before) - 1] == before[:-1]
    assert {c.id for c in before[:-1]} <= {c.id for c in after}


@FEWER
@given(paras=st.lists(paragraph(), min_size=2, max_size=7), new=paragraph(), data=st.data(), so=size_overlap())
def test_changing_one_paragraph_leaves_chunks_before_it_alone(paras: list[str], new: str, data: st.DataObject,
                                                              so: tuple[int, int]) -> None:
    size, overlap = so
    paras = [p.strip() or "Filler sentence." for p in paras]
    k = data.draw(st.integers(0, len(paras) - 1))
    edited = paras[:k] + [new.strip() or "Changed sentence."] + paras[k + 1:]
    text, text2 = "\n\n".join(paras), "\n\n".join(edited)
    changed_at = len("\n\n".join(paras[:k])) + (2 if k else 0)  # offset where paragraph k starts
    before = chunk_text("a.txt", text, size, overlap)
    after = chunk_text("a.txt", text2, size, overlap)
    check_invariants("a.txt", text2, after, size, overlap)
    # A chunk is settled once its successor ends before the edit (the packer has looked past it).
    settled = [c for c, nxt in pairwise(before) if nxt.end <= changed_at]
    assert after[: len(settled)] == settled  # same text, offsets and ids: a re-ingest re-embeds none of them


# -- examples ---------------------------------------------------------------------------------------------------


def _sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text)]


@pytest.mark.parametrize(("text", "expected"), [
    ("Dr. Smith met Mr. Jones in St. Louis. They talked.",
     ["Dr. Smith met Mr. Jones in St. Louis.", "They talked."]),
    ("U.S. forces left, e.g. from the base. Then i.e. nothing.",
     ["U.S. forces left, e.g. from the base.", "Then i.e. nothing."]),
    ("J. R. R. Tolkien wrote books. He died.", ["J. R. R. Tolkien wrote books.", "He died."]),
    ('He said "stop." Then he left!', ['He said "stop."', "Then he left!"]),
    ("Prices rose 3.5 percent. Why? Nobody knows?! Fine...", ["Prices rose 3.5 percent.", "Why?", "Nobody knows?!",
                                                             "Fine..."]),
    ("Title line\nBody without a full stop\n\nNext paragraph.", ["Title line", "Body without a full stop",
                                                                 "Next paragraph."]),
    ("(It rained.) Then sun.", ["(It rained.)", "Then sun."]),
    # the full stop of a numbered list item opens its sentence; a number ending a sentence still ends it
    ("Steps:\n1. Open the box. Then wait.\n 12. Close it.", ["Steps:", "1. Open the box.", "Then wait.",
                                                           "12. Close it."]),
    ("The count was 12. Then 2023. Done.", ["The count was 12.", "Then 2023.", "Done."]),
    # "a.m." goes on before a word in lower case and ends the sentence before a capital
    ("The mayor cut the ribbon at 9 a.m. in front of 2,500 residents. He conceded after 2 a.m. Supporters left.",
     ["The mayor cut the ribbon at 9 a.m. in front of 2,500 residents.", "He conceded after 2 a.m.",
      "Supporters left."]),
    ("  leading and trailing  ", ["leading and trailing"]),
    ("", []),
    (" \n\n \t ", []),
])
def test_sentence_spans_examples(text: str, expected: list[str]) -> None:
    assert _sentences(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    # a hard-wrapped paragraph: its line breaks are spaces
    ("Two groups crossed over into Russia's southern Belgorod region on\nMonday and captured at least one town, "
     "officials said.\nThe Kremlin called them saboteurs.",
     ["Two groups crossed over into Russia's southern Belgorod region on\nMonday and captured at least one town, "
      "officials said.", "The Kremlin called them saboteurs."]),
    # a short line before a long one is a title, whatever case the long one starts in
    ("Panic at the Kremlin\nTwo groups crossed over into Russia's southern Belgorod region on Monday.",
     ["Panic at the Kremlin", "Two groups crossed over into Russia's southern Belgorod region on Monday."]),
    # ... unless the next line goes on in lower case
    ("The groups that\ncrossed over were Russian.", ["The groups that\ncrossed over were Russian."]),
    # Markdown: headings, list items, quotes and table rows are blocks of their own
    ("# The raid on Belgorod\nTwo groups crossed over into the Belgorod region and took a town",
     ["# The raid on Belgorod", "Two groups crossed over into the Belgorod region and took a town"]),
    ("- 26 drones shot down over seven regions of Russia\n- 100 fighters killed, according to the ministry",
     ["- 26 drones shot down over seven regions of Russia", "- 100 fighters killed, according to the ministry"]),
    ("1) the first point made in the statement, at length\n2) the second point made in it, also at length",
     ["1) the first point made in the statement, at length", "2) the second point made in it, also at length"]),
    ('> "We can confirm that this operation was carried out by Russian\n> citizens," the spokesman Andriy Yusov '
     'told CNN.\n> Then he left.',
     ['> "We can confirm that this operation was carried out by Russian\n> citizens," the spokesman Andriy Yusov '
      'told CNN.', "> Then he left."]),  # a quotation's lines wrap too
    # an empty quotation line parts the quotation's paragraphs
    ("> A quotation with an empty line\n>\n> in it.", ["> A quotation with an empty line", ">", "> in it."]),
    # a short paragraph of lines that are not full: the next word would have fitted
    ("Quarterly Report (draft)\nPublished 12 March 2024 by the team.",
     ["Quarterly Report (draft)", "Published 12 March 2024 by the team."]),
    ("Heading of the underlined kind, long enough to wrap\n===================================================",
     ["Heading of the underlined kind, long enough to wrap", "==================================================="]),
    # a figure ending a sentence at the start of a wrapped line is no numbered item: only "1." or an item of a list
    # already open interrupts a paragraph (CommonMark)
    ("The number of homes damaged by the flood rose this week to\n300. The council said repairs take a year.",
     ["The number of homes damaged by the flood rose this week to\n300.", "The council said repairs take a year."]),
    ("What to do after the flood, in the order the council gives\n1. Call the council.\n2. Photograph the damage.",
     ["What to do after the flood, in the order the council gives", "1. Call the council.",
      "2. Photograph the damage."]),
])
def test_line_breaks_that_wrap_a_paragraph_are_spaces(text: str, expected: list[str]) -> None:
    assert _sentences(text) == expected


@pytest.mark.parametrize(("sentence", "prose"), [
    ("- 26 drones shot down over seven regions", "26 drones shot down over seven regions"),
    ("2) the second point", "the second point"),
    ('> "We can confirm it was carried out by Russian\n> citizens," Yusov told CNN.',
     '"We can confirm it was carried out by Russian citizens," Yusov told CNN.'),
    ("Two groups crossed over on\nMonday - and took a town.", "Two groups crossed over on Monday - and took a town."),
])
def test_as_prose_drops_the_markers_that_open_lines(sentence: str, prose: str) -> None:
    assert as_prose(sentence) == prose


plain_word = st.text(alphabet=LETTERS, min_size=1, max_size=12)
figure = st.integers(1, 999).map(str)  # "rose to 300." may wrap to open a line, like a numbered item


@st.composite
def prose(draw: st.DrawFn) -> list[str]:
    """Paragraphs of sentences that start with a capital and end with . ! or ?"""
    paragraphs = []
    for _ in range(draw(st.integers(1, 4))):
        sentences = [" ".join([draw(plain_word), *draw(st.lists(plain_word | figure, max_size=19))]).capitalize()
                     + draw(st.sampled_from(".!?")) for _ in range(draw(st.integers(1, 6)))]
        paragraphs.append(" ".join(sentences))
    return paragraphs


@PROPS
@given(paragraphs=prose(), width=st.integers(45, 100))
def test_hard_wrapping_a_text_moves_no_sentence_boundary(paragraphs: list[str], width: int) -> None:
    """Text as a plain-text mail, a Markdown file or a PDF page wraps it splits into the same sentences."""
    flowing = "\n\n".join(paragraphs)
    wrapped = "\n\n".join(textwrap.fill(p, width, break_long_words=False, break_on_hyphens=False)
                           for p in paragraphs)
    assert [" ".join(s.split()) for s in _sentences(wrapped)] == _sentences(flowing)


def test_overlap_must_be_smaller_than_size() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("a", "Some text.", size=20, overlap=20)


def test_empty_and_blank_texts_have_no_chunks() -> None:
    assert chunk_text("a", "", 50, 10) == []
    assert chunk_text("a", "\n\n  \t\n", 50, 10) == []


def test_small_text_is_one_chunk_with_the_whole_text() -> None:
    text = "One sentence. Two sentences."
    (c,) = chunk_text("d.txt", text, 200, 40)
    assert (c.start, c.end, c.text, c.index) == (0, len(text), text, 0)


def test_no_chunk_sits_inside_its_predecessor() -> None:
    # Regression: short sentences in the overlap followed by a sentence that cannot fit with them used to yield
    # chunks made only of the overlap (already fully inside the chunk before).
    text = " ".join(["word"] * 150) + ". " + " ".join(["Short one here."] * 3) + " " + " ".join(["word"] * 195) + "."
    chunks = chunk_text("d", text, size=200, overlap=40)
    check_invariants("d", text, chunks, 200, 40)
    assert len(chunks) == 2
    assert chunks[1].text.startswith("Short one here. word")


def test_overlap_repeats_trailing_whole_sentences() -> None:
    sentences = [f"Sentence number {i} is here." for i in range(40)]
    text = " ".join(sentences)
    chunks = chunk_text("d", text, size=40, overlap=10)
    check_invariants("d", text, chunks, 40, 10)
    assert len(chunks) > 3
    for prev, nxt in pairwise(chunks):
        assert nxt.start < prev.end, "with room for a whole sentence, consecutive chunks overlap"
        assert text[nxt.start:prev.end] in sentences  # exactly one whole sentence (7 tokens) fits in 10


def test_zero_overlap_chunks_are_disjoint() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(40))
    chunks = chunk_text("d", text, size=40, overlap=0)
    assert all(nxt.start >= prev.end for prev, nxt in pairwise(chunks))


def test_long_sentence_is_cut_at_token_boundaries() -> None:
    text = "Intro. " + " ".join(f"w{i}" for i in range(400)) + " end"
    chunks = chunk_text("d", text, size=30, overlap=5)
    check_invariants("d", text, chunks, 30, 5)
    assert len(chunks) > 10
    assert all(re.fullmatch(r"(w\d+|Intro\.|end)( (w\d+|end))*", c.text) for c in chunks), \
        "cuts fall between words here, never inside one"


def test_repeated_paragraph_gets_numbered_unique_ids() -> None:
    para = "The same paragraph appears twice in this article."
    chunks = chunk_text("d.txt", f"{para}\n\n{para}", size=16, overlap=0)
    assert [c.text for c in chunks] == [para, para]
    assert chunks[1].id == chunks[0].id + "-2"


def test_ids_change_with_content_and_doc() -> None:
    (a,) = chunk_text("d.txt", "Alpha beta.", 50, 0)
    (b,) = chunk_text("d.txt", "Alpha gamma.", 50, 0)
    (c,) = chunk_text("e.txt", "Alpha beta.", 50, 0)
    assert len({a.id, b.id, c.id}) == 3


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.txt")), ids=lambda p: p.name)
def test_seed_articles_chunk_within_defaults(path: Path) -> None:
    from rag.ingest import load_file

    doc = load_file(path, path.name, 20_000_000)
    chunks = chunk_text(doc.id, doc.text, 200, 40)
    check_invariants(doc.id, doc.text, chunks, 200, 40)
    check_sentence_aligned(doc.text, chunks, 200)
